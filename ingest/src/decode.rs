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

/// Most log records one export request may carry (413 beyond).
pub const MAX_RECORDS_PER_REQUEST: usize = 100_000;
/// Most attributes one log record (or one resource) may carry: a record over it is
/// rejected in `partial_success`, a resource over it rejects its records.
pub const MAX_ATTRIBUTES: usize = 256;
/// Most attribute key/values one request may carry in all (413 beyond).
pub const MAX_ATTRIBUTES_PER_REQUEST: usize = 500_000;
/// Most JSON objects one OTLP/JSON body may open (413 beyond); an upper bound of
/// records plus key/values, counted before anything is decoded.
pub const MAX_JSON_OBJECTS: usize = 1_000_000;

fn too_many(what: &'static str, limit: usize) -> IngestError {
    IngestError::TooManyRecords { limit, what }
}

/// Read one base-128 varint; `None` when truncated or longer than 10 bytes.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Visit the length-delimited fields of one protobuf message, without recursion and
/// without allocating. Malformed input stops the walk (prost reports it afterwards).
pub(crate) fn each_len_field<'a>(buf: &'a [u8], mut visit: impl FnMut(u64, &'a [u8])) {
    let mut pos = 0;
    while pos < buf.len() {
        let Some(key) = varint(buf, &mut pos) else {
            return;
        };
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                if varint(buf, &mut pos).is_none() {
                    return;
                }
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Some(len) = varint(buf, &mut pos) else {
                    return;
                };
                let Some(end) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else {
                    return;
                };
                let Some(payload) = buf.get(pos..end) else {
                    return;
                };
                visit(field, payload);
                pos = end;
            }
            _ => return,
        }
    }
}

/// Count the log records and attributes of a protobuf request on the wire, before
/// decoding: what a request may expand to in memory is bounded by these counts. Used
/// by OTLP/HTTP and, through `grpc::CheckedCodec`, by OTLP/gRPC.
pub fn check_protobuf_counts(body: &[u8]) -> Result<(), IngestError> {
    let (mut records, mut attributes) = (0usize, 0usize);
    each_len_field(body, |field, resource_logs| {
        if field != 1 {
            return;
        }
        each_len_field(resource_logs, |field, inner| match field {
            1 => each_len_field(inner, |f, _| attributes += usize::from(f == 1)),
            2 => each_len_field(inner, |f, log| {
                if f == 2 {
                    records += 1;
                    each_len_field(log, |f, _| attributes += usize::from(f == 6));
                }
            }),
            _ => {}
        });
    });
    if records > MAX_RECORDS_PER_REQUEST {
        return Err(too_many("log records", MAX_RECORDS_PER_REQUEST));
    }
    if attributes > MAX_ATTRIBUTES_PER_REQUEST {
        return Err(too_many("attributes", MAX_ATTRIBUTES_PER_REQUEST));
    }
    Ok(())
}

/// Check a decoded request against the same bounds (gRPC bodies are decoded by
/// tonic before Palisade sees them; its message size cap bounds that step).
pub fn check_counts(request: &ExportLogsServiceRequest) -> Result<(), IngestError> {
    let (mut records, mut attributes) = (0usize, 0usize);
    for rl in &request.resource_logs {
        attributes += rl.resource.as_ref().map_or(0, |r| r.attributes.len());
        for sl in &rl.scope_logs {
            records += sl.log_records.len();
            attributes += sl
                .log_records
                .iter()
                .map(|l| l.attributes.len())
                .sum::<usize>();
        }
    }
    if records > MAX_RECORDS_PER_REQUEST {
        return Err(too_many("log records", MAX_RECORDS_PER_REQUEST));
    }
    if attributes > MAX_ATTRIBUTES_PER_REQUEST {
        return Err(too_many("attributes", MAX_ATTRIBUTES_PER_REQUEST));
    }
    Ok(())
}

/// Decode an `ExportLogsServiceRequest`. Errors name what is wrong (and, for JSON,
/// where: serde reports line and column). Record and attribute counts are checked
/// before decoding, so a small body cannot expand into millions of structures.
pub fn decode_logs(format: Format, body: &[u8]) -> Result<ExportLogsServiceRequest, IngestError> {
    match format {
        Format::Protobuf => check_protobuf_counts(body)?,
        Format::Json => {
            let objects = body.iter().filter(|b| **b == b'{').count();
            if objects > MAX_JSON_OBJECTS {
                return Err(too_many("JSON objects", MAX_JSON_OBJECTS));
            }
        }
    }
    let request = decode_unchecked(format, body)?;
    check_counts(&request)?;
    Ok(request)
}

fn decode_unchecked(format: Format, body: &[u8]) -> Result<ExportLogsServiceRequest, IngestError> {
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
