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
    pub resource: Map<String, Value>,
    pub scope_name: String,
    pub scope_version: String,
    /// Lower-case hex, 32 chars, or `None` when absent or all-zero.
    pub trace_id: Option<String>,
    /// Lower-case hex, 16 chars, or `None` when absent or all-zero.
    pub span_id: Option<String>,
    pub flags: u32,
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
