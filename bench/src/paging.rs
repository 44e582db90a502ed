//! `--mode paging`: alerts through the notification outbox to a local webhook receiver
//! (the `palisade_tests::receiver` stand-in), with the built-in detection pack loaded.
//!
//! * Latency: a probe record (a new alert each) is sent while ~10,000 records/s of
//!   background ingest run; measured from the probe's OTLP 200 to the receiver's
//!   request carrying its alert. Baseline in the same run: the same receiver answering
//!   a direct POST from the benchmark (the network and HTTP floor).
//! * Throughput: `--probes` alerts raised at once; notifications/s from the first
//!   OTLP 200 to the last delivery. Baseline: the same number of direct POSTs to the
//!   receiver, 32 at a time (the worker's batch).

use std::time::{Duration, Instant};

use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::receiver::Receiver;
use palisade_tests::{PrivateCluster, TempDir, TestServer};
use prost::Message;
use serde_json::json;

use crate::{Args, Background, DURABLE_CLUSTER, TestServerView, UNLIMITED, Workload, summary};

const RULE: &str = "apiVersion: palisade/v1\nid: probe\ntitle: Probe\nseverity: critical\nkind: match\nquery: 'body:probealert'\ngroup_by: [attributes.probe.id]\n";

fn probe(id: &str) -> Vec<u8> {
    request(
        "probe",
        vec![record("probealert", 9, vec![kv("probe.id", string(id))])],
    )
    .encode_to_vec()
}

fn carries(r: &palisade_tests::receiver::Received, id: &str) -> bool {
    std::str::from_utf8(&r.body).is_ok_and(|b| b.contains(id))
}

pub(crate) async fn paging_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let url = cluster.create_database("paging").await?;
    let dir = TempDir::new("palisade-bench-paging");
    let rules = TempDir::new("palisade-bench-paging-rules");
    std::fs::write(rules.0.join("probe.yaml"), RULE)?;
    let mut extra: Vec<&str> = UNLIMITED.to_vec();
    extra.extend([
        "--rules-dir",
        rules.0.to_str().expect("utf-8 path"),
        "--allow-private-destinations",
        "127.0.0.0/8",
    ]);
    let server = TestServer::start(&dir.0, Some(url), &extra).await?;
    let rx = Receiver::start().await;
    let (status, body, _) = server
        .call(
            "POST",
            "/api/v1/channels",
            &palisade_tests::Auth::Token(server.creds.api_token.clone()),
            Some(
                json!({"name": "bench", "type": "webhook", "url": format!("{}/hook", rx.url),
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
            ),
        )
        .await;
    anyhow::ensure!(status == 201, "channel not created: {body}");
    let view = TestServerView::of(&server);
    let client = palisade_tests::http_client();

    // Baseline: direct POSTs to the receiver.
    let mut direct = Vec::new();
    for i in 0..args.probes {
        let started = Instant::now();
        client
            .post(format!("{}/direct", rx.url))
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await?;
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (direct_p50, direct_p99) = summary(direct);

    eprintln!(
        "bench: OTLP 200 to receiver, {} probes under load",
        args.probes
    );
    let background = Background::start(
        &server,
        Workload {
            records: 200_000,
            batch: 500,
        },
    );
    let mut samples = Vec::new();
    for p in 0..args.probes {
        let id = format!("lat{p}x{}", uuid::Uuid::new_v4().simple());
        view.send(&client, probe(&id)).await?;
        let acked = Instant::now();
        loop {
            if rx.received("/hook").iter().any(|r| carries(r, &id)) {
                break;
            }
            anyhow::ensure!(
                acked.elapsed() < Duration::from_secs(30),
                "probe page never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    background.stop().await;
    let (p50, p99) = summary(samples);

    eprintln!("bench: {} alerts at once", args.probes);
    let before = rx.received("/hook").len();
    let started = Instant::now();
    for chunk in 0..args.probes.div_ceil(100) {
        let records = (0..100)
            .map(|i| {
                let id = format!("tp{chunk}x{i}x{}", uuid::Uuid::new_v4().simple());
                record("probealert", 9, vec![kv("probe.id", string(&id))])
            })
            .collect();
        view.send(&client, request("probe", records).encode_to_vec())
            .await?;
    }
    let want = before + args.probes.div_ceil(100) * 100;
    while rx.received("/hook").len() < want {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "pages never all arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let through = (want - before) as f64 / started.elapsed().as_secs_f64();
    let pages = rx.received("/hook");
    let first_page = pages[before].at.duration_since(started).as_millis();
    let last_page = pages[want - 1].at.duration_since(started).as_millis();
    let direct_started = Instant::now();
    let n = want - before;
    let mut sent = 0;
    while sent < n {
        let mut batch = tokio::task::JoinSet::new();
        for i in sent..(sent + 32).min(n) {
            let request = client
                .post(format!("{}/direct", rx.url))
                .body(format!("{{\"n\":{i}}}"));
            batch.spawn(request.send());
        }
        sent += batch.len();
        while let Some(done) = batch.join_next().await {
            done??;
        }
    }
    let direct_rate = n as f64 / direct_started.elapsed().as_secs_f64();

    println!("## palisade-bench --mode paging: {} probes", args.probes);
    println!();
    println!("| measure | Palisade | baseline (same run) |");
    println!("|---|---|---|");
    println!(
        "| OTLP 200 to the receiver's request, p50 / p99 (background ~10,000 records/s, built-in pack loaded) | {p50:.0} ms / {p99:.0} ms | direct POST to the same receiver: {direct_p50:.1} ms / {direct_p99:.1} ms |"
    );
    println!(
        "| notifications delivered per second ({n} alerts raised at once; first page after {first_page} ms, last after {last_page} ms) | {through:.0} /s | direct POSTs, 32 in flight: {direct_rate:.0} /s |"
    );
    Ok(())
}
