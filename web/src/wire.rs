//! The JSON the API answers with. Library crates return domain types; these are the
//! shapes clients see (and the OpenAPI document describes), built from them here.

use chrono::{DateTime, SecondsFormat, Utc};
use model::StoredLog;
use query::search::{HistogramResult, SearchResult};
use serde::Serialize;
use serde_json::{Map, Value};

pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One stored log record, exactly as committed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    /// The record's sequence id (decimal string).
    pub id: String,
    pub time: String,
    pub observed_time: String,
    pub severity_text: String,
    pub severity_number: i16,
    pub body: String,
    pub attributes: Map<String, Value>,
    pub resource: Map<String, Value>,
    pub scope: Scope,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub flags: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scope {
    pub name: String,
    pub version: String,
}

impl From<StoredLog> for Hit {
    fn from(stored: StoredLog) -> Hit {
        let r = stored.record;
        Hit {
            id: stored.seq.to_string(),
            time: rfc3339(&r.time),
            observed_time: rfc3339(&r.observed_time),
            severity_text: r.severity_text,
            severity_number: r.severity_number,
            body: r.body,
            attributes: r.attributes,
            resource: std::sync::Arc::unwrap_or_clone(r.resource),
            scope: Scope {
                name: r.scope_name,
                version: r.scope_version,
            },
            trace_id: r.trace_id,
            span_id: r.span_id,
            flags: r.flags,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub total: u64,
    pub took_ms: u64,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<SearchResult> for SearchResponse {
    fn from(result: SearchResult) -> SearchResponse {
        SearchResponse {
            hits: result.events.into_iter().map(Hit::from).collect(),
            total: result.total,
            took_ms: result.took.as_millis() as u64,
            next_cursor: result.next_cursor.map(|c| c.encode()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: String,
    pub end: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistogramResponse {
    pub buckets: Vec<Bucket>,
    pub total: u64,
    pub interval_ms: i64,
    pub took_ms: u64,
}

impl From<HistogramResult> for HistogramResponse {
    fn from(result: HistogramResult) -> HistogramResponse {
        HistogramResponse {
            buckets: result
                .buckets
                .iter()
                .map(|b| Bucket {
                    start: rfc3339(&b.start),
                    end: rfc3339(&b.end),
                    count: b.count,
                })
                .collect(),
            total: result.total,
            interval_ms: result.width.num_milliseconds(),
            took_ms: result.took.as_millis() as u64,
        }
    }
}
