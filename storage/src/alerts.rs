//! Rules, alerts, transitions, silences and the rule evaluator's progress.
//!
//! Alert changes are applied in batches inside one transaction together with the
//! evaluator checkpoint ([`AlertStore::apply`]), so evidence is counted exactly once
//! across restarts, and each state change leaves an `alert_transitions` row.

use chrono::{DateTime, Utc};
use model::TenantId;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::{Db, Result, StorageError};

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub rule_id: String,
    pub fingerprint: String,
    pub state: String,
    pub severity: String,
    pub labels: Value,
    pub annotations: Value,
    pub event_ids: Vec<i64>,
    pub event_count: i64,
    pub started_at: DateTime<Utc>,
    pub firing_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_true_at: DateTime<Utc>,
    pub silenced: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRow {
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
    pub silenced: bool,
}

/// One change to apply: the alert row as it should be, and the transitions to log.
#[derive(Debug, Clone)]
pub struct AlertChange {
    pub alert: AlertRow,
    pub is_new: bool,
    pub transitions: Vec<TransitionRow>,
    /// The notification this change sends to the tenant's channels (`trigger`,
    /// `resolve`), enqueued in the same transaction.
    pub notify: Option<&'static str>,
}

/// Fold the changes of one batch that only carry an alert's newer state (no state
/// transition, no notification, not its opening) into that alert's previous change:
/// a burst of events on one open alert is then one row update and one incident touch
/// per batch instead of one per event. What is saved is the same: the last state of
/// every alert, every transition and every notification, in order.
pub fn coalesce(changes: &[AlertChange]) -> Vec<AlertChange> {
    let mut out: Vec<AlertChange> = Vec::with_capacity(changes.len());
    let mut last: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for change in changes {
        let pure = !change.is_new && change.transitions.is_empty() && change.notify.is_none();
        if pure && let Some(&at) = last.get(&change.alert.id) {
            out[at].alert = change.alert.clone();
            continue;
        }
        last.insert(change.alert.id, out.len());
        out.push(change.clone());
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub id: String,
    pub version: i32,
    pub yaml: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One change to a tenant's rule: `create`, `update` or `delete`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVersionRow {
    pub version: i32,
    pub action: String,
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRow {
    pub id: Uuid,
    pub matchers: Value,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Maintenance window: cron schedule (UTC) and window length.
    pub schedule: Option<String>,
    pub duration_secs: Option<i64>,
    pub created_by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

/// A silence to create.
#[derive(Debug, Clone, Copy)]
pub struct NewSilence<'a> {
    pub matchers: &'a Value,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Maintenance window: (cron schedule, window length in seconds).
    pub recurrence: Option<(&'a str, i64)>,
    pub created_by: &'a str,
    pub comment: &'a str,
}

/// Record an acknowledgement of `alert` (locked by the caller, not yet acknowledged)
/// and enqueue its `acknowledge` pages, inside `tx`.
pub(crate) async fn acknowledge_in(
    tx: &mut sqlx::PgConnection,
    alert: &AlertRow,
    by: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2, updated_at = now() WHERE id = $1",
    )
    .bind(alert.id)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    crate::notify::enqueue(tx, alert, "acknowledge").await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AlertStore {
    db: Db,
}

pub(crate) const ALERT_COLUMNS: &str = "id, tenant_id, rule_id, fingerprint, state, severity, labels, annotations, event_ids, \
     event_count, started_at, firing_at, resolved_at, last_true_at, silenced";

pub(crate) fn decode_alert(row: &PgRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        tenant_id: TenantId(row.try_get("tenant_id")?),
        rule_id: row.try_get("rule_id")?,
        fingerprint: row.try_get("fingerprint")?,
        state: row.try_get("state")?,
        severity: row.try_get("severity")?,
        labels: row.try_get("labels")?,
        annotations: row.try_get("annotations")?,
        event_ids: row.try_get("event_ids")?,
        event_count: row.try_get("event_count")?,
        started_at: row.try_get("started_at")?,
        firing_at: row.try_get("firing_at")?,
        resolved_at: row.try_get("resolved_at")?,
        last_true_at: row.try_get("last_true_at")?,
        silenced: row.try_get("silenced")?,
    })
}

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub state: Option<String>,
    pub rule: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

impl AlertStore {
    pub fn new(db: Db) -> AlertStore {
        AlertStore { db }
    }

    /// Non-resolved alerts of every tenant (the evaluator's working set at start).
    pub async fn active(&self) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE state <> 'resolved'"
        )))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_alert).collect()
    }

    /// Apply alert changes and (optionally) advance a follower checkpoint, atomically.
    pub async fn apply(
        &self,
        changes: &[AlertChange],
        checkpoint: Option<(&str, i64)>,
    ) -> Result<()> {
        let changes = coalesce(changes);
        let mut tx = self.db.pool.begin().await?;
        for change in &changes {
            let a = &change.alert;
            if change.is_new {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
                )))
                .bind(a.id)
                .bind(a.tenant_id.0)
                .bind(&a.rule_id)
                .bind(&a.fingerprint)
                .bind(&a.state)
                .bind(&a.severity)
                .bind(&a.labels)
                .bind(&a.annotations)
                .bind(&a.event_ids)
                .bind(a.event_count)
                .bind(a.started_at)
                .bind(a.firing_at)
                .bind(a.resolved_at)
                .bind(a.last_true_at)
                .bind(a.silenced)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE alerts SET state = $2, annotations = $3, event_ids = $4, event_count = $5, firing_at = $6, \
                     resolved_at = $7, last_true_at = $8, silenced = $9, severity = $10, labels = $11, updated_at = now() WHERE id = $1",
                )
                .bind(a.id)
                .bind(&a.state)
                .bind(&a.annotations)
                .bind(&a.event_ids)
                .bind(a.event_count)
                .bind(a.firing_at)
                .bind(a.resolved_at)
                .bind(a.last_true_at)
                .bind(a.silenced)
                .bind(&a.severity)
                .bind(&a.labels)
                .execute(&mut *tx)
                .await?;
            }
            for t in &change.transitions {
                sqlx::query(
                    "INSERT INTO alert_transitions (alert_id, tenant_id, from_state, to_state, at, silenced) VALUES ($1,$2,$3,$4,$5,$6)",
                )
                .bind(a.id)
                .bind(a.tenant_id.0)
                .bind(&t.from)
                .bind(&t.to)
                .bind(t.at)
                .bind(t.silenced)
                .execute(&mut *tx)
                .await?;
            }
        }
        for change in &changes {
            if let Some(event) = change.notify {
                crate::notify::enqueue(&mut tx, &change.alert, event).await?;
            }
            crate::incidents::attach(&mut tx, change).await?;
        }
        if let Some((name, seq)) = checkpoint {
            sqlx::query(
                "INSERT INTO follower_checkpoints (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
            )
            .bind(name)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Acknowledge a firing alert: record who and when, and enqueue `acknowledge` to
    /// the tenant's channels in the same transaction. Acknowledging twice is a no-op.
    pub async fn acknowledge(&self, tenant: TenantId, id: Uuid, by: &str) -> Result<AlertRow> {
        let mut tx = self.db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS}, acknowledged_at FROM alerts WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
        )))
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StorageError::NotFound("alert".into()))?;
        let alert = decode_alert(&row)?;
        let already: Option<DateTime<Utc>> = row.try_get("acknowledged_at")?;
        if alert.state == "resolved" {
            return Err(StorageError::Invalid(
                "state: a resolved alert cannot be acknowledged".into(),
            ));
        }
        if already.is_none() {
            acknowledge_in(&mut tx, &alert, by).await?;
        }
        tx.commit().await?;
        Ok(alert)
    }

    pub async fn checkpoint(&self, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM follower_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.db.pool)
                .await?,
        )
    }

    pub async fn list(&self, tenant: TenantId, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR rule_id = $3) \
             AND ($4::timestamptz IS NULL OR coalesce(resolved_at, 'infinity') >= $4) \
             AND ($5::timestamptz IS NULL OR started_at <= $5) \
             ORDER BY started_at DESC LIMIT $6"
        )))
        .bind(tenant.0)
        .bind(&filter.state)
        .bind(&filter.rule)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_alert).collect()
    }

    pub async fn get(&self, tenant: TenantId, id: Uuid) -> Result<(AlertRow, Vec<TransitionRow>)> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StorageError::NotFound("alert".into()))?;
        let alert = decode_alert(&row)?;
        let transitions = sqlx::query(
            "SELECT from_state, to_state, at, silenced FROM alert_transitions WHERE alert_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(TransitionRow {
                from: r.try_get("from_state")?,
                to: r.try_get("to_state")?,
                at: r.try_get("at")?,
                silenced: r.try_get("silenced")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok((alert, transitions))
    }

    /// Count of transitions for a tenant (tests and operations).
    pub async fn transition_count(&self, tenant: TenantId) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM alert_transitions WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    // ---- rules -------------------------------------------------------------------

    pub async fn rules(&self, tenant: TenantId) -> Result<Vec<RuleRow>> {
        let rows = sqlx::query("SELECT id, version, yaml, updated_at, updated_by FROM rules WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant.0)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(decode_rule).collect()
    }

    /// Every tenant's API rules (the evaluator loads them all).
    pub async fn all_rules(&self) -> Result<Vec<(TenantId, RuleRow)>> {
        let rows =
            sqlx::query("SELECT tenant_id, id, version, yaml, updated_at, updated_by FROM rules")
                .fetch_all(&self.db.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((TenantId(r.try_get("tenant_id")?), decode_rule(r)?)))
            .collect()
    }

    pub async fn rule(&self, tenant: TenantId, id: &str) -> Result<RuleRow> {
        let row = sqlx::query("SELECT id, version, yaml, updated_at, updated_by FROM rules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("rule {id:?}")))?;
        decode_rule(&row)
    }

    /// Create (`expect_existing = false`) or replace (`true`) a rule; records a version.
    pub async fn put_rule(
        &self,
        tenant: TenantId,
        id: &str,
        yaml: &str,
        by: &str,
        expect_existing: bool,
    ) -> Result<RuleRow> {
        let mut tx = self.db.pool.begin().await?;
        let current: Option<i32> = sqlx::query_scalar(
            "SELECT version FROM rules WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let last_version: Option<i32> = sqlx::query_scalar(
            "SELECT max(version) FROM rule_versions WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        match (current, expect_existing) {
            (Some(_), false) => return Err(StorageError::Conflict(format!("rule {id:?}"))),
            (None, true) => return Err(StorageError::NotFound(format!("rule {id:?}"))),
            _ => {}
        }
        let version = last_version.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO rules (tenant_id, id, version, yaml, updated_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET version = EXCLUDED.version, yaml = EXCLUDED.yaml, \
             updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(tenant.0)
        .bind(id)
        .bind(version)
        .bind(yaml)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO rule_versions (tenant_id, id, version, action, yaml, changed_by) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(tenant.0)
            .bind(id)
            .bind(version)
            .bind(if current.is_some() { "update" } else { "create" })
            .bind(yaml)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.rule(tenant, id).await
    }

    pub async fn delete_rule(&self, tenant: TenantId, id: &str, by: &str) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        let row = sqlx::query(
            "DELETE FROM rules WHERE tenant_id = $1 AND id = $2 RETURNING version, yaml",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StorageError::NotFound(format!("rule {id:?}")))?;
        let version: i32 = row.try_get("version")?;
        let yaml: String = row.try_get("yaml")?;
        sqlx::query("INSERT INTO rule_versions (tenant_id, id, version, action, yaml, changed_by) VALUES ($1,$2,$3,'delete',$4,$5)")
            .bind(tenant.0)
            .bind(id)
            .bind(version + 1)
            .bind(yaml)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rule_versions(&self, tenant: TenantId, id: &str) -> Result<Vec<RuleVersionRow>> {
        let rows = sqlx::query(
            "SELECT version, action, changed_by, changed_at FROM rule_versions WHERE tenant_id = $1 AND id = $2 ORDER BY version",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleVersionRow {
                    version: r.try_get("version")?,
                    action: r.try_get("action")?,
                    changed_by: r.try_get("changed_by")?,
                    changed_at: r.try_get("changed_at")?,
                })
            })
            .collect()
    }

    // ---- silences ----------------------------------------------------------------

    pub async fn create_silence(
        &self,
        tenant: TenantId,
        spec: &NewSilence<'_>,
    ) -> Result<SilenceRow> {
        let NewSilence {
            matchers,
            starts_at,
            ends_at,
            recurrence,
            created_by: by,
            comment,
        } = *spec;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO silences (id, tenant_id, matchers, starts_at, ends_at, created_by, comment, schedule, duration_secs) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(matchers)
        .bind(starts_at)
        .bind(ends_at)
        .bind(by)
        .bind(comment)
        .bind(recurrence.map(|r| r.0))
        .bind(recurrence.map(|r| r.1))
        .execute(&self.db.pool)
        .await?;
        Ok(self
            .silences(tenant, true)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .expect("just inserted"))
    }

    /// Silences of a tenant; `all = false` keeps only those not yet ended.
    pub async fn silences(&self, tenant: TenantId, all: bool) -> Result<Vec<SilenceRow>> {
        let rows = sqlx::query(
            "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, schedule, duration_secs FROM silences \
             WHERE tenant_id = $1 AND ($2 OR ends_at > now()) ORDER BY starts_at",
        )
        .bind(tenant.0)
        .bind(all)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_silence).collect()
    }

    /// Active silences of every tenant.
    pub async fn active_silences(&self) -> Result<Vec<(TenantId, SilenceRow)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, matchers, starts_at, ends_at, created_by, comment, created_at, schedule, duration_secs \
             FROM silences WHERE ends_at > now()",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((TenantId(r.try_get("tenant_id")?), decode_silence(r)?)))
            .collect()
    }

    /// End a silence now (it stays in the history).
    pub async fn expire_silence(&self, tenant: TenantId, id: Uuid) -> Result<()> {
        let done = sqlx::query("UPDATE silences SET ends_at = greatest(now(), starts_at + interval '1 microsecond') WHERE tenant_id = $1 AND id = $2 AND ends_at > now()")
            .bind(tenant.0)
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("silence".into()));
        }
        Ok(())
    }

    // ---- sequences ---------------------------------------------------------------

    pub async fn save_sequence_state(
        &self,
        tenant: TenantId,
        rule_id: &str,
        state: &Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sequence_state (tenant_id, rule_id, state) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, rule_id) DO UPDATE SET state = EXCLUDED.state",
        )
        .bind(tenant.0)
        .bind(rule_id)
        .bind(state)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    pub async fn sequence_states(&self) -> Result<Vec<(TenantId, String, Value)>> {
        let rows = sqlx::query("SELECT tenant_id, rule_id, state FROM sequence_state")
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TenantId(r.try_get("tenant_id")?),
                    r.try_get("rule_id")?,
                    r.try_get("state")?,
                ))
            })
            .collect()
    }
}

fn decode_rule(row: &PgRow) -> Result<RuleRow> {
    Ok(RuleRow {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        yaml: row.try_get("yaml")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn decode_silence(row: &PgRow) -> Result<SilenceRow> {
    Ok(SilenceRow {
        id: row.try_get("id")?,
        matchers: row.try_get("matchers")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        created_by: row.try_get("created_by")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        schedule: row.try_get("schedule")?,
        duration_secs: row.try_get("duration_secs")?,
    })
}

/// Most combinations a new_terms rule keeps per tenant (oldest `last_seen` pruned).
pub const MAX_TERMS_PER_RULE: i64 = 100_000;

/// New-terms state (migration 0013).
impl AlertStore {
    /// When `rule` was first evaluated for `tenant` (recorded now if never).
    pub async fn new_terms_start(&self, tenant: TenantId, rule: &str) -> Result<DateTime<Utc>> {
        sqlx::query("INSERT INTO rule_terms_start (tenant_id, rule_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(tenant.0)
            .bind(rule)
            .execute(&self.db.pool)
            .await?;
        Ok(sqlx::query_scalar(
            "SELECT started_at FROM rule_terms_start WHERE tenant_id = $1 AND rule_id = $2",
        )
        .bind(tenant.0)
        .bind(rule)
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Record a combination seen at `at`; whether it is new: never seen, or last
    /// seen before `cutoff`. Of concurrent writers of one new combination exactly
    /// one is told it is new (the one whose insert wins).
    pub async fn new_terms_see(
        &self,
        tenant: TenantId,
        rule: &str,
        hash: &[u8; 16],
        terms: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<bool> {
        let row = sqlx::query(
            "WITH prev AS (SELECT last_seen FROM rule_terms WHERE tenant_id = $1 AND rule_id = $2 AND hash = $3) \
             INSERT INTO rule_terms (tenant_id, rule_id, hash, terms, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (tenant_id, rule_id, hash) DO UPDATE SET last_seen = GREATEST(rule_terms.last_seen, EXCLUDED.last_seen) \
             RETURNING (xmax = 0) AS inserted, (SELECT last_seen FROM prev) AS prev_seen",
        )
        .bind(tenant.0)
        .bind(rule)
        .bind(&hash[..])
        .bind(terms)
        .bind(at)
        .fetch_one(&self.db.pool)
        .await?;
        let inserted: bool = row.try_get("inserted")?;
        let prev: Option<DateTime<Utc>> = row.try_get("prev_seen")?;
        Ok(inserted || prev.is_some_and(|p| p < cutoff))
    }

    /// Forget combinations last seen before `cutoff` and all but the newest
    /// [`MAX_TERMS_PER_RULE`]; returns how many went.
    pub async fn new_terms_prune(
        &self,
        tenant: TenantId,
        rule: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<u64> {
        let old = sqlx::query(
            "DELETE FROM rule_terms WHERE tenant_id = $1 AND rule_id = $2 AND last_seen < $3",
        )
        .bind(tenant.0)
        .bind(rule)
        .bind(cutoff)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        let over = sqlx::query(
            "DELETE FROM rule_terms WHERE tenant_id = $1 AND rule_id = $2 AND hash IN \
             (SELECT hash FROM rule_terms WHERE tenant_id = $1 AND rule_id = $2 ORDER BY last_seen DESC OFFSET $3)",
        )
        .bind(tenant.0)
        .bind(rule)
        .bind(MAX_TERMS_PER_RULE)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        Ok(old + over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Uuid, count: i64, state: &str) -> AlertRow {
        let now = Utc::now();
        AlertRow {
            id,
            tenant_id: TenantId(Uuid::nil()),
            rule_id: "r".into(),
            fingerprint: id.to_string(),
            state: state.into(),
            severity: "low".into(),
            labels: Value::Null,
            annotations: Value::Null,
            event_ids: (0..count).collect(),
            event_count: count,
            started_at: now,
            firing_at: Some(now),
            resolved_at: None,
            last_true_at: now,
            silenced: false,
        }
    }

    fn change(
        alert: AlertRow,
        is_new: bool,
        to: Option<&str>,
        notify: Option<&'static str>,
    ) -> AlertChange {
        AlertChange {
            transitions: to
                .map(|to| TransitionRow {
                    from: None,
                    to: to.into(),
                    at: Utc::now(),
                    silenced: false,
                })
                .into_iter()
                .collect(),
            alert,
            is_new,
            notify,
        }
    }

    #[test]
    fn a_burst_on_one_alert_is_one_change_and_nothing_is_lost() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let changes = vec![
            change(row(a, 1, "firing"), true, Some("firing"), Some("trigger")),
            change(row(a, 2, "firing"), false, None, None),
            change(row(b, 5, "firing"), false, None, None),
            change(row(a, 3, "firing"), false, None, None),
            change(row(b, 6, "firing"), false, None, None),
            // An escalation re-fires: kept apart, with its notification.
            change(row(a, 4, "firing"), false, None, Some("trigger")),
            change(row(a, 5, "firing"), false, None, None),
        ];
        let out = coalesce(&changes);
        assert_eq!(out.len(), 3, "{out:?}");
        // The opening carries the state of the updates that followed it.
        assert!(out[0].is_new && out[0].notify == Some("trigger"));
        assert_eq!(out[0].transitions.len(), 1);
        assert_eq!(out[0].alert.event_count, 3);
        // The other alert: one update with its last state.
        assert_eq!((out[1].alert.id, out[1].alert.event_count), (b, 6));
        // The escalation, then the last update folded into it.
        assert_eq!(out[2].notify, Some("trigger"));
        assert_eq!(out[2].alert.event_count, 5);
        // Every alert's last state is what is saved.
        for id in [a, b] {
            let last_in = changes.iter().rev().find(|c| c.alert.id == id).unwrap();
            let last_out = out.iter().rev().find(|c| c.alert.id == id).unwrap();
            assert_eq!(last_in.alert, last_out.alert);
        }
    }
}
