//! Metric series and samples in Postgres (migration 0012): idempotent series upserts
//! cached per process, chunk rows per series and hour, a compactor that merges a
//! bucket's rows into one chunk, loads for PromQL, label listings, retention.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use metrics::Labels;
use metrics::chunk;
use metrics::convert::{Exemplar, SeriesPoints};
use metrics::promql::{Fetch, Series};
use model::TenantId;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Db, Result, StorageError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Series ids remembered per process (a map cleared when full).
const SERIES_CACHE: usize = 1_000_000;
/// How far back the compactor looks (so a pass reads recent partitions only, not
/// the whole retention). Rows that arrive later than this stay unmerged; queries
/// read them all the same.
pub const COMPACT_WINDOW_MS: i64 = 6 * HOUR_MS;
/// A bucket's rows are merged when its hour is over or it holds this many rows.
pub const COMPACT_ROWS: i64 = 16;

/// Limits of one PromQL load.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    pub max_series: usize,
    pub max_samples: usize,
}

impl Default for LoadLimits {
    fn default() -> LoadLimits {
        LoadLimits {
            max_series: 100_000,
            max_samples: 50_000_000,
        }
    }
}

#[derive(Clone)]
pub struct MetricStore {
    db: Db,
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    series: Mutex<HashMap<(TenantId, [u8; 16]), i64>>,
    partitions: Mutex<HashSet<i64>>,
    /// Label sets by series id (a series' labels never change; ids are not reused).
    labels: Mutex<HashMap<i64, std::sync::Arc<Labels>>>,
}

/// The canonical hash of a label set.
pub fn series_hash(labels: &Labels) -> [u8; 16] {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn partition_name(day: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_else(|| format!("d{day}"));
    format!("metric_samples_p{date}")
}

/// A stored exemplar.
#[derive(Debug, Clone)]
pub struct StoredExemplar {
    pub time_ms: i64,
    pub value: f64,
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Labels,
}

/// A compaction bucket's tenant and decoded samples.
type Bucket = (uuid::Uuid, Vec<(i64, f64)>);

/// What one write stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub series: usize,
    pub points: usize,
    pub new_series: usize,
}

impl MetricStore {
    pub fn new(db: Db) -> MetricStore {
        MetricStore {
            db,
            inner: std::sync::Arc::new(Inner {
                series: Mutex::new(HashMap::new()),
                partitions: Mutex::new(HashSet::new()),
                labels: Mutex::new(HashMap::new()),
            }),
        }
    }

    async fn ensure_partitions(&self, days: impl IntoIterator<Item = i64>) -> Result<()> {
        let missing: Vec<i64> = {
            let known = self.inner.partitions.lock().expect("partition cache");
            let mut d: Vec<i64> = days.into_iter().filter(|d| !known.contains(d)).collect();
            d.sort();
            d.dedup();
            d
        };
        for day in missing {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF metric_samples FOR VALUES FROM ({}) TO ({})",
                partition_name(day),
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            crate::pg::create_partition(&self.db, sql).await?;
            self.inner
                .partitions
                .lock()
                .expect("partition cache")
                .insert(day);
        }
        Ok(())
    }

    /// Store converted series durably: when this returns `Ok`, the points are
    /// committed. Delta series become running totals under a row lock.
    pub async fn write(
        &self,
        tenant: TenantId,
        series: &[SeriesPoints],
        exemplars: &[Exemplar],
    ) -> Result<Written> {
        let mut written = Written::default();
        if series.is_empty() {
            return Ok(written);
        }
        let hashes: Vec<[u8; 16]> = series.iter().map(|s| series_hash(&s.labels)).collect();
        let mut days = Vec::new();
        for s in series {
            for p in &s.points {
                days.push(p.0.div_euclid(DAY_MS));
            }
        }
        self.ensure_partitions(days).await?;
        let mut tx = self.db.pool.begin().await?;
        // Series ids: from the cache, else upsert the unknown ones.
        let mut ids: HashMap<[u8; 16], i64> = HashMap::new();
        {
            let cache = self.inner.series.lock().expect("series cache");
            for h in &hashes {
                if let Some(id) = cache.get(&(tenant, *h)) {
                    ids.insert(*h, *id);
                }
            }
        }
        let unknown: Vec<usize> = (0..series.len())
            .filter(|i| !ids.contains_key(&hashes[*i]))
            .collect();
        if !unknown.is_empty() {
            let mut seen = HashSet::new();
            let (mut names, mut labels, mut hs) = (Vec::new(), Vec::new(), Vec::new());
            for &i in &unknown {
                if !seen.insert(hashes[i]) {
                    continue;
                }
                names.push(
                    series[i]
                        .labels
                        .get("__name__")
                        .cloned()
                        .unwrap_or_default(),
                );
                labels.push(serde_json::to_value(&series[i].labels).unwrap_or_default());
                hs.push(hashes[i].to_vec());
            }
            let inserted = sqlx::query(
                "INSERT INTO metric_series (tenant_id, name, labels, hash) \
                 SELECT $1, * FROM unnest($2::text[], $3::jsonb[], $4::bytea[]) \
                 ON CONFLICT (tenant_id, hash) DO NOTHING",
            )
            .bind(tenant.0)
            .bind(&names)
            .bind(&labels)
            .bind(&hs)
            .execute(&mut *tx)
            .await?;
            written.new_series = inserted.rows_affected() as usize;
            let rows = sqlx::query(
                "SELECT id, hash FROM metric_series WHERE tenant_id = $1 AND hash = ANY($2)",
            )
            .bind(tenant.0)
            .bind(&hs)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let hash: Vec<u8> = row.try_get("hash")?;
                let mut h = [0u8; 16];
                h.copy_from_slice(&hash[..16.min(hash.len())]);
                ids.insert(h, row.try_get("id")?);
            }
        }
        // Delta series: lock their rows (in id order, so writers cannot deadlock) and
        // turn increments into running totals.
        let mut delta_ids: Vec<i64> = series
            .iter()
            .zip(&hashes)
            .filter(|(s, _)| s.delta)
            .filter_map(|(_, h)| ids.get(h).copied())
            .collect();
        delta_ids.sort();
        delta_ids.dedup();
        let mut totals: HashMap<i64, f64> = HashMap::new();
        if !delta_ids.is_empty() {
            let rows = sqlx::query(
                "SELECT id, running_total FROM metric_series WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(&delta_ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                totals.insert(row.try_get("id")?, row.try_get("running_total")?);
            }
        }
        // One chunk row per series and hour bucket.
        let (mut sids, mut mins, mut maxs, mut ns, mut datas) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (s, h) in series.iter().zip(&hashes) {
            let Some(&id) = ids.get(h) else {
                return Err(StorageError::Internal(
                    "series id missing after upsert".into(),
                ));
            };
            let mut points = s.points.clone();
            if s.delta {
                // Increments in time order; a staleness marker passes through.
                points.sort_by_key(|p| p.0);
                let total = totals.entry(id).or_insert(0.0);
                for p in points.iter_mut() {
                    if !chunk::is_stale(p.1) && p.1.is_finite() {
                        *total += p.1;
                        p.1 = *total;
                    }
                }
            }
            chunk::normalise(&mut points);
            written.points += points.len();
            written.series += 1;
            let mut start = 0;
            while start < points.len() {
                let bucket = points[start].0.div_euclid(HOUR_MS);
                let mut end = start;
                while end < points.len() && points[end].0.div_euclid(HOUR_MS) == bucket {
                    end += 1;
                }
                let part = &points[start..end];
                sids.push(id);
                mins.push(part[0].0);
                maxs.push(part[part.len() - 1].0);
                ns.push(part.len() as i32);
                datas.push(chunk::encode(part));
                start = end;
            }
        }
        sqlx::query(
            "INSERT INTO metric_samples (tenant_id, series_id, min_ms, max_ms, n, data) \
             SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::bytea[])",
        )
        .bind(tenant.0)
        .bind(&sids)
        .bind(&mins)
        .bind(&maxs)
        .bind(&ns)
        .bind(&datas)
        .execute(&mut *tx)
        .await?;
        if !totals.is_empty() {
            let (tid, tv): (Vec<i64>, Vec<f64>) = totals.into_iter().unzip();
            sqlx::query(
                "UPDATE metric_series s SET running_total = u.v \
                 FROM unnest($1::int8[], $2::float8[]) AS u(id, v) WHERE s.id = u.id",
            )
            .bind(&tid)
            .bind(&tv)
            .execute(&mut *tx)
            .await?;
        }
        if !exemplars.is_empty() {
            let mut e_ids = Vec::new();
            let (mut t, mut v, mut tr, mut sp, mut at) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for e in exemplars {
                let Some(&id) = ids.get(&series_hash(&e.series)) else {
                    continue;
                };
                e_ids.push(id);
                t.push(e.time_ms);
                v.push(e.value);
                tr.push(e.trace_id.clone());
                sp.push(e.span_id.clone());
                at.push(serde_json::to_value(&e.attributes).unwrap_or_default());
            }
            sqlx::query(
                "INSERT INTO metric_exemplars (tenant_id, series_id, time_ms, value, trace_id, span_id, attributes) \
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::float8[], $5::text[], $6::text[], $7::jsonb[])",
            )
            .bind(tenant.0)
            .bind(&e_ids)
            .bind(&t)
            .bind(&v)
            .bind(&tr)
            .bind(&sp)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut cache = self.inner.series.lock().expect("series cache");
        if cache.len() + ids.len() > SERIES_CACHE {
            cache.clear();
        }
        for (h, id) in ids {
            cache.insert((tenant, h), id);
        }
        Ok(written)
    }

    /// Series of `tenant` matching a fetch's matchers (labels only), at most `max`.
    /// Reads ids from Postgres and label sets from the per-process cache, fetching
    /// only those it has not seen.
    async fn matching_series(
        &self,
        tenant: TenantId,
        fetch: &Fetch,
        max: usize,
    ) -> Result<Vec<(i64, std::sync::Arc<Labels>)>> {
        let ids: Vec<i64> =
            match fetch.names() {
                Some(names) => sqlx::query_scalar(
                    "SELECT id FROM metric_series WHERE tenant_id = $1 AND name = ANY($2) LIMIT $3",
                )
                .bind(tenant.0)
                .bind(&names)
                .bind(max as i64 * 4 + 1)
                .fetch_all(&self.db.pool)
                .await?,
                None => {
                    sqlx::query_scalar("SELECT id FROM metric_series WHERE tenant_id = $1 LIMIT $2")
                        .bind(tenant.0)
                        .bind(max as i64 * 4 + 1)
                        .fetch_all(&self.db.pool)
                        .await?
                }
            };
        if ids.len() > max * 4 {
            return Err(StorageError::Invalid(format!(
                "the selector {} would scan more than {} series; narrow it",
                fetch.key,
                max * 4
            )));
        }
        let mut known: Vec<(i64, std::sync::Arc<Labels>)> = Vec::with_capacity(ids.len());
        let mut unknown: Vec<i64> = Vec::new();
        {
            let cache = self.inner.labels.lock().expect("label cache");
            for id in ids {
                match cache.get(&id) {
                    Some(l) => known.push((id, l.clone())),
                    None => unknown.push(id),
                }
            }
        }
        if !unknown.is_empty() {
            let rows = sqlx::query("SELECT id, labels FROM metric_series WHERE id = ANY($1)")
                .bind(&unknown)
                .fetch_all(&self.db.pool)
                .await?;
            let mut fetched = Vec::with_capacity(rows.len());
            for row in rows {
                let labels: serde_json::Value = row.try_get("labels")?;
                let labels: Labels = serde_json::from_value(labels).unwrap_or_default();
                fetched.push((row.try_get::<i64, _>("id")?, std::sync::Arc::new(labels)));
            }
            let mut cache = self.inner.labels.lock().expect("label cache");
            if cache.len() + fetched.len() > SERIES_CACHE {
                cache.clear();
            }
            for (id, l) in &fetched {
                cache.insert(*id, l.clone());
            }
            known.extend(fetched);
        }
        let mut out = Vec::new();
        for (id, labels) in known {
            if fetch.matches(&labels) {
                out.push((id, labels));
                if out.len() > max {
                    return Err(StorageError::Invalid(format!(
                        "the selector {} matches more than {max} series; narrow it",
                        fetch.key
                    )));
                }
            }
        }
        out.sort_by_key(|s| s.0);
        Ok(out)
    }

    /// Load what a PromQL fetch needs: matching series with their samples in
    /// `[from, to]`, sorted, the last write of a timestamp winning.
    pub async fn load(
        &self,
        tenant: TenantId,
        fetch: &Fetch,
        limits: LoadLimits,
    ) -> Result<Vec<Series>> {
        let series = self
            .matching_series(tenant, fetch, limits.max_series)
            .await?;
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = series.iter().map(|s| s.0).collect();
        let rows = sqlx::query(
            "SELECT series_id, data FROM metric_samples \
             WHERE tenant_id = $1 AND series_id = ANY($2) AND min_ms >= $3 AND min_ms <= $4 AND max_ms >= $5",
        )
        .bind(tenant.0)
        .bind(&ids)
        .bind(fetch.from - HOUR_MS)
        .bind(fetch.to)
        .bind(fetch.from)
        .fetch_all(&self.db.pool)
        .await?;
        let mut samples: HashMap<i64, (Vec<(i64, f64)>, usize)> = HashMap::new();
        let mut total = 0usize;
        for row in rows {
            let id: i64 = row.try_get("series_id")?;
            let data: Vec<u8> = row.try_get("data")?;
            let entry = samples.entry(id).or_default();
            let before = entry.0.len();
            chunk::decode_into(&data, &mut entry.0).map_err(StorageError::Internal)?;
            entry.1 += 1;
            total += entry.0.len() - before;
            if total > limits.max_samples {
                return Err(StorageError::Invalid(format!(
                    "the query would load more than {} samples; narrow it",
                    limits.max_samples
                )));
            }
        }
        let mut out = Vec::with_capacity(series.len());
        for (id, labels) in series {
            let Some((mut points, rows)) = samples.remove(&id) else {
                continue;
            };
            if rows > 1 || points.windows(2).any(|w| w[1].0 <= w[0].0) {
                chunk::normalise(&mut points);
            }
            points.retain(|p| p.0 >= fetch.from && p.0 <= fetch.to);
            if !points.is_empty() {
                out.push(Series {
                    labels,
                    samples: points,
                });
            }
        }
        Ok(out)
    }

    /// Label sets of series matching any of `fetches` (all series when empty) with
    /// samples in `[from, to]`, at most `max`.
    pub async fn series(
        &self,
        tenant: TenantId,
        fetches: &[Fetch],
        from: i64,
        to: i64,
        max: usize,
    ) -> Result<Vec<Labels>> {
        let mut found: BTreeMap<i64, std::sync::Arc<Labels>> = BTreeMap::new();
        let all = Fetch {
            key: "{}".into(),
            groups: vec![vec![]],
            from,
            to,
        };
        let list: Vec<&Fetch> = if fetches.is_empty() {
            vec![&all]
        } else {
            fetches.iter().collect()
        };
        for f in list {
            for (id, labels) in self.matching_series(tenant, f, max).await? {
                found.insert(id, labels);
            }
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = found.keys().copied().collect();
        let live: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT series_id FROM metric_samples \
             WHERE tenant_id = $1 AND series_id = ANY($2) AND min_ms >= $3 AND min_ms <= $4 AND max_ms >= $5",
        )
        .bind(tenant.0)
        .bind(&ids)
        .bind(from - HOUR_MS)
        .bind(to)
        .bind(from)
        .fetch_all(&self.db.pool)
        .await?;
        let live: HashSet<i64> = live.into_iter().collect();
        let mut out: Vec<Labels> = found
            .into_iter()
            .filter(|(id, _)| live.contains(id))
            .map(|(_, l)| (*l).clone())
            .collect();
        out.sort();
        out.truncate(max);
        Ok(out)
    }

    /// Merge each (series, hour) bucket's rows into one chunk: buckets whose hour
    /// ended before `now_ms` with more than one row, and buckets with at least
    /// [`COMPACT_ROWS`] rows, among rows of the last [`COMPACT_WINDOW_MS`]. Returns
    /// the rows removed. Bounded work per call (5,000 buckets).
    pub async fn compact(&self, now_ms: i64) -> Result<u64> {
        let mut tx = self.db.pool.begin().await?;
        let rows = sqlx::query(
            "WITH groups AS ( \
               SELECT series_id, min_ms / 3600000 AS bucket FROM metric_samples \
               WHERE min_ms >= $3 \
               GROUP BY 1, 2 \
               HAVING count(*) >= $2 OR (count(*) > 1 AND (min_ms / 3600000 + 1) * 3600000 <= $1) \
               LIMIT 5000) \
             DELETE FROM metric_samples s USING groups g \
             WHERE s.series_id = g.series_id AND s.min_ms >= g.bucket * 3600000 AND s.min_ms < (g.bucket + 1) * 3600000 \
             RETURNING s.tenant_id, s.series_id, s.min_ms, s.data",
        )
        .bind(now_ms)
        .bind(COMPACT_ROWS)
        .bind(now_ms - COMPACT_WINDOW_MS)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let removed = rows.len() as u64;
        let mut merged: BTreeMap<(i64, i64), Bucket> = BTreeMap::new();
        let mut ordered: Vec<(i64, i64, i64, uuid::Uuid, Vec<u8>)> = Vec::with_capacity(rows.len());
        for row in rows {
            ordered.push((
                row.try_get("series_id")?,
                row.try_get::<i64, _>("min_ms")?.div_euclid(HOUR_MS),
                row.try_get("min_ms")?,
                row.try_get("tenant_id")?,
                row.try_get("data")?,
            ));
        }
        // Write order is unknown after the delete; rows of one timestamp keep the
        // value of the row that started later (a re-sent point overwrites).
        ordered.sort_by_key(|r| (r.0, r.1, r.2));
        for (sid, bucket, _, tenant, data) in ordered {
            let entry = merged.entry((sid, bucket)).or_insert((tenant, Vec::new()));
            chunk::decode_into(&data, &mut entry.1).map_err(StorageError::Internal)?;
        }
        let (mut tids, mut sids, mut mins, mut maxs, mut ns, mut datas) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((sid, _), (tenant, mut points)) in merged {
            chunk::normalise(&mut points);
            tids.push(tenant);
            sids.push(sid);
            mins.push(points[0].0);
            maxs.push(points[points.len() - 1].0);
            ns.push(points.len() as i32);
            datas.push(chunk::encode(&points));
        }
        sqlx::query(
            "INSERT INTO metric_samples (tenant_id, series_id, min_ms, max_ms, n, data) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::bytea[])",
        )
        .bind(&tids)
        .bind(&sids)
        .bind(&mins)
        .bind(&maxs)
        .bind(&ns)
        .bind(&datas)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Drop every daily samples partition that ends at or before `cutoff_ms`, and
    /// exemplars older than it. Returns the partitions dropped.
    pub async fn drop_before(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metric_samples'",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut dropped = Vec::new();
        for name in names {
            let Some(date) = name.strip_prefix("metric_samples_p") else {
                continue;
            };
            let Ok(day) = chrono::NaiveDate::parse_from_str(date, "%Y%m%d") else {
                continue;
            };
            let end = (day + chrono::Duration::days(1))
                .and_hms_opt(0, 0, 0)
                .map(|d| d.and_utc().timestamp_millis())
                .unwrap_or(i64::MAX);
            if end <= cutoff_ms {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                    .execute(&self.db.pool)
                    .await?;
                let day_index = end / DAY_MS - 1;
                self.inner
                    .partitions
                    .lock()
                    .expect("partition cache")
                    .remove(&day_index);
                dropped.push(name);
            }
        }
        sqlx::query("DELETE FROM metric_exemplars WHERE time_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.db.pool)
            .await?;
        Ok(dropped)
    }

    /// Exemplars of series matching `fetch` in `[from, to]` (at most `max`).
    pub async fn exemplars(
        &self,
        tenant: TenantId,
        fetch: &Fetch,
        max: usize,
    ) -> Result<Vec<(Labels, Vec<StoredExemplar>)>> {
        let series = self.matching_series(tenant, fetch, 10_000).await?;
        let ids: Vec<i64> = series.iter().map(|s| s.0).collect();
        let rows = sqlx::query(
            "SELECT series_id, time_ms, value, trace_id, span_id, attributes FROM metric_exemplars \
             WHERE tenant_id = $1 AND series_id = ANY($2) AND time_ms BETWEEN $3 AND $4 \
             ORDER BY series_id, time_ms LIMIT $5",
        )
        .bind(tenant.0)
        .bind(&ids)
        .bind(fetch.from)
        .bind(fetch.to)
        .bind(max as i64)
        .fetch_all(&self.db.pool)
        .await?;
        let by_id: HashMap<i64, std::sync::Arc<Labels>> = series.into_iter().collect();
        let mut out: BTreeMap<i64, Vec<StoredExemplar>> = BTreeMap::new();
        for row in rows {
            let attrs: serde_json::Value = row.try_get("attributes")?;
            out.entry(row.try_get("series_id")?)
                .or_default()
                .push(StoredExemplar {
                    time_ms: row.try_get("time_ms")?,
                    value: row.try_get("value")?,
                    trace_id: row.try_get("trace_id")?,
                    span_id: row.try_get("span_id")?,
                    attributes: serde_json::from_value(attrs).unwrap_or_default(),
                });
        }
        Ok(out
            .into_iter()
            .filter_map(|(id, e)| by_id.get(&id).map(|l| ((**l).clone(), e)))
            .collect())
    }
}
