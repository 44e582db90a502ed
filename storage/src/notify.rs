//! The notification outbox and channels (the SQL only; `notify` decides and sends).
//!
//! Rows are enqueued by [`crate::alerts::AlertStore::apply`] in the transaction of the
//! alert change that causes them, claimed by workers with a lease under
//! `FOR UPDATE SKIP LOCKED`, and finished as delivered, retried later, or dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use model::TenantId;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::alerts::AlertRow;
use crate::{Db, Result, StorageError};

/// A notification channel; `sealed` holds its secrets, encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: String,
    /// Scheme and host of the destination (the full URL is secret).
    pub target: String,
    pub sealed: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn channel(row: &PgRow) -> Result<ChannelRow> {
    Ok(ChannelRow {
        id: row.try_get("id")?,
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const CHANNEL_COLUMNS: &str = "id, tenant_id, name, kind, target, sealed, created_at, updated_at";

/// A notification due for delivery, with its channel.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub alert_id: Option<Uuid>,
    /// `trigger`, `acknowledge`, `resolve` or `test`.
    pub event: String,
    pub snapshot: Value,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// Set once this notification leads a group (`absorb`): the group's key and the
    /// snapshots of the other alerts it carries.
    pub group_key: Option<String>,
    pub members: Option<Value>,
    pub channel: ChannelRow,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

/// What became of a notification after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Not this time and not counted as an attempt (pacing): try again at.
    Defer(DateTime<Utc>),
    Dead,
    /// The tenant's routing does not send this alert to this channel.
    Skipped,
}

/// A firing alert's last trigger to a channel (`NotificationStore::repeat_candidates`).
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatCandidate {
    pub tenant_id: TenantId,
    pub alert_id: Uuid,
    pub channel_id: Uuid,
    pub channel: String,
    /// The channel's kind (`alertmanager` channels are refreshed without a tree).
    pub kind: String,
    /// Whether the tenant has a routing tree.
    pub routed: bool,
    pub last_at: DateTime<Utc>,
    pub labels: Value,
    pub severity: String,
}

/// A notification as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRow {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub alert_id: Option<Uuid>,
    pub event: String,
    pub state: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// The notification that carried this one in a grouped page.
    pub grouped_into: Option<Uuid>,
}

fn notification(r: &PgRow) -> Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.try_get("id")?,
        channel_id: r.try_get("channel_id")?,
        alert_id: r.try_get("alert_id")?,
        event: r.try_get("event")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        grouped_into: r.try_get("grouped_into")?,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, channel_id, alert_id, event, state, attempts, created_at, \
     delivered_at, next_attempt_at, last_error, grouped_into";

/// The alert as a notification carries it (stored with the outbox row).
pub fn snapshot(a: &AlertRow) -> Value {
    serde_json::json!({
        "id": a.id, "rule_id": a.rule_id, "fingerprint": a.fingerprint, "state": a.state,
        "severity": a.severity, "labels": a.labels, "annotations": a.annotations,
        "event_ids": a.event_ids, "event_count": a.event_count, "started_at": a.started_at,
        "firing_at": a.firing_at, "resolved_at": a.resolved_at,
    })
}

/// Enqueue `event` about alert `a` to every channel of its tenant, inside `tx`.
pub(crate) async fn enqueue(tx: &mut sqlx::PgConnection, a: &AlertRow, event: &str) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO notifications (id, tenant_id, channel_id, alert_id, event, snapshot) \
         SELECT gen_random_uuid(), $1, c.id, $2, $3, $4 FROM channels c WHERE c.tenant_id = $1",
    )
    .bind(a.tenant_id.0)
    .bind(a.id)
    .bind(event)
    .bind(snapshot(a))
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, Clone)]
pub struct NotificationStore {
    db: Db,
}

impl NotificationStore {
    pub fn new(db: Db) -> NotificationStore {
        NotificationStore { db }
    }

    pub async fn create_channel(&self, c: &ChannelRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO channels (id, tenant_id, name, kind, target, sealed) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id)
        .bind(c.tenant_id.0)
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.sealed)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Replace a channel's name, target and secrets (its kind stays).
    pub async fn update_channel(&self, c: &ChannelRow) -> Result<()> {
        let done = sqlx::query(
            "UPDATE channels SET name = $3, target = $4, sealed = $5, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(c.tenant_id.0)
        .bind(c.id)
        .bind(&c.name)
        .bind(&c.target)
        .bind(&c.sealed)
        .execute(&self.db.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("channel".into()));
        }
        Ok(())
    }

    pub async fn delete_channel(&self, tenant: TenantId, id: Uuid) -> Result<()> {
        let done = sqlx::query("DELETE FROM channels WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("channel".into()));
        }
        Ok(())
    }

    pub async fn channels(&self, tenant: TenantId) -> Result<Vec<ChannelRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE tenant_id = $1 ORDER BY name"
        )))
        .bind(tenant.0)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(channel)
        .collect()
    }

    pub async fn channel(&self, tenant: TenantId, id: Uuid) -> Result<ChannelRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StorageError::NotFound("channel".into()))?;
        channel(&row)
    }

    /// Every channel of every tenant (key rotation).
    pub async fn all_channels(&self) -> Result<Vec<ChannelRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY id"
        )))
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(channel)
        .collect()
    }

    /// Replace the sealed secrets of channels (key rotation), all or nothing.
    pub async fn reseal(&self, sealed: &[(Uuid, Vec<u8>)]) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        for (id, bytes) in sealed {
            sqlx::query("UPDATE channels SET sealed = $2 WHERE id = $1")
                .bind(id)
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enqueue a test notification to one channel.
    pub async fn enqueue_test(
        &self,
        tenant: TenantId,
        channel: Uuid,
        snapshot: &Value,
    ) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO notifications (id, tenant_id, channel_id, event, snapshot) VALUES ($1, $2, $3, 'test', $4)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(channel)
        .bind(snapshot)
        .execute(&self.db.pool)
        .await?;
        Ok(id)
    }

    /// Claim up to `limit` due notifications for `lease`. Only the oldest pending
    /// notification of each (alert, channel) is due, so an alert's pages arrive in
    /// order; rows another worker holds are skipped.
    pub async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Due>> {
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT n.id FROM notifications n \
               WHERE n.state = 'pending' AND n.next_attempt_at <= now() \
                 AND (n.lease_until IS NULL OR n.lease_until < now()) \
                 AND NOT EXISTS (SELECT 1 FROM notifications o LEFT JOIN notifications l ON l.id = o.grouped_into \
                   WHERE o.alert_id = n.alert_id AND o.channel_id = n.channel_id AND o.created_at < n.created_at \
                     AND (o.state = 'pending' OR (o.state = 'grouped' AND l.state = 'pending'))) \
               ORDER BY n.next_attempt_at, n.created_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE notifications n SET lease_until = now() + make_interval(secs => $2) \
             FROM due, channels c WHERE n.id = due.id AND c.id = n.channel_id \
             RETURNING n.id, n.tenant_id, n.alert_id, n.event, n.snapshot, n.attempts, n.created_at, \
               n.group_key, n.members, \
               c.id AS c_id, c.tenant_id AS c_tenant, c.name, c.kind, c.target, c.sealed, \
               c.created_at AS c_created, c.updated_at AS c_updated",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    id: r.try_get("id")?,
                    tenant_id: TenantId(r.try_get("tenant_id")?),
                    alert_id: r.try_get("alert_id")?,
                    event: r.try_get("event")?,
                    snapshot: r.try_get("snapshot")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                    group_key: r.try_get("group_key")?,
                    members: r.try_get("members")?,
                    channel: ChannelRow {
                        id: r.try_get("c_id")?,
                        tenant_id: TenantId(r.try_get("c_tenant")?),
                        name: r.try_get("name")?,
                        kind: r.try_get("kind")?,
                        target: r.try_get("target")?,
                        sealed: r.try_get("sealed")?,
                        created_at: r.try_get("c_created")?,
                        updated_at: r.try_get("c_updated")?,
                    },
                })
            })
            .collect()
    }

    /// Record an attempt (unless deferred) and what comes next, releasing the lease:
    /// one statement, one commit.
    pub async fn finish(&self, id: Uuid, attempt: Option<&Attempt>, next: Next) -> Result<()> {
        let (state, at) = match next {
            Next::Delivered => ("delivered", None),
            Next::RetryAt(t) | Next::Defer(t) => ("pending", Some(t)),
            Next::Dead => ("dead", None),
            Next::Skipped => ("skipped", None),
        };
        sqlx::query(
            "WITH attempt AS ( \
               INSERT INTO notification_attempts (notification_id, at, status, latency_ms, error) \
               SELECT $1, $6, $7, $8, $5 WHERE $3 = 1), \
             members AS ( \
               UPDATE notifications SET state = $2, \
                 delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END, \
                 last_error = COALESCE($5, last_error) \
               WHERE grouped_into = $1 AND state = 'grouped' AND $2 IN ('delivered', 'dead')) \
             UPDATE notifications SET state = $2, attempts = attempts + $3, lease_until = NULL, \
               next_attempt_at = COALESCE($4, next_attempt_at), \
               delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END, \
               last_error = COALESCE($5, last_error) WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(i32::from(attempt.is_some()))
        .bind(at)
        .bind(attempt.and_then(|a| a.error.clone()))
        .bind(attempt.map(|a| a.at))
        .bind(attempt.and_then(|a| a.status))
        .bind(attempt.map(|a| a.latency_ms))
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Notifications of a tenant, newest first, optionally in one state.
    pub async fn list(
        &self,
        tenant: TenantId,
        state: Option<&str>,
        alert: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} \
             FROM notifications WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2) \
               AND ($3::uuid IS NULL OR alert_id = $3) ORDER BY created_at DESC LIMIT $4"
        )))
        .bind(tenant.0)
        .bind(state)
        .bind(alert)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(notification)
        .collect()
    }

    /// The attempts of one notification of the tenant, oldest first.
    pub async fn attempts(&self, tenant: TenantId, id: Uuid) -> Result<Vec<Attempt>> {
        sqlx::query(
            "SELECT a.at, a.status, a.latency_ms, a.error FROM notification_attempts a \
             JOIN notifications n ON n.id = a.notification_id WHERE n.tenant_id = $1 AND n.id = $2 ORDER BY a.id",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Attempt {
                at: r.try_get("at")?,
                status: r.try_get("status")?,
                latency_ms: r.try_get("latency_ms")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
    }

    /// Notifications per state, over all tenants (metrics).
    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query("SELECT state, count(*) AS n FROM notifications GROUP BY state")
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    /// The tenant's routing tree, if it has one.
    pub async fn routing(&self, tenant: TenantId) -> Result<Option<Value>> {
        Ok(
            sqlx::query_scalar("SELECT tree FROM routing WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_optional(&self.db.pool)
                .await?,
        )
    }

    pub async fn put_routing(&self, tenant: TenantId, tree: &Value, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO routing (tenant_id, tree, updated_by) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET tree = EXCLUDED.tree, updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(tenant.0)
        .bind(tree)
        .bind(by)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_routing(&self, tenant: TenantId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM routing WHERE tenant_id = $1")
            .bind(tenant.0)
            .execute(&self.db.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Firing, unacknowledged, unsilenced alerts, with the last trigger sent to each
    /// channel: candidates for a repeat page (tenants with a routing tree) or an
    /// Alertmanager refresh (every tenant).
    pub async fn repeat_candidates(&self) -> Result<Vec<RepeatCandidate>> {
        sqlx::query(
            "SELECT DISTINCT ON (n.alert_id, n.channel_id) n.tenant_id, n.alert_id, n.channel_id, \
                    n.created_at AS last_at, c.name AS channel, c.kind, a.labels, a.severity, \
                    r.tenant_id IS NOT NULL AS routed \
             FROM notifications n JOIN alerts a ON a.id = n.alert_id JOIN channels c ON c.id = n.channel_id \
             LEFT JOIN routing r ON r.tenant_id = n.tenant_id \
             WHERE n.event = 'trigger' AND n.state IN ('pending', 'grouped', 'delivered') AND a.state = 'firing' \
               AND a.acknowledged_at IS NULL AND NOT a.silenced \
               AND (r.tenant_id IS NOT NULL OR c.kind = 'alertmanager') \
             ORDER BY n.alert_id, n.channel_id, n.created_at DESC",
        )
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(RepeatCandidate {
                tenant_id: TenantId(r.try_get("tenant_id")?),
                alert_id: r.try_get("alert_id")?,
                channel_id: r.try_get("channel_id")?,
                channel: r.try_get("channel")?,
                kind: r.try_get("kind")?,
                routed: r.try_get("routed")?,
                last_at: r.try_get("last_at")?,
                labels: r.try_get("labels")?,
                severity: r.try_get("severity")?,
            })
        })
        .collect()
    }

    /// Give back claimed notifications untouched (another one of the claim will carry
    /// them in a grouped page).
    pub async fn release(&self, ids: &[Uuid]) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET lease_until = NULL WHERE id = ANY($1) AND state = 'pending'",
        )
        .bind(ids)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// When the group `key` was last paged on `channel`.
    pub async fn last_group_page(&self, channel: Uuid, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT max(delivered_at) FROM notifications \
             WHERE channel_id = $1 AND group_key = $2 AND state = 'delivered'",
        )
        .bind(channel)
        .bind(key)
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Make `leader` (claimed by the caller) carry the other pending `event`
    /// notifications on `channel` whose alert's `labels` have `values` (`severity` is
    /// the alert's), up to `limit`, oldest first; an alert whose earlier page to the
    /// channel is still pending stays out. Returns the members' snapshots, oldest
    /// first. One statement, one commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn absorb(
        &self,
        leader: Uuid,
        channel: Uuid,
        event: &str,
        key: &str,
        labels: &[String],
        values: &[String],
        limit: i64,
    ) -> Result<Vec<Value>> {
        let members: Value = sqlx::query_scalar(
            "WITH m AS ( \
               SELECT n.id FROM notifications n \
               WHERE n.channel_id = $2 AND n.event = $3 AND n.state = 'pending' AND n.attempts = 0 \
                 AND n.id <> $1 AND n.members IS NULL \
                 AND (n.lease_until IS NULL OR n.lease_until < now()) \
                 AND (SELECT coalesce(bool_and(coalesce(CASE WHEN g.l = 'severity' \
                        THEN n.snapshot->>'severity' ELSE n.snapshot->'labels'->>g.l END, '') = g.v), true) \
                      FROM unnest($5::text[], $6::text[]) AS g(l, v)) \
                 AND NOT EXISTS (SELECT 1 FROM notifications o LEFT JOIN notifications l ON l.id = o.grouped_into \
                   WHERE o.alert_id = n.alert_id AND o.channel_id = n.channel_id AND o.created_at < n.created_at \
                     AND (o.state = 'pending' OR (o.state = 'grouped' AND l.state = 'pending'))) \
               ORDER BY n.created_at LIMIT $7 FOR UPDATE SKIP LOCKED), \
             taken AS ( \
               UPDATE notifications n SET state = 'grouped', grouped_into = $1, lease_until = NULL \
               FROM m WHERE n.id = m.id RETURNING n.snapshot, n.created_at) \
             UPDATE notifications SET group_key = $4, \
               members = (SELECT coalesce(jsonb_agg(snapshot ORDER BY created_at), '[]'::jsonb) FROM taken) \
             WHERE id = $1 RETURNING members",
        )
        .bind(leader)
        .bind(channel)
        .bind(event)
        .bind(key)
        .bind(labels)
        .bind(values)
        .bind(limit)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(members.as_array().cloned().unwrap_or_default())
    }

    /// Enqueue a repeat trigger of a still-firing alert to one channel, with the alert
    /// as it is now.
    pub async fn enqueue_repeat(&self, alert: Uuid, channel: Uuid) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM alerts WHERE id = $1 AND state = 'firing' AND acknowledged_at IS NULL FOR UPDATE",
            crate::alerts::ALERT_COLUMNS
        )))
        .bind(alert)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let a = crate::alerts::decode_alert(&row)?;
            sqlx::query(
                "INSERT INTO notifications (id, tenant_id, channel_id, alert_id, event, snapshot) VALUES (gen_random_uuid(), $1, $2, $3, 'trigger', $4)",
            )
            .bind(a.tenant_id.0)
            .bind(channel)
            .bind(a.id)
            .bind(snapshot(&a))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The state of one notification of the tenant.
    pub async fn get(&self, tenant: TenantId, id: Uuid) -> Result<NotificationRow> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} \
             FROM notifications WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StorageError::NotFound("notification".into()))?;
        notification(&r)
    }
}
