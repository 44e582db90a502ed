//! Every ingest error status, with nothing stored for a refused request.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
use palisade_tests::TestServer;
use palisade_tests::otlp::{record, request};
use prost::Message;

async fn assert_nothing_stored(server: &TestServer) {
    assert_eq!(
        server.stored_count().await,
        0,
        "a refused request must store nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_naming_the_problem() {
    let server = TestServer::spawn().await.unwrap();
    let token = Some(server.creds.ingest_token.as_str());
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"{not json".to_vec(), "application/json", "OTLP/JSON"),
        (
            br#"{"resource_logs":[{"scope_logs":[]}]}"#.to_vec(),
            "application/json",
            "resourceLogs",
        ),
        (
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#.to_vec(),
            "application/json",
            "OTLP/JSON",
        ),
        (
            b"\xff\xff\xff\xff".to_vec(),
            "application/x-protobuf",
            "protobuf",
        ),
    ];
    for (body, ct, fragment) in cases {
        let resp = server.post_logs(body, ct, None, token).await;
        assert_eq!(resp.status(), 400);
        let text = resp.text().await.unwrap();
        assert!(text.contains(fragment), "{ct}: {text}");
    }
    // gzip that is not gzip.
    let resp = server
        .post_logs(b"plain".to_vec(), "application/json", Some("gzip"), token)
        .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("gzip"));
    assert_nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nesting_deeper_than_the_cap_is_400_not_a_crash() {
    let server = TestServer::spawn().await.unwrap();
    let mut value = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".into())),
    };
    for _ in 0..60 {
        value = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let mut deep = record("deep", 9, vec![]);
    deep.body = Some(value);
    let req = request("deep", vec![record("innocent bystander", 9, vec![]), deep]);
    let resp = server.post_protobuf(&req).await;
    assert_eq!(resp.status(), 400);
    let resp = server.post_json(&req).await;
    assert_eq!(resp.status(), 400);
    // JSON nested past serde's own recursion limit is a 400 too.
    let mut json = String::from(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":"#);
    for _ in 0..200 {
        json.push_str(r#"{"arrayValue":{"values":["#);
    }
    for _ in 0..200 {
        json.push_str("]}}");
    }
    json.push_str("}]}]}]}");
    let resp = server
        .post_logs(
            json.into_bytes(),
            "application/json",
            None,
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 400);
    // The server is still alive and well.
    assert_eq!(
        server
            .post_json(&request("ok", vec![record("after deep", 9, vec![])]))
            .await
            .status(),
        200
    );
    assert_eq!(server.stored_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_token_is_401_and_wrong_scope_403() {
    let server = TestServer::spawn().await.unwrap();
    let body = request("auth", vec![record("x", 9, vec![])]).encode_to_vec();
    for token in [
        None,
        Some("garbage"),
        Some("pal_0000000000000000000000_000000"),
    ] {
        let resp = server
            .post_logs(body.clone(), "application/x-protobuf", None, token)
            .await;
        assert_eq!(resp.status(), 401, "token {token:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    // A well-formed token (valid checksum) that this server never issued.
    let never_issued = model::token::generate();
    let resp = server
        .post_logs(
            body.clone(),
            "application/x-protobuf",
            None,
            Some(&never_issued),
        )
        .await;
    assert_eq!(resp.status(), 401);
    // The API (admin) token may not ingest.
    let resp = server
        .post_logs(
            body.clone(),
            "application/x-protobuf",
            None,
            Some(&server.creds.api_token),
        )
        .await;
    assert_eq!(resp.status(), 403);
    // gRPC: UNAUTHENTICATED.
    let mut client = LogsServiceClient::connect(server.otlp_grpc.clone())
        .await
        .unwrap();
    let err = client
        .export(tonic::Request::new(request(
            "auth",
            vec![record("x", 9, vec![])],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_content_type_or_encoding_is_415() {
    let server = TestServer::spawn().await.unwrap();
    let token = Some(server.creds.ingest_token.as_str());
    let resp = server
        .post_logs(b"hello".to_vec(), "text/plain", None, token)
        .await;
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("content-type"));
    let resp = server
        .post_logs(b"{}".to_vec(), "application/json", Some("br"), token)
        .await;
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("content-encoding"));
    assert_nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413() {
    let server = TestServer::spawn().await.unwrap();
    let token = Some(server.creds.ingest_token.as_str());
    // Over 20 MiB uncompressed.
    let big = request(
        "big",
        vec![record(&"x".repeat(21 * 1024 * 1024), 9, vec![])],
    )
    .encode_to_vec();
    let resp = server
        .post_logs(big, "application/x-protobuf", None, token)
        .await;
    assert_eq!(resp.status(), 413);
    assert_nothing_stored(&server).await;
}

/// 10 MiB of gzip members, each inflating to 1 MiB of zeros: the body is ~1000x
/// larger once decompressed. The server must refuse it at 20 MiB of output.
fn gzip_bomb(target_compressed: usize) -> Vec<u8> {
    let mut member = GzEncoder::new(Vec::new(), Compression::best());
    member.write_all(&vec![0u8; 1024 * 1024]).unwrap();
    let member = member.finish().unwrap();
    let mut body = Vec::with_capacity(target_compressed + member.len());
    while body.len() < target_compressed {
        body.extend_from_slice(&member);
    }
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bomb_is_413_without_memory_growth() {
    let server = TestServer::spawn().await.unwrap();
    let bomb = gzip_bomb(10 * 1024 * 1024);
    assert!(bomb.len() >= 10 * 1024 * 1024);
    // Warm up so the baseline includes the normal working set.
    assert_eq!(
        server
            .post_json(&request("warm", vec![record("warm", 9, vec![])]))
            .await
            .status(),
        200
    );
    let (peak_before, _) = server.memory_kib();
    for _ in 0..3 {
        let resp = server
            .post_logs(
                bomb.clone(),
                "application/x-protobuf",
                Some("gzip"),
                Some(&server.creds.ingest_token),
            )
            .await;
        assert_eq!(resp.status(), 413);
    }
    let (peak_after, rss_after) = server.memory_kib();
    let growth_mib = (peak_after.saturating_sub(peak_before)) / 1024;
    // Compressed body (10 MiB) + capped output (20 MiB) + allocator slack; a bomb
    // inflated without a cap would need ~10 GiB.
    assert!(
        growth_mib < 128,
        "peak RSS grew by {growth_mib} MiB (now {} MiB)",
        rss_after / 1024
    );
    assert_eq!(server.stored_count().await, 1);
}
