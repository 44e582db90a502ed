//! Hostile input (issue "nothing a client sends can crash, stall or poison
//! Palisade"): each probe gets its documented status, the server stays up, and a
//! clean request of another tenant made during the probes still succeeds.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::{Auth, TempDir, TestServer};
use prost::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An audit event as kube-apiserver's webhook backend encodes the items of an
/// `EventList`. Read from the source (we cannot run an API server here):
/// `staging/src/k8s.io/apiserver/plugin/pkg/audit/webhook/webhook.go`, `processEvents`
/// builds an `auditinternal.EventList` and sends it with
/// `b.w.RestClient.Post().Body(&list)`; the REST client's codec converts it to
/// audit.k8s.io/v1 and sets `kind`/`apiVersion` on the list object only. The items
/// are `Event` structs whose inline `TypeMeta` is empty and `omitempty`, so they carry
/// no `kind` or `apiVersion`. Content type: `application/json`.
fn webhook_item(id: &str, extra: Value) -> Value {
    let mut e = json!({
        "level": "RequestResponse", "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/prod/pods", "verb": "get",
        "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.1.2.3"], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "pods", "namespace": "prod", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": stamp(), "stageTimestamp": stamp(),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn event_list(items: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
}

async fn post_webhook(server: &TestServer, body: &Value) -> (u16, Value) {
    let resp = server
        .http
        .post(format!("{}/v1/k8s/audit?cluster=prod", server.otlp_http))
        .header("content-type", "application/json")
        .bearer_auth(&server.creds.ingest_token)
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// Another tenant's clean traffic, sent every 50 ms while a probe runs: every one of
/// its requests must be acknowledged.
struct Bystander {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<u16>>,
}

impl Bystander {
    fn start(server: &TestServer) -> Bystander {
        assert!(
            server
                .run_cli(&["tenant", "create", "bystander"])
                .unwrap()
                .status
                .success()
        );
        let token = server.token("bystander", "ingest");
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let http = server.http.clone();
        let url = format!("{}/v1/logs", server.otlp_http);
        let body = serde_json::to_vec(&request(
            "bystander",
            vec![record("bystander heartbeat", 9, vec![])],
        ))
        .unwrap();
        let task = tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !*stopped.borrow() {
                let status = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .bearer_auth(&token)
                    .body(body.clone())
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                statuses.push(status);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            statuses
        });
        Bystander { stop, task }
    }

    async fn assert_all_served(self) {
        let _ = self.stop.send(true);
        let statuses = self.task.await.unwrap();
        assert!(!statuses.is_empty());
        assert!(
            statuses.iter().all(|s| *s == 200),
            "another tenant's requests failed during the probe: {statuses:?}"
        );
    }
}

/// Post `records` empty records under one resource of `attributes` attributes whose
/// values are `value_len` bytes (gzip, protobuf); answer the partial success.
async fn post_under_one_resource(
    server: &TestServer,
    token: &str,
    attributes: usize,
    value_len: usize,
    records: usize,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
    let body = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: (0..attributes)
                    .map(|i| kv(&format!("k{i}"), string(&"v".repeat(value_len))))
                    .collect::<Vec<KeyValue>>(),
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); records],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let resp = server
        .post_logs(
            gzip(&body.encode_to_vec()),
            "application/x-protobuf",
            Some("gzip"),
            Some(token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
        resp.bytes().await.unwrap(),
    )
    .unwrap()
    .partial_success
    .expect("partial success")
}

async fn assert_up(server: &TestServer) {
    let (status, body) = server.get_api("/readyz", &[], None).await;
    assert_eq!(status, 200, "server must stay up: {body}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_and_times_from_any_read_token_are_bounded() {
    let server = TestServer::spawn().await.unwrap();
    let bystander = Bystander::start(&server);
    let deep = format!("{}a{}", "(".repeat(2000), ")".repeat(2000));
    let cases: Vec<(String, &str, &str)> = vec![
        (deep, "now-1h", "nests too deeply"),
        ("NOT ".repeat(3000) + "a", "now-1h", "nests too deeply"),
        (
            "body:(".repeat(2000) + "a" + &")".repeat(2000),
            "now-1h",
            "nests too deeply",
        ),
        (vec!["a"; 2000].join(" OR "), "now-1h", "too many clauses"),
        ("a ".repeat(10_000), "now-1h", "limit is 16384"),
        ("error".into(), "now-3153600000h", "from"),
        ("error".into(), "now-99999999999999999999w", "from"),
        ("\"failed login\"~2".into(), "now-1h", "proximity"),
        ("roo?".into(), "now-1h", "'?'"),
        ("root~1".into(), "now-1h", "fuzzy"),
        ("root^2".into(), "now-1h", "boosting"),
    ];
    for (q, from, fragment) in cases {
        let (status, body) = server.search(&[("q", &q), ("from", from)]).await;
        assert_eq!(status, 400, "{}: {body}", &q[..q.len().min(40)]);
        assert!(
            body.to_string().contains(fragment),
            "{}: expected {fragment:?} in {body}",
            &q[..q.len().min(40)]
        );
        assert_up(&server).await;
    }
    // A wrong method on an API route is 405 with Allow, not a 403 and an ERROR line.
    let (status, body, headers) = server
        .call(
            "DELETE",
            "/api/v1/search",
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers["allow"], "GET");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let errors: Vec<String> = server
        .drain_output()
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    bystander.assert_all_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_cannot_crash_poison_or_leak() {
    let server = TestServer::spawn().await.unwrap();
    // 20,000 JSON-patch segments once aborted the process (webhook and OTLP).
    let long_path = "/spec".repeat(20_000);
    let patch = webhook_item(
        "deep-patch",
        json!({"verb": "patch", "objectRef": {"resource": "deployments", "namespace": "prod", "name": "web"},
               "requestObject": [{"op": "add", "path": long_path, "value": {"privileged": true}}]}),
    );
    let (status, body) = post_webhook(&server, &event_list(vec![patch.clone()])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let mut otlp_event = patch.clone();
    otlp_event["kind"] = json!("Event");
    otlp_event["apiVersion"] = json!("audit.k8s.io/v1");
    otlp_event["auditID"] = json!("deep-patch-otlp");
    let rec = record(&otlp_event.to_string(), 9, vec![]);
    let resp = server
        .post_json(&request("kube-apiserver", vec![rec]))
        .await;
    assert_eq!(resp.status(), 200);
    assert_up(&server).await;

    // NUL in an audit event is replaced and marked, and does not fail another
    // tenant's clean request committed alongside it.
    assert!(
        server
            .run_cli(&["tenant", "create", "other"])
            .unwrap()
            .status
            .success()
    );
    let other_token = server.token("other", "ingest");
    let nul = webhook_item(
        "nul-event",
        json!({"userAgent": "evil\u{0}agent", "objectRef": {"resource": "pods", "namespace": "prod", "name": "a\u{0}b"}}),
    );
    let clean = serde_json::to_vec(&request(
        "other",
        vec![record("clean record of another tenant", 9, vec![])],
    ))
    .unwrap();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let http = server.http.clone();
        let url = format!("{}/v1/logs", server.otlp_http);
        let (body, token) = (clean.clone(), other_token.clone());
        handles.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let (status, body) = post_webhook(&server, &event_list(vec![nul])).await;
    assert_eq!(status, 200, "{body}");
    for h in handles {
        assert_eq!(h.await.unwrap(), 200, "another tenant's request failed");
    }
    let found = server
        .wait_for_total("attributes.palisade.replaced_nul:true", 1)
        .await;
    assert!(!found.to_string().contains("\\u0000"), "{found}");

    // A CSR asking for system:masters with its subject in BMPStrings (made with
    // `openssl req -new` and `string_mask = MASK:0x800`) raises K8S-024 at critical.
    let csr = webhook_item(
        "csr-bmp",
        json!({"verb": "create", "user": {"username": "mallory", "groups": ["system:authenticated"]},
               "objectRef": {"resource": "certificatesigningrequests", "name": "m", "apiGroup": "certificates.k8s.io", "apiVersion": "v1"},
               "requestURI": "/apis/certificates.k8s.io/v1/certificatesigningrequests",
               "responseStatus": {"metadata": {}, "code": 201},
               "requestObject": {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",
                   "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
                            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIN01JR2lBZ0VBTUVBeEpUQWpCZ05WQkFvZUhBQnpBSGtBY3dCMEFHVUFiUUE2QUcwQVlRQnpBSFFBWlFCeQpBSE14RnpBVkJnTlZCQU1lRGdCdEFHRUFiQUJzQUc4QWNnQjVNRmt3RXdZSEtvWkl6ajBDQVFZSUtvWkl6ajBECkFRY0RRZ0FFTU5XZHV6M3NDYk9ObDFoUXh6YjJiVmZxWlJHbytKQWJseTg4MmJaei9kUThzMi80Vmh2M2M5WG0KNzRjZkJKRWZNSnUyTzZoTVoybC9XUkpmaE1BV2ZhQUFNQW9HQ0NxR1NNNDlCQU1DQTBnQU1FVUNJUURSd1AzRQpQQ09XRXRhaGs1QXB1ZnRldC9GM085L0lxVzd0VG56U1p5NTdOQUlnZWwycFZ0N0JSOXhQWUFtWXk5UkMxN3NCCjBPUHFzUnFqY0V1NTh4UjM3SWc9Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo="}}}),
    );
    let (status, body) = post_webhook(&server, &event_list(vec![csr])).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, alerts, _) = server
            .call(
                "GET",
                "/api/v1/alerts?rule=K8S-024",
                &Auth::Token(server.creds.api_token.clone()),
                None,
            )
            .await;
        let found = alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["rule_id"] == "K8S-024");
        if let Some(alert) = found {
            assert_eq!(alert["severity"], "critical", "{alert}");
            break;
        }
        assert!(Instant::now() < deadline, "K8S-024 did not fire: {alerts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kubernetes' own webhook shape: items without kind/apiVersion are accepted.
    let items: Vec<Value> = (0..3)
        .map(|i| webhook_item(&format!("kindless-{i}"), json!({})))
        .collect();
    let (status, body) = post_webhook(&server, &event_list(items)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3, "{body}");
    // A batch in which every item was rejected is a 400 with the reasons.
    let bad = event_list(vec![json!({"stage": "ResponseComplete"})]);
    let (status, body) = post_webhook(&server, &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("auditID"), "{body}");

    // Secrets written by JSON patches that replace the whole object, or add the
    // last-applied annotation, are redacted before the first write.
    let seeded = [
        "patch-root-secret-4a4a",
        "patch-slash-secret-5b5b",
        "applied-patch-secret-6c6c",
    ];
    let secret_patch = |id: &str, path: &str, value: Value| {
        webhook_item(
            id,
            json!({"verb": "patch", "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
                   "requestObject": [{"op": "add", "path": path, "value": value}]}),
        )
    };
    let applied = json!({"kind": "Secret", "data": {"k": seeded[2]}}).to_string();
    let items = vec![
        secret_patch(
            "p-root",
            "",
            json!({"kind": "Secret", "data": {"password": seeded[0]}}),
        ),
        secret_patch("p-slash", "/", json!({"data": {"password": seeded[1]}})),
        secret_patch(
            "p-applied",
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
            json!(applied),
        ),
    ];
    let (status, body) = post_webhook(&server, &event_list(items)).await;
    assert_eq!(status, 200, "{body}");
    server
        .wait_for_total("attributes.k8s.object.resource:secrets", 3)
        .await;
    let (_, all) = server
        .search(&[
            ("q", "attributes.k8s.object.resource:secrets"),
            ("from", "now-1h"),
        ])
        .await;
    for secret in seeded {
        assert!(!all.to_string().contains(secret), "{secret} was stored");
    }
    assert_up(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn small_bodies_cannot_expand_into_huge_requests() {
    let server = TestServer::spawn().await.unwrap();
    let bystander = Bystander::start(&server);
    let token = server.creds.ingest_token.clone();
    // 1,000,000 empty log records: ~2 MB of protobuf, a few KB gzipped.
    let empty = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 1_000_000],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = gzip(&empty.encode_to_vec());
    assert!(body.len() < 20_000, "{}", body.len());
    let (rss_before, _) = server.memory_kib();
    let started = Instant::now();
    let resp = server
        .post_logs(body, "application/x-protobuf", Some("gzip"), Some(&token))
        .await;
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("100000 log records"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The same over OTLP/gRPC: counted on the wire before tonic's message is decoded.
    let mut client =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(
            server.otlp_grpc.clone(),
        )
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut req = tonic::Request::new(empty.clone());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    // (The client's own encoding and compression of a million records dominate the
    // time here; the server's memory is checked by the RSS bound at the end.)
    let status = client.export(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("100000 log records"),
        "{status:?}"
    );
    // The same in OTLP/JSON.
    let json_body = serde_json::to_vec(
        &json!({"resourceLogs": [{"scopeLogs": [{"logRecords": vec![json!({}); 1_100_000]}]}]}),
    )
    .unwrap();
    let resp = server
        .post_logs(
            gzip(&json_body),
            "application/json",
            Some("gzip"),
            Some(&token),
        )
        .await;
    assert_eq!(resp.status(), 413);

    // 1,000 resource attributes copied into 2,000 records: refused per record.
    let partial = post_under_one_resource(&server, &token, 1000, 1, 2000).await;
    assert_eq!(partial.rejected_log_records, 2000);
    assert!(
        partial.error_message.contains("limit is 256"),
        "{}",
        partial.error_message
    );
    bystander.assert_all_served().await;
    let bystanders = server.stored_count().await;

    // A 40 KB resource under 2,000 empty records (a few KB gzipped) would be 80 MB
    // of rows: records past the resource budget are refused, the rest stored.
    let partial = post_under_one_resource(&server, &token, 200, 200, 2000).await;
    assert!(partial.rejected_log_records > 1500, "{partial:?}");
    assert!(
        partial.error_message.contains("16 x the request size"),
        "{}",
        partial.error_message
    );
    let stored = server.stored_count().await - bystanders;
    assert_eq!(stored, 2000 - partial.rejected_log_records);
    let (rss_after, _) = server.memory_kib();
    assert!(
        rss_after.saturating_sub(rss_before) < 200 * 1024,
        "RSS grew {} KiB",
        rss_after.saturating_sub(rss_before)
    );
    assert_up(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_guessing_is_throttled_before_hashing() {
    let server = TestServer::spawn().await.unwrap();
    let admin = server.creds.admin_username.clone();
    let mut handles = Vec::new();
    for _ in 0..40 {
        let http = server.http.clone();
        let url = format!("{}/api/v1/auth/login", server.api);
        let user = admin.clone();
        handles.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"username": user, "password": "wrong-password-guess"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        evaluated <= 5,
        "only the free attempts may reach the hash: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // A 1 MiB username is past the API body cap (413); one of 512 KiB is a 400
    // naming the username limit. Neither is stored.
    let huge = "u".repeat(1024 * 1024);
    let err = server.login(&huge, "whatever-password").await.unwrap_err();
    assert_eq!(err.0, 413, "{}", err.1);
    let huge = "u".repeat(512 * 1024);
    let err = server.login(&huge, "whatever-password").await.unwrap_err();
    assert_eq!(err.0, 400, "{}", err.1);
    assert!(err.1.to_string().contains("256"), "{}", err.1);
    let out = server
        .run_cli(&["audit", "verify"])
        .expect("audit verify runs");
    assert!(out.status.success());
    let (_, audit, _) = server
        .call(
            "GET",
            "/api/v1/audit",
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert!(!audit.to_string().contains(&huge[..1000]));

    // A name taken in another tenant is refused without being confirmed.
    assert!(
        server
            .run_cli(&["tenant", "create", "beta"])
            .unwrap()
            .status
            .success()
    );
    server.add_user(
        "taken-name",
        "default",
        "viewer",
        false,
        "a-long-password-1",
    );
    let beta_admin = Auth::Token(server.token("beta", "admin"));
    let (status, body, _) = server
        .call(
            "POST",
            "/api/v1/users",
            &beta_admin,
            Some(json!({"username": "taken-name", "password": "another-long-password", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.to_string().contains("taken-name"), "{body}");
    assert!(body.to_string().contains("not available"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_files_are_private() {
    let dir = TempDir::new("palisade-hostile");
    // A data directory Palisade creates itself (the harness made `dir` 0755).
    let data = dir.0.join("data");
    let url = palisade_tests::fresh_database().await.unwrap();
    let server = TestServer::start(
        &data,
        Some(url),
        &["--header-timeout-secs", "2", "--max-connections", "8"],
    )
    .await
    .unwrap();
    let addr = server.api.trim_start_matches("http://").to_string();
    // A request head that never finishes is closed after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(started.elapsed() < Duration::from_secs(6));
    // An idle connection is closed too.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Past the connection limit new connections are closed; the server recovers.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_up(&server).await;

    use std::os::unix::fs::PermissionsExt;
    for path in [data.clone(), data.join("index")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    for entry in std::fs::read_dir(data.join("index")).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
    }
}

async fn post_rule(server: &TestServer, token: &str, yaml: &str) {
    let resp = server
        .http
        .post(format!("{}/api/v1/rules", server.api))
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 201, "{}", resp.text().await.unwrap_or_default());
}

async fn first_alert(server: &TestServer, token: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body, _) = server
            .call(
                "GET",
                "/api/v1/alerts",
                &Auth::Token(token.to_string()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(alert) = body["alerts"].as_array().and_then(|a| a.first()) {
            return alert.clone();
        }
        assert!(Instant::now() < deadline, "no alert within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_template_cannot_starve_other_tenants() {
    let server = TestServer::spawn().await.unwrap();
    assert!(
        server
            .run_cli(&["tenant", "create", "victim"])
            .unwrap()
            .status
            .success()
    );
    let attacker_admin = server.creds.api_token.clone();
    let victim_admin = server.token("victim", "admin");
    let victim_ingest = server.token("victim", "ingest");
    post_rule(
        &server,
        &attacker_admin,
        "apiVersion: palisade/v1\nid: loop\ntitle: Loop\nseverity: low\nkind: match\nquery: body:spin\nannotations:\n  summary: '{% for i in range(4000) %}{% for j in range(4000) %}{{ i }}{% endfor %}{% endfor %}'\n",
    )
    .await;
    post_rule(
        &server,
        &victim_admin,
        "apiVersion: palisade/v1\nid: plain\ntitle: Plain\nseverity: low\nkind: match\nquery: body:urgent\n",
    )
    .await;
    let spin = request("a", vec![record("spin", 9, vec![])]);
    assert_eq!(server.post_json(&spin).await.status(), 200);
    let started = Instant::now();
    let urgent = serde_json::to_vec(&request("v", vec![record("urgent", 9, vec![])])).unwrap();
    let resp = server
        .http
        .post(format!("{}/v1/logs", server.otlp_http))
        .header("content-type", "application/json")
        .bearer_auth(&victim_ingest)
        .body(urgent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    first_alert(&server, &victim_admin, Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let looped = first_alert(&server, &attacker_admin, Duration::from_secs(5)).await;
    let summary = looped["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains("exceeded"), "{looped}");
    let metrics = server
        .http
        .get(format!("{}/metrics", server.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("palisade_rule_template_budget_exceeded_total ")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// docs/kubernetes.md, "Way 1", end to end: an ingest token made as the walkthrough
/// says, the kubeconfig's server URL (`/v1/k8s/audit?cluster=prod-eu-1`), and a batch
/// in the API server's own encoding (see `webhook_item`) as the walkthrough's audit
/// policy produces it: RequestReceived and ResponseComplete of one request, a
/// Metadata-level secret read and a RequestResponse pod create.
#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_walkthrough_works_with_the_api_servers_encoding() {
    let server = TestServer::spawn().await.unwrap();
    let out = server
        .run_cli(&["token", "create", "--scope", "ingest"])
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("pal_"))
        .expect("a token on stdout")
        .to_string();
    let mut received = webhook_item(
        "req-1",
        json!({"stage": "RequestReceived", "verb": "create", "level": "RequestResponse",
               "objectRef": {"resource": "pods", "namespace": "prod", "apiVersion": "v1"},
               "requestURI": "/api/v1/namespaces/prod/pods"}),
    );
    received.as_object_mut().unwrap().remove("responseStatus");
    let items = vec![
        received,
        webhook_item(
            "req-1",
            json!({"verb": "create", "objectRef": {"resource": "pods", "namespace": "prod", "name": "web", "apiVersion": "v1"},
                   "requestURI": "/api/v1/namespaces/prod/pods", "responseStatus": {"metadata": {}, "code": 201},
                   "requestObject": {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web"},
                                     "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}),
        ),
        webhook_item(
            "req-2",
            json!({"level": "Metadata", "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
                   "requestURI": "/api/v1/namespaces/prod/secrets/db"}),
        ),
    ];
    let resp = server
        .http
        .post(format!(
            "{}/v1/k8s/audit?cluster=prod-eu-1",
            server.otlp_http
        ))
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(serde_json::to_vec(&event_list(items)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"], 0, "{answer}");
    // One record per request, keyed by the cluster from the URL.
    let found = server
        .wait_for_total("resource.k8s.cluster.name:prod-eu-1", 2)
        .await;
    let text = found.to_string();
    assert!(text.contains("req-1") && text.contains("req-2"), "{text}");
    server
        .wait_for_total(
            "attributes.k8s.object.resource:pods AND attributes.k8s.audit.verb:create",
            1,
        )
        .await;
}
