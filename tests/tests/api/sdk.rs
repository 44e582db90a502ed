//! The official OpenTelemetry Python SDK, over OTLP/HTTP and OTLP/gRPC.

use palisade_tests::TestServer;

const SCRIPT: &str = r#"
import logging, os
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

proto = os.environ["PROTO"]
token = os.environ["TOKEN"]
if proto == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=os.environ["ENDPOINT"], insecure=True,
                               headers=(("authorization", "Bearer " + token),))
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=os.environ["ENDPOINT"] + "/v1/logs",
                               headers={"Authorization": "Bearer " + token})
provider = LoggerProvider(resource=Resource.create({"service.name": "python-" + proto}))
provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
logger = logging.getLogger("palisade-sdk-test")
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
logger.setLevel(logging.INFO)
for i in range(20):
    logger.warning("python sdk %s record %d", proto, i, extra={"user.name": "sdk-user", "seq.number": i})
provider.shutdown()
print("sent")
"#;

fn run_python(proto: &str, endpoint: &str, token: &str, gzip: bool) {
    let mut env = vec![("PROTO", proto), ("ENDPOINT", endpoint), ("TOKEN", token)];
    if gzip {
        env.push(("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"));
    }
    palisade_tests::run_python(SCRIPT, &env);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_http_and_grpc_is_searchable() {
    let server = TestServer::spawn().await.unwrap();
    run_python("http", &server.otlp_http, &server.creds.ingest_token, true);
    run_python("grpc", &server.otlp_grpc, &server.creds.ingest_token, false);
    let body = server
        .wait_for_total("python AND sdk AND attributes.user.name:sdk-user", 40)
        .await;
    let hit = &body["hits"][0];
    assert_eq!(hit["severity_text"], "WARN");
    assert_eq!(hit["severity_number"], 13);
    assert!(hit["attributes"]["seq.number"].is_i64());
    assert_eq!(hit["resource"]["telemetry.sdk.language"], "python");
    server
        .wait_for_total("resource.service.name:python-http", 20)
        .await;
    server
        .wait_for_total("resource.service.name:python-grpc", 20)
        .await;
}
