//! OTLP log records -> [`model::LogRecord`], one record at a time.
//!
//! A record that can never be stored (timestamp outside the accepted window,
//! malformed ids, severity out of range) is rejected on its own and counted; the
//! rest of the request is kept. Only a structural problem of the whole request (an
//! AnyValue nested deeper than [`crate::MAX_ANYVALUE_DEPTH`]) fails it entirely.

use k8saudit::attr;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use model::{LogRecord, TenantId};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Number, Value};

use crate::decode::MAX_ATTRIBUTES;
use crate::{IngestError, MAX_ANYVALUE_DEPTH};

/// Which timestamps are storable.
#[derive(Debug, Clone, Copy)]
pub struct TimePolicy {
    /// Records older than this are rejected (they would be dropped by retention).
    pub max_age: Duration,
    /// Records further in the future than this are rejected (clock skew allowance).
    pub max_future: Duration,
}

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            max_age: Duration::days(30),
            max_future: Duration::days(1),
        }
    }
}

/// The outcome of normalising one request.
#[derive(Debug, Default)]
pub struct Normalized {
    pub records: Vec<LogRecord>,
    pub rejected: u64,
    /// Rejections per reason (metric label values).
    pub reasons: BTreeMap<&'static str, u64>,
    /// A human-readable summary for `partial_success.error_message`.
    pub messages: Vec<String>,
}

impl Normalized {
    pub fn reject(&mut self, reason: &'static str, message: String) {
        self.rejected += 1;
        *self.reasons.entry(reason).or_default() += 1;
        if self.messages.len() < 5 {
            self.messages.push(message);
        }
    }

    pub fn error_message(&self) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let mut text = format!(
            "{} log record(s) rejected: {}",
            self.rejected,
            self.messages.join("; ")
        );
        if self.rejected as usize > self.messages.len() {
            text.push_str("; ...");
        }
        text
    }
}

/// Replace characters Postgres cannot store (NUL) in text.
fn clean(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_string()
    }
}

struct TooDeep;

fn any_value_to_json(value: &AnyValue, depth: usize) -> Result<Value, TooDeep> {
    if depth > MAX_ANYVALUE_DEPTH {
        return Err(TooDeep);
    }
    let Some(inner) = &value.value else {
        return Ok(Value::Null);
    };
    Ok(match inner {
        any_value::Value::StringValue(s) => Value::String(clean(s)),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::Number((*i).into()),
        any_value::Value::DoubleValue(d) => match Number::from_f64(*d) {
            Some(n) => Value::Number(n),
            None => Value::String(d.to_string()),
        },
        any_value::Value::BytesValue(bytes) => Value::String(STANDARD.encode(bytes)),
        any_value::Value::ArrayValue(array) => Value::Array(
            array
                .values
                .iter()
                .map(|v| any_value_to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        any_value::Value::KvlistValue(list) => Value::Object(key_values(&list.values, depth + 1)?),
        any_value::Value::StringValueStrindex(_) => Value::Null,
    })
}

fn key_values(pairs: &[KeyValue], depth: usize) -> Result<Map<String, Value>, TooDeep> {
    let mut map = Map::with_capacity(pairs.len());
    for pair in pairs {
        let value = match &pair.value {
            Some(v) => any_value_to_json(v, depth)?,
            None => Value::Null,
        };
        map.insert(clean(&pair.key), value);
    }
    Ok(map)
}

fn nanos_to_time(nanos: u64) -> Option<DateTime<Utc>> {
    let nanos = i64::try_from(nanos).ok()?;
    Some(Utc.timestamp_nanos(nanos))
}

fn id_hex(bytes: &[u8], len: usize) -> Result<Option<String>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!("must be {len} bytes, got {}", bytes.len()));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    Ok(Some(hex::encode(bytes)))
}

fn too_deep() -> IngestError {
    IngestError::Malformed(format!(
        "attribute or body value nests deeper than {MAX_ANYVALUE_DEPTH} levels"
    ))
}

/// Normalise a whole request for `tenant`, received at `now`.
/// Scope names only Palisade writes: `k8s.audit` (normalised audit events),
/// `palisade.alert` (correlation signals) and `palisade.audit` (its own audit trail).
pub const RESERVED_SCOPES: [&str; 3] = [attr::AUDIT_SCOPE, "palisade.alert", "palisade.audit"];

/// Bytes of resource attributes one request may have written out with its records (each
/// stored row carries its resource, so a large resource shared by many small records
/// is what makes a small body expensive): this many times the request's encoded
/// size, plus [`RESOURCE_COPY_FLOOR`]. Records past it are rejected.
pub const RESOURCE_COPY_FACTOR: usize = 16;
/// The part of the resource budget every request has whatever its size.
pub const RESOURCE_COPY_FLOOR: usize = 4 * 1024 * 1024;

pub fn normalize(
    tenant: TenantId,
    request: &ExportLogsServiceRequest,
    now: DateTime<Utc>,
    policy: TimePolicy,
) -> Result<Normalized, IngestError> {
    let mut out = Normalized::default();
    let oldest = now - policy.max_age;
    let newest = now + policy.max_future;
    crate::decode::check_counts(request)?;
    // Bytes of resource written out with records so far, and what this request may.
    let mut copied = 0usize;
    let budget = {
        use prost::Message;
        request
            .encoded_len()
            .saturating_mul(RESOURCE_COPY_FACTOR)
            .saturating_add(RESOURCE_COPY_FLOOR)
    };
    for resource_logs in &request.resource_logs {
        let resource_attributes = resource_logs
            .resource
            .as_ref()
            .map_or(0, |r| r.attributes.len());
        if resource_attributes > MAX_ATTRIBUTES {
            for scope_logs in &resource_logs.scope_logs {
                for _ in &scope_logs.log_records {
                    out.reject(
                        "too_many_attributes",
                        format!("resource has {resource_attributes} attributes; the limit is {MAX_ATTRIBUTES}"),
                    );
                }
            }
            continue;
        }
        let resource = match &resource_logs.resource {
            Some(r) => key_values(&r.attributes, 1).map_err(|_| too_deep())?,
            None => Map::new(),
        };
        let resource_bytes = serde_json::to_vec(&resource).map_or(0, |v| v.len());
        // One allocation shared by every record of this resource.
        let shared = std::sync::Arc::new(resource.clone());
        for scope_logs in &resource_logs.scope_logs {
            let (scope_name, scope_version) = scope_logs
                .scope
                .as_ref()
                .map(|s| (clean(&s.name), clean(&s.version)))
                .unwrap_or_default();
            for (index, log) in scope_logs.log_records.iter().enumerate() {
                // Records in these scopes are written by Palisade itself (normalised
                // audit events, correlation signals); a client may not forge them.
                if RESERVED_SCOPES.contains(&scope_name.as_str()) {
                    out.reject(
                        "reserved_scope",
                        format!("record {index}: scope name {scope_name:?} is reserved for records Palisade writes"),
                    );
                    continue;
                }
                if log.attributes.len() > MAX_ATTRIBUTES {
                    out.reject(
                        "too_many_attributes",
                        format!(
                            "record {index}: {} attributes; the limit is {MAX_ATTRIBUTES}",
                            log.attributes.len()
                        ),
                    );
                    continue;
                }
                copied = copied.saturating_add(resource_bytes);
                if copied > budget {
                    out.reject(
                        "resource_too_large",
                        format!("record {index}: its resource, stored with every record, exceeds {budget} bytes for this request ({RESOURCE_COPY_FACTOR} x the request size + {RESOURCE_COPY_FLOOR}); send fewer records per resource"),
                    );
                    continue;
                }
                let observed_time = if log.observed_time_unix_nano == 0 {
                    Some(now)
                } else {
                    nanos_to_time(log.observed_time_unix_nano)
                };
                let time = if log.time_unix_nano == 0 {
                    observed_time
                } else {
                    nanos_to_time(log.time_unix_nano)
                };
                let (Some(time), Some(observed_time)) = (time, observed_time) else {
                    out.reject(
                        "invalid_timestamp",
                        format!("record {index}: timestamp out of range"),
                    );
                    continue;
                };
                if time < oldest || time > newest {
                    out.reject(
                        "timestamp_out_of_range",
                        format!(
                            "record {index}: timestamp {} is outside the accepted window ({} .. {})",
                            time.to_rfc3339(),
                            oldest.to_rfc3339(),
                            newest.to_rfc3339()
                        ),
                    );
                    continue;
                }
                if !(0..=24).contains(&log.severity_number) {
                    out.reject(
                        "invalid_severity_number",
                        format!(
                            "record {index}: severity_number {} is outside 0..24",
                            log.severity_number
                        ),
                    );
                    continue;
                }
                let trace_id = match id_hex(&log.trace_id, 16) {
                    Ok(id) => id,
                    Err(msg) => {
                        out.reject(
                            "invalid_trace_id",
                            format!("record {index}: trace_id {msg}"),
                        );
                        continue;
                    }
                };
                let span_id = match id_hex(&log.span_id, 8) {
                    Ok(id) => id,
                    Err(msg) => {
                        out.reject("invalid_span_id", format!("record {index}: span_id {msg}"));
                        continue;
                    }
                };
                let body = match &log.body {
                    None => String::new(),
                    Some(value) => match any_value_to_json(value, 1).map_err(|_| too_deep())? {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        structured => structured.to_string(),
                    },
                };
                let mut attributes = key_values(&log.attributes, 1).map_err(|_| too_deep())?;
                if !log.event_name.is_empty() {
                    attributes
                        .entry("event.name")
                        .or_insert_with(|| Value::String(clean(&log.event_name)));
                }
                // Kubernetes audit events become one normalised, redacted record.
                let structured_body = matches!(
                    log.body.as_ref().and_then(|b| b.value.as_ref()),
                    Some(any_value::Value::KvlistValue(_))
                );
                if let Some(event) = k8saudit::detect(&body, structured_body, &attributes) {
                    let cluster = resource
                        .get(attr::CLUSTER_NAME)
                        .and_then(Value::as_str)
                        .unwrap_or(k8saudit::DEFAULT_CLUSTER)
                        .to_string();
                    match k8saudit::to_record(event, tenant, &cluster, observed_time, resource.clone()) {
                        Ok(record) if record.time < oldest || record.time > newest => out.reject(
                            "timestamp_out_of_range",
                            format!("record {index}: audit event time {} is outside the accepted window", record.time.to_rfc3339()),
                        ),
                        Ok(record) => out.records.push(record),
                        Err(malformed) => out.reject("invalid_k8s_audit_event", format!("record {index}: {}", malformed.0)),
                    }
                    continue;
                }
                out.records.push(LogRecord {
                    tenant_id: tenant,
                    time,
                    observed_time,
                    severity_number: log.severity_number as i16,
                    severity_text: clean(&log.severity_text),
                    body,
                    attributes,
                    resource: shared.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    trace_id,
                    span_id,
                    flags: log.flags,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Format, decode_logs};
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId(Uuid::nil())
    }

    #[test]
    fn every_any_value_kind() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"auth"}}]},
          "scopeLogs":[{"scope":{"name":"s","version":"1"},"logRecords":[{"body":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}},
          "attributes":[
            {"key":"s","value":{"stringValue":"x"}},
            {"key":"b","value":{"boolValue":true}},
            {"key":"i","value":{"intValue":"-5"}},
            {"key":"d","value":{"doubleValue":1.5}},
            {"key":"y","value":{"bytesValue":"aGk="}},
            {"key":"a","value":{"arrayValue":{"values":[{"intValue":1},{"stringValue":"two"}]}}},
            {"key":"m","value":{"kvlistValue":{"values":[{"key":"inner","value":{"kvlistValue":{"values":[{"key":"deep","value":{"boolValue":false}}]}}}]}}},
            {"key":"nul","value":{"stringValue":"a\u0000b"}}
          ]}]}]}]}"#;
        let req = decode_logs(Format::Json, body).unwrap();
        let out = normalize(tenant(), &req, Utc::now(), TimePolicy::default()).unwrap();
        assert_eq!(out.rejected, 0);
        let r = &out.records[0];
        assert_eq!(r.body, r#"{"k":"v"}"#);
        assert_eq!(r.resource["service.name"], "auth");
        assert_eq!(r.scope_name, "s");
        let a = &r.attributes;
        assert_eq!(a["s"], "x");
        assert_eq!(a["b"], true);
        assert_eq!(a["i"], -5);
        assert_eq!(a["d"], 1.5);
        assert_eq!(a["y"], "aGk=");
        assert_eq!(a["a"], serde_json::json!([1, "two"]));
        assert_eq!(a["m"], serde_json::json!({"inner": {"deep": false}}));
        assert_eq!(a["nul"], "a\u{FFFD}b");
        // Missing timestamps fall back to the observed (receive) time.
        assert_eq!(r.time, r.observed_time);
    }

    #[test]
    fn invalid_records_are_rejected_individually() {
        let now = Utc::now();
        let old = (now - Duration::days(40)).timestamp_nanos_opt().unwrap();
        let ok = now.timestamp_nanos_opt().unwrap();
        let body = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[
              {{"timeUnixNano":"{ok}","body":{{"stringValue":"good"}}}},
              {{"timeUnixNano":"{old}","body":{{"stringValue":"too old"}}}},
              {{"timeUnixNano":"{ok}","severityNumber":99}},
              {{"timeUnixNano":"{ok}","body":{{"stringValue":"good too"}}}}
            ]}}]}}]}}"#
        );
        let req = decode_logs(Format::Json, body.as_bytes()).unwrap();
        let out = normalize(tenant(), &req, now, TimePolicy::default()).unwrap();
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.rejected, 2);
        assert_eq!(out.reasons["timestamp_out_of_range"], 1);
        assert_eq!(out.reasons["invalid_severity_number"], 1);
        let msg = out.error_message();
        assert!(msg.starts_with("2 log record(s) rejected"), "{msg}");
    }

    #[test]
    fn bad_id_length_in_protobuf_is_a_record_rejection() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord as PbLog, ResourceLogs, ScopeLogs};
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        PbLog {
                            trace_id: vec![1; 5],
                            ..Default::default()
                        },
                        PbLog {
                            span_id: vec![1; 8],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = normalize(tenant(), &req, Utc::now(), TimePolicy::default()).unwrap();
        assert_eq!(out.rejected, 1);
        assert_eq!(out.records[0].span_id.as_deref(), Some("0101010101010101"));
    }

    #[test]
    fn depth_is_capped() {
        let mut value = AnyValue {
            value: Some(any_value::Value::StringValue("leaf".into())),
        };
        for _ in 0..(MAX_ANYVALUE_DEPTH + 5) {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![value],
                    },
                )),
            };
        }
        let req = ExportLogsServiceRequest {
            resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
                scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                    log_records: vec![opentelemetry_proto::tonic::logs::v1::LogRecord {
                        body: Some(value),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let err = normalize(tenant(), &req, Utc::now(), TimePolicy::default()).unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }
}
