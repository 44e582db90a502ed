//! OTLP request decoding (protobuf and the OTLP/JSON mapping) and response encoding.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use crate::IngestError;

/// Wire format of an OTLP/HTTP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` header (parameters such as `charset` are ignored).
    pub fn from_content_type(value: Option<&str>) -> Result<Format, IngestError> {
        let Some(value) = value else {
            return Err(IngestError::UnsupportedMedia(
                "missing content-type: use application/x-protobuf or application/json".into(),
            ));
        };
        let media = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            other => Err(IngestError::UnsupportedMedia(format!(
                "unsupported content-type {other:?}: use application/x-protobuf or application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Decode an `ExportLogsServiceRequest`. Errors name what is wrong (and, for JSON,
/// where: serde reports line and column).
pub fn decode_logs(format: Format, body: &[u8]) -> Result<ExportLogsServiceRequest, IngestError> {
    match format {
        Format::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|err| {
            IngestError::Malformed(format!("invalid protobuf ExportLogsServiceRequest: {err}"))
        }),
        Format::Json => {
            let request: ExportLogsServiceRequest =
                serde_json::from_slice(body).map_err(|err| {
                    IngestError::Malformed(format!(
                        "invalid OTLP/JSON ExportLogsServiceRequest: {err}"
                    ))
                })?;
            // serde ignores unknown keys, so a snake_case body decodes as empty: say so
            // rather than silently accepting nothing.
            if request.resource_logs.is_empty() && contains_key(body, b"\"resource_logs\"") {
                return Err(IngestError::Malformed(
                    "OTLP/JSON keys are camelCase: found \"resource_logs\", expected \"resourceLogs\"".into(),
                ));
            }
            Ok(request)
        }
    }
}

fn contains_key(body: &[u8], key: &[u8]) -> bool {
    body.windows(key.len()).any(|w| w == key)
}

pub fn encode_response(format: Format, response: &ExportLogsServiceResponse) -> Vec<u8> {
    match format {
        Format::Protobuf => response.encode_to_vec(),
        Format::Json => match &response.partial_success {
            // Full success: an empty object, as other OTLP receivers answer.
            None => b"{}".to_vec(),
            Some(_) => serde_json::to_vec(response).expect("response serialises"),
        },
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP servers return with an error status.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub fn encode_status(format: Format, code: i32, message: &str) -> Vec<u8> {
    match format {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Format::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
                .expect("status serialises")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(IngestError::UnsupportedMedia(_))
        ));
        assert!(matches!(
            Format::from_content_type(None),
            Err(IngestError::UnsupportedMedia(_))
        ));
    }

    #[test]
    fn json_edge_cases() {
        // int64 as string and as number, hex ids in upper case, unknown fields.
        let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1700000000000000000","severityNumber":9,"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","body":{"stringValue":"x"},"unknownField":1},
            {"timeUnixNano":1700000000000000001,"attributes":[{"key":"n","value":{"intValue":7}}]}]}]}]}"#;
        let req = decode_logs(Format::Json, body).unwrap();
        let records = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(records[1].time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(
            hex::encode(&records[0].trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
    }

    #[test]
    fn snake_case_and_garbage_are_errors() {
        let err = decode_logs(Format::Json, br#"{"resource_logs":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("resourceLogs"), "{err}");
        let err = decode_logs(Format::Json, b"{not json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = decode_logs(Format::Protobuf, b"\xff\xff\xff")
            .unwrap_err()
            .to_string();
        assert!(err.contains("protobuf"), "{err}");
    }
}
