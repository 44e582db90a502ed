//! Ingest over every transport, found by search with every field intact.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList, any_value};
use palisade_tests::TestServer;
use palisade_tests::otlp::{int, kv, record, request, string};
use prost::Message;
use serde_json::json;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn shared(name: &str) -> Vec<u8> {
    let path = palisade_tests::workspace_root()
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_body_from_the_python_sdk_keeps_every_field() {
    let server = TestServer::spawn().await.unwrap();
    // The sample was recorded on a fixed day: restamp it to now so it is inside the
    // retention window, keeping everything else as the SDK sent it.
    let mut sample =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
            shared("python-sdk-logs.pb").as_slice(),
        )
        .unwrap();
    let now = palisade_tests::otlp::now_nanos();
    for rl in &mut sample.resource_logs {
        for sl in &mut rl.scope_logs {
            for lr in &mut sl.log_records {
                lr.time_unix_nano = now;
                lr.observed_time_unix_nano = now;
            }
        }
    }
    let resp = server
        .post_logs(
            sample.encode_to_vec(),
            "application/x-protobuf",
            None,
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = server
        .wait_for_total("resource.service.name:auth-gateway", 2)
        .await;
    let hits = body["hits"].as_array().unwrap();
    let failed = hits
        .iter()
        .find(|h| h["body"].as_str().unwrap().starts_with("failed login"))
        .unwrap();
    assert_eq!(failed["severity_text"], "WARN");
    assert_eq!(failed["severity_number"], 13);
    assert_eq!(failed["attributes"]["user.name"], "alice");
    assert_eq!(failed["resource"]["host.name"], "bastion-1");
    assert_eq!(failed["resource"]["telemetry.sdk.language"], "python");
    assert_eq!(failed["scope"]["name"], "audit");
    // The record with a span context keeps its ids and flags.
    let traced: Vec<_> = hits.iter().filter(|h| h["trace_id"].is_string()).collect();
    assert_eq!(traced.len(), 1, "{hits:?}");
    assert_eq!(traced[0]["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(traced[0]["span_id"].as_str().unwrap().len(), 16);
    // Typed attributes keep their JSON types.
    let typed = hits.iter().find(|h| {
        h["attributes"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.is_f64())
    });
    assert!(typed.is_some(), "a double attribute survives: {hits:?}");
    assert_eq!(server.stored_count().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_body_from_the_js_sdk_keeps_every_field() {
    let server = TestServer::spawn().await.unwrap();
    // The JS sample is stamped at a fixed past time: restamp it to now so it is
    // inside the retention window, keeping everything else byte for byte.
    let mut sample: serde_json::Value =
        serde_json::from_slice(&shared("js-sdk-logs.json")).unwrap();
    let now = palisade_tests::otlp::now_nanos().to_string();
    for rl in sample["resourceLogs"].as_array_mut().unwrap() {
        for sl in rl["scopeLogs"].as_array_mut().unwrap() {
            for lr in sl["logRecords"].as_array_mut().unwrap() {
                lr["timeUnixNano"] = json!(now);
            }
        }
    }
    let resp = server
        .post_logs(
            serde_json::to_vec(&sample).unwrap(),
            "application/json",
            None,
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");
    let body = server
        .wait_for_total("attributes.user.name:mallory", 1)
        .await;
    let hit = &body["hits"][0];
    assert_eq!(hit["body"], "privileged pod exec by user mallory");
    assert_eq!(hit["severity_number"], 17);
    assert_eq!(hit["severity_text"], "ERROR");
    assert_eq!(hit["attributes"]["count"], 7);
    assert_eq!(hit["attributes"]["ratio"], 0.5);
    assert_eq!(hit["attributes"]["tags"], json!(["a", "b"]));
    assert_eq!(hit["resource"]["service.name"], "k8s-audit-shipper");
    assert_eq!(hit["scope"]["name"], "audit");
    assert_eq!(hit["scope"]["version"], "1.0.0");
    assert_eq!(hit["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(hit["span_id"], "eee19b7ec3c1b174");
    assert_eq!(hit["flags"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_protobuf_and_gzip_json_are_accepted() {
    let server = TestServer::spawn().await.unwrap();
    let pb = request("gz-svc", vec![record("gzip protobuf canary", 9, vec![])]).encode_to_vec();
    let resp = server
        .post_logs(
            gzip(&pb),
            "application/x-protobuf",
            Some("gzip"),
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let js = serde_json::to_vec(&request(
        "gz-svc",
        vec![record("gzip json canary", 9, vec![])],
    ))
    .unwrap();
    let resp = server
        .post_logs(
            gzip(&js),
            "application/json",
            Some("gzip"),
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    server
        .wait_for_total("canary AND resource.service.name:gz-svc", 2)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_export_with_and_without_gzip() {
    let server = TestServer::spawn().await.unwrap();
    let token: MetadataValue<_> = format!("Bearer {}", server.creds.ingest_token)
        .parse()
        .unwrap();
    for (compressed, body) in [(false, "grpc plain canary"), (true, "grpc gzip canary")] {
        let mut client = LogsServiceClient::connect(server.otlp_grpc.clone())
            .await
            .unwrap();
        if compressed {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let nested = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv(
                    "list",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![int(1), string("x")],
                        })),
                    },
                )],
            })),
        };
        let mut req = tonic::Request::new(request(
            "grpc-svc",
            vec![record(
                body,
                17,
                vec![kv("user.name", string("carol")), kv("nested", nested)],
            )],
        ));
        req.metadata_mut().insert("authorization", token.clone());
        let resp = client.export(req).await.unwrap().into_inner();
        assert!(resp.partial_success.is_none());
    }
    let body = server
        .wait_for_total("canary AND attributes.user.name:carol", 2)
        .await;
    assert_eq!(
        body["hits"][0]["attributes"]["nested"],
        json!({"list": [1, "x"]})
    );
    assert_eq!(body["hits"][0]["resource"]["service.name"], "grpc-svc");
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_edge_cases() {
    let server = TestServer::spawn().await.unwrap();
    let now = palisade_tests::otlp::now_nanos();
    // Upper-case hex ids, int64 as string and as number, enums as integers, unknown
    // fields, bytes, nested kvlist/array, a structured body and a missing timestamp.
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"edge"}}}}]}},"unknownTop":1,
        "scopeLogs":[{{"scope":{{"name":"s"}},"logRecords":[
          {{"timeUnixNano":"{now}","severityNumber":21,"traceId":"0AF7651916CD43DD8448EB211C80319C","spanId":"B7AD6B7169203331",
            "body":{{"kvlistValue":{{"values":[{{"key":"msg","value":{{"stringValue":"structured edge"}}}}]}}}},
            "attributes":[{{"key":"n_str","value":{{"intValue":"9007199254740993"}}}},{{"key":"n_num","value":{{"intValue":42}}}},
                          {{"key":"raw","value":{{"bytesValue":"AAEC"}}}},{{"key":"flag","value":{{"boolValue":true}}}},
                          {{"key":"deep","value":{{"kvlistValue":{{"values":[{{"key":"arr","value":{{"arrayValue":{{"values":[{{"doubleValue":2.5}},{{"kvlistValue":{{"values":[]}}}}]}}}}}}]}}}}}}],
            "futureField":{{"x":1}}}},
          {{"observedTimeUnixNano":{now},"body":{{"stringValue":"edge without time"}}}}
        ]}}]}}]}}"#
    );
    let resp = server
        .post_logs(
            body.into_bytes(),
            "application/json",
            None,
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let found = server.wait_for_total("resource.service.name:edge", 2).await;
    let hits = found["hits"].as_array().unwrap();
    let structured = hits.iter().find(|h| h["trace_id"].is_string()).unwrap();
    assert_eq!(structured["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(structured["span_id"], "b7ad6b7169203331");
    assert_eq!(structured["severity_number"], 21);
    assert_eq!(structured["body"], r#"{"msg":"structured edge"}"#);
    assert_eq!(
        structured["attributes"]["n_str"],
        json!(9007199254740993i64)
    );
    assert_eq!(structured["attributes"]["n_num"], 42);
    assert_eq!(structured["attributes"]["raw"], "AAEC");
    assert_eq!(structured["attributes"]["flag"], true);
    assert_eq!(structured["attributes"]["deep"], json!({"arr": [2.5, {}]}));
    let untimed = hits
        .iter()
        .find(|h| h["body"] == "edge without time")
        .unwrap();
    assert_eq!(
        untimed["time"], untimed["observed_time"],
        "time falls back to observed time"
    );
    // Structured body content is searchable as text.
    server.wait_for_total("body:structured", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_success_reports_the_exact_rejected_count() {
    let server = TestServer::spawn().await.unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::days(45))
        .timestamp_nanos_opt()
        .unwrap() as u64;
    let mut too_old = record("too old", 9, vec![]);
    too_old.time_unix_nano = old;
    let bad_severity = record("bad severity", 99, vec![]);
    let mut bad_trace = record("bad trace", 9, vec![]);
    bad_trace.trace_id = vec![1, 2, 3];
    let good = |i| record(&format!("partial keeper {i}"), 9, vec![]);
    let req = request(
        "partial",
        vec![good(1), too_old, good(2), bad_severity, bad_trace, good(3)],
    );

    // OTLP/HTTP protobuf.
    let resp = server.post_protobuf(&req).await;
    assert_eq!(resp.status(), 200);
    let decoded =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
            resp.bytes().await.unwrap(),
        )
        .unwrap();
    let partial = decoded.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 3);
    assert!(
        partial.error_message.contains("3 log record(s) rejected"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("severity_number 99"),
        "{}",
        partial.error_message
    );

    // OTLP/HTTP JSON.
    let resp = server.post_json(&req).await;
    let body: serde_json::Value = resp.json().await.unwrap();
    let rejected = &body["partialSuccess"]["rejectedLogRecords"];
    assert!(
        rejected == 3 || rejected == "3",
        "int64 as number or string: {body}"
    );
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("outside the accepted window")
    );

    // gRPC.
    let mut client = LogsServiceClient::connect(server.otlp_grpc.clone())
        .await
        .unwrap();
    let mut grpc_req = tonic::Request::new(req.clone());
    grpc_req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", server.creds.ingest_token)
            .parse()
            .unwrap(),
    );
    let resp = client.export(grpc_req).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_log_records, 3);

    server.wait_for_total("partial AND keeper", 9).await;
    assert_eq!(
        server.stored_count().await,
        9,
        "exactly the valid records are stored"
    );
}
