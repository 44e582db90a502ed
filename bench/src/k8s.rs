//! `--mode k8s`: Kubernetes audit events per second through normalisation and the full
//! built-in detection pack, beside plain log ingest in the same run and on the same
//! server.
//!
//! Phases, each timed from its first request to (a) the last acknowledgement, (b) the
//! last record searchable and (c) the rule evaluator having seen every record:
//! 1. plain OTLP log records (OTLP/HTTP JSON, the same encoding as the audit paths);
//! 2. generator audit events through the API server's webhook (`EventList`);
//! 3. the same events through OTLP/HTTP JSON, as a Collector filelog receiver ships them.
//!
//! In-process baseline: `k8saudit::to_record` alone over the same events (one core).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade_tests::{PrivateCluster, TempDir, TestServer};
use serde_json::{Value, json};

use crate::{
    Args, DURABLE_CLUSTER, TestServerView, UNLIMITED, Workload, evaluator_checkpoint,
    join_latencies, normalized, summary, total,
};

/// Raw COPY of already-normalised records into the same table shape, 5,000 rows per
/// COPY; only COPY time counts.
async fn copy_rate(
    cluster: &PrivateCluster,
    name: &str,
    records: &[model::LogRecord],
) -> anyhow::Result<f64> {
    let url = cluster.create_database(name).await?;
    let db = storage::Db::connect_lazy(storage::Db::options_from_url(&url)?, &Default::default());
    db.migrate().await?;
    let store = storage::logs::LogStore::new(db.clone());
    let statement = storage::logs::copy_statement();
    let mut copying = Duration::ZERO;
    for chunk in records.chunks(5_000) {
        store
            .ensure_partitions(chunk.iter().map(|r| r.time.date_naive()))
            .await?;
        let payload = storage::logs::encode_copy(chunk);
        let started = Instant::now();
        let mut conn = db.pool.acquire().await?;
        let mut copy = conn.copy_in_raw(&statement).await?;
        copy.send(payload.as_bytes()).await?;
        copy.finish().await?;
        copying += started.elapsed();
    }
    db.pool.close().await;
    Ok(records.len() as f64 / copying.as_secs_f64())
}

/// Bare tantivy indexing of the same documents (our schema); only indexing counts.
fn tantivy_rate(records: &[model::LogRecord]) -> anyhow::Result<f64> {
    let dir = TempDir::new("palisade-bench-k8s-tantivy");
    let index = storage::index::LogIndex::open_or_create(&dir.0, &Default::default())?;
    let logs: Vec<model::StoredLog> = records
        .iter()
        .cloned()
        .zip(1..)
        .map(|(record, seq)| model::StoredLog { seq, record })
        .collect();
    let started = Instant::now();
    for chunk in logs.chunks(400) {
        index.add(chunk)?;
    }
    index.commit(logs.len() as i64)?;
    Ok(logs.len() as f64 / started.elapsed().as_secs_f64())
}

fn generate(count: usize) -> anyhow::Result<Vec<String>> {
    let script = palisade_tests::workspace_root().join("tests/fixtures/gen_k8s_audit.py");
    let start = (chrono::Utc::now() - chrono::Duration::minutes(50))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--count", &count.to_string(), "--seed", "11", "--attacks"])
        .args([
            "--start",
            &start,
            "--span-seconds",
            "2700",
            "--format",
            "jsonl",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Send prepared bodies to `url` from `clients` concurrent clients; returns the time of
/// the last acknowledgement and the per-request latencies (ms).
async fn send_all(
    server: &TestServer,
    path: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let bodies = bodies.clone();
        let view = TestServerView::of(server);
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let http = palisade_tests::http_client();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                view.send_to(&http, &path, "application/json", body.clone())
                    .await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let all = join_latencies(tasks).await?;
    Ok((started.elapsed().as_secs_f64(), all))
}

struct Phase {
    name: &'static str,
    records: usize,
    acked: f64,
    searchable: f64,
    evaluated: f64,
    ack_p99: f64,
}

/// What one phase sends and when its records count as searchable.
struct PhaseSpec {
    name: &'static str,
    path: &'static str,
    bodies: Vec<Vec<u8>>,
    records: usize,
    search: &'static str,
    expect_searchable: u64,
}

async fn run_phase(
    server: &TestServer,
    url: &str,
    spec: PhaseSpec,
    clients: usize,
) -> anyhow::Result<Phase> {
    let PhaseSpec {
        name,
        path,
        bodies,
        records,
        search,
        expect_searchable,
    } = spec;
    eprintln!("bench: {name}");
    let started = Instant::now();
    let (acked, latencies) = send_all(server, path, Arc::new(bodies), clients).await?;
    while total(server, search).await? < expect_searchable {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let searchable = started.elapsed().as_secs_f64();
    while evaluator_checkpoint(url).await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let evaluated = started.elapsed().as_secs_f64();
    let (_, ack_p99) = summary(latencies);
    Ok(Phase {
        name,
        records,
        acked,
        searchable,
        evaluated,
        ack_p99,
    })
}

/// Whether a pack rule existed before the outside-coverage rules (K8S-031 on).
fn in_pack_of_before(id: &str) -> bool {
    id.starts_with("C-")
        || id
            .strip_prefix("K8S-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n <= 30)
}

/// The detection pack alone on one core: every rule on every normalised record the
/// way the event follower runs them (gates first, then match rules `match_event`, threshold and
/// new_terms rules `counts`, sequences their state machine), for the pack of before
/// (35 rules) and the whole pack. Returns (rules, records/s) for each.
fn pack_rates(records: &[model::LogRecord]) -> anyhow::Result<Vec<(usize, f64)>> {
    use alerting::engine::{SequenceState, counts, match_event};
    use alerting::rule::Spec;
    let dir = palisade_tests::workspace_root().join("rules/k8s");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)?;
            all.extend(
                alerting::rule::parse_rules(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
    }
    let before: Vec<_> = all
        .iter()
        .filter(|r| in_pack_of_before(r.id()))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for pack in [before, all] {
        let mut sequences: BTreeMap<String, SequenceState> = BTreeMap::new();
        let mut hits = 0usize;
        let started = Instant::now();
        for (seq, record) in records.iter().enumerate() {
            let mut gates = alerting::gate::GateView::new(record);
            for rule in &pack {
                if !matches!(rule.spec, Spec::Sequence { .. } | Spec::Metric { .. })
                    && !gates.open(&rule.gates)
                {
                    continue;
                }
                let hit = match rule.spec {
                    Spec::Match => match_event(rule, record, seq as i64).is_some(),
                    Spec::Sequence { .. } => sequences
                        .entry(rule.id().to_string())
                        .or_default()
                        .on_event(rule, record, seq as i64)
                        .is_some(),
                    Spec::Threshold { .. } | Spec::NewTerms { .. } => counts(rule, record),
                    Spec::Metric { .. } => false,
                };
                hits += usize::from(hit);
            }
        }
        let rate = records.len() as f64 / started.elapsed().as_secs_f64();
        std::hint::black_box(hits);
        out.push((pack.len(), rate));
    }
    Ok(out)
}

/// The webhook phase on fresh servers and databases of the same cluster, one per pack:
/// the whole built-in pack, the 35 rules of before the outside-coverage work (K8S-001…030
/// and C-01…C-05, in their current form) and no rules — the same conditions for each, so
/// the figures compare. Returns each phase with the number of alerts it raised.
async fn compare_packs(
    cluster: &PrivateCluster,
    webhook_phase: impl Fn(&'static str) -> PhaseSpec,
    clients: usize,
) -> anyhow::Result<Vec<(Phase, usize)>> {
    let before_dir = TempDir::new("palisade-bench-k8s-pack35");
    let pack = palisade_tests::workspace_root().join("rules/k8s");
    for entry in std::fs::read_dir(&pack)? {
        let name = entry?.file_name().into_string().unwrap_or_default();
        let id = name.trim_end_matches(".yaml");
        if name.ends_with(".yaml") && in_pack_of_before(id) {
            std::fs::copy(pack.join(&name), before_dir.0.join(&name))?;
        }
    }
    let before = before_dir.0.to_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for (i, (label, extra)) in [
        (
            "audit events, webhook, fresh server, **the whole pack**",
            vec![],
        ),
        (
            "audit events, webhook, fresh server, the 35-rule pack of before",
            vec!["--no-builtin-rules", "--rules-dir", before.as_str()],
        ),
        (
            "audit events, webhook, fresh server, no rules",
            vec!["--no-builtin-rules"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let url = cluster.create_database(&format!("k8s_pack{i}")).await?;
        let dir = TempDir::new("palisade-bench-k8s-pack");
        let mut args: Vec<&str> = UNLIMITED.to_vec();
        args.extend(extra);
        let server = TestServer::start(&dir.0, Some(url.clone()), &args).await?;
        let phase = run_phase(&server, &url, webhook_phase(label), clients).await?;
        let alerts = alerts_by_rule(&server).await?.values().sum();
        out.push((phase, alerts));
    }
    Ok(out)
}

/// Alerts raised so far, by rule id.
async fn alerts_by_rule(server: &TestServer) -> anyhow::Result<BTreeMap<String, usize>> {
    let (status, body, _) = server
        .call(
            "GET",
            "/api/v1/alerts?limit=1000",
            &palisade_tests::Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    anyhow::ensure!(status == 200, "alerts: {body}");
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for a in body["alerts"].as_array().into_iter().flatten() {
        *by_rule
            .entry(a["labels"]["rule"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Ok(by_rule)
}

fn webhook_bodies(events: &[Value], batch: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(events
        .chunks(batch)
        .map(|c| {
            serde_json::to_vec(
                &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": c}),
            )
        })
        .collect::<Result<_, _>>()?)
}

/// `--mode k8s-packs`: only the comparison of packs (whole, of before, none), each on a
/// fresh server, for iterating on the pack's cost.
pub async fn k8s_packs_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let n = args.records;
    eprintln!("bench: generating {n} audit events");
    let events: Vec<Value> = generate(n)?
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let requests = distinct_requests(&events);
    let bodies = webhook_bodies(&events, args.batch)?;
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let phases = compare_packs(
        &cluster,
        |name| PhaseSpec {
            name,
            path: "/v1/k8s/audit?cluster=bench-webhook",
            bodies: bodies.clone(),
            records: n,
            search: "attributes.k8s.cluster.name:\"bench-webhook\"",
            expect_searchable: requests,
        },
        args.clients,
    )
    .await?;
    println!(
        "## palisade-bench --mode k8s-packs: {n} records, {} per request, {} clients",
        args.batch, args.clients
    );
    println!();
    print_comparison(&phases);
    Ok(())
}

fn distinct_requests(events: &[Value]) -> u64 {
    events
        .iter()
        .map(|e| e["auditID"].as_str().unwrap_or("").to_string())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

fn print_comparison(phases: &[(Phase, usize)]) {
    println!("| phase | acked/s | searchable/s | evaluated/s | ack p99 | alerts |");
    println!("|---|---|---|---|---|---|");
    for (p, alerts) in phases {
        let r = p.records as f64;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} ms | {alerts} |",
            p.name,
            r / p.acked,
            r / p.searchable,
            r / p.evaluated,
            p.ack_p99
        );
    }
    if let [(whole, _), (before, _), ..] = phases {
        let cost = 1.0 - before.evaluated / whole.evaluated;
        println!();
        println!(
            "The whole pack evaluates at {:.1} % of the rate of the pack of before ({:+.1} %).",
            100.0 * before.evaluated / whole.evaluated,
            -100.0 * cost
        );
    }
}

pub async fn k8s_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let n = args.records;
    let batch = args.batch;
    eprintln!("bench: generating {n} audit events");
    let lines = generate(n)?;
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let requests = distinct_requests(&events);

    // Baseline: normalisation (parse + redact + derive + truncate) alone, one core.
    let tenant = model::TenantId(uuid::Uuid::nil());
    let now = chrono::Utc::now();
    let t = Instant::now();
    let mut audit_records = Vec::with_capacity(n);
    for line in &lines {
        let event: Value = serde_json::from_str(line)?;
        if let Ok(r) = k8saudit::to_record(event, tenant, "bench", now, Default::default()) {
            audit_records.push(r);
        }
    }
    let normalise_rate = n as f64 / t.elapsed().as_secs_f64();
    eprintln!("bench: the pack alone over the normalised records");
    let packs = pack_rates(&audit_records)?;
    let workload = Workload { records: n, batch };
    let plain_records: Vec<model::LogRecord> = (0..workload.requests())
        .map(|b| normalized(workload, b))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let avg = |rs: &[model::LogRecord]| {
        storage::logs::encode_copy(rs).len() as f64 / rs.len().max(1) as f64
    };
    let (plain_bytes, audit_bytes) = (avg(&plain_records), avg(&audit_records));
    eprintln!("bench: baselines (bare tantivy, raw COPY)");
    let plain_tantivy = tantivy_rate(&plain_records)?;
    let audit_tantivy = tantivy_rate(&audit_records)?;

    let plain_bodies: Vec<Vec<u8>> = {
        (0..workload.requests())
            .map(|i| serde_json::to_vec(&workload.request(i)))
            .collect::<Result<_, _>>()?
    };
    let webhook_bodies = webhook_bodies(&events, batch)?;
    let otlp_bodies: Vec<Vec<u8>> = lines
        .chunks(batch)
        .map(|c| {
            let records: Vec<Value> = c.iter().map(|l| json!({"body": {"stringValue": l}})).collect();
            serde_json::to_vec(&json!({"resourceLogs": [{
                "resource": {"attributes": [{"key": "k8s.cluster.name", "value": {"stringValue": "bench-otlp"}}]},
                "scopeLogs": [{"logRecords": records}]}]}))
        })
        .collect::<Result<_, _>>()?;

    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let plain_copy = copy_rate(&cluster, "copy_plain", &plain_records).await?;
    let audit_copy = copy_rate(&cluster, "copy_audit", &audit_records).await?;
    drop((plain_records, audit_records));
    let url = cluster.create_database("k8s").await?;
    let dir = TempDir::new("palisade-bench-k8s");
    // The built-in pack (30 detections + C-01…C-05) is loaded by default.
    let server = TestServer::start(&dir.0, Some(url.clone()), &UNLIMITED).await?;
    let clients = args.clients;
    let webhook_phase = |name: &'static str| PhaseSpec {
        name,
        path: "/v1/k8s/audit?cluster=bench-webhook",
        bodies: webhook_bodies.clone(),
        records: n,
        search: "attributes.k8s.cluster.name:\"bench-webhook\"",
        expect_searchable: requests,
    };
    let plain = run_phase(
        &server,
        &url,
        PhaseSpec {
            name: "plain OTLP log records (OTLP/HTTP JSON)",
            path: "/v1/logs",
            bodies: plain_bodies,
            records: n,
            search: "",
            expect_searchable: n as u64,
        },
        clients,
    )
    .await?;
    let webhook = run_phase(
        &server,
        &url,
        webhook_phase("Kubernetes audit events, audit webhook (EventList)"),
        clients,
    )
    .await?;
    let otlp = run_phase(
        &server,
        &url,
        PhaseSpec {
            name: "Kubernetes audit events, OTLP/HTTP JSON (filelog string body)",
            path: "/v1/logs",
            bodies: otlp_bodies,
            records: n,
            search: "attributes.k8s.cluster.name:\"bench-otlp\"",
            expect_searchable: requests,
        },
        clients,
    )
    .await?;

    let by_rule = alerts_by_rule(&server).await?;
    drop(server);
    let comparison = compare_packs(&cluster, webhook_phase, clients).await?;

    println!(
        "## palisade-bench --mode k8s: {n} records per phase, {batch} per request, {clients} clients, built-in pack loaded"
    );
    println!();
    println!("| phase | acked/s | searchable/s | evaluated by the pack/s | ack p99 |");
    println!("|---|---|---|---|---|");
    for p in [&plain, &webhook, &otlp] {
        let r = p.records as f64;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} ms |",
            p.name,
            r / p.acked,
            r / p.searchable,
            r / p.evaluated,
            p.ack_p99
        );
    }
    for (rules, rate) in &packs {
        println!(
            "| baseline: the pack alone ({rules} rules) over the normalised records, one core | {rate:.0} | | | |"
        );
    }

    println!(
        "| baseline: `k8saudit::to_record` alone (parse, redact, derive), one core | {normalise_rate:.0} | | | |"
    );
    println!(
        "| baseline: raw COPY, plain / audit rows ({plain_bytes:.0} / {audit_bytes:.0} bytes of COPY text per row) | {plain_copy:.0} / {audit_copy:.0} | | | |"
    );
    println!(
        "| baseline: bare tantivy indexing, plain / audit documents | | {plain_tantivy:.0} / {audit_tantivy:.0} | | |"
    );
    println!();
    println!(
        "{requests} distinct requests in {n} lines (RequestReceived/ResponseStarted stages folded); alerts by rule after both audit phases: {by_rule:?}"
    );
    println!();
    println!("The webhook phase again, each pack on a fresh server and database:");
    println!();
    print_comparison(&comparison);
    Ok(())
}
