//! The `log_records` table: batched COPY writes, reads by sequence, retention.
//!
//! Write path invariant: a batch is written in one transaction that first takes the
//! transaction-scoped advisory lock [`INGEST_LOCK`]. Sequence ids come from the
//! column default (`nextval('log_seq')`) while the lock is held, so across every
//! process sharing the database, sequence order equals commit order. Followers (the
//! index, match rules) can therefore read `seq > checkpoint` and never skip a row that
//! commits later with a smaller id.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use model::{LogRecord, StoredLog, TenantId};
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Db, Result, StorageError};

/// Advisory lock key serialising ingest commits ("palisade" in ASCII, truncated).
pub const INGEST_LOCK: i64 = 0x7061_6c69_7361_6465;

/// The inclusive range of sequence ids a batch received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub first: i64,
    pub last: i64,
}

#[derive(Debug)]
pub struct LogStore {
    db: Db,
    /// Partitions known to exist, so the hot path skips the catalogue query.
    known_partitions: Mutex<HashSet<NaiveDate>>,
}

const COLUMNS: &str = "tenant_id, time, observed_time, severity_number, severity_text, body, \
                       attributes, resource, scope_name, scope_version, trace_id, span_id, flags";

/// The statement of [`LogStore::fetch_by_seqs`] (`$1` tenant, `$2` ids, `$3`/`$4` the
/// inclusive time range when `time_range`): ids first, tenant after — see there.
pub fn by_seqs_sql(time_range: bool) -> String {
    let range = if time_range {
        " AND time >= $3 AND time <= $4"
    } else {
        ""
    };
    format!(
        "WITH r AS MATERIALIZED (SELECT seq, {COLUMNS} FROM log_records WHERE seq = ANY($2){range}) \
         SELECT seq, {COLUMNS} FROM r WHERE tenant_id = $1"
    )
}

fn partition_name(day: NaiveDate) -> String {
    format!(
        "log_records_p{:04}{:02}{:02}",
        day.year(),
        day.month(),
        day.day()
    )
}

fn parse_partition_name(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("log_records_p")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Escape a value for COPY's text format.
fn push_text(buf: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            // Postgres text cannot hold NUL; ingest already replaces it, this is a guard.
            '\0' => buf.push('\u{FFFD}'),
            other => buf.push(other),
        }
    }
}

fn push_time(buf: &mut String, time: &DateTime<Utc>) {
    let _ = write!(buf, "{}", time.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

fn push_json(buf: &mut String, map: &Map<String, Value>) {
    let text = serde_json::to_string(map).expect("a JSON map always serialises");
    push_text(buf, &text);
}

fn encode_row(buf: &mut String, r: &LogRecord) {
    let _ = write!(buf, "{}\t", r.tenant_id);
    push_time(buf, &r.time);
    buf.push('\t');
    push_time(buf, &r.observed_time);
    let _ = write!(buf, "\t{}\t", r.severity_number);
    push_text(buf, &r.severity_text);
    buf.push('\t');
    push_text(buf, &r.body);
    buf.push('\t');
    push_json(buf, &r.attributes);
    buf.push('\t');
    push_json(buf, &r.resource);
    buf.push('\t');
    push_text(buf, &r.scope_name);
    buf.push('\t');
    push_text(buf, &r.scope_version);
    buf.push('\t');
    match &r.trace_id {
        Some(id) => push_text(buf, id),
        None => buf.push_str("\\N"),
    }
    buf.push('\t');
    match &r.span_id {
        Some(id) => push_text(buf, id),
        None => buf.push_str("\\N"),
    }
    let _ = writeln!(buf, "\t{}", r.flags as i32);
}

/// Encode records as a COPY text-format payload (also used by the COPY baseline
/// benchmark, so both measure the same bytes).
pub fn encode_copy(records: &[LogRecord]) -> String {
    let mut buf = String::with_capacity(records.len() * 256);
    for record in records {
        encode_row(&mut buf, record);
    }
    buf
}

/// The COPY statement matching [`encode_copy`].
pub fn copy_statement() -> String {
    format!("COPY log_records ({COLUMNS}) FROM STDIN")
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

fn decode_row(row: &PgRow) -> Result<StoredLog> {
    let json_map = |name: &str| -> Result<Map<String, Value>> {
        match row.try_get::<Value, _>(name)? {
            Value::Object(map) => Ok(map),
            _ => Ok(Map::new()),
        }
    };
    Ok(StoredLog {
        seq: row.try_get("seq")?,
        record: LogRecord {
            tenant_id: TenantId(row.try_get("tenant_id")?),
            time: row.try_get("time")?,
            observed_time: row.try_get("observed_time")?,
            severity_number: row.try_get("severity_number")?,
            severity_text: row.try_get("severity_text")?,
            body: row.try_get("body")?,
            attributes: json_map("attributes")?,
            resource: json_map("resource")?.into(),
            scope_name: row.try_get("scope_name")?,
            scope_version: row.try_get("scope_version")?,
            trace_id: row.try_get("trace_id")?,
            span_id: row.try_get("span_id")?,
            flags: row.try_get::<i32, _>("flags")? as u32,
        },
    })
}

impl LogStore {
    pub fn new(db: Db) -> LogStore {
        LogStore {
            db,
            known_partitions: Mutex::new(HashSet::new()),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Create the daily partitions covering `days` when missing. DDL runs outside the
    /// ingest transaction so it never holds the parent's lock across a COPY.
    pub async fn ensure_partitions(&self, days: impl IntoIterator<Item = NaiveDate>) -> Result<()> {
        let missing: Vec<NaiveDate> = {
            let known = self
                .known_partitions
                .lock()
                .expect("partition cache poisoned");
            let mut days: Vec<NaiveDate> =
                days.into_iter().filter(|d| !known.contains(d)).collect();
            days.sort();
            days.dedup();
            days
        };
        for day in missing {
            let next = day + Duration::days(1);
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF log_records \
                 FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
                partition_name(day),
                day,
                next
            );
            crate::pg::create_partition(&self.db, sql).await?;
            self.known_partitions
                .lock()
                .expect("partition cache poisoned")
                .insert(day);
        }
        Ok(())
    }

    /// Durably write a batch. Returns the sequence ids assigned, in input order.
    /// When this returns `Ok`, the rows are committed.
    ///
    /// Kubernetes audit lines are marked against their request's earlier lines and
    /// the pod IP inventory (see [`crate::requests`]) inside the same transaction, so
    /// `records` may change.
    pub async fn insert_batch(&self, records: &mut [LogRecord]) -> Result<SeqRange> {
        if records.is_empty() {
            return Err(StorageError::Invalid("empty batch".into()));
        }
        // Partitions are named by date: a time outside years 1..9999 has no partition
        // (and Postgres stores no timestamp before 4713 BC). Ingest's time window keeps
        // such records out; this guard keeps one from failing a whole group commit.
        if let Some((i, r)) = records
            .iter()
            .enumerate()
            .find(|(_, r)| !(1..=9999).contains(&r.time.year()))
        {
            return Err(StorageError::Invalid(format!(
                "record {i}: time {} is outside years 1..9999",
                r.time.to_rfc3339()
            )));
        }
        self.ensure_partitions(records.iter().map(|r| r.time.date_naive()))
            .await?;
        let has_audit = crate::requests::needs_enrichment(records);
        // Encode outside the lock unless the marks must be read under it.
        let mut payload = if has_audit {
            String::new()
        } else {
            encode_copy(records)
        };

        let mut tx = self.db.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INGEST_LOCK)
            .execute(&mut *tx)
            .await?;
        if has_audit {
            crate::requests::enrich_batch(&mut tx, records).await?;
            payload = encode_copy(records);
        }
        let mut copy = tx.copy_in_raw(&copy_statement()).await?;
        copy.send(payload.as_bytes()).await?;
        let rows = copy.finish().await?;
        let last: i64 = sqlx::query_scalar("SELECT currval('log_seq')")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if rows != records.len() as u64 {
            return Err(StorageError::Internal(format!(
                "copy wrote {rows} rows for {} records",
                records.len()
            )));
        }
        Ok(SeqRange {
            first: last - rows as i64 + 1,
            last,
        })
    }

    /// Committed records with `seq > after`, in sequence order, at most `limit`.
    pub async fn fetch_after(&self, after: i64, limit: i64) -> Result<Vec<StoredLog>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, {COLUMNS} FROM log_records WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    /// Records of one tenant by sequence id; `time_range` (inclusive) prunes partitions.
    ///
    /// The ids are looked up first and the tenant filtered after (a materialised CTE):
    /// given `tenant_id = $1` in the same scan, a planner without fresh statistics (a
    /// new day's partition) ANDs the `(tenant_id, time)` index, reading every row of the
    /// tenant — milliseconds per call at 200,000 rows, growing with the table.
    pub async fn fetch_by_seqs(
        &self,
        tenant: TenantId,
        seqs: &[i64],
        time_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<StoredLog>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let sql = by_seqs_sql(time_range.is_some());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(seqs);
        if let Some((from, to)) = time_range {
            query = query.bind(from).bind(to);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter().map(decode_row).collect()
    }

    /// The highest committed sequence id (0 when empty).
    pub async fn max_seq(&self) -> Result<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM log_records")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }

    /// Number of stored records of a tenant (for tests and operations).
    pub async fn count(&self, tenant: Option<TenantId>) -> Result<i64> {
        let count: i64 = match tenant {
            Some(t) => {
                sqlx::query_scalar("SELECT count(*) FROM log_records WHERE tenant_id = $1")
                    .bind(t.0)
                    .fetch_one(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query_scalar("SELECT count(*) FROM log_records")
                    .fetch_one(&self.db.pool)
                    .await?
            }
        };
        Ok(count)
    }

    /// Drop every daily partition that ends at or before `cutoff`. Returns the start
    /// day of each dropped partition.
    pub async fn drop_partitions_before(&self, cutoff: DateTime<Utc>) -> Result<Vec<NaiveDate>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'log_records'",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut dropped = Vec::new();
        for name in names {
            let Some(day) = parse_partition_name(&name) else {
                continue;
            };
            if day_start(day + Duration::days(1)) <= cutoff {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS {}",
                    partition_name(day)
                )))
                .execute(&self.db.pool)
                .await?;
                self.known_partitions
                    .lock()
                    .expect("partition cache poisoned")
                    .remove(&day);
                dropped.push(day);
            }
        }
        dropped.sort();
        let mut conn = self.db.pool.acquire().await?;
        crate::requests::prune(&mut conn, cutoff).await?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        assert_eq!(partition_name(day), "log_records_p20260105");
        assert_eq!(parse_partition_name("log_records_p20260105"), Some(day));
        assert_eq!(parse_partition_name("log_records"), None);
    }

    #[test]
    fn copy_text_escapes_control_characters() {
        let mut buf = String::new();
        push_text(&mut buf, "a\tb\nc\\d\re\0");
        assert_eq!(buf, "a\\tb\\nc\\\\d\\re\u{FFFD}");
    }
}
