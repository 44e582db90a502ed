//! Builders for OTLP requests used by tests and the benchmark.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

pub fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

pub fn now_nanos() -> u64 {
    chrono::Utc::now().timestamp_nanos_opt().expect("in range") as u64
}

/// A log record with a body, severity and attributes, stamped now.
pub fn record(body: &str, severity: i32, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: now_nanos(),
        observed_time_unix_nano: now_nanos(),
        severity_number: severity,
        severity_text: match severity {
            1..=8 => "DEBUG",
            9..=12 => "INFO",
            13..=16 => "WARN",
            _ => "ERROR",
        }
        .to_string(),
        body: Some(string(body)),
        attributes,
        ..Default::default()
    }
}

/// Wrap records in one resource (`service.name`) and scope.
pub fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", string(service))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "palisade-tests".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Decode an OTLP/HTTP protobuf answer.
pub fn decode_response(
    bytes: &[u8],
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse {
    use prost::Message;
    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(bytes)
        .expect("an ExportLogsServiceResponse")
}
