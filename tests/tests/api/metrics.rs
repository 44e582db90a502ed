//! Metrics: OTLP metrics in, PromQL out — differentially against a real Prometheus
//! (Debian's `prometheus` 2.42, loaded with `promtool tsdb create-blocks-from
//! openmetrics`), through the official Python SDK, in the shapes Grafana's
//! Prometheus data source sends, and past every bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use palisade_tests::{TempDir, TestServer, http_client};
use prost::Message;
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 320; // 80 minutes
const STOP: i64 = 280; // instance "b" stops here (staleness)
const BOUNDS: [f64; 4] = [0.1, 0.5, 1.0, 5.0];

fn kv(k: &str, v: &str) -> KeyValue {
    palisade_tests::otlp::kv(k, palisade_tests::otlp::string(v))
}

/// One series of the input table: Prometheus name, labels, (index, value).
struct Input {
    name: &'static str,
    job: &'static str,
    instance: &'static str,
    extra: Vec<(&'static str, String)>,
    points: Vec<(i64, f64)>,
}

fn counter_a200(i: i64) -> f64 {
    // A counter reset at 160.
    if i < 160 {
        (i * 3 + i % 7) as f64
    } else {
        ((i - 160) * 2) as f64
    }
}

/// Cumulative histogram counts per bound (+Inf last) and sum at index i.
fn histogram(i: i64, seed: i64) -> (Vec<u64>, f64) {
    let mut per = [0u64; 5];
    let mut sum = 0.0;
    for k in 0..=i {
        let adds = [
            (k + seed) % 3,
            2,
            i64::from((k + seed) % 5 == 0),
            1,
            i64::from((k + seed) % 11 == 0),
        ];
        for (b, a) in adds.iter().enumerate() {
            per[b] += *a as u64;
        }
        sum += 0.05 * adds[0] as f64
            + 0.3 * adds[1] as f64
            + 0.8 * adds[2] as f64
            + 3.0 * adds[3] as f64
            + 7.0 * adds[4] as f64;
    }
    (per.to_vec(), sum)
}

fn jobs_increment(i: i64) -> f64 {
    ((i % 4) + 1) as f64
}

fn inputs() -> Vec<Input> {
    let range =
        |f: &dyn Fn(i64) -> f64, until: i64| (0..until).map(|i| (i, f(i))).collect::<Vec<_>>();
    let mut out = vec![
        Input {
            name: "http_requests_total",
            job: "api",
            instance: "a",
            extra: vec![("code", "200".into())],
            points: range(&counter_a200, POINTS),
        },
        Input {
            name: "http_requests_total",
            job: "api",
            instance: "a",
            extra: vec![("code", "500".into())],
            points: range(&|i| (i / 4) as f64, POINTS),
        },
        Input {
            name: "http_requests_total",
            job: "api",
            instance: "b",
            extra: vec![("code", "200".into())],
            points: range(&|i| (i * 5) as f64, POINTS),
        },
        Input {
            name: "http_requests_total",
            job: "web",
            instance: "c",
            extra: vec![("code", "200".into())],
            points: range(&|i| i as f64 * 1.5, POINTS),
        },
        Input {
            name: "memory_usage_bytes",
            job: "api",
            instance: "a",
            extra: vec![],
            points: range(
                &|i| ((500.0 + 300.0 * (i as f64 / 10.0).sin()) * 100.0).round() / 100.0,
                POINTS,
            ),
        },
        Input {
            name: "memory_usage_bytes",
            job: "api",
            instance: "b",
            extra: vec![],
            points: range(&|i| (100 + i) as f64, STOP),
        },
        Input {
            name: "memory_usage_bytes",
            job: "web",
            instance: "c",
            extra: vec![],
            points: range(&|i| (1000 - i) as f64, POINTS),
        },
        Input {
            name: "up",
            job: "api",
            instance: "a",
            extra: vec![],
            points: range(&|_| 1.0, POINTS),
        },
        Input {
            name: "up",
            job: "api",
            instance: "b",
            extra: vec![],
            points: range(&|i| if i < STOP { 1.0 } else { 0.0 }, POINTS),
        },
        Input {
            name: "up",
            job: "web",
            instance: "c",
            extra: vec![],
            points: range(&|_| 1.0, POINTS),
        },
        Input {
            name: "node_info",
            job: "api",
            instance: "a",
            extra: vec![("version", "1.2".into())],
            points: range(&|_| 1.0, POINTS),
        },
        Input {
            name: "node_info",
            job: "api",
            instance: "b",
            extra: vec![("version", "1.3".into())],
            points: range(&|_| 1.0, POINTS),
        },
        Input {
            name: "node_info",
            job: "web",
            instance: "c",
            extra: vec![("version", "2.0".into())],
            points: range(&|_| 1.0, POINTS),
        },
        Input {
            name: "jobs_processed_total",
            job: "worker",
            instance: "w",
            extra: vec![],
            points: {
                let mut total = 0.0;
                (0..POINTS)
                    .map(|i| {
                        total += jobs_increment(i);
                        (i, total)
                    })
                    .collect()
            },
        },
    ];
    for (instance, seed) in [("a", 0), ("b", 3)] {
        let les: Vec<String> = BOUNDS
            .iter()
            .map(|b| format!("{b}"))
            .chain(["+Inf".to_string()])
            .collect();
        for (b, le) in les.iter().enumerate() {
            out.push(Input {
                name: "request_duration_seconds_bucket",
                job: "api",
                instance,
                extra: vec![("le", le.clone())],
                points: (0..POINTS)
                    .map(|i| {
                        let (per, _) = histogram(i, seed);
                        (i, per[..=b].iter().sum::<u64>() as f64)
                    })
                    .collect(),
            });
        }
        out.push(Input {
            name: "request_duration_seconds_count",
            job: "api",
            instance,
            extra: vec![],
            points: (0..POINTS)
                .map(|i| (i, histogram(i, seed).0.iter().sum::<u64>() as f64))
                .collect(),
        });
        out.push(Input {
            name: "request_duration_seconds_sum",
            job: "api",
            instance,
            extra: vec![],
            points: (0..POINTS).map(|i| (i, histogram(i, seed).1)).collect(),
        });
    }
    out
}

/// The same table as OTLP: resources per (job, instance), counters as monotonic
/// cumulative sums, `jobs.processed` as a DELTA sum (increments), histograms as
/// OTLP histograms (per-bucket counts), gauges with units.
fn otlp(t0: i64) -> ExportMetricsServiceRequest {
    let ns = |i: i64| ((t0 + i * STEP_MS) * 1_000_000) as u64;
    let number = |i: i64, v: f64, attrs: Vec<KeyValue>| NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: ns(0),
        time_unix_nano: ns(i),
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let all = inputs();
    let mut resources = Vec::new();
    for (job, instance) in [("api", "a"), ("api", "b"), ("web", "c"), ("worker", "w")] {
        let mine: Vec<&Input> = all
            .iter()
            .filter(|s| s.job == job && s.instance == instance)
            .collect();
        let mut metrics = Vec::new();
        let points_of = |name: &str| -> Vec<NumberDataPoint> {
            mine.iter()
                .filter(|s| s.name == name)
                .flat_map(|s| {
                    let attrs: Vec<KeyValue> = s.extra.iter().map(|(k, v)| kv(k, v)).collect();
                    s.points
                        .iter()
                        .map(move |(i, v)| number(*i, *v, attrs.clone()))
                })
                .collect()
        };
        let requests = points_of("http_requests_total");
        if !requests.is_empty() {
            metrics.push(Metric {
                name: "http.requests".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: requests,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        for (otel, prom, unit) in [
            ("memory.usage", "memory_usage_bytes", "By"),
            ("up", "up", ""),
            ("node_info", "node_info", ""),
        ] {
            let points = points_of(prom);
            if !points.is_empty() {
                metrics.push(Metric {
                    name: otel.into(),
                    unit: unit.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                });
            }
        }
        if job == "worker" {
            metrics.push(Metric {
                name: "jobs.processed".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: (0..POINTS)
                        .map(|i| number(i, jobs_increment(i), vec![]))
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        if job == "api" {
            let seed = if instance == "a" { 0 } else { 3 };
            metrics.push(Metric {
                name: "request.duration".into(),
                unit: "s".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: (0..POINTS)
                        .map(|i| {
                            let (per, sum) = histogram(i, seed);
                            HistogramDataPoint {
                                start_time_unix_nano: ns(0),
                                time_unix_nano: ns(i),
                                count: per.iter().sum(),
                                sum: Some(sum),
                                bucket_counts: per.clone(),
                                explicit_bounds: BOUNDS.to_vec(),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            });
        }
        resources.push(ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", job), kv("service.instance.id", instance)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
}

/// The same table as OpenMetrics text for promtool.
fn openmetrics(t0: i64) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Input>> = BTreeMap::new();
    let all = inputs();
    for s in &all {
        by_name.entry(s.name).or_default().push(s);
    }
    let mut out = String::new();
    for (name, series) in by_name {
        out.push_str(&format!("# TYPE {name} unknown\n"));
        for s in series {
            let mut labels = vec![
                format!("job=\"{}\"", s.job),
                format!("instance=\"{}\"", s.instance),
            ];
            labels.extend(s.extra.iter().map(|(k, v)| format!("{k}=\"{v}\"")));
            for (i, v) in &s.points {
                let t = t0 + i * STEP_MS;
                out.push_str(&format!(
                    "{name}{{{}}} {v} {}.{:03}\n",
                    labels.join(","),
                    t / 1000,
                    t % 1000
                ));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus over blocks built from `text` by promtool, on loopback.
async fn prometheus(dir: &Path, text: &str) -> Prometheus {
    let input = dir.join("input.om");
    std::fs::write(&input, text).unwrap();
    let data = dir.join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").unwrap();
    let port = free_port();
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=10y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs");
    let url = format!("http://127.0.0.1:{port}");
    let http = http_client();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            return Prometheus { child, url };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("prometheus did not become ready");
}

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap(),
        None => panic!("not a sample value: {v}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// A result as {labels → [(t, v)]} for comparison.
fn normal(data: &Value) -> (String, BTreeMap<String, Vec<(f64, f64)>>) {
    let kind = data["resultType"].as_str().unwrap_or_default().to_string();
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" | "string" => {
            let r = &data["result"];
            out.insert(
                String::new(),
                vec![(
                    r[0].as_f64().unwrap(),
                    if kind == "scalar" { num(&r[1]) } else { 0.0 },
                )],
            );
        }
        _ => {
            for s in data["result"].as_array().unwrap() {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).unwrap();
                let points = match s.get("value") {
                    Some(v) => vec![(v[0].as_f64().unwrap(), num(&v[1]))],
                    None => s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_f64().unwrap(), num(&p[1])))
                        .collect(),
                };
                out.insert(format!("{labels:?}"), points);
            }
        }
    }
    (kind, out)
}

/// Every supported function and operator, staleness and counter resets.
const CASES: &[&str] = &[
    "http_requests_total",
    "http_requests_total{code=\"200\"}",
    "http_requests_total{code!=\"200\"}",
    "http_requests_total{code=~\"2..\",job=~\"a.*\"}",
    "http_requests_total{code!~\"2..\"}",
    "http_requests_total offset 5m",
    "memory_usage_bytes",
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[10m])",
    "rate(jobs_processed_total[5m])",
    "increase(jobs_processed_total[15m])",
    "delta(memory_usage_bytes[10m])",
    "idelta(memory_usage_bytes[5m])",
    "deriv(memory_usage_bytes[10m])",
    "resets(http_requests_total[30m])",
    "changes(memory_usage_bytes[10m])",
    "avg_over_time(memory_usage_bytes[10m])",
    "min_over_time(memory_usage_bytes[10m])",
    "max_over_time(memory_usage_bytes[10m])",
    "sum_over_time(memory_usage_bytes[10m])",
    "count_over_time(memory_usage_bytes[10m])",
    "last_over_time(memory_usage_bytes[10m])",
    "stddev_over_time(memory_usage_bytes[10m])",
    "stdvar_over_time(memory_usage_bytes[10m])",
    "quantile_over_time(0.9, memory_usage_bytes[10m])",
    "present_over_time(memory_usage_bytes[10m])",
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "avg without (instance) (rate(http_requests_total[5m]))",
    "min by (code) (http_requests_total)",
    "max by (code) (http_requests_total)",
    "count by (job) (up)",
    "group by (job) (up)",
    "stddev(memory_usage_bytes)",
    "stdvar(memory_usage_bytes)",
    "quantile(0.5, memory_usage_bytes)",
    "topk(2, rate(http_requests_total[5m]))",
    "bottomk(1, memory_usage_bytes)",
    "count_values(\"value\", up)",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.99, sum by (le, instance) (request_duration_seconds_bucket))",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    "http_requests_total * 2",
    "2 - http_requests_total",
    "memory_usage_bytes / 1024",
    "memory_usage_bytes % 7",
    "memory_usage_bytes ^ 0.5",
    "-memory_usage_bytes",
    "1 + 2 * 3",
    "memory_usage_bytes > 500",
    "memory_usage_bytes > bool 500",
    "1000 < memory_usage_bytes",
    "up == 1",
    "up != bool 1",
    "memory_usage_bytes <= 600",
    "memory_usage_bytes >= on(job, instance) memory_usage_bytes",
    "rate(http_requests_total[5m]) / on(job, instance) group_left up",
    "memory_usage_bytes * on(instance) group_left(version) node_info",
    "node_info * on(instance) group_right(version) memory_usage_bytes",
    "sum by (job, instance, code) (http_requests_total) / ignoring(code) group_left sum by (job, instance) (http_requests_total)",
    "memory_usage_bytes / ignoring(version) node_info",
    "up and on(instance) memory_usage_bytes",
    "up or memory_usage_bytes",
    "up unless on(instance) memory_usage_bytes",
    "absent(nonexistent_metric{job=\"x\"})",
    "absent(up)",
    "absent_over_time(nonexistent_metric[5m])",
    "abs(-memory_usage_bytes)",
    "ceil(memory_usage_bytes / 3)",
    "floor(memory_usage_bytes / 3)",
    "round(memory_usage_bytes, 5)",
    "sqrt(memory_usage_bytes)",
    "exp(up)",
    "ln(memory_usage_bytes)",
    "log2(memory_usage_bytes)",
    "log10(memory_usage_bytes)",
    "sgn(memory_usage_bytes - 500)",
    "clamp(memory_usage_bytes, 300, 800)",
    "clamp_min(memory_usage_bytes, 600)",
    "clamp_max(memory_usage_bytes, 600)",
    "scalar(sum(up))",
    "vector(1)",
    "time()",
    "timestamp(up)",
    "sort(memory_usage_bytes)",
    "sort_desc(memory_usage_bytes)",
    "label_replace(up, \"host\", \"$1-x\", \"instance\", \"(.*)\")",
    "label_join(up, \"where\", \"/\", \"job\", \"instance\")",
];

/// Valid PromQL that Palisade answers with a clear 400 (docs/metrics.md lists them).
const UNSUPPORTED: &[&str] = &[
    "day_of_week(memory_usage_bytes)",
    "max_over_time(rate(http_requests_total[5m])[10m:1m])",
    "predict_linear(memory_usage_bytes[10m], 60)",
];

#[tokio::test(flavor = "multi_thread")]
async fn promql_matches_a_real_prometheus_on_the_same_series() {
    let server = TestServer::spawn_with(&["--api-rate-limit", "100000"])
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = (now - 100 * 60_000) / 60_000 * 60_000;
    let end = t0 + (POINTS - 1) * STEP_MS;
    let dir = TempDir::new("prom-conformance");
    let prom = prometheus(&dir.0, &openmetrics(t0)).await;

    let body = otlp(t0).encode_to_vec();
    let resp = http_client()
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let read = server.token("default", "read");
    let http = http_client();

    let instants = [
        t0 + 30 * 60_000,
        t0 + 55 * 60_000 + 7_000,
        end,
        end + 3 * 60_000,
        end + 7 * 60_000,
    ];
    let mut compared = 0;
    for case in CASES {
        let mut requests: Vec<(&str, Vec<(String, String)>)> = instants
            .iter()
            .map(|t| {
                (
                    "query",
                    vec![
                        ("query".to_string(), case.to_string()),
                        ("time".into(), format!("{}.{:03}", t / 1000, t % 1000)),
                    ],
                )
            })
            .collect();
        requests.push((
            "query_range",
            vec![
                ("query".into(), case.to_string()),
                ("start".into(), ((t0 + 20 * 60_000) / 1000).to_string()),
                ("end".into(), ((end + 6 * 60_000) / 1000).to_string()),
                ("step".into(), "60".into()),
            ],
        ));
        for (path, params) in requests {
            let theirs: Value = http
                .get(format!("{}/api/v1/{path}", prom.url))
                .query(&params)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                theirs["status"], "success",
                "prometheus refused {case}: {theirs}"
            );
            let resp = http
                .get(format!("{}/prometheus/api/v1/{path}", server.api))
                .bearer_auth(&read)
                .query(&params)
                .send()
                .await
                .unwrap();
            let ours: Value = resp.json().await.unwrap();
            assert_eq!(
                ours["status"], "success",
                "{path} {case} {params:?}: {ours}"
            );
            let (kind_t, theirs) = normal(&theirs["data"]);
            let (kind_o, ours) = normal(&ours["data"]);
            assert_eq!(kind_o, kind_t, "{path} {case}: result type");
            assert_eq!(
                ours.keys().collect::<Vec<_>>(),
                theirs.keys().collect::<Vec<_>>(),
                "{path} {case} {params:?}: series differ"
            );
            for (labels, want) in &theirs {
                let got = &ours[labels];
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{path} {case} {labels}: points {got:?} vs {want:?}"
                );
                for (g, w) in got.iter().zip(want) {
                    assert!(
                        close(g.0, w.0) && close(g.1, w.1),
                        "{path} {case} {params:?} {labels}: {g:?} vs prometheus {w:?}"
                    );
                }
            }
            compared += 1;
        }
    }
    assert_eq!(compared, CASES.len() * 6);
    for case in UNSUPPORTED {
        let (status, body) = prom_get(&server, &read, "query", &[("query", case)]).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["errorType"], "bad_data");
        assert!(
            body["error"].as_str().unwrap().contains("not supported"),
            "{body}"
        );
    }
}

async fn prom_get(
    server: &TestServer,
    token: &str,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let resp = http_client()
        .get(format!("{}/prometheus/api/v1/{path}", server.api))
        .bearer_auth(token)
        .query(params)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const SDK_SCRIPT: &str = r#"
import os
from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View, ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

proto = os.environ["PROTO"]
token = os.environ["TOKEN"]
if proto == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=os.environ["ENDPOINT"], insecure=True,
                                  headers=(("authorization", "Bearer " + token),))
else:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=os.environ["ENDPOINT"] + "/v1/metrics",
                                  headers={"Authorization": "Bearer " + token})
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3600000)
provider = MeterProvider(
    resource=Resource.create({"service.name": "python-" + proto, "service.instance.id": "i-1",
                              "deployment.environment": "test"}),
    metric_readers=[reader],
    views=[View(instrument_name="sdk.size", aggregation=ExponentialBucketHistogramAggregation())],
)
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("sdk-test")
meter = provider.get_meter("palisade-sdk-test")
requests = meter.create_counter("sdk.requests", unit="{request}")
queue = meter.create_up_down_counter("sdk.queue")
latency = meter.create_histogram("sdk.latency", unit="ms")
size = meter.create_histogram("sdk.size", unit="By")
gauge = meter.create_gauge("sdk.level")
meter.create_observable_gauge("sdk.temperature", callbacks=[lambda o: [Observation(21.5, {"room": "a"})]])
meter.create_observable_counter("sdk.ticks", callbacks=[lambda o: [Observation(42)]])
meter.create_observable_up_down_counter("sdk.connections", callbacks=[lambda o: [Observation(-2)]])

requests.add(5, {"route": "/a"})
queue.add(10)
latency.record(5)
size.record(100)
size.record(3000)
gauge.set(3)
provider.force_flush()
requests.add(7, {"route": "/a"})
queue.add(-3)
with tracer.start_as_current_span("work") as span:
    latency.record(50)
    print("trace", format(span.get_span_context().trace_id, "032x"))
latency.record(500)
size.record(70000)
gauge.set(4)
provider.shutdown()
print("sent")
"#;

fn run_sdk(proto: &str, endpoint: &str, token: &str, delta: bool) -> String {
    let mut env = vec![("PROTO", proto), ("ENDPOINT", endpoint), ("TOKEN", token)];
    if delta {
        env.push(("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"));
    }
    palisade_tests::run_python(SDK_SCRIPT, &env)
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .expect("the script prints its trace id")
        .to_string()
}

async fn value_of(
    server: &TestServer,
    token: &str,
    query: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = prom_get(server, token, "query", &[("query", query)]).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            (
                serde_json::from_value(s["metric"].clone()).unwrap(),
                num(&s["value"][1]),
            )
        })
        .collect()
}

/// The official Python SDK: every instrument kind, cumulative over OTLP/HTTP and
/// delta over OTLP/gRPC; the same totals read back through the Prometheus API.
#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_every_instrument_over_http_and_grpc() {
    let server = TestServer::spawn().await.unwrap();
    let read = server.token("default", "read");
    let mut traces = Vec::new();
    traces.push((
        "python-http",
        run_sdk("http", &server.otlp_http, &server.creds.ingest_token, false),
    ));
    traces.push((
        "python-grpc",
        run_sdk("grpc", &server.otlp_grpc, &server.creds.ingest_token, true),
    ));
    for (job, trace) in &traces {
        let one = |q: &str| format!("{q}{{job=\"{job}\"}}");
        let expect = [
            (one("sdk_requests_total"), 12.0),
            (one("sdk_queue"), 7.0),
            (one("sdk_latency_milliseconds_count"), 3.0),
            (one("sdk_latency_milliseconds_sum"), 555.0),
            (one("sdk_size_bytes_count"), 3.0),
            (one("sdk_size_bytes_sum"), 73100.0),
            (one("sdk_level"), 4.0),
            (one("sdk_temperature"), 21.5),
            (one("sdk_ticks_total"), 42.0),
            (one("sdk_connections"), -2.0),
        ];
        for (query, want) in expect {
            let got = value_of(&server, &read, &query).await;
            assert_eq!(got.len(), 1, "{query}: {got:?}");
            assert!(close(got[0].1, want), "{query}: {} want {want}", got[0].1);
            assert_eq!(got[0].0["instance"], "i-1");
        }
        // Attributes are labels; the histogram has le buckets; quantiles work.
        let route = value_of(
            &server,
            &read,
            &format!("sdk_requests_total{{job=\"{job}\",route=\"/a\"}}"),
        )
        .await;
        assert_eq!(route.len(), 1);
        let inf = value_of(
            &server,
            &read,
            &format!("sdk_latency_milliseconds_bucket{{job=\"{job}\",le=\"+Inf\"}}"),
        )
        .await;
        assert!(close(inf[0].1, 3.0), "{inf:?}");
        let p50 = value_of(
            &server,
            &read,
            &format!("histogram_quantile(0.5, sdk_size_bytes_bucket{{job=\"{job}\"}})"),
        )
        .await;
        assert!(
            p50[0].1 > 2000.0 && p50[0].1 < 5000.0,
            "exponential buckets as le buckets: {p50:?}"
        );
        // Other resource attributes: target_info.
        let info = value_of(&server, &read, &format!("target_info{{job=\"{job}\"}}")).await;
        assert_eq!(info[0].0["deployment_environment"], "test", "{info:?}");
        // The exemplar recorded inside a span keeps its trace id.
        let (status, body) = prom_get(
            &server,
            &read,
            "query_exemplars",
            &[(
                "query",
                &format!("sdk_latency_milliseconds_bucket{{job=\"{job}\"}}"),
            )],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.to_string().contains(trace.as_str()),
            "exemplar with trace {trace}: {body}"
        );
    }
}

/// (path, parameters, status, errorType, a word the error names)
type QueryCase<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str, &'a str);

async fn send_json(server: &TestServer, token: &str, body: &str) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What Grafana's Prometheus data source sends on "Save & test" and for a dashboard
/// panel (the endpoints, `match[]`, `step` and POST form bodies its Prometheus client
/// uses; Grafana itself is not run and its source was not consulted for this test),
/// answered in Prometheus's formats; POST form bodies as Grafana sends by default.
#[tokio::test(flavor = "multi_thread")]
async fn grafana_data_source_requests_get_prometheus_answers() {
    let server = TestServer::spawn().await.unwrap();
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"grafana-src"}}}},{{"key":"service.instance.id","value":{{"stringValue":"n1"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"k8s.container.restarts","unit":"{{restart}}","sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
          {{"timeUnixNano":"{}","asInt":"3","attributes":[{{"key":"k8s.namespace.name","value":{{"stringValue":"prod"}}}}]}},
          {{"timeUnixNano":"{}","asInt":9,"attributes":[{{"key":"k8s.namespace.name","value":{{"stringValue":"prod"}}}}]}}]}}}}]}}]}}]}}"#,
        now_ns - 60_000_000_000,
        now_ns - 1_000_000_000
    );
    let (status, reply) = send_json(&server, &server.creds.ingest_token, &body).await;
    assert_eq!(status, 200, "{reply}");
    let read = server.token("default", "read");
    let http = http_client();
    let base = format!("{}/prometheus", server.api);
    let now = chrono::Utc::now().timestamp();
    let form = |pairs: &[(&str, String)]| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let post = |path: &str, body: String| {
        http.post(format!("{base}/api/v1/{path}"))
            .bearer_auth(&read)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    // Save & test: buildinfo, then a query of `1+1`.
    let info: Value = http
        .get(format!("{base}/api/v1/status/buildinfo"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"], "success");
    assert!(info["data"]["version"].as_str().unwrap().starts_with("2."));
    let r: Value = post(
        "query",
        form(&[("query", "1+1".into()), ("time", now.to_string())]),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["data"]["resultType"], "scalar");
    assert_eq!(r["data"]["result"][1], "2");
    // Metric browser: label names, metric names, label values filtered by match[].
    let r: Value = post(
        "labels",
        form(&[
            ("start", (now - 3600).to_string()),
            ("end", now.to_string()),
        ]),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let names: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for n in ["__name__", "job", "instance", "k8s_namespace_name"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let r: Value = http
        .get(format!("{base}/api/v1/label/__name__/values"))
        .bearer_auth(&read)
        .query(&[
            ("start", (now - 3600).to_string()),
            ("end", now.to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["data"],
        serde_json::json!(["k8s_container_restarts_total"])
    );
    let r: Value = http
        .get(format!("{base}/api/v1/label/k8s_namespace_name/values"))
        .bearer_auth(&read)
        .query(&[("match[]", "k8s_container_restarts_total")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"], serde_json::json!(["prod"]));
    let r: Value = post(
        "series",
        form(&[
            ("match[]", "{__name__=~\"k8s.*\"}".into()),
            ("start", (now - 3600).to_string()),
            ("end", now.to_string()),
        ]),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        r["data"][0]["__name__"], "k8s_container_restarts_total",
        "{r}"
    );
    assert_eq!(r["data"][0]["job"], "grafana-src");
    let r: Value = http
        .get(format!("{base}/api/v1/metadata"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success");
    // A panel: query_range with step, POST form.
    let r: Value = post(
        "query_range",
        form(&[
            (
                "query",
                "sum by (k8s_namespace_name) (k8s_container_restarts_total)".into(),
            ),
            ("start", (now - 300).to_string()),
            ("end", now.to_string()),
            ("step", "15".into()),
        ]),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["data"]["resultType"], "matrix", "{r}");
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.last().unwrap()[1], "9");
    assert_eq!(
        r["data"]["result"][0]["metric"],
        serde_json::json!({"k8s_namespace_name": "prod"})
    );
    // Credentials: none is 401, an ingest token is 403.
    let r = http
        .get(format!("{base}/api/v1/query?query=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/api/v1/query?query=1"))
        .bearer_auth(&server.creds.ingest_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Every client-controlled input of metrics ingest and query has a bound and a clear
/// error naming what is wrong; nothing accepted is lost.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_bounds_and_errors() {
    let server = TestServer::spawn_with(&["--api-rate-limit", "10000"])
        .await
        .unwrap();
    let read = server.token("default", "read");
    let http = http_client();
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // Accepted first: it must survive every bad request after it.
    let good = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"kept","gauge":{{"dataPoints":[{{"timeUnixNano":"{now_ns}","asDouble":1.5}}]}}}}]}}]}}]}}"#
    );
    assert_eq!(
        send_json(&server, &server.creds.ingest_token, &good)
            .await
            .0,
        200
    );

    // Ingest: credentials, media type, malformed bodies, counts, partial success.
    assert_eq!(send_json(&server, "nope", &good).await.0, 401);
    assert_eq!(send_json(&server, &read, &good).await.0, 403);
    let r = http
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = http
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xffu8, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("ExportMetricsServiceRequest")
    );
    let (status, body) = send_json(
        &server,
        &server.creds.ingest_token,
        r#"{"resource_metrics":[]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("resourceMetrics"), "{body}");
    // Past the data point bound, counted on the wire before decoding: 413.
    let points: Vec<NumberDataPoint> = (0..100_001)
        .map(|i| NumberDataPoint {
            time_unix_nano: now_ns as u64 + i,
            value: Some(number_data_point::Value::AsInt(1)),
            ..Default::default()
        })
        .collect();
    let big = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "big".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = http
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .header("content-type", "application/x-protobuf")
        .body(big.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("data points"));
    // A histogram whose bucket counts do not fit its bounds, and a point far in the
    // past: rejected in partial_success, the rest stored.
    let mixed = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[
          {{"name":"h","histogram":{{"aggregationTemporality":2,"dataPoints":[{{"timeUnixNano":"{now_ns}","count":"3","bucketCounts":["1","2"],"explicitBounds":[1,2,3]}}]}}}},
          {{"name":"old","gauge":{{"dataPoints":[{{"timeUnixNano":"1000000000","asDouble":1}},{{"timeUnixNano":"{now_ns}","asDouble":2}}]}}}}]}}]}}]}}"#
    );
    let (status, body) = send_json(&server, &server.creds.ingest_token, &mixed).await;
    assert_eq!(status, 200, "{body}");
    // int64 as a JSON number or string, both as OTLP/JSON receivers accept.
    assert_eq!(
        body["partialSuccess"]["rejectedDataPoints"]
            .to_string()
            .trim_matches('"'),
        "2",
        "{body}"
    );
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("bucket counts"),
        "{body}"
    );
    assert_eq!(value_of(&server, &read, "old").await.len(), 1);

    // Query: every parameter checked, Prometheus error formats.
    let cases: Vec<QueryCase> = vec![
        ("query", vec![], 400, "bad_data", "query"),
        ("query", vec![("query", "sum(".into())], 400, "bad_data", ""),
        (
            "query",
            vec![("query", "x".repeat(17 * 1024))],
            400,
            "bad_data",
            "16384",
        ),
        (
            "query",
            vec![("query", "kept".into()), ("time", "yesterday".into())],
            400,
            "bad_data",
            "time",
        ),
        (
            "query",
            vec![("query", "kept + on() group_left kept".into())],
            200,
            "",
            "",
        ),
        (
            "query",
            vec![("query", "kept".into()), ("timeout", "-1".into())],
            400,
            "bad_data",
            "timeout",
        ),
        (
            "query_range",
            vec![
                ("query", "kept".into()),
                ("start", "100".into()),
                ("end", "50".into()),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
            "end",
        ),
        (
            "query_range",
            vec![
                ("query", "kept".into()),
                ("start", "0".into()),
                ("end", "100".into()),
                ("step", "0".into()),
            ],
            400,
            "bad_data",
            "step",
        ),
        (
            "query_range",
            vec![
                ("query", "kept".into()),
                ("start", "0".into()),
                ("end", "1000000".into()),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
            "11,000",
        ),
        (
            "query_range",
            vec![
                ("query", "kept".into()),
                ("start", "0".into()),
                ("end", "100".into()),
            ],
            400,
            "bad_data",
            "step",
        ),
        ("series", vec![], 400, "bad_data", "match[]"),
        (
            "series",
            vec![("match[]", "sum(kept)".into())],
            400,
            "bad_data",
            "match[]",
        ),
        ("label/0bad/values", vec![], 400, "bad_data", "label name"),
    ];
    for (path, params, want, kind, needle) in cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = prom_get(&server, &read, path, &params).await;
        assert_eq!(status, want, "{path} {params:?}: {body}");
        if want != 200 {
            assert_eq!(body["status"], "error");
            assert_eq!(body["errorType"], kind, "{body}");
            assert!(
                body["error"].as_str().unwrap().contains(needle),
                "{path}: {body}"
            );
        }
    }
    // Many-to-many matching is Prometheus's 422 execution error.
    let two = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"pair","gauge":{{"dataPoints":[
          {{"timeUnixNano":"{now_ns}","asDouble":1,"attributes":[{{"key":"k","value":{{"stringValue":"a"}}}}]}},
          {{"timeUnixNano":"{now_ns}","asDouble":2,"attributes":[{{"key":"k","value":{{"stringValue":"b"}}}}]}}]}}}}]}}]}}]}}"#
    );
    assert_eq!(
        send_json(&server, &server.creds.ingest_token, &two).await.0,
        200
    );
    let (status, body) = prom_get(&server, &read, "query", &[("query", "pair + on() pair")]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    // A POST body that is not a form.
    let r = http
        .post(format!("{}/prometheus/api/v1/query", server.api))
        .bearer_auth(&read)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // What was accepted first is still there.
    assert!(close(value_of(&server, &read, "kept").await[0].1, 1.5));
}

fn gauge_request(
    name: &str,
    unit: &str,
    resource: &[(&str, &str)],
    points: &[(i64, f64)],
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points
                            .iter()
                            .map(|(t, v)| NumberDataPoint {
                                time_unix_nano: (*t * 1_000_000) as u64,
                                value: Some(number_data_point::Value::AsDouble(*v)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post_metrics(server: &TestServer, request: &ExportMetricsServiceRequest) {
    let resp = http_client()
        .post(format!("{}/v1/metrics", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn alerts_of(server: &TestServer, rule: &str) -> Vec<Value> {
    let resp = http_client()
        .get(format!("{}/api/v1/alerts?rule={rule}", server.api))
        .bearer_auth(&server.creds.api_token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    body["alerts"].as_array().cloned().unwrap_or_default()
}

async fn wait_for(
    server: &TestServer,
    rule: &str,
    within: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let list = alerts_of(server, rule).await;
        if pred(&list) {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rule}: alerts never matched: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kind: metric` rules: each returned series is an alert keyed by its labels, with
/// `for` (pending first) and resolution; the shipped Kubernetes examples load and hold
/// on the semantic-convention metrics they are written for.
#[tokio::test(flavor = "multi_thread")]
async fn metric_rules_fire_per_series_and_resolve() {
    let examples = palisade_tests::workspace_root().join("rules/metrics-examples");
    let server = TestServer::spawn_with(&["--rules-dir", examples.to_str().unwrap()])
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let pod = [
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "cart-7d9"),
        ("k8s.container.name", "cart"),
    ];
    // Restarts 0 → 5 over the last 12 minutes; memory +20 MiB a minute for 30 minutes.
    let restarts: Vec<(i64, f64)> = (0..=12)
        .map(|m| (now - (12 - m) * 60_000, (m / 2).min(5) as f64))
        .collect();
    post_metrics(
        &server,
        &gauge_request("k8s.container.restarts", "{restart}", &pod, &restarts),
    )
    .await;
    let memory: Vec<(i64, f64)> = (0..=30)
        .map(|m| (now - (30 - m) * 60_000, 1e8 + m as f64 * 20.0 * 1_048_576.0))
        .collect();
    post_metrics(
        &server,
        &gauge_request("container.memory.usage", "By", &pod, &memory),
    )
    .await;
    // A second pod whose restarts are flat: no alert for it.
    let calm = [
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-1"),
        ("k8s.container.name", "web"),
    ];
    let flat: Vec<(i64, f64)> = (0..=12).map(|m| (now - (12 - m) * 60_000, 1.0)).collect();
    post_metrics(
        &server,
        &gauge_request("k8s.container.restarts", "{restart}", &calm, &flat),
    )
    .await;

    for rule in [
        "metric-container-restart-spike",
        "metric-container-memory-growth",
    ] {
        let list = wait_for(&server, rule, Duration::from_secs(45), |l| !l.is_empty()).await;
        assert_eq!(
            list.len(),
            1,
            "{rule}: one alert, for the restarting pod only: {list:?}"
        );
        let alert = &list[0];
        assert_eq!(
            alert["state"], "pending",
            "for: keeps it pending first: {alert}"
        );
        assert_eq!(alert["labels"]["k8s_pod_name"], "cart-7d9", "{alert}");
        assert_eq!(alert["labels"]["k8s_namespace_name"], "shop");
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("shop/cart-7d9"),
            "{alert}"
        );
    }

    // An API rule without `for`: fires at once per series, resolves when it stops
    // holding.
    let yaml = r#"apiVersion: palisade/v1
id: hot-queue
title: Queue too deep
severity: high
kind: metric
expr: queue_depth > 100
interval: 5s
annotations:
  summary: "queue {{ labels.queue }} at {{ value }}"
"#;
    let resp = http_client()
        .post(format!("{}/api/v1/rules", server.api))
        .bearer_auth(&server.creds.api_token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let queue = |q: &str, v: f64| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("queue", q)],
                            time_unix_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap()
                                as u64,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    post_metrics(&server, &queue("orders", 250.0)).await;
    post_metrics(&server, &queue("mail", 3.0)).await;
    let list = wait_for(&server, "hot-queue", Duration::from_secs(20), |l| {
        l.iter().any(|a| a["state"] == "firing")
    })
    .await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["labels"]["queue"], "orders");
    assert_eq!(list[0]["annotations"]["summary"], "queue orders at 250.0");
    // Below the threshold: the series drops out of the result and the alert resolves.
    post_metrics(&server, &queue("orders", 10.0)).await;
    wait_for(&server, "hot-queue", Duration::from_secs(20), |l| {
        l.iter().all(|a| a["state"] == "resolved")
    })
    .await;
    // A rule with a bad expression names the field.
    let resp = http_client()
        .post(format!("{}/api/v1/rules", server.api))
        .bearer_auth(&server.creds.api_token)
        .header("content-type", "application/yaml")
        .body(
            yaml.replace("queue_depth > 100", "rate(queue_depth[5m:1m])")
                .replace("hot-queue", "bad-queue"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("expr"));
}

/// The compactor merges one series' rows of an hour into one chunk (here: 20
/// one-point requests of the last minutes), and the query answer is the same before
/// and after.
#[tokio::test(flavor = "multi_thread")]
async fn the_compactor_merges_rows_and_queries_see_the_same_points() {
    use sqlx::Connection;
    let server = TestServer::spawn().await.unwrap();
    let read = server.token("default", "read");
    let now = chrono::Utc::now().timestamp_millis();
    // Within the current hour's bucket only when possible: 20 points 1 s apart.
    let base = now - 20_000;
    for i in 0..20 {
        post_metrics(
            &server,
            &gauge_request("compact.me", "", &[], &[(base + i * 1000, i as f64)]),
        )
        .await;
    }
    let count = |_: ()| async {
        let mut db = sqlx::PgConnection::connect(server.database_url.as_ref().unwrap())
            .await
            .unwrap();
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM metric_samples s JOIN metric_series m ON m.id = s.series_id WHERE m.name = 'compact_me'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        rows
    };
    let q = [
        ("query", "count_over_time(compact_me[1m])"),
        ("time", &format!("{}", now / 1000 + 1)),
    ];
    let (_, before) = prom_get(&server, &read, "query", &q).await;
    assert_eq!(before["data"]["result"][0]["value"][1], "20", "{before}");
    let rows_before = count(()).await;
    assert!(
        rows_before >= 2,
        "one row per request before compaction: {rows_before}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(70);
    loop {
        let rows = count(()).await;
        // At most one row per hour bucket the points fall in.
        if rows <= 2 && rows < rows_before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compactor never merged: {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, after) = prom_get(&server, &read, "query", &q).await;
    assert_eq!(after["data"], before["data"]);
}
