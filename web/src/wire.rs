//! The JSON the API answers with. Library crates return domain types; these are the
//! shapes clients see (and the OpenAPI document describes), built from them here.

use chrono::{DateTime, SecondsFormat, Utc};
use model::StoredLog;
use query::search::{HistogramResult, SearchResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One stored log record, exactly as committed.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Hit {
    /// The record's sequence id (decimal string).
    pub id: String,
    pub time: String,
    pub observed_time: String,
    pub severity_text: String,
    pub severity_number: i16,
    pub body: String,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    #[schema(value_type = Object)]
    pub resource: Map<String, Value>,
    pub scope: Scope,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub flags: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    pub start: String,
    pub end: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

// ---------------------------------------------------------------------------------
// Everything below: the shapes of the administrative and alerting API.

use std::collections::HashMap;

use alerting::runtime::{BacktestResult, JobStatus};
use storage::access::{Tenant, TokenInfo, UserRow};
use storage::alerts::{AlertRow, RuleRow, RuleVersionRow, SilenceRow, TransitionRow};
use storage::audit::AuditRecord;
use utoipa::ToSchema;
use uuid::Uuid;

/// `{"error": {...}}`: every error answer of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable class: `invalid_argument`, `not_found`, `unavailable`...
    pub code: String,
    /// What is wrong, naming the field (4xx); generic for 5xx.
    pub message: String,
    /// 5xx only: the id the server logged the details under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A plain acknowledgement (`{"status": "..."}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub status: String,
}

/// The evidence of an alert: the events that made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evidence {
    /// Sequence ids of the evidence events (decimal strings; see `GET /api/v1/search`).
    pub event_ids: Vec<String>,
    pub count: i64,
    /// Kubernetes audit ids of the evidence (audit events and correlation signals).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Alert {
    pub id: Uuid,
    pub rule_id: String,
    pub fingerprint: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    #[schema(value_type = Object)]
    pub labels: Value,
    #[schema(value_type = Object)]
    pub annotations: Value,
    pub evidence: Evidence,
    pub started_at: DateTime<Utc>,
    pub firing_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub silenced: bool,
    /// `GET /api/v1/alerts/{id}` only: the state changes, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<Transition>>,
}

impl Alert {
    /// `audit` maps evidence sequence ids to their Kubernetes audit ids.
    pub fn new(row: &AlertRow, audit: &HashMap<i64, String>) -> Alert {
        Alert {
            id: row.id,
            rule_id: row.rule_id.clone(),
            fingerprint: row.fingerprint.clone(),
            state: row.state.clone(),
            severity: row.severity.clone(),
            labels: row.labels.clone(),
            annotations: row.annotations.clone(),
            evidence: Evidence {
                event_ids: row.event_ids.iter().map(i64::to_string).collect(),
                count: row.event_count,
                audit_ids: row
                    .event_ids
                    .iter()
                    .filter_map(|id| audit.get(id).cloned())
                    .collect(),
            },
            started_at: row.started_at,
            firing_at: row.firing_at,
            resolved_at: row.resolved_at,
            silenced: row.silenced,
            transitions: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Transition {
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
    pub silenced: bool,
}

impl From<TransitionRow> for Transition {
    fn from(t: TransitionRow) -> Transition {
        Transition {
            from: t.from,
            to: t.to,
            at: t.at,
            silenced: t.silenced,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleSummary {
    pub id: String,
    pub title: String,
    /// `match`, `threshold` or `sequence`.
    pub kind: String,
    pub severity: String,
    pub enabled: bool,
    /// `file` (shipped or `--rules-dir`), `api` (this tenant's) or `tuned` (a shipped
    /// rule with this tenant's tuning).
    pub source: String,
    pub version: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleSummary>,
}

/// A rule: stored through the API (`yaml`, `version`...) or from a file (`rule`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDetail {
    pub id: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yaml: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// The parsed document of a file rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
}

impl From<RuleRow> for RuleDetail {
    fn from(row: RuleRow) -> RuleDetail {
        RuleDetail {
            id: row.id,
            source: "api".into(),
            version: Some(row.version),
            yaml: Some(row.yaml),
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by),
            rule: None,
        }
    }
}

/// The answer to a rule written or deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleWritten {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

/// One change to a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleVersion {
    pub version: i32,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
}

impl From<RuleVersionRow> for RuleVersion {
    fn from(row: RuleVersionRow) -> RuleVersion {
        RuleVersion {
            version: row.version,
            action: row.action,
            changed_by: row.changed_by,
            changed_at: row.changed_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleVersions {
    pub id: String,
    pub versions: Vec<RuleVersion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Silence {
    pub id: Uuid,
    #[schema(value_type = Vec<Object>)]
    pub matchers: Value,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Maintenance window: a cron schedule (UTC) and each window's length.
    pub schedule: Option<String>,
    pub duration_secs: Option<i64>,
    pub created_by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

impl From<SilenceRow> for Silence {
    fn from(s: SilenceRow) -> Silence {
        Silence {
            id: s.id,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            schedule: s.schedule,
            duration_secs: s.duration_secs,
            created_by: s.created_by,
            comment: s.comment,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceCreated {
    pub silence: Silence,
}

/// The answer to an object disabled, revoked or expired.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestAlert {
    pub fingerprint: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HourCount {
    pub hour: DateTime<Utc>,
    pub alerts: u64,
}

/// What a backtest found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backtest {
    pub rule_id: String,
    pub events_scanned: usize,
    /// More events matched than one backtest evaluates.
    pub truncated: bool,
    pub alerts: Vec<BacktestAlert>,
    /// Alerts raised per hour (by the hour of their first event).
    pub per_hour: Vec<HourCount>,
}

impl From<BacktestResult> for Backtest {
    fn from(r: BacktestResult) -> Backtest {
        Backtest {
            rule_id: r.rule_id,
            events_scanned: r.events_scanned,
            truncated: r.truncated,
            alerts: r
                .alerts
                .into_iter()
                .map(|a| BacktestAlert {
                    fingerprint: a.fingerprint,
                    labels: a.labels,
                    count: a.count,
                    first_at: a.first_at,
                    last_at: a.last_at,
                })
                .collect(),
            per_hour: r
                .per_hour
                .into_iter()
                .map(|h| HourCount {
                    hour: h.hour,
                    alerts: h.alerts,
                })
                .collect(),
        }
    }
}

/// A background backtest: progress, then the result.
#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestJob {
    pub id: Uuid,
    pub rule_id: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    /// 0 to 1.
    pub progress: f64,
    pub events_scanned: u64,
    pub started_at: DateTime<Utc>,
    pub result: Option<Backtest>,
    pub error: Option<String>,
}

impl From<JobStatus> for BacktestJob {
    fn from(s: JobStatus) -> BacktestJob {
        BacktestJob {
            id: s.id,
            rule_id: s.rule_id,
            state: s.state.to_string(),
            progress: s.progress,
            events_scanned: s.events_scanned,
            started_at: s.started_at,
            result: s.result.map(Backtest::from),
            error: s.error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub username: String,
    pub role: String,
    pub instance_admin: bool,
    /// A member whose home tenant is another one (added with `POST /api/v1/members`).
    pub member: bool,
}

impl From<UserRow> for User {
    fn from(u: UserRow) -> User {
        User {
            id: u.id,
            tenant_id: u.tenant_id.0,
            username: u.username,
            role: u.role,
            instance_admin: u.instance_admin,
            member: u.member,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    pub id: Uuid,
    pub username: String,
    pub role: String,
}

/// Token metadata (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_addr: Option<String>,
}

impl From<TokenInfo> for Token {
    fn from(t: TokenInfo) -> Token {
        Token {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
            last_used_addr: t.last_used_addr,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// A new token: the secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    pub id: Uuid,
    pub token: String,
    pub scope: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One entry of Palisade's own audit trail (hash-chained).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub source_addr: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
    pub hash: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> AuditEntry {
        AuditEntry {
            id: r.id,
            at: r.at,
            tenant_id: r.event.tenant_id.map(|t| t.0),
            actor: r.event.actor,
            action: r.event.action,
            target: r.event.target,
            outcome: r.event.outcome.as_str().to_string(),
            source_addr: r.event.source_addr,
            details: r.event.details,
            hash: r.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<Tenant> for TenantBody {
    fn from(t: Tenant) -> TenantBody {
        TenantBody {
            id: t.id.0,
            name: t.name,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: TenantBody,
}

/// The signed-in user, after `POST /api/v1/auth/login`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedIn {
    pub username: String,
    pub tenant: String,
    pub role: String,
    pub instance_admin: bool,
    /// Send as `X-CSRF-Token` with every state-changing request of this session.
    pub csrf_token: String,
}

/// Who is calling: `GET /api/v1/auth/session`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub tenant: String,
    /// Every tenant this session's user can switch to (`POST /api/v1/auth/tenant`),
    /// with the user's role there; empty for tokens (a token has one tenant).
    pub tenants: Vec<TenantRole>,
    /// `{"kind": "session", ...}` or `{"kind": "token", ...}`.
    #[schema(value_type = Object)]
    pub principal: Value,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    pub database: bool,
    pub migrations: bool,
    pub index_caught_up: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: ReadyChecks,
}

/// A paging channel (its URL, routing key and secret are never returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    /// `pagerduty`, `slack`, `webhook` or `alertmanager`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Scheme and host the channel sends to.
    pub target: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<storage::notify::ChannelRow> for Channel {
    fn from(c: storage::notify::ChannelRow) -> Channel {
        Channel {
            id: c.id,
            name: c.name,
            kind: c.kind,
            target: c.target,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCreated {
    pub channel: Channel,
}

/// The receiver's answer to a test notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelTest {
    pub delivered: bool,
    /// The HTTP status, absent when no answer came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The first bytes of the answer, or why there was none.
    pub response: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationBody {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub alert_id: Option<Uuid>,
    /// `trigger`, `acknowledge`, `resolve` or `test`.
    pub event: String,
    /// `pending`, `grouped` (carried by the pending page `grouped_into`),
    /// `delivered`, `dead` or `skipped` (the routing sends this alert elsewhere).
    pub state: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// The page that carried this one (routing `group_by`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grouped_into: Option<Uuid>,
}

impl From<storage::notify::NotificationRow> for NotificationBody {
    fn from(n: storage::notify::NotificationRow) -> NotificationBody {
        NotificationBody {
            id: n.id,
            channel_id: n.channel_id,
            alert_id: n.alert_id,
            event: n.event,
            state: n.state,
            attempts: n.attempts,
            created_at: n.created_at,
            delivered_at: n.delivered_at,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
            grouped_into: n.grouped_into,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationBody>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptBody {
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDetail {
    #[serde(flatten)]
    pub notification: NotificationBody,
    pub attempt_log: Vec<AttemptBody>,
}

impl NotificationDetail {
    pub fn new(
        row: storage::notify::NotificationRow,
        attempts: Vec<storage::notify::Attempt>,
    ) -> NotificationDetail {
        NotificationDetail {
            notification: NotificationBody::from(row),
            attempt_log: attempts
                .into_iter()
                .map(|a| AttemptBody {
                    at: a.at,
                    status: a.status,
                    latency_ms: a.latency_ms,
                    error: a.error,
                })
                .collect(),
        }
    }
}

/// A routing tree (`null`: every alert to every channel).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingBody {
    #[schema(value_type = Option<Object>)]
    pub route: Option<Value>,
}

/// An incident's entity (`actor`/`alice`, `namespace`/`prod`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EntityBody {
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Incident {
    pub id: Uuid,
    pub title: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub state: String,
    /// The highest severity of its alerts.
    pub severity: String,
    pub assignee: Option<String>,
    pub entities: Vec<EntityBody>,
    /// Oldest first.
    pub alert_ids: Vec<Uuid>,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// When one of its alerts last fired or changed (the grouping window runs from
    /// here).
    pub last_activity_at: DateTime<Utc>,
    /// Set when this incident was merged into another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Uuid>,
}

impl From<storage::incidents::IncidentRow> for Incident {
    fn from(i: storage::incidents::IncidentRow) -> Incident {
        Incident {
            id: i.id,
            title: i.title,
            state: i.state,
            severity: i.severity,
            assignee: i.assignee,
            entities: i
                .entities
                .into_iter()
                .map(|e| EntityBody {
                    kind: e.kind,
                    value: e.value,
                })
                .collect(),
            alert_ids: i.alert_ids,
            opened_at: i.opened_at,
            acknowledged_at: i.acknowledged_at,
            resolved_at: i.resolved_at,
            last_activity_at: i.last_activity_at,
            merged_into: i.merged_into,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TimelineEntry {
    pub time: DateTime<Utc>,
    /// `alert_fired`, `alert_state`, `alert_resolved`, `notification`, `state_change`,
    /// `assignment`, `note`, `pin` or `event` (a correlated event).
    pub kind: String,
    /// Who: a user or token, `palisade` for the server, the event's actor for events.
    pub actor: String,
    /// What, by kind (docs/incidents.md).
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub entries: Vec<TimelineEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A tenant's incident grouping (`GET`/`PUT /api/v1/incident-settings`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncidentSettingsBody {
    /// Entity kinds that group alerts; `labels` stands for every kind from a rule's
    /// group labels [default: actor, namespace, workload, client_ip, labels].
    pub group_on: Vec<String>,
    /// An alert joins an open incident active within this window (`30m`).
    pub window: String,
    /// Resolve an incident when all its alerts have resolved.
    pub auto_resolve: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantRole {
    pub name: String,
    pub role: String,
}
