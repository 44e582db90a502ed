//! Search and histogram execution.
//!
//! The index answers *which* records match (sequence ids, newest first, exact total);
//! the rows themselves come from Postgres, the system of record, so a hit always shows
//! exactly what was stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use model::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use storage::index::{LogIndex, SearchCursor, TimeRangeMicros, bucket_width};
use storage::logs::LogStore;

use crate::QueryError;
use crate::compile::Compiler;
use crate::parse::parse;
use crate::time::parse_time;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_BUCKETS: usize = 60;
pub const MAX_BUCKETS: usize = 1000;
/// Default look-back when `from` is omitted.
pub const DEFAULT_LOOKBACK: &str = "now-24h";

/// Raw request parameters, as strings, exactly as the API received them.
#[derive(Debug, Default, Clone)]
pub struct SearchParams {
    pub q: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
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

#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub total: u64,
    pub took_ms: u64,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
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

#[derive(Debug, Default, Clone)]
pub struct HistogramParams {
    pub q: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub buckets: Option<String>,
}

pub struct SearchService {
    index: Arc<LogIndex>,
    logs: Arc<LogStore>,
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn encode_cursor(c: &SearchCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.time, c.seq))
}

fn decode_cursor(text: &str) -> Result<SearchCursor, QueryError> {
    let invalid = || QueryError::InvalidParam {
        field: "cursor",
        message: "not a cursor returned by this API".into(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (time, seq) = text.split_once(':').ok_or_else(invalid)?;
    Ok(SearchCursor {
        time: time.parse().map_err(|_| invalid())?,
        seq: seq.parse().map_err(|_| invalid())?,
    })
}

fn parse_count(
    text: Option<&str>,
    field: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, QueryError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let n: usize = text.trim().parse().map_err(|_| QueryError::InvalidParam {
        field,
        message: format!("expected a whole number, got {text:?}"),
    })?;
    if n == 0 || n > max {
        return Err(QueryError::InvalidParam {
            field,
            message: format!("must be between 1 and {max}, got {n}"),
        });
    }
    Ok(n)
}

/// Resolve `from`/`to` into an inclusive microsecond range. `to` defaults to now
/// (plus one day, so records stamped slightly in the future by skewed clocks are found).
fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), QueryError> {
    let from = parse_time(from.unwrap_or(DEFAULT_LOOKBACK), now, "from")?;
    let to = match to {
        Some(text) => parse_time(text, now, "to")?,
        None => now + Duration::days(1),
    };
    if from > to {
        return Err(QueryError::InvalidParam {
            field: "from",
            message: format!("from ({}) is after to ({})", rfc3339(&from), rfc3339(&to)),
        });
    }
    Ok((from, to))
}

impl SearchService {
    pub fn new(index: Arc<LogIndex>, logs: Arc<LogStore>) -> SearchService {
        SearchService { index, logs }
    }

    fn compile(&self, q: Option<&str>) -> Result<Box<dyn tantivy::query::Query>, QueryError> {
        let expr = parse(q.unwrap_or(""))?;
        Compiler::new(&self.index).compile(&expr)
    }

    /// Run a search for `tenant`. The tenant comes from the authenticated principal.
    pub async fn search(
        &self,
        tenant: TenantId,
        params: &SearchParams,
    ) -> Result<SearchResponse, QueryError> {
        let started = Instant::now();
        let now = Utc::now();
        let (from, to) = time_range(params.from.as_deref(), params.to.as_deref(), now)?;
        let limit = parse_count(params.limit.as_deref(), "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
        let cursor = params.cursor.as_deref().map(decode_cursor).transpose()?;
        let query = self.compile(params.q.as_deref())?;
        let range = TimeRangeMicros {
            from: from.timestamp_micros(),
            to: to.timestamp_micros(),
        };

        let index = self.index.clone();
        let page = tokio_block(move || index.search(tenant, query, range, cursor, limit))?;

        let seqs: Vec<i64> = page.hits.iter().map(|h| h.seq).collect();
        let window = page
            .hits
            .iter()
            .map(|h| h.time)
            .fold(None, |acc: Option<(i64, i64)>, t| {
                Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
            })
            .map(|(lo, hi)| (micros_to_time(lo), micros_to_time(hi)));
        let rows = self.logs.fetch_by_seqs(tenant, &seqs, window).await?;
        let mut by_seq: HashMap<i64, _> = rows.into_iter().map(|r| (r.seq, r)).collect();
        let hits: Vec<Hit> = seqs
            .iter()
            .filter_map(|seq| by_seq.remove(seq))
            .map(|stored| {
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
            })
            .collect();
        let next_cursor = (page.hits.len() == limit)
            .then(|| page.hits.last().map(encode_cursor))
            .flatten();
        Ok(SearchResponse {
            hits,
            total: page.total,
            took_ms: started.elapsed().as_millis() as u64,
            next_cursor,
        })
    }

    /// Counts per equal-width time bucket for the same query language.
    pub async fn histogram(
        &self,
        tenant: TenantId,
        params: &HistogramParams,
    ) -> Result<HistogramResponse, QueryError> {
        let started = Instant::now();
        let now = Utc::now();
        let from = parse_time(
            params.from.as_deref().unwrap_or(DEFAULT_LOOKBACK),
            now,
            "from",
        )?;
        let to = match params.to.as_deref() {
            Some(text) => parse_time(text, now, "to")?,
            None => now,
        };
        let (from, to) = time_range(Some(&rfc3339(&from)), Some(&rfc3339(&to)), now)?;
        let buckets = parse_count(
            params.buckets.as_deref(),
            "buckets",
            DEFAULT_BUCKETS,
            MAX_BUCKETS,
        )?;
        let query = self.compile(params.q.as_deref())?;
        let range = TimeRangeMicros {
            from: from.timestamp_micros(),
            to: to.timestamp_micros(),
        };
        let index = self.index.clone();
        let counts = tokio_block(move || index.histogram(tenant, query, range, buckets))?;
        let width = bucket_width(range, buckets);
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                let start = range.from + width * i as i64;
                Bucket {
                    start: rfc3339(&micros_to_time(start)),
                    end: rfc3339(&micros_to_time((start + width).min(range.to + 1))),
                    count: *count,
                }
            })
            .collect();
        Ok(HistogramResponse {
            total: counts.iter().sum(),
            buckets,
            interval_ms: width / 1000,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Index searches are CPU-bound and synchronous; keep them off the async workers'
/// hot path without a blocking-pool round trip for tiny queries.
fn tokio_block<T>(f: impl FnOnce() -> Result<T, storage::StorageError>) -> Result<T, QueryError> {
    tokio::task::block_in_place(f).map_err(QueryError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = SearchCursor {
            time: 1_700_000_000_000_000,
            seq: 42,
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        let err = decode_cursor("!!").unwrap_err().to_string();
        assert!(err.contains("cursor"), "{err}");
    }

    #[test]
    fn limits_are_validated() {
        assert_eq!(parse_count(None, "limit", 100, 1000).unwrap(), 100);
        assert!(
            parse_count(Some("0"), "limit", 100, 1000)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        assert!(parse_count(Some("abc"), "limit", 100, 1000).is_err());
        assert!(parse_count(Some("1001"), "limit", 100, 1000).is_err());
    }

    #[test]
    fn from_after_to_is_rejected() {
        let now = Utc::now();
        let err = time_range(Some("now"), Some("now-1h"), now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from"), "{err}");
    }
}
