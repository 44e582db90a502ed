//! `palisade-bench`: end-to-end ingest and search benchmark with same-run baselines.
//!
//! Starts a durable PostgreSQL cluster (fsync on) and the release `palisade` binary,
//! replays generated records over OTLP/HTTP and OTLP/gRPC from concurrent clients,
//! and reports durable ingest records/s, ack latency, ack-to-searchable latency,
//! search latency, bytes on disk per record and server RSS. In the same run it
//! measures the baselines: the same rows loaded with raw COPY into the same table
//! shape, and the same documents indexed into a bare tantivy index.
//!
//! Usage: `cargo run --release -p palisade-bench -- --records 1000000`

mod k8s;
mod metrics;
mod paging;
mod timeline;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use model::TenantId;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use palisade_tests::otlp::{int, kv, record, request, string};
use palisade_tests::{PrivateCluster, TempDir, TestServer};
use prost::Message;

#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Records to ingest.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records per export request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent clients (half OTLP/HTTP, half OTLP/gRPC).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Search queries per query kind.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Ack-to-searchable probes.
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// The palisade binary to measure.
    #[arg(long, default_value = "target/release/palisade")]
    palisade: PathBuf,
    /// `ingest` (ingest and search), `rules` (ingest with 0 vs 100 match rules,
    /// and match-to-firing latency) or `k8s` (audit events through normalisation and
    /// the built-in detection pack, beside plain logs; `k8s-packs` only its comparison
    /// of packs on fresh servers) or `paging` (alerts through the
    /// notification outbox to a webhook receiver: latency under load, throughput) or
    /// `timeline` (an incident timeline with 1,000 correlated events among `--records`)
    /// or `metrics` (OTLP metrics ingest, bytes per point, a PromQL range query over
    /// 10,000 series beside Prometheus 2.42 and a raw COPY).
    #[arg(long, default_value = "ingest")]
    mode: String,
}

/// The benchmark's single token must not be throttled by the per-token limits.
pub(crate) const UNLIMITED: [&str; 4] = [
    "--api-rate-limit",
    "1000000",
    "--ingest-rate-limit",
    "1000000",
];

/// A durable cluster (fsync and synchronous commit on), sized for the benchmarks.
pub(crate) const DURABLE_CLUSTER: &str = "-c max_connections=100 -c shared_buffers=256MB -c max_wal_size=2GB -c fsync=on -c synchronous_commit=on";

/// Deterministic xorshift generator: the same records every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VERBS: [&str; 6] = ["get", "list", "watch", "create", "update", "delete"];
const WORDS: [&str; 12] = [
    "session",
    "opened",
    "closed",
    "request",
    "completed",
    "timeout",
    "denied",
    "cache",
    "refresh",
    "token",
    "upstream",
    "retry",
];

fn attributes(rng: &mut Rng) -> Vec<KeyValue> {
    vec![
        kv("user.name", string(&format!("user{}", rng.below(1000)))),
        kv(
            "http.status_code",
            int([200, 200, 200, 201, 204, 401, 403, 404, 500][rng.below(9) as usize]),
        ),
        kv(
            "k8s.namespace.name",
            string(&format!("ns-{}", rng.below(50))),
        ),
        kv("k8s.verb", string(VERBS[rng.below(6) as usize])),
        kv(
            "client.address",
            string(&format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )),
        ),
        kv("duration_ms", int(rng.below(5000) as i64)),
    ]
}

fn body(rng: &mut Rng, i: usize) -> String {
    let mut words: Vec<&str> = (0..8)
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect();
    words.push("id");
    let mut text = words.join(" ");
    text.push_str(&format!(" {i} trace {:016x}", rng.next()));
    text
}

/// A deterministic workload of `records` records in requests of `batch`, generated
/// on demand (batch `b` is always the same), so 10M records never sit in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub(crate) records: usize,
    pub(crate) batch: usize,
}

impl Workload {
    fn requests(&self) -> usize {
        self.records.div_ceil(self.batch)
    }

    fn request(&self, b: usize) -> ExportLogsServiceRequest {
        let mut rng =
            Rng(0x9E37_79B9_7F4A_7C15 ^ ((b as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)));
        let first = b * self.batch;
        let take = self.batch.min(self.records - first);
        let records = (0..take)
            .map(|k| {
                let severity = [9, 9, 9, 9, 13, 17][rng.below(6) as usize];
                record(&body(&mut rng, first + k), severity, attributes(&mut rng))
            })
            .collect();
        request(&format!("svc-{}", b % 20), records)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let meta = e.metadata().ok();
            match meta {
                Some(m) if m.is_dir() => dir_size(&e.path()),
                Some(m) => m.len(),
                None => 0,
            }
        })
        .sum()
}

/// Baseline 1: the same rows, COPYed straight into the same table shape.
/// Records of request `b` of the workload, normalised by the ingest code itself.
pub(crate) fn normalized(workload: Workload, b: usize) -> anyhow::Result<Vec<model::LogRecord>> {
    let tenant = TenantId(uuid::Uuid::nil());
    Ok(ingest::normalize::normalize(
        tenant,
        &workload.request(b),
        chrono::Utc::now(),
        Default::default(),
    )?
    .records)
}

/// Baseline 1: the same rows COPYed straight into the same table shape (only the
/// COPY time is counted; generation and normalisation are not).
async fn baseline_copy(cluster: &PrivateCluster, workload: Workload) -> anyhow::Result<f64> {
    let url = cluster.create_database("baseline").await?;
    let db = storage::Db::connect_lazy(storage::Db::options_from_url(&url)?, &Default::default());
    db.migrate().await?;
    let store = storage::logs::LogStore::new(db.clone());
    let statement = storage::logs::copy_statement();
    let mut copying = Duration::ZERO;
    let mut rows = 0usize;
    let per_copy = (20_000 / workload.batch).max(1);
    let mut b = 0;
    while b < workload.requests() {
        let mut chunk = Vec::new();
        for i in b..(b + per_copy).min(workload.requests()) {
            chunk.extend(normalized(workload, i)?);
        }
        b += per_copy;
        store
            .ensure_partitions(chunk.iter().map(|r| r.time.date_naive()))
            .await?;
        let payload = storage::logs::encode_copy(&chunk);
        let started = Instant::now();
        let mut conn = db.pool.acquire().await?;
        let mut copy = conn.copy_in_raw(&statement).await?;
        copy.send(payload.as_bytes()).await?;
        copy.finish().await?;
        copying += started.elapsed();
        rows += chunk.len();
    }
    db.pool.close().await;
    // Free the disk for the measured run.
    drop(store);
    Ok(rows as f64 / copying.as_secs_f64())
}

/// Baseline 2: the same documents indexed by a bare tantivy writer (only indexing
/// time is counted).
fn baseline_tantivy(workload: Workload) -> anyhow::Result<f64> {
    let dir = TempDir::new("palisade-bench-tantivy");
    let index = storage::index::LogIndex::open_or_create(&dir.0, &Default::default())?;
    let mut indexing = Duration::ZERO;
    let mut seq = 0;
    for b in 0..workload.requests() {
        let logs: Vec<model::StoredLog> = normalized(workload, b)?
            .into_iter()
            .map(|record| {
                seq += 1;
                model::StoredLog { seq, record }
            })
            .collect();
        let started = Instant::now();
        index.add(&logs)?;
        indexing += started.elapsed();
    }
    let started = Instant::now();
    index.commit(seq)?;
    indexing += started.elapsed();
    Ok(seq as f64 / indexing.as_secs_f64())
}

pub(crate) async fn ingest_all(
    server: &TestServer,
    workload: Workload,
    clients: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let next = next.clone();
        let http = palisade_tests::http_client();
        let server_view = TestServerView::of(server);
        let grpc_url = server.otlp_grpc.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut grpc = if c % 2 == 1 {
                Some(LogsServiceClient::connect(grpc_url).await?)
            } else {
                None
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= workload.requests() {
                    break;
                }
                // Generated on demand (not timed): the same request every run.
                let request = workload.request(i);
                let t = Instant::now();
                match grpc.as_mut() {
                    Some(client) => loop {
                        let mut req = tonic::Request::new(request.clone());
                        req.metadata_mut().insert(
                            "authorization",
                            format!("Bearer {}", server_view.creds_token).parse()?,
                        );
                        match client.export(req).await {
                            Ok(_) => break,
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                tokio::time::sleep(Duration::from_millis(100)).await
                            }
                            Err(status) => anyhow::bail!("grpc export failed: {status}"),
                        }
                    },
                    None => server_view.send(&http, request.encode_to_vec()).await?,
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let latencies = join_latencies(tasks).await?;
    Ok((started.elapsed().as_secs_f64(), latencies))
}

pub(crate) struct TestServerView {
    otlp_http: String,
    creds_token: String,
}

impl TestServerView {
    pub(crate) fn of(server: &TestServer) -> TestServerView {
        TestServerView {
            otlp_http: server.otlp_http.clone(),
            creds_token: server.creds.ingest_token.clone(),
        }
    }

    /// POST one protobuf body, retrying 429/503 as an OTLP exporter would.
    async fn send(&self, client: &reqwest::Client, body: Vec<u8>) -> anyhow::Result<()> {
        self.send_to(client, "/v1/logs", "application/x-protobuf", body)
            .await
    }

    /// POST one body to `path` on the OTLP/HTTP listener, retrying 429/503.
    async fn send_to(
        &self,
        client: &reqwest::Client,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<()> {
        loop {
            let resp = client
                .post(format!("{}{path}", self.otlp_http))
                .header("content-type", content_type)
                .bearer_auth(&self.creds_token)
                .body(body.clone())
                .send()
                .await?;
            match resp.status().as_u16() {
                200 => return Ok(()),
                429 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => anyhow::bail!("ingest answered {other}: {}", resp.text().await?),
            }
        }
    }
}

/// Wait for every client task and gather their latencies.
async fn join_latencies(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<f64>>>>,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

pub(crate) async fn total(server: &TestServer, q: &str) -> anyhow::Result<u64> {
    let (status, body) = server
        .search(&[("q", q), ("from", "now-1d"), ("limit", "1")])
        .await;
    anyhow::ensure!(status == 200, "search failed: {body}");
    Ok(body["total"].as_u64().unwrap_or(0))
}

async fn search_latency(server: &TestServer, queries: &[String]) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::new();
    for q in queries {
        let t = Instant::now();
        let (status, body) = server
            .search(&[("q", q), ("from", "now-1d"), ("limit", "100")])
            .await;
        anyhow::ensure!(status == 200, "search {q} failed: {body}");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(summary(samples))
}

async fn probes(server: &TestServer, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::new();
    let client = palisade_tests::http_client();
    let view = TestServerView::of(server);
    for p in 0..n {
        let marker = format!("probe{p}x{}", uuid::Uuid::new_v4().simple());
        let body = request("probe", vec![record(&marker, 9, vec![])]).encode_to_vec();
        view.send(&client, body).await?;
        let acked = Instant::now();
        loop {
            if total(server, &marker).await? == 1 {
                break;
            }
            anyhow::ensure!(
                acked.elapsed() < Duration::from_secs(30),
                "probe never searchable"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(summary(samples))
}

fn rss_mib(server: &TestServer) -> (f64, f64) {
    let (peak, now) = server.memory_kib();
    (now as f64 / 1024.0, peak as f64 / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.mode == "rules" {
        return rules_bench(args).await;
    }
    if args.mode == "k8s" {
        return k8s::k8s_bench(args).await;
    }
    if args.mode == "k8s-packs" {
        return k8s::k8s_packs_bench(args).await;
    }
    if args.mode == "paging" {
        return paging::paging_bench(args).await;
    }
    if args.mode == "timeline" {
        return timeline::timeline_bench(args).await;
    }
    if args.mode == "metrics" {
        return metrics::metrics_bench(args).await;
    }
    let palisade = std::fs::canonicalize(&args.palisade).with_context(|| {
        format!(
            "{} not found: cargo build --release --bin palisade",
            args.palisade.display()
        )
    })?;
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    eprintln!("bench: generating {} records", args.records);
    let workload = Workload {
        records: args.records,
        batch: args.batch,
    };

    eprintln!("bench: baseline COPY");
    let copy_rate = baseline_copy(&cluster, workload).await?;
    eprintln!("bench: baseline tantivy");
    let tantivy_rate = baseline_tantivy(workload)?;

    let url = cluster.create_database("palisade").await?;
    let dir = TempDir::new("palisade-bench");
    palisade_tests::set_palisade_bin(palisade.clone());
    let server = TestServer::start(&dir.0, Some(url.clone()), &UNLIMITED).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = rss_mib(&server);

    eprintln!("bench: ingesting over {} clients", args.clients);
    let started = Instant::now();
    let (ingest_secs, ack_latencies) = ingest_all(&server, workload, args.clients).await?;
    while total(&server, "").await? < args.records as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let searchable_secs = started.elapsed().as_secs_f64();
    let (ack_p50, ack_p99) = summary(ack_latencies);
    let (rss_after, rss_peak) = rss_mib(&server);

    eprintln!("bench: ack-to-searchable probes");
    let (fresh_p50, fresh_p99) = probes(&server, args.probes).await?;
    eprintln!("bench: search latency");
    let term_queries: Vec<String> = (0..args.queries)
        .map(|i| WORDS[i % WORDS.len()].to_string())
        .collect();
    let attr_queries: Vec<String> = (0..args.queries)
        .map(|i| format!("attributes.user.name:user{}", i % 1000))
        .collect();
    let combo_queries: Vec<String> = (0..args.queries)
        .map(|i| {
            format!(
                "attributes.http.status_code:>=400 AND {}",
                WORDS[i % WORDS.len()]
            )
        })
        .collect();
    let term = search_latency(&server, &term_queries).await?;
    let attr = search_latency(&server, &attr_queries).await?;
    let combo = search_latency(&server, &combo_queries).await?;

    let db_bytes = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'log_records'",
        )
        .fetch_one(&mut conn)
        .await?;
        bytes as u64
    };
    let index_bytes = dir_size(&dir.0.join("index"));
    let n = args.records as f64;

    println!(
        "## palisade-bench: {} records, batch {}, {} clients (half HTTP, half gRPC)",
        args.records, args.batch, args.clients
    );
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| durable ingest (all acks) | {:.0} records/s |",
        n / ingest_secs
    );
    println!(
        "| durable **and searchable** (last record searchable) | {:.0} records/s |",
        n / searchable_secs
    );
    println!(
        "| baseline: raw COPY of the same rows, same table, 1 connection | {copy_rate:.0} rows/s |"
    );
    println!(
        "| baseline: bare tantivy indexing of the same documents | {tantivy_rate:.0} docs/s |"
    );
    println!(
        "| ack latency p50 / p99 ({} records per request) | {ack_p50:.1} ms / {ack_p99:.1} ms |",
        args.batch
    );
    println!(
        "| ack to searchable p50 / p99 ({} probes) | {fresh_p50:.0} ms / {fresh_p99:.0} ms |",
        args.probes
    );
    println!(
        "| search p50 / p99, term (`{}`) at {} records | {:.1} ms / {:.1} ms |",
        WORDS[0], args.records, term.0, term.1
    );
    println!(
        "| search p50 / p99, attribute (`attributes.user.name:userN`) | {:.1} ms / {:.1} ms |",
        attr.0, attr.1
    );
    println!(
        "| search p50 / p99, range + term (`attributes.http.status_code:>=400 AND word`) | {:.1} ms / {:.1} ms |",
        combo.0, combo.1
    );
    println!(
        "| bytes on disk per record: Postgres (heap + indexes + TOAST) | {:.0} B |",
        db_bytes as f64 / n
    );
    println!(
        "| bytes on disk per record: tantivy index | {:.0} B |",
        index_bytes as f64 / n
    );
    println!(
        "| server RSS idle at start / after ingest / peak | {idle_rss:.0} MiB / {rss_after:.0} MiB / {rss_peak:.0} MiB |"
    );
    drop(server);
    Ok(())
}

/// 100 match rules over the generated attributes, plus one probe rule.
fn hundred_rules() -> String {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!(
            "apiVersion: palisade/v1\nid: bench-{i}\ntitle: Bench rule {i}\nseverity: low\nkind: match\n\
             query: 'attributes.k8s.verb:delete AND attributes.k8s.namespace.name:ns-{i} AND attributes.http.status_code:>=500'\n\
             group_by: [attributes.user.name]\n---\n"
        ));
    }
    text.push_str(
        "apiVersion: palisade/v1\nid: probe\ntitle: Probe\nseverity: info\nkind: match\nquery: 'body:probealert'\ngroup_by: [attributes.probe.id]\n---\n",
    );
    // A threshold probe evaluated hourly on schedule: only the crossing path can fire
    // it within the probe's wait.
    text.push_str(
        "apiVersion: palisade/v1\nid: probe-burst\ntitle: Probe burst\nseverity: info\nkind: threshold\nquery: 'body:probeburst'\ngroup_by: [attributes.probe.id]\nwindow: 5m\ninterval: 1h\nthreshold: 3\n",
    );
    text
}

async fn evaluator_checkpoint(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM follower_checkpoints WHERE name = 'rules'")
            .fetch_optional(&mut conn)
            .await?;
    let max: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM log_records")
        .fetch_one(&mut conn)
        .await?;
    Ok(max.unwrap_or(0) - seq.unwrap_or(0))
}

async fn rules_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let workload = Workload {
        records: args.records,
        batch: args.batch,
    };
    let mut rates = Vec::new();
    let rules_dir = TempDir::new("palisade-bench-rules");
    std::fs::write(rules_dir.0.join("bench.yaml"), hundred_rules())?;
    for (name, with_rules) in [("0 rules", false), ("100 match rules", true)] {
        let url = cluster
            .create_database(if with_rules { "rules100" } else { "rules0" })
            .await?;
        let dir = TempDir::new("palisade-bench-r");
        // Exactly 0 or 100 rules: leave the built-in pack out of this comparison.
        let mut extra: Vec<&str> = UNLIMITED.to_vec();
        extra.push("--no-builtin-rules");
        if with_rules {
            extra.extend(["--rules-dir", rules_dir.0.to_str().expect("utf-8 path")]);
        }
        let server = TestServer::start(&dir.0, Some(url.clone()), &extra).await?;
        eprintln!("bench: ingest with {name}");
        let started = Instant::now();
        let (ingest_secs, _) = ingest_all(&server, workload, args.clients).await?;
        // Rules must keep up: wait until the evaluator has seen every record.
        while with_rules && evaluator_checkpoint(&url).await? > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let evaluated_secs = started.elapsed().as_secs_f64();
        let n = args.records as f64;
        rates.push((name, n / ingest_secs, n / evaluated_secs));
        eprintln!(
            "bench: {name}: acked {:.0} records/s, evaluated {:.0} records/s",
            n / ingest_secs,
            n / evaluated_secs
        );
        if with_rules {
            // Crossing probes first: with 100 match rules the evaluator may not keep
            // up with the background load for long on this machine, and a backlog would
            // be measured instead of the crossing.
            eprintln!("bench: threshold crossing-to-firing probes under load");
            let crossed =
                firing_probes(&server, args.probes, "probe-burst", "probeburst", 3).await?;
            eprintln!("bench: match-to-firing probes under load");
            let matched = firing_probes(&server, args.probes, "probe", "probealert", 1).await?;
            print_rules(&args, &rates, matched, crossed);
        }
        drop(server);
    }
    Ok(())
}

/// Send probes (`per_probe` matching records each, the last one alone, a new
/// fingerprint each) while a background client ingests at about 10,000 records/s
/// (half the ingest target); time each from the 200 of its last record to its alert
/// being `firing`.
async fn firing_probes(
    server: &TestServer,
    n: usize,
    rule: &str,
    body: &str,
    per_probe: usize,
) -> anyhow::Result<(f64, f64)> {
    let background = Workload {
        records: 200_000,
        batch: 500,
    };
    let view = TestServerView::of(server);
    let client = palisade_tests::http_client();
    let background = Background::start(server, background);
    let mut samples = Vec::new();
    for p in 0..n {
        let id = format!("p{p}x{}", uuid::Uuid::new_v4().simple());
        let one = || {
            request(
                "probe",
                vec![record(body, 9, vec![kv("probe.id", string(&id))])],
            )
            .encode_to_vec()
        };
        for _ in 1..per_probe {
            view.send(&client, one()).await?;
        }
        view.send(&client, one()).await?;
        let acked = Instant::now();
        loop {
            let (status, list) = server
                .get_api(
                    "/api/v1/alerts",
                    &[("rule", rule), ("state", "firing"), ("limit", "1000")],
                    Some(&server.creds.api_token),
                )
                .await;
            anyhow::ensure!(status == 200, "alerts API failed: {list}");
            let fired = list["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|al| al["labels"]["attributes.probe.id"] == id.as_str())
            });
            if fired {
                break;
            }
            if acked.elapsed() >= Duration::from_secs(30) {
                let (_, any) = server
                    .get_api(
                        "/api/v1/alerts",
                        &[("rule", rule), ("limit", "1000")],
                        Some(&server.creds.api_token),
                    )
                    .await;
                let (_, found) = server
                    .get_api(
                        "/api/v1/search",
                        &[
                            ("q", &format!("attributes.probe.id:\"{id}\"")),
                            ("from", "now-1h"),
                        ],
                        Some(&server.creds.api_token),
                    )
                    .await;
                anyhow::bail!(
                    "probe alert never fired: alerts of {rule}: {}; the probe's records: {}",
                    any["alerts"].as_array().map_or(0, Vec::len),
                    found["total"]
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    background.stop().await;
    Ok(summary(samples))
}

/// About 10,000 records/s of background ingest (20 requests of 500 per second) until
/// stopped.
pub(crate) struct Background {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    pub(crate) fn start(server: &TestServer, workload: Workload) -> Background {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let view = TestServerView::of(server);
        let bodies: Vec<Vec<u8>> = (0..workload.requests())
            .map(|b| workload.request(b).encode_to_vec())
            .collect();
        let task = tokio::spawn(async move {
            let client = palisade_tests::http_client();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for body in bodies.iter().cycle() {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let _ = view.send(&client, body.clone()).await;
            }
        });
        Background { stop, task }
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
    }
}

fn print_rules(
    args: &Args,
    rates: &[(&str, f64, f64)],
    (p50, p99): (f64, f64),
    (c50, c99): (f64, f64),
) {
    println!(
        "## palisade-bench --mode rules: {} records, batch {}, {} clients",
        args.records, args.batch, args.clients
    );
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    for (name, acked, evaluated) in rates {
        println!("| durable ingest with {name} (acks) | {acked:.0} records/s |");
        if name.starts_with("100") {
            println!(
                "| ... until every record was evaluated by the rules | {evaluated:.0} records/s |"
            );
        }
    }
    println!(
        "| match-to-firing p50 / p99 ({} probes, background load ~10,000 records/s) | {p50:.0} ms / {p99:.0} ms |",
        args.probes
    );
    println!(
        "| threshold crossing-to-firing p50 / p99 ({} probes of 3 records, rule interval 1 h, same load) | {c50:.0} ms / {c99:.0} ms |",
        args.probes
    );
}
