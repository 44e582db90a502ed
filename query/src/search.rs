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
use model::StoredLog;
use model::TenantId;
pub use storage::index::Order;
use storage::index::{LogIndex, SearchCursor, TimeRangeMicros, bucket_width};

use crate::ast::Expr;
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
    pub sort: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct HistogramParams {
    pub q: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub buckets: Option<String>,
}

/// An inclusive time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    fn micros(self) -> TimeRangeMicros {
        TimeRangeMicros {
            from: self.from.timestamp_micros(),
            to: self.to.timestamp_micros(),
        }
    }
}

/// Where the next page starts: opaque to clients (base64 of time, sequence id and
/// order), so a cursor is only ever used with the order it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    position: SearchCursor,
    order: Order,
}

impl Cursor {
    /// The position right after the event at `time` (micros) with sequence id `seq`,
    /// for callers that page a merged stream (incident timelines).
    pub fn after(time: i64, seq: i64, order: Order) -> Cursor {
        Cursor {
            position: SearchCursor { time, seq },
            order,
        }
    }

    pub fn encode(&self) -> String {
        let order = match self.order {
            Order::Newest => "",
            Order::Oldest => ":o",
        };
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}{order}",
            self.position.time, self.position.seq
        ))
    }

    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let invalid = || QueryError::InvalidParam {
            field: "cursor",
            message: "not a cursor returned by this API".into(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split(':');
        let time = parts
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(invalid)?;
        let seq = parts
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(invalid)?;
        let order = match parts.next() {
            None => Order::Newest,
            Some("o") => Order::Oldest,
            Some(_) => return Err(invalid()),
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Cursor {
            position: SearchCursor { time, seq },
            order,
        })
    }
}

/// A search, typed: what the API, the rule runtime, backtests, incident timelines and
/// the UI ask. The tenant always comes from the authenticated principal.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub tenant: TenantId,
    pub query: Expr,
    pub range: TimeRange,
    /// At most this many events (1..=[`MAX_LIMIT`] for the API; larger for internal
    /// callers such as the rule runtime).
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub order: Order,
}

/// The events of one page, in the requested order, exactly as stored in Postgres.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub events: Vec<StoredLog>,
    /// Every match in the range, not only this page.
    pub total: u64,
    /// Present when the page is full: the next page starts after it.
    pub next_cursor: Option<Cursor>,
    pub took: std::time::Duration,
}

/// Counts per equal-width time bucket.
#[derive(Debug, Clone)]
pub struct HistogramRequest {
    pub tenant: TenantId,
    pub query: Expr,
    pub range: TimeRange,
    pub buckets: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BucketCount {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct HistogramResult {
    pub buckets: Vec<BucketCount>,
    pub total: u64,
    pub width: Duration,
    pub took: std::time::Duration,
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

/// Resolve `from`/`to` into an inclusive range. `to` defaults to `default_to`.
fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    default_to: DateTime<Utc>,
) -> Result<TimeRange, QueryError> {
    let from = parse_time(from.unwrap_or(DEFAULT_LOOKBACK), now, "from")?;
    let to = match to {
        Some(text) => parse_time(text, now, "to")?,
        None => default_to,
    };
    if from > to {
        return Err(QueryError::InvalidParam {
            field: "from",
            message: format!("from ({}) is after to ({})", rfc3339(&from), rfc3339(&to)),
        });
    }
    Ok(TimeRange { from, to })
}

impl SearchParams {
    /// The typed request these API parameters ask for. `to` defaults to now plus one
    /// day, so records stamped slightly in the future by skewed clocks are found.
    pub fn resolve(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<SearchRequest, QueryError> {
        let range = time_range(
            self.from.as_deref(),
            self.to.as_deref(),
            now,
            now + Duration::days(1),
        )?;
        let limit = parse_count(self.limit.as_deref(), "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
        let order = match self.sort.as_deref().map(str::trim) {
            None | Some("") | Some("newest") => Order::Newest,
            Some("oldest") => Order::Oldest,
            Some(other) => {
                return Err(QueryError::InvalidParam {
                    field: "sort",
                    message: format!("expected newest or oldest, got {other:?}"),
                });
            }
        };
        let cursor = self.cursor.as_deref().map(Cursor::decode).transpose()?;
        if let Some(c) = cursor
            && c.order != order
        {
            return Err(QueryError::InvalidParam {
                field: "cursor",
                message: "this cursor belongs to a search with another sort".into(),
            });
        }
        Ok(SearchRequest {
            tenant,
            query: parse(self.q.as_deref().unwrap_or(""))?,
            range,
            limit,
            cursor,
            order,
        })
    }
}

impl HistogramParams {
    /// The typed request these API parameters ask for (`to` defaults to now).
    pub fn resolve(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<HistogramRequest, QueryError> {
        Ok(HistogramRequest {
            tenant,
            query: parse(self.q.as_deref().unwrap_or(""))?,
            range: time_range(self.from.as_deref(), self.to.as_deref(), now, now)?,
            buckets: parse_count(
                self.buckets.as_deref(),
                "buckets",
                DEFAULT_BUCKETS,
                MAX_BUCKETS,
            )?,
        })
    }
}

/// Rows fetched from Postgres per round trip.
const FETCH_CHUNK: usize = 5_000;

impl SearchService {
    pub fn new(index: Arc<LogIndex>, logs: Arc<LogStore>) -> SearchService {
        SearchService { index, logs }
    }

    /// Run a typed search: the index picks the page, Postgres supplies the rows.
    pub async fn run(&self, request: &SearchRequest) -> Result<SearchResult, QueryError> {
        let started = Instant::now();
        let compiled = Compiler::new(&self.index).compile(&request.query)?;
        let index = self.index.clone();
        let (tenant, range, limit, order) = (
            request.tenant,
            request.range.micros(),
            request.limit,
            request.order,
        );
        let position = request.cursor.map(|c| c.position);
        let page =
            blocking(move || index.search(tenant, compiled, range, position, limit, order)).await?;
        let mut by_seq = HashMap::with_capacity(page.hits.len());
        for chunk in page.hits.chunks(FETCH_CHUNK) {
            let seqs: Vec<i64> = chunk.iter().map(|h| h.seq).collect();
            let window = chunk
                .iter()
                .map(|h| h.time)
                .fold(None, |acc: Option<(i64, i64)>, t| {
                    Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
                })
                .map(|(lo, hi)| (micros_to_time(lo), micros_to_time(hi)));
            for row in self.logs.fetch_by_seqs(tenant, &seqs, window).await? {
                by_seq.insert(row.seq, row);
            }
        }
        let events: Vec<StoredLog> = page
            .hits
            .iter()
            .filter_map(|h| by_seq.remove(&h.seq))
            .collect();
        let next_cursor = (page.hits.len() == limit)
            .then(|| page.hits.last().map(|&position| Cursor { position, order }))
            .flatten();
        Ok(SearchResult {
            events,
            total: page.total,
            next_cursor,
            took: started.elapsed(),
        })
    }

    /// Counts per equal-width time bucket for the same query language.
    pub async fn histogram(
        &self,
        request: &HistogramRequest,
    ) -> Result<HistogramResult, QueryError> {
        let started = Instant::now();
        let compiled = Compiler::new(&self.index).compile(&request.query)?;
        let index = self.index.clone();
        let (tenant, range, buckets) = (request.tenant, request.range.micros(), request.buckets);
        let counts = blocking(move || index.histogram(tenant, compiled, range, buckets)).await?;
        let width = bucket_width(range, buckets);
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                let start = range.from + width * i as i64;
                BucketCount {
                    start: micros_to_time(start),
                    end: micros_to_time((start + width).min(range.to + 1)),
                    count: *count,
                }
            })
            .collect();
        Ok(HistogramResult {
            total: counts.iter().sum(),
            buckets,
            width: Duration::microseconds(width),
            took: started.elapsed(),
        })
    }
}

/// Index work is CPU-bound and synchronous: off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, storage::StorageError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueryError::Internal(format!("index task failed: {e}")))?
        .map_err(QueryError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        for order in [Order::Newest, Order::Oldest] {
            let c = Cursor {
                position: SearchCursor {
                    time: 1_700_000_000_000_000,
                    seq: 42,
                },
                order,
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for garbage in ["!!", "MQ", "MToyOng"] {
            let err = Cursor::decode(garbage).unwrap_err().to_string();
            assert!(err.contains("cursor"), "{err}");
        }
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
        let err = time_range(Some("now"), Some("now-1h"), now, now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from"), "{err}");
    }

    #[test]
    fn params_resolve_to_a_typed_request() {
        let tenant = TenantId(uuid::Uuid::nil());
        let now = Utc::now();
        let params = SearchParams {
            q: Some("body:x".into()),
            sort: Some("oldest".into()),
            ..Default::default()
        };
        let request = params.resolve(tenant, now).unwrap();
        assert_eq!(request.order, Order::Oldest);
        assert_eq!(request.limit, DEFAULT_LIMIT);
        assert_eq!(request.range.to, now + Duration::days(1));
        let bad = SearchParams {
            sort: Some("random".into()),
            ..Default::default()
        };
        assert!(
            bad.resolve(tenant, now)
                .unwrap_err()
                .to_string()
                .contains("sort")
        );
        // A cursor of one order is refused by the other.
        let cursor = Cursor {
            position: SearchCursor { time: 1, seq: 1 },
            order: Order::Newest,
        };
        let mixed = SearchParams {
            sort: Some("oldest".into()),
            cursor: Some(cursor.encode()),
            ..Default::default()
        };
        assert!(
            mixed
                .resolve(tenant, now)
                .unwrap_err()
                .to_string()
                .contains("cursor")
        );
    }
}
