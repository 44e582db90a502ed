//! `--mode metrics`: OTLP metrics ingest, bytes per point on disk and the latency of
//! `sum by (namespace) (rate(http_requests_total[5m]))` over one hour of 10,000
//! counter series at 15 s resolution, beside two baselines measured in the same run:
//! a raw Postgres COPY of the same points as (series, time, value) rows, and the
//! Prometheus 2.42 of the conformance test holding the same series
//! (`promtool tsdb create-blocks-from openmetrics`), answering the same query.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use palisade_tests::{PrivateCluster, TempDir, TestServer};
use prost::Message;
use sqlx::Connection;

use crate::{Args, DURABLE_CLUSTER, UNLIMITED, dir_size, summary};

const SERIES: usize = 10_000;
const POINTS: usize = 240;
const STEP_MS: i64 = 15_000;
const NAMESPACES: usize = 100;
const QUERY: &str = "sum by (namespace) (rate(http_requests_total[5m]))";

fn kv(k: &str, v: &str) -> KeyValue {
    palisade_tests::otlp::kv(k, palisade_tests::otlp::string(v))
}

fn value(series: usize, i: usize) -> f64 {
    (i * (series % 7 + 1)) as f64
}

/// One scrape: every series' point at index `i`.
fn request(t0: i64, i: usize) -> Vec<u8> {
    let t = ((t0 + i as i64 * STEP_MS) * 1_000_000) as u64;
    let points = (0..SERIES)
        .map(|s| NumberDataPoint {
            attributes: vec![
                kv("namespace", &format!("ns-{}", s % NAMESPACES)),
                kv("pod", &format!("pod-{s}")),
            ],
            start_time_unix_nano: (t0 * 1_000_000) as u64,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(value(s, i))),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "bench")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn range_latency(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    start: i64,
    end: i64,
    n: usize,
) -> anyhow::Result<(f64, f64, usize, String)> {
    let mut samples = Vec::with_capacity(n);
    let mut series = 0;
    let (mut loads, mut evals) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut req = client.get(url).query(&[
            ("query", QUERY.to_string()),
            ("start", (start / 1000).to_string()),
            ("end", (end / 1000).to_string()),
            ("step", "60".to_string()),
        ]);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let began = Instant::now();
        let resp = req.send().await?;
        let status = resp.status();
        // Palisade's Server-Timing: "load;dur=X, eval;dur=Y".
        if let Some(timing) = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
        {
            for part in timing.split(',') {
                let (name, dur) = part.trim().split_once(";dur=").unwrap_or(("", ""));
                let Ok(ms) = dur.parse::<f64>() else { continue };
                if name == "load" {
                    loads.push(ms)
                } else if name == "eval" {
                    evals.push(ms)
                }
            }
        }
        let body: serde_json::Value = resp.json().await?;
        samples.push(began.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status.is_success(), "query answered {status}: {body}");
        series = body["data"]["result"].as_array().map_or(0, Vec::len);
    }
    let (p50, p99) = summary(samples);
    let split = if loads.is_empty() {
        String::new()
    } else {
        format!(
            "; median load {:.1} ms, evaluation {:.1} ms",
            summary(loads).0,
            summary(evals).0
        )
    };
    Ok((p50, p99, series, split))
}

/// Baseline: the same points as (series_id, t, v) rows COPYed into a plain table.
async fn baseline_copy(url: &str, t0: i64) -> anyhow::Result<(f64, f64)> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE raw_points (series_id bigint NOT NULL, t bigint NOT NULL, v float8 NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("CREATE INDEX raw_points_series ON raw_points (series_id, t)")
        .execute(&mut conn)
        .await?;
    let mut copying = Duration::ZERO;
    for i in 0..POINTS {
        let mut text = String::with_capacity(SERIES * 24);
        for s in 0..SERIES {
            let _ = writeln!(text, "{s}\t{}\t{}", t0 + i as i64 * STEP_MS, value(s, i));
        }
        let began = Instant::now();
        let mut copy = conn.copy_in_raw("COPY raw_points FROM STDIN").await?;
        copy.send(text.as_bytes()).await?;
        copy.finish().await?;
        copying += began.elapsed();
    }
    let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('raw_points')")
        .fetch_one(&mut conn)
        .await?;
    Ok((
        (SERIES * POINTS) as f64 / copying.as_secs_f64(),
        bytes as f64 / (SERIES * POINTS) as f64,
    ))
}

pub(crate) async fn metrics_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let now = chrono::Utc::now().timestamp_millis();
    let t_end = (now - 60_000) / STEP_MS * STEP_MS;
    let t0 = t_end - (POINTS as i64 - 1) * STEP_MS;

    eprintln!("bench: baseline COPY");
    let baseline_url = cluster.create_database("raw").await?;
    let (copy_rate, copy_bytes) = baseline_copy(&baseline_url, t0).await?;

    let url = cluster.create_database("metrics").await?;
    let dir = TempDir::new("palisade-bench-metrics");
    let server = TestServer::start(&dir.0, Some(url.clone()), &UNLIMITED).await?;
    let client = palisade_tests::http_client();
    eprintln!(
        "bench: ingesting {SERIES} series x {POINTS} points over {} clients",
        args.clients
    );
    let bodies: Vec<Vec<u8>> = (0..POINTS).map(|i| request(t0, i)).collect();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = std::sync::Arc::new(bodies);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, next, bodies) = (client.clone(), next.clone(), bodies.clone());
        let endpoint = format!("{}/v1/metrics", server.otlp_http);
        let token = server.creds.ingest_token.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    return Ok::<_, anyhow::Error>(acks);
                }
                let sent = Instant::now();
                loop {
                    let resp = client
                        .post(&endpoint)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-protobuf")
                        .body(bodies[i].clone())
                        .send()
                        .await?;
                    match resp.status().as_u16() {
                        200 => break,
                        429 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                        other => anyhow::bail!("ingest answered {other}: {}", resp.text().await?),
                    }
                }
                acks.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await??);
    }
    let ingest_secs = began.elapsed().as_secs_f64();
    let rate = (SERIES * POINTS) as f64 / ingest_secs;
    let (ack_p50, ack_p99) = summary(acks);

    // Raw rows first (as queried right after ingest), then after compaction.
    let read = server.token("default", "read");
    let api = format!("{}/prometheus/api/v1/query_range", server.api);
    let start = t0 + 5 * 60_000;
    eprintln!("bench: query before compaction");
    let (raw_p50, raw_p99, raw_series, raw_split) =
        range_latency(&client, &api, Some(&read), start, t_end, 20).await?;
    eprintln!("bench: waiting for the compactor");
    let mut db = sqlx::PgConnection::connect(&url).await?;
    let settle = Instant::now();
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_samples")
            .fetch_one(&mut db)
            .await?;
        if rows <= (SERIES * 2) as i64 || settle.elapsed() > Duration::from_secs(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let compact_secs = settle.elapsed().as_secs_f64();
    sqlx::query("VACUUM FULL metric_samples")
        .execute(&mut db)
        .await
        .ok();
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'metric_samples'",
    )
    .fetch_one(&mut db)
    .await?;
    let series_bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('metric_series')")
        .fetch_one(&mut db)
        .await?;
    eprintln!("bench: {} range queries", args.queries);
    let (p50, p99, result_series, split) =
        range_latency(&client, &api, Some(&read), start, t_end, args.queries).await?;

    eprintln!("bench: Prometheus over the same series");
    let prom_dir = TempDir::new("palisade-bench-prometheus");
    let mut text = String::with_capacity(SERIES * POINTS * 70);
    text.push_str("# TYPE http_requests_total unknown\n");
    for s in 0..SERIES {
        for i in 0..POINTS {
            let t = t0 + i as i64 * STEP_MS;
            let _ = writeln!(
                text,
                "http_requests_total{{job=\"bench\",namespace=\"ns-{}\",pod=\"pod-{s}\"}} {} {}.{:03}",
                s % NAMESPACES,
                value(s, i),
                t / 1000,
                t % 1000
            );
        }
    }
    text.push_str("# EOF\n");
    let input = prom_dir.0.join("input.om");
    std::fs::write(&input, &text)?;
    drop(text);
    let tsdb = prom_dir.0.join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prom_bytes = dir_size(&tsdb);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(prom_dir.0.join("prometheus.yml"), "global: {}\n")?;
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            prom_dir.0.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=10y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let prom_url = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if client
            .get(format!("{prom_url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (prom_p50, prom_p99, prom_series, _) = range_latency(
        &client,
        &format!("{prom_url}/api/v1/query_range"),
        None,
        start,
        t_end,
        args.queries,
    )
    .await?;
    let _ = prom.kill();
    let _ = prom.wait();

    let points = (SERIES * POINTS) as f64;
    println!(
        "## palisade-bench --mode metrics: {SERIES} counter series x {POINTS} points (1 h at 15 s), {} clients, one request per scrape (10,000 points)\n",
        args.clients
    );
    println!("| measure | Palisade | baseline (same run) |");
    println!("|---|---|---|");
    println!(
        "| ingest, points/s (OTLP/HTTP protobuf, acknowledged = committed) | **{rate:.0}** | raw COPY of (series, time, value) rows into an indexed table: {copy_rate:.0} points/s |"
    );
    println!(
        "| ack latency p50 / p99 (10,000 points per request) | {ack_p50:.1} ms / {ack_p99:.1} ms | |"
    );
    println!(
        "| bytes per point on disk (samples after compaction; series table apart) | **{:.2} B** (+ series table {:.1} B/point) | raw rows: {copy_bytes:.1} B; Prometheus blocks: **{:.2} B** |",
        bytes as f64 / points,
        series_bytes as f64 / points,
        prom_bytes as f64 / points
    );
    println!(
        "| `{QUERY}`, 55 min at step 60 s, p50 / p99 ({} runs), {result_series} series out | **{p50:.1} ms / {p99:.1} ms** (target p99 ≤ 500 ms){split} | Prometheus 2.42: {prom_p50:.1} ms / {prom_p99:.1} ms ({prom_series} series) |",
        args.queries
    );
    println!(
        "| same query right after ingest, before compaction (20 runs) | {raw_p50:.1} ms / {raw_p99:.1} ms ({raw_series} series){raw_split} | |"
    );
    println!("| compactor catching up after ingest | {compact_secs:.0} s | |");
    Ok(())
}
