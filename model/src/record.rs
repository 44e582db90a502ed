//! The normalised log record, as stored in Postgres and indexed by tantivy.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::TenantId;

/// One log record after decoding and normalisation, before it has a sequence id.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub tenant_id: TenantId,
    /// Event time; the observed time when the producer gave none.
    pub time: DateTime<Utc>,
    pub observed_time: DateTime<Utc>,
    pub severity_number: i16,
    pub severity_text: String,
    /// Text body; structured bodies are serialised as JSON.
    pub body: String,
    /// Attributes as a JSON object (OTLP keys kept verbatim, e.g. `"user.name"`).
    pub attributes: Map<String, Value>,
    /// Shared by every record of one OTLP resource: a request's resource is held once
    /// in memory however many records carry it.
    pub resource: std::sync::Arc<Map<String, Value>>,
    pub scope_name: String,
    pub scope_version: String,
    /// Lower-case hex, 32 chars, or `None` when absent or all-zero.
    pub trace_id: Option<String>,
    /// Lower-case hex, 16 chars, or `None` when absent or all-zero.
    pub span_id: Option<String>,
    pub flags: u32,
}

/// Whether the index's word analyzer turns `text` into exactly one token equal to
/// `text` (alphanumeric, already lower-case, under 256 bytes). Such a value is found
/// through the exact field, so the words field need not hold it again.
pub fn is_single_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() < 256
        && text.chars().all(char::is_alphanumeric)
        && text.chars().flat_map(char::to_lowercase).eq(text.chars())
}

/// The character that replaces text Postgres cannot store (NUL).
pub const REPLACEMENT: char = '\u{FFFD}';
/// Attribute set to `true` on a record whose text had characters replaced.
pub const REPLACED_ATTRIBUTE: &str = "palisade.replaced_nul";

fn scrub(text: &mut String) -> bool {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
        true
    } else {
        false
    }
}

/// Whether any string or key of a JSON map holds NUL (read-only, iterative).
pub fn has_nul(map: &Map<String, Value>) -> bool {
    let mut stack: Vec<&Value> = Vec::new();
    for (key, value) in map {
        if key.contains('\0') {
            return true;
        }
        stack.push(value);
    }
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(inner) => {
                for (key, value) in inner {
                    if key.contains('\0') {
                        return true;
                    }
                    stack.push(value);
                }
            }
            _ => {}
        }
    }
    false
}

/// Replace NUL in the keys of one map.
fn scrub_keys(map: &mut Map<String, Value>) -> bool {
    if !map.keys().any(|k| k.contains('\0')) {
        return false;
    }
    for (mut key, value) in std::mem::take(map) {
        scrub(&mut key);
        map.insert(key, value);
    }
    true
}

/// Replace NUL in every string and key of a JSON map, iteratively (no recursion on
/// input depth). Returns whether anything changed.
pub fn scrub_json(map: &mut Map<String, Value>) -> bool {
    let mut changed = scrub_keys(map);
    let mut stack: Vec<&mut Value> = map.values_mut().collect();
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) => changed |= scrub(s),
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(inner) => {
                changed |= scrub_keys(inner);
                stack.extend(inner.values_mut());
            }
            _ => {}
        }
    }
    changed
}

impl LogRecord {
    /// A record of `tenant` at `time` with `body` and nothing else (severity 0, no
    /// attributes, resource or scope): the start of a record built field by field.
    pub fn new(tenant_id: TenantId, time: DateTime<Utc>, body: impl Into<String>) -> LogRecord {
        LogRecord {
            tenant_id,
            time,
            observed_time: time,
            severity_number: 0,
            severity_text: String::new(),
            body: body.into(),
            attributes: Map::new(),
            resource: Default::default(),
            scope_name: String::new(),
            scope_version: String::new(),
            trace_id: None,
            span_id: None,
            flags: 0,
        }
    }

    /// Replace text Postgres refuses (NUL, in text and in JSON strings and keys) with
    /// U+FFFD and mark the record with [`REPLACED_ATTRIBUTE`]. Every write path calls
    /// this, so one record can never make a commit fail.
    pub fn replace_unstorable(&mut self) -> bool {
        let mut changed = scrub(&mut self.body);
        changed |= scrub(&mut self.severity_text);
        changed |= scrub(&mut self.scope_name);
        changed |= scrub(&mut self.scope_version);
        changed |= scrub_json(&mut self.attributes);
        // The resource is shared: copied only when it really holds NUL.
        if has_nul(&self.resource) {
            changed |= scrub_json(std::sync::Arc::make_mut(&mut self.resource));
        }
        if changed {
            self.attributes
                .insert(REPLACED_ATTRIBUTE.into(), Value::Bool(true));
        }
        changed
    }
}

/// A committed record: a [`LogRecord`] plus its sequence id.
///
/// The sequence id is assigned by Postgres inside the commit critical section, so
/// sequence order equals commit order (see `storage::logs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLog {
    pub seq: i64,
    #[serde(skip)]
    pub record: LogRecord,
}

#[cfg(test)]
mod scrub_tests {
    use super::*;

    #[test]
    fn nul_is_replaced_everywhere_and_marked() {
        let mut attributes = Map::new();
        attributes.insert(
            "k\0".into(),
            serde_json::json!({"a": ["x\0", {"b\0": "\0"}]}),
        );
        let mut r = LogRecord {
            severity_text: "I\0".into(),
            attributes,
            ..LogRecord::new(TenantId(uuid::Uuid::nil()), Utc::now(), "a\0b")
        };
        assert!(r.replace_unstorable());
        let text = serde_json::to_string(&r.attributes).unwrap() + &r.body + &r.severity_text;
        assert!(!text.contains('\0') && !text.contains("\\u0000"), "{text}");
        assert_eq!(r.attributes[REPLACED_ATTRIBUTE], Value::Bool(true));
        assert!(!r.replace_unstorable(), "a second pass finds nothing");
    }
}
