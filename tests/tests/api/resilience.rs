//! Durability and recovery: Postgres outages, lost indexes, kill -9, retention.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use palisade_tests::otlp::{record, request};
use palisade_tests::{PrivateCluster, TempDir, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_gives_503_and_every_acknowledged_record_survives() {
    let cluster = PrivateCluster::start().unwrap();
    let url = cluster.create_database("outage").await.unwrap();
    let dir = TempDir::new("palisade-outage");
    let server = TestServer::start(&dir.0, Some(url.clone()), &[])
        .await
        .unwrap();

    let mut acknowledged = 0u64;
    let batch = |round: usize| {
        request(
            "outage",
            (0..10)
                .map(|i| record(&format!("outage round{round} n{i}"), 9, vec![]))
                .collect(),
        )
    };
    for round in 0..3 {
        assert_eq!(server.post_protobuf(&batch(round)).await.status(), 200);
        acknowledged += 10;
    }

    cluster.stop().unwrap();
    let resp = server.post_protobuf(&batch(100)).await;
    assert_eq!(
        resp.status(),
        503,
        "Postgres down must be retryable, never 500"
    );
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let resp = server.post_json(&batch(101)).await;
    assert_eq!(resp.status(), 503);
    // 5xx bodies are generic: a request id, never the database's own words (they are
    // in the server log under that id).
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let request_id = headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id in {headers:?}: {text}"))
        .to_str()
        .unwrap()
        .to_string();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("request id {request_id}")),
        "{status}"
    );
    for leak in ["database", "connect", "postgres", "sqlx", "refused"] {
        assert!(!message.to_lowercase().contains(leak), "{leak} in {status}");
    }
    let (status, body) = server.search(&[("q", "outage")]).await;
    assert_eq!(status, 503, "{body}");
    let id = body["error"]["request_id"].as_str().expect("a request id");
    assert_eq!(id.len(), 16, "{body}");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("database") && !text.contains("connect"),
        "{body}"
    );
    let mut client = LogsServiceClient::connect(server.otlp_grpc.clone())
        .await
        .unwrap();
    let mut req = tonic::Request::new(batch(102));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", server.creds.ingest_token)
            .parse()
            .unwrap(),
    );
    let refused = client.export(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains("request id"), "{refused:?}");
    assert!(!refused.message().contains("database"), "{refused:?}");
    let (status, _) = server.get_api("/readyz", &[], None).await;
    assert_eq!(status, 503, "not ready while the database is down");

    cluster.restart().unwrap();
    // A client retrying as OTLP clients do succeeds once Postgres is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = server.post_protobuf(&batch(200)).await;
        if resp.status() == 200 {
            acknowledged += 10;
            break;
        }
        assert_eq!(resp.status(), 503);
        assert!(
            Instant::now() < deadline,
            "ingest did not recover after Postgres returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        server.stored_count().await as u64,
        acknowledged,
        "every acknowledged record is stored, nothing else"
    );
    server.wait_for_total("outage", acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_index_is_rebuilt_at_start_and_by_reindex() {
    let mut server = TestServer::spawn().await.unwrap();
    let records: Vec<_> = (0..300)
        .map(|i| record(&format!("rebuild record {i}"), 9 + (i % 2), vec![]))
        .collect();
    assert_eq!(
        server
            .post_protobuf(&request("rebuild", records))
            .await
            .status(),
        200
    );
    server.wait_for_total("rebuild", 300).await;
    let (_, before) = server
        .search(&[("q", "severity_number:10"), ("from", "now-1h")])
        .await;
    let data_dir = server.data_dir.clone();
    let url = server.database_url.clone();
    assert!(server.stop().unwrap().success());

    std::fs::remove_dir_all(data_dir.join("index")).unwrap();
    let mut restarted = TestServer::start(&data_dir, url.clone(), &[])
        .await
        .unwrap();
    restarted.wait_for_total("rebuild", 300).await;
    let (_, after) = restarted
        .search(&[("q", "severity_number:10"), ("from", "now-1h")])
        .await;
    assert_eq!(before["total"], after["total"]);
    let (status, _) = restarted.get_api("/readyz", &[], None).await;
    assert_eq!(status, 200);

    // `palisade reindex` refuses while the server runs, then rebuilds when stopped.
    let out = restarted.run_cli(&["reindex"]).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    assert!(restarted.stop().unwrap().success());
    let out = restarted.run_cli(&["reindex"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("index rebuilt: 300 records"));
    let again = TestServer::start(&data_dir, url, &[]).await.unwrap();
    again.wait_for_total("rebuild", 300).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_survives_kill_9() {
    let dir = TempDir::new("palisade-embedded");
    let mut server = TestServer::start(&dir.0, None, &[]).await.unwrap();
    let creds = server.creds.clone();
    let postgres_dir = dir.0.join("postgres");
    assert!(
        postgres_dir.join("data/PG_VERSION").exists(),
        "cluster lives in <data-dir>/postgres"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.0.join("initial-credentials.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The cluster listens on no TCP port: its socket dir is private.
    let conf = std::fs::read_to_string(postgres_dir.join("data/postmaster.opts")).unwrap();
    assert!(conf.contains("listen_addresses="), "{conf}");

    let req = request(
        "embedded",
        (0..25)
            .map(|i| record(&format!("embedded durable {i}"), 9, vec![]))
            .collect(),
    );
    assert_eq!(server.post_protobuf(&req).await.status(), 200);
    server.wait_for_total("embedded", 25).await;
    // Admin commands work against the running server's cluster.
    let out = server.run_cli(&["tenant", "list"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("default"),
        "{out:?}"
    );

    server.kill9();
    let mut again = TestServer::start(&dir.0, None, &[]).await.unwrap();
    assert_eq!(
        again.creds.ingest_token, creds.ingest_token,
        "bootstrap runs once"
    );
    again.wait_for_total("embedded", 25).await;
    assert_eq!(again.post_protobuf(&req).await.status(), 200);
    again.wait_for_total("embedded", 50).await;
    assert!(again.stop().unwrap().success());
    assert!(
        !postgres_dir.join("data/postmaster.pid").exists(),
        "clean stop stops the embedded cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_whole_expired_partitions() {
    let mut server = TestServer::spawn().await.unwrap();
    let now = chrono::Utc::now();
    let stamp = |days: i64| {
        (now - chrono::Duration::days(days))
            .timestamp_nanos_opt()
            .unwrap() as u64
    };
    let mut records = Vec::new();
    for (days, label) in [(0, "fresh"), (1, "recent"), (5, "stale"), (6, "stale")] {
        let mut r = record(&format!("retention {label}"), 9, vec![]);
        r.time_unix_nano = stamp(days);
        records.push(r);
    }
    assert_eq!(
        server
            .post_protobuf(&request("retention", records))
            .await
            .status(),
        200
    );
    server.wait_for_total("retention", 4).await;
    let data_dir = server.data_dir.clone();
    let url = server.database_url.clone();
    server.stop().unwrap();

    let restarted = TestServer::start(&data_dir, url, &["--retention-days", "3"])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while restarted.stored_count().await != 2 {
        assert!(
            Instant::now() < deadline,
            "expired partitions were not dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restarted.wait_for_total("retention", 2).await;
    restarted.wait_for_total("retention AND stale", 0).await;
    // Records older than the retention window are refused up front.
    let mut old = record("retention too old", 9, vec![]);
    old.time_unix_nano = stamp(4);
    let resp = restarted.post_json(&request("retention", vec![old])).await;
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("outside the accepted window")
    );
    drop(server);
}
