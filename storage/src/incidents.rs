//! Incidents: alerts grouped by their entities, and what responders did (the SQL; the
//! grouping vocabulary is `model::incident`).
//!
//! Alerts join incidents inside [`crate::alerts::AlertStore::apply`] (see [`attach`]),
//! in the transaction of the change that makes them fire. Every responder action is
//! one transaction that writes the incident and its `incident_activity` row (and, for
//! acknowledge and resolve, the alerts' notifications).

use chrono::{DateTime, Utc};
use model::TenantId;
use model::incident::{self, Entity};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::alerts::{ALERT_COLUMNS, AlertChange, AlertRow, decode_alert};
use crate::{Db, Result, StorageError};

/// A tenant's grouping settings (`PUT /api/v1/incident-settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSettings {
    /// Entity kinds that group alerts (`labels`: every kind from group labels).
    pub group_on: Vec<String>,
    /// An alert joins an open incident active within this window.
    pub window: chrono::Duration,
    /// Resolve an incident when all its alerts have resolved.
    pub auto_resolve: bool,
}

impl Default for IncidentSettings {
    fn default() -> IncidentSettings {
        IncidentSettings {
            group_on: incident::DEFAULT_GROUP_ON
                .iter()
                .map(|s| s.to_string())
                .collect(),
            window: chrono::Duration::minutes(30),
            auto_resolve: true,
        }
    }
}

/// Attribute paths that name an entity kind without the `entity.` prefix.
fn aliases() -> [(&'static str, &'static str); 2] {
    [
        (k8saudit::attr::CLIENT_IP, "client_ip"),
        (k8saudit::attr::USER_NAME, "actor"),
    ]
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub title: String,
    pub state: String,
    pub severity: String,
    pub assignee: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_activity_at: DateTime<Utc>,
    pub merged_into: Option<Uuid>,
    pub entities: Vec<Entity>,
    /// Oldest first.
    pub alert_ids: Vec<Uuid>,
}

const INCIDENT_COLUMNS: &str = "i.id, i.tenant_id, i.title, i.state, i.severity, i.assignee, \
     i.opened_at, i.acknowledged_at, i.resolved_at, i.last_activity_at, i.merged_into, \
     (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', e.kind, 'value', e.value) ORDER BY e.kind, e.value), '[]') \
        FROM incident_entities e WHERE e.incident_id = i.id) AS entities, \
     (SELECT coalesce(array_agg(a.alert_id ORDER BY a.added_at, a.alert_id), '{}') \
        FROM incident_alerts a WHERE a.incident_id = i.id) AS alert_ids";

fn decode(row: &PgRow) -> Result<IncidentRow> {
    let entities: Value = row.try_get("entities")?;
    Ok(IncidentRow {
        id: row.try_get("id")?,
        tenant_id: TenantId(row.try_get("tenant_id")?),
        title: row.try_get("title")?,
        state: row.try_get("state")?,
        severity: row.try_get("severity")?,
        assignee: row.try_get("assignee")?,
        opened_at: row.try_get("opened_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        resolved_at: row.try_get("resolved_at")?,
        last_activity_at: row.try_get("last_activity_at")?,
        merged_into: row.try_get("merged_into")?,
        entities: serde_json::from_value(entities).unwrap_or_default(),
        alert_ids: row.try_get("alert_ids")?,
    })
}

/// Filters of `GET /api/v1/incidents`.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<String>,
    pub severity: Option<String>,
    pub assignee: Option<String>,
    pub entity: Option<Entity>,
    /// Opened at or after / at or before.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// One responder action or automatic change, as the timeline shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `state_change`, `assignment`, `note` or `pin`.
    pub kind: String,
    pub actor: String,
    pub payload: Value,
}

/// An alert transition of one of the incident's alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStep {
    pub id: i64,
    pub alert: AlertRow,
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
    pub silenced: bool,
}

/// A delivery attempt of a notification about one of the incident's alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptStep {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub notification_id: Uuid,
    pub alert_id: Option<Uuid>,
    pub channel: String,
    pub channel_kind: String,
    pub event: String,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

/// The advisory-lock class of incident grouping (the key is the tenant's hash).
pub const GROUPING_LOCK: i32 = 7_407;

/// Longest note (Markdown source) and title.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
pub const MAX_TITLE_BYTES: usize = 512;
/// Most notes and pins on one incident.
pub const MAX_ACTIVITY: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct IncidentStore {
    db: Db,
}

async fn settings_in(tx: &mut sqlx::PgConnection, tenant: TenantId) -> Result<IncidentSettings> {
    let row = sqlx::query(
        "SELECT group_on, window_secs, auto_resolve FROM incident_settings WHERE tenant_id = $1",
    )
    .bind(tenant.0)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match row {
        Some(r) => IncidentSettings {
            group_on: r.try_get("group_on")?,
            window: chrono::Duration::seconds(i64::from(r.try_get::<i32, _>("window_secs")?)),
            auto_resolve: r.try_get("auto_resolve")?,
        },
        None => IncidentSettings::default(),
    })
}

async fn activity_in(
    tx: &mut sqlx::PgConnection,
    incident: &IncidentRow,
    kind: &str,
    actor: &str,
    payload: Value,
) -> Result<ActivityRow> {
    let row = sqlx::query(
        "INSERT INTO incident_activity (incident_id, tenant_id, kind, actor, payload) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, at, kind, actor, payload",
    )
    .bind(incident.id)
    .bind(incident.tenant_id.0)
    .bind(kind)
    .bind(actor)
    .bind(payload)
    .fetch_one(&mut *tx)
    .await?;
    activity_row(&row)
}

fn activity_row(row: &PgRow) -> Result<ActivityRow> {
    Ok(ActivityRow {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        payload: row.try_get("payload")?,
    })
}

async fn lock(tx: &mut sqlx::PgConnection, tenant: TenantId, id: Uuid) -> Result<IncidentRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.tenant_id = $1 AND i.id = $2 FOR UPDATE OF i"
    )))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StorageError::NotFound("incident".into()))?;
    decode(&row)
}

async fn set_state(
    tx: &mut sqlx::PgConnection,
    incident: &IncidentRow,
    to: &str,
    actor: &str,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE incidents SET state = $2, updated_at = now(), \
           acknowledged_at = CASE WHEN $2 = 'acknowledged' THEN now() WHEN $2 = 'triggered' THEN NULL ELSE acknowledged_at END, \
           resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE NULL END \
         WHERE id = $1",
    )
    .bind(incident.id)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    activity_in(
        tx,
        incident,
        "state_change",
        actor,
        json!({"from": incident.state, "to": to, "reason": reason}),
    )
    .await?;
    Ok(())
}

/// The alerts of an incident, locked.
async fn alerts_of(tx: &mut sqlx::PgConnection, incident: Uuid) -> Result<Vec<(AlertRow, bool)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {cols}, acknowledged_at IS NOT NULL AS acked FROM alerts \
         WHERE id IN (SELECT alert_id FROM incident_alerts WHERE incident_id = $1) ORDER BY started_at FOR UPDATE",
        cols = ALERT_COLUMNS
    )))
    .bind(incident)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| Ok((decode_alert(r)?, r.try_get("acked")?)))
        .collect()
}

/// Recompute an incident's entities and severity from its alerts.
async fn refresh(tx: &mut sqlx::PgConnection, incident: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM incident_entities WHERE incident_id = $1")
        .bind(incident)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO incident_entities (incident_id, tenant_id, kind, value) \
         SELECT DISTINCT ia.incident_id, i.tenant_id, e->>'kind', e->>'value' \
         FROM incident_alerts ia JOIN incidents i ON i.id = ia.incident_id, jsonb_array_elements(ia.entities) e \
         WHERE ia.incident_id = $1",
    )
    .bind(incident)
    .execute(&mut *tx)
    .await?;
    let severities: Vec<String> = sqlx::query_scalar(
        "SELECT a.severity FROM alerts a JOIN incident_alerts ia ON ia.alert_id = a.id WHERE ia.incident_id = $1",
    )
    .bind(incident)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(top) = severities
        .iter()
        .map(String::as_str)
        .reduce(incident::max_severity)
    {
        set_severity(tx, incident, top).await?;
    }
    Ok(())
}

async fn set_severity(tx: &mut sqlx::PgConnection, incident: Uuid, severity: &str) -> Result<()> {
    sqlx::query("UPDATE incidents SET severity = $2 WHERE id = $1")
        .bind(incident)
        .bind(severity)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Add one alert to an incident's entities and severity: the cost of that alert, not
/// of the incident (the full [`refresh`] is for merges and splits). The same result
/// as a refresh, since an alert's entities are fixed when it joins and its severity only
/// rises.
async fn absorb(
    tx: &mut sqlx::PgConnection,
    incident: Uuid,
    alert: &AlertRow,
    entities: &[Entity],
) -> Result<()> {
    if !entities.is_empty() {
        let kinds: Vec<&str> = entities.iter().map(|e| e.kind.as_str()).collect();
        let values: Vec<&str> = entities.iter().map(|e| e.value.as_str()).collect();
        sqlx::query(
            "INSERT INTO incident_entities (incident_id, tenant_id, kind, value) \
             SELECT $1, $2, g.k, g.v FROM unnest($3::text[], $4::text[]) AS g(k, v) \
             ON CONFLICT DO NOTHING",
        )
        .bind(incident)
        .bind(alert.tenant_id.0)
        .bind(&kinds)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    }
    raise_severity(tx, incident, &alert.severity).await
}

/// The incident takes `severity` when it is higher than its own.
async fn raise_severity(tx: &mut sqlx::PgConnection, incident: Uuid, severity: &str) -> Result<()> {
    let current: String = sqlx::query_scalar("SELECT severity FROM incidents WHERE id = $1")
        .bind(incident)
        .fetch_one(&mut *tx)
        .await?;
    let top = incident::max_severity(&current, severity);
    if top != current {
        set_severity(tx, incident, top).await?;
    }
    Ok(())
}

fn title_of(alert: &AlertRow) -> String {
    let summary = alert.annotations["summary"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&alert.rule_id);
    let mut title = format!("{}: {}", alert.rule_id, summary);
    if title.len() > MAX_TITLE_BYTES {
        let mut end = MAX_TITLE_BYTES;
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
    }
    title
}

/// An alert's evidence (`$1` tenant, `$2` ids) for its entities: ids first, tenant
/// after — see `LogStore::fetch_by_seqs`.
pub const EVIDENCE_SQL: &str = "WITH r AS MATERIALIZED (SELECT tenant_id, attributes, trace_id \
     FROM log_records WHERE seq = ANY($2)) SELECT attributes, trace_id FROM r WHERE tenant_id = $1";

/// Join a firing alert to an incident, or open one; resolve an incident whose alerts
/// all resolved (when the tenant's settings say so). Runs inside `apply`'s
/// transaction, after the alert rows are written.
pub(crate) async fn attach(tx: &mut sqlx::PgConnection, change: &AlertChange) -> Result<()> {
    let a = &change.alert;
    let current: Option<Uuid> =
        sqlx::query_scalar("SELECT incident_id FROM incident_alerts WHERE alert_id = $1")
            .bind(a.id)
            .fetch_optional(&mut *tx)
            .await?;
    match (change.notify, current) {
        (Some("trigger"), Some(id)) => {
            // Fired again (escalated): the incident takes the severity and is active;
            // resolved by hand meanwhile, it opens again.
            let incident = lock(tx, a.tenant_id, id).await?;
            sqlx::query(
                "UPDATE incidents SET last_activity_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Its entities were recorded when it joined; only its severity rose.
            raise_severity(tx, id, &a.severity).await?;
            if incident.state == "resolved" && incident.merged_into.is_none() {
                set_state(
                    tx,
                    &incident,
                    "triggered",
                    "palisade",
                    "an alert fired again",
                )
                .await?;
            }
        }
        (Some("trigger"), None) => {
            // One grouping decision at a time per tenant: two alerts about the same
            // entity committed by concurrent transactions (the per-event follower and
            // the threshold schedule) must not open two incidents. Held to commit.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(GROUPING_LOCK)
                .bind(a.tenant_id.0.to_string())
                .execute(&mut *tx)
                .await?;
            let settings = settings_in(tx, a.tenant_id).await?;
            let ids: Vec<i64> = a.event_ids.iter().copied().take(20).collect();
            let evidence: Vec<(Value, Option<String>)> = sqlx::query(EVIDENCE_SQL)
                .bind(a.tenant_id.0)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("attributes")?, r.try_get("trace_id")?)))
                .collect::<Result<_>>()?;
            let entities = incident::entities(&a.labels, &evidence, &aliases());
            let grouping: Vec<&Entity> = entities
                .iter()
                .filter(|e| incident::groups_on(&settings.group_on, &e.kind))
                .collect();
            let kinds: Vec<&str> = grouping.iter().map(|e| e.kind.as_str()).collect();
            let values: Vec<&str> = grouping.iter().map(|e| e.value.as_str()).collect();
            let joined: Option<Uuid> = if grouping.is_empty() {
                None
            } else {
                sqlx::query_scalar(
                    "SELECT i.id FROM incidents i \
                     WHERE i.tenant_id = $1 AND i.state <> 'resolved' \
                       AND i.last_activity_at >= now() - make_interval(secs => $2) \
                       AND EXISTS (SELECT 1 FROM incident_entities e, unnest($3::text[], $4::text[]) AS g(k, v) \
                                   WHERE e.incident_id = i.id AND e.kind = g.k AND e.value = g.v) \
                     ORDER BY i.last_activity_at DESC LIMIT 1 FOR UPDATE",
                )
                .bind(a.tenant_id.0)
                .bind(settings.window.num_seconds() as f64)
                .bind(&kinds)
                .bind(&values)
                .fetch_optional(&mut *tx)
                .await?
            };
            let id = match joined {
                Some(id) => {
                    sqlx::query(
                        "UPDATE incidents SET last_activity_at = now(), updated_at = now() WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => {
                    let id = Uuid::now_v7();
                    let opened = a.firing_at.unwrap_or(a.started_at);
                    sqlx::query(
                        "INSERT INTO incidents (id, tenant_id, title, state, severity, opened_at, last_activity_at) \
                         VALUES ($1, $2, $3, 'triggered', $4, $5, now())",
                    )
                    .bind(id)
                    .bind(a.tenant_id.0)
                    .bind(title_of(a))
                    .bind(&a.severity)
                    .bind(opened)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
            };
            sqlx::query(
                "INSERT INTO incident_alerts (alert_id, incident_id, entities) VALUES ($1, $2, $3)",
            )
            .bind(a.id)
            .bind(id)
            .bind(serde_json::to_value(&entities).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            absorb(tx, id, a, &entities).await?;
        }
        (_, Some(id)) => {
            sqlx::query(
                "UPDATE incidents SET last_activity_at = greatest(last_activity_at, now()) WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if a.state == "resolved" {
                let incident = lock(tx, a.tenant_id, id).await?;
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM alerts a JOIN incident_alerts ia ON ia.alert_id = a.id \
                     WHERE ia.incident_id = $1 AND a.state <> 'resolved'",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if open == 0
                    && incident.state != "resolved"
                    && settings_in(tx, a.tenant_id).await?.auto_resolve
                {
                    set_state(
                        tx,
                        &incident,
                        "resolved",
                        "palisade",
                        "all its alerts resolved",
                    )
                    .await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl IncidentStore {
    pub fn new(db: Db) -> IncidentStore {
        IncidentStore { db }
    }

    pub async fn settings(&self, tenant: TenantId) -> Result<IncidentSettings> {
        let mut conn = self.db.pool.acquire().await?;
        settings_in(&mut conn, tenant).await
    }

    pub async fn put_settings(
        &self,
        tenant: TenantId,
        settings: &IncidentSettings,
        by: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO incident_settings (tenant_id, group_on, window_secs, auto_resolve, updated_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET group_on = EXCLUDED.group_on, \
             window_secs = EXCLUDED.window_secs, auto_resolve = EXCLUDED.auto_resolve, \
             updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(tenant.0)
        .bind(&settings.group_on)
        .bind(i32::try_from(settings.window.num_seconds()).unwrap_or(i32::MAX))
        .bind(settings.auto_resolve)
        .bind(by)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Incidents, newest first.
    pub async fn list(&self, tenant: TenantId, f: &IncidentFilter) -> Result<Vec<IncidentRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.tenant_id = $1 \
               AND ($2::text IS NULL OR i.state = $2) AND ($3::text IS NULL OR i.severity = $3) \
               AND ($4::text IS NULL OR i.assignee = $4) \
               AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM incident_entities e \
                    WHERE e.incident_id = i.id AND e.kind = $5 AND e.value = $6)) \
               AND ($7::timestamptz IS NULL OR i.opened_at >= $7) AND ($8::timestamptz IS NULL OR i.opened_at <= $8) \
             ORDER BY i.opened_at DESC, i.id DESC LIMIT $9"
        )))
        .bind(tenant.0)
        .bind(&f.state)
        .bind(&f.severity)
        .bind(&f.assignee)
        .bind(f.entity.as_ref().map(|e| e.kind.as_str()))
        .bind(f.entity.as_ref().map(|e| e.value.as_str()))
        .bind(f.from)
        .bind(f.to)
        .bind(f.limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(decode)
        .collect()
    }

    pub async fn get(&self, tenant: TenantId, id: Uuid) -> Result<IncidentRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.tenant_id = $1 AND i.id = $2"
        )))
        .bind(tenant.0)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StorageError::NotFound("incident".into()))?;
        decode(&row)
    }

    /// The incident an alert of the tenant belongs to.
    pub async fn for_alert(&self, tenant: TenantId, alert: Uuid) -> Result<Option<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT ia.incident_id FROM incident_alerts ia JOIN incidents i ON i.id = ia.incident_id \
             WHERE i.tenant_id = $1 AND ia.alert_id = $2",
        )
        .bind(tenant.0)
        .bind(alert)
        .fetch_optional(&self.db.pool)
        .await?)
    }

    /// Acknowledge: the incident and each of its firing, unacknowledged alerts (which
    /// enqueues their `acknowledge` pages), in one transaction.
    pub async fn acknowledge(&self, tenant: TenantId, id: Uuid, by: &str) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        // Alerts before the incident: the order `apply` takes them in (alert rows, then
        // the incident in `attach`), so the two never wait on each other.
        let alerts = alerts_of(&mut tx, id).await?;
        let incident = lock(&mut tx, tenant, id).await?;
        match incident.state.as_str() {
            "resolved" => {
                return Err(StorageError::Invalid(
                    "state: a resolved incident cannot be acknowledged; reopen it first".into(),
                ));
            }
            "acknowledged" => {}
            _ => {
                for (alert, acked) in alerts {
                    if alert.state != "resolved" && !acked {
                        crate::alerts::acknowledge_in(&mut tx, &alert, by).await?;
                    }
                }
                set_state(&mut tx, &incident, "acknowledged", by, "acknowledged").await?;
            }
        }
        tx.commit().await?;
        self.get(tenant, id).await
    }

    /// Resolve by hand: channels are told each open alert is resolved (`resolve`) and
    /// repeats stop; the alerts themselves resolve when their rules say so.
    pub async fn resolve(&self, tenant: TenantId, id: Uuid, by: &str) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let alerts = alerts_of(&mut tx, id).await?;
        let incident = lock(&mut tx, tenant, id).await?;
        if incident.state != "resolved" {
            for (alert, acked) in alerts {
                if alert.state == "resolved" {
                    continue;
                }
                if !acked {
                    sqlx::query(
                        "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2, updated_at = now() WHERE id = $1",
                    )
                    .bind(alert.id)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                }
                if alert.state == "firing" {
                    crate::notify::enqueue(&mut tx, &alert, "resolve").await?;
                }
            }
            set_state(&mut tx, &incident, "resolved", by, "resolved").await?;
        }
        tx.commit().await?;
        self.get(tenant, id).await
    }

    pub async fn reopen(&self, tenant: TenantId, id: Uuid, by: &str) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let incident = lock(&mut tx, tenant, id).await?;
        if incident.merged_into.is_some() {
            return Err(StorageError::Invalid(
                "state: this incident was merged into another; reopen that one".into(),
            ));
        }
        if incident.state == "resolved" {
            sqlx::query("UPDATE incidents SET last_activity_at = now() WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            set_state(&mut tx, &incident, "triggered", by, "reopened").await?;
        }
        tx.commit().await?;
        self.get(tenant, id).await
    }

    pub async fn assign(
        &self,
        tenant: TenantId,
        id: Uuid,
        assignee: Option<&str>,
        by: &str,
    ) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let incident = lock(&mut tx, tenant, id).await?;
        if incident.assignee.as_deref() != assignee {
            sqlx::query("UPDATE incidents SET assignee = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(assignee)
                .execute(&mut *tx)
                .await?;
            activity_in(
                &mut tx,
                &incident,
                "assignment",
                by,
                json!({"from": incident.assignee, "to": assignee}),
            )
            .await?;
        }
        tx.commit().await?;
        self.get(tenant, id).await
    }

    pub async fn retitle(
        &self,
        tenant: TenantId,
        id: Uuid,
        title: &str,
        by: &str,
    ) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let incident = lock(&mut tx, tenant, id).await?;
        if incident.title != title {
            sqlx::query("UPDATE incidents SET title = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(title)
                .execute(&mut *tx)
                .await?;
            activity_in(
                &mut tx,
                &incident,
                "state_change",
                by,
                json!({"action": "retitle", "from": incident.title, "to": title}),
            )
            .await?;
        }
        tx.commit().await?;
        self.get(tenant, id).await
    }

    /// A note or a pin (`kind`), bounded per incident.
    pub async fn add_activity(
        &self,
        tenant: TenantId,
        id: Uuid,
        kind: &str,
        payload: Value,
        by: &str,
    ) -> Result<ActivityRow> {
        let mut tx = self.db.pool.begin().await?;
        let incident = lock(&mut tx, tenant, id).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM incident_activity WHERE incident_id = $1 AND kind IN ('note', 'pin')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if count >= MAX_ACTIVITY {
            return Err(StorageError::Invalid(format!(
                "an incident has at most {MAX_ACTIVITY} notes and pins"
            )));
        }
        let row = activity_in(&mut tx, &incident, kind, by, payload).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Merge `from` into `into`: alerts, entities and activity move; each merged
    /// incident is resolved with `merged_into` set.
    pub async fn merge(
        &self,
        tenant: TenantId,
        into: Uuid,
        from: &[Uuid],
        by: &str,
    ) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let survivor = lock(&mut tx, tenant, into).await?;
        if survivor.merged_into.is_some() {
            return Err(StorageError::Invalid(
                "into: this incident was merged into another".into(),
            ));
        }
        for &other in from {
            if other == into {
                return Err(StorageError::Invalid(
                    "from: an incident cannot be merged into itself".into(),
                ));
            }
            let merged = lock(&mut tx, tenant, other).await?;
            if merged.merged_into.is_some() {
                return Err(StorageError::Invalid(format!(
                    "from: incident {other} was already merged"
                )));
            }
            sqlx::query("UPDATE incident_alerts SET incident_id = $1 WHERE incident_id = $2")
                .bind(into)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE incident_activity SET incident_id = $1 WHERE incident_id = $2")
                .bind(into)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM incident_entities WHERE incident_id = $1")
                .bind(other)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE incidents SET state = 'resolved', resolved_at = now(), merged_into = $2, updated_at = now() WHERE id = $1",
            )
            .bind(other)
            .bind(into)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE incidents SET opened_at = least(opened_at, $2), \
                 last_activity_at = greatest(last_activity_at, $3), updated_at = now() WHERE id = $1",
            )
            .bind(into)
            .bind(merged.opened_at)
            .bind(merged.last_activity_at)
            .execute(&mut *tx)
            .await?;
        }
        refresh(&mut tx, into).await?;
        activity_in(
            &mut tx,
            &survivor,
            "state_change",
            by,
            json!({"action": "merge", "merged": from}),
        )
        .await?;
        tx.commit().await?;
        self.get(tenant, into).await
    }

    /// Move `alerts` (some, not all, of incident `id`'s) to a new incident.
    pub async fn split(
        &self,
        tenant: TenantId,
        id: Uuid,
        alerts: &[Uuid],
        by: &str,
    ) -> Result<IncidentRow> {
        let mut tx = self.db.pool.begin().await?;
        let source = lock(&mut tx, tenant, id).await?;
        if alerts.is_empty() || alerts.iter().any(|a| !source.alert_ids.contains(a)) {
            return Err(StorageError::Invalid(
                "alert_ids: name some of this incident's alerts".into(),
            ));
        }
        if source.alert_ids.iter().all(|a| alerts.contains(a)) {
            return Err(StorageError::Invalid(
                "alert_ids: an incident keeps at least one alert".into(),
            ));
        }
        let first = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ANY($1) ORDER BY started_at LIMIT 1"
        )))
        .bind(alerts)
        .fetch_one(&mut *tx)
        .await?;
        let first = decode_alert(&first)?;
        let new_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO incidents (id, tenant_id, title, state, severity, opened_at, last_activity_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now())",
        )
        .bind(new_id)
        .bind(tenant.0)
        .bind(title_of(&first))
        .bind(if source.state == "resolved" {
            "resolved"
        } else {
            "triggered"
        })
        .bind(&first.severity)
        .bind(first.firing_at.unwrap_or(first.started_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE incident_alerts SET incident_id = $1 WHERE alert_id = ANY($2)")
            .bind(new_id)
            .bind(alerts)
            .execute(&mut *tx)
            .await?;
        refresh(&mut tx, id).await?;
        refresh(&mut tx, new_id).await?;
        let created = lock(&mut tx, tenant, new_id).await?;
        activity_in(
            &mut tx,
            &source,
            "state_change",
            by,
            json!({"action": "split", "alerts": alerts, "to": new_id}),
        )
        .await?;
        activity_in(
            &mut tx,
            &created,
            "state_change",
            by,
            json!({"action": "split", "alerts": alerts, "from": id}),
        )
        .await?;
        tx.commit().await?;
        self.get(tenant, new_id).await
    }

    /// Responder activity of an incident in `[from, to]`, oldest first.
    pub async fn activity(
        &self,
        tenant: TenantId,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ActivityRow>> {
        sqlx::query(
            "SELECT id, at, kind, actor, payload FROM incident_activity \
             WHERE tenant_id = $1 AND incident_id = $2 AND at >= $3 AND at <= $4 ORDER BY at, id",
        )
        .bind(tenant.0)
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(activity_row)
        .collect()
    }

    /// The transitions of the incident's alerts in `[from, to]`, oldest first.
    pub async fn alert_steps(
        &self,
        tenant: TenantId,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AlertStep>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.id AS t_id, t.from_state, t.to_state, t.at AS t_at, t.silenced AS t_silenced, {cols} \
             FROM alert_transitions t JOIN alerts ON alerts.id = t.alert_id \
             JOIN incident_alerts ia ON ia.alert_id = t.alert_id \
             WHERE ia.incident_id = $2 AND t.tenant_id = $1 AND t.at >= $3 AND t.at <= $4 ORDER BY t.at, t.id",
            cols = ALERT_COLUMNS
                .split(", ")
                .map(|c| format!("alerts.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(tenant.0)
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertStep {
                    id: r.try_get("t_id")?,
                    alert: decode_alert(r)?,
                    from: r.try_get("from_state")?,
                    to: r.try_get("to_state")?,
                    at: r.try_get("t_at")?,
                    silenced: r.try_get("t_silenced")?,
                })
            })
            .collect()
    }

    /// Acknowledgements of the incident's alerts (who, when).
    pub async fn alert_acks(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Vec<(Uuid, String, DateTime<Utc>, String)>> {
        sqlx::query(
            "SELECT a.id, a.rule_id, a.acknowledged_at, a.acknowledged_by FROM alerts a \
             JOIN incident_alerts ia ON ia.alert_id = a.id \
             WHERE ia.incident_id = $2 AND a.tenant_id = $1 AND a.acknowledged_at IS NOT NULL",
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("rule_id")?,
                r.try_get("acknowledged_at")?,
                r.try_get::<Option<String>, _>("acknowledged_by")?
                    .unwrap_or_default(),
            ))
        })
        .collect()
    }

    /// Delivery attempts of notifications about the incident's alerts (including
    /// grouped pages that carried them) in `[from, to]`, oldest first.
    pub async fn attempt_steps(
        &self,
        tenant: TenantId,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AttemptStep>> {
        sqlx::query(
            "WITH mine AS (SELECT n.id, n.grouped_into, n.alert_id FROM notifications n \
               JOIN incident_alerts ia ON ia.alert_id = n.alert_id WHERE ia.incident_id = $2 AND n.tenant_id = $1), \
             sent AS (SELECT id, alert_id FROM mine UNION SELECT grouped_into, alert_id FROM mine WHERE grouped_into IS NOT NULL) \
             SELECT DISTINCT ON (t.id) t.id, t.at, t.notification_id, sent.alert_id, c.name, c.kind, n.event, t.status, t.latency_ms, t.error \
             FROM notification_attempts t JOIN sent ON sent.id = t.notification_id \
             JOIN notifications n ON n.id = t.notification_id JOIN channels c ON c.id = n.channel_id \
             WHERE t.at >= $3 AND t.at <= $4 ORDER BY t.id",
        )
        .bind(tenant.0)
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptStep {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                notification_id: r.try_get("notification_id")?,
                alert_id: r.try_get("alert_id")?,
                channel: r.try_get("name")?,
                channel_kind: r.try_get("kind")?,
                event: r.try_get("event")?,
                status: r.try_get("status")?,
                latency_ms: r.try_get("latency_ms")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
    }

    /// The tenant's rule `rule` as it stood at `at` (version and YAML), if the rule
    /// was managed through the API then.
    pub async fn rule_at(
        &self,
        tenant: TenantId,
        rule: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(i32, String)>> {
        let row = sqlx::query(
            "SELECT version, yaml FROM rule_versions WHERE tenant_id = $1 AND id = $2 AND changed_at <= $3 \
               AND action <> 'delete' ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant.0)
        .bind(rule)
        .bind(at)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| Ok((r.try_get("version")?, r.try_get("yaml")?)))
            .transpose()
    }
}
