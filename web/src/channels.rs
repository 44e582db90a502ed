//! `/api/v1/channels` and `/api/v1/notifications`: where a tenant's alerts are paged,
//! and what became of each page. Channel secrets are sealed at rest and never returned.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::Utc;
use model::audit::{AuditEvent, Outcome};
use model::{ErrorKind, Principal};
use notify::channel::{ChannelSpec, Kind};
use serde::Deserialize;
use serde_json::json;
use storage::notify::ChannelRow;
use uuid::Uuid;

use crate::auth::ClientAddr;
use crate::extract::{ApiJson, ApiQuery, ObjectId};
use crate::rules::invalid;
use crate::wire::{
    Changed, Channel, ChannelCreated, ChannelList, ChannelTest, ErrorBody, NotificationBody,
    NotificationDetail, NotificationList, RoutingBody,
};
use crate::{ApiError, AppState, audit};

/// A channel as written: `url`, `routing_key` and `secret` as its type needs.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// Unique in the tenant, 1-64 characters.
    pub(crate) name: String,
    /// `pagerduty`, `slack`, `webhook` or `alertmanager`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The receiver (PagerDuty: optional, the Events API v2 endpoint by default;
    /// Alertmanager: its base URL).
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// PagerDuty: the integration's routing key.
    #[serde(default)]
    pub(crate) routing_key: Option<String>,
    /// Webhook: the signing secret (`whsec_<base64>` or at least 16 bytes).
    #[serde(default)]
    pub(crate) secret: Option<String>,
}

/// Validate a request into a channel row with its secrets sealed.
async fn channel_row(
    state: &AppState,
    tenant: model::TenantId,
    id: Uuid,
    req: ChannelRequest,
) -> Result<ChannelRow, ApiError> {
    let spec = ChannelSpec {
        name: req.name,
        kind: req.kind,
        url: req.url,
        routing_key: req.routing_key,
        secret: req.secret,
    };
    notify::channel::prepare(
        spec,
        id,
        tenant,
        &state.notifier.policy,
        &state.notifier.keys,
    )
    .await
    .map_err(invalid)
}

fn changed(p: &Principal, action: &str, target: String, source: Option<String>) -> AuditEvent {
    AuditEvent::new(p.actor(), action, target, Outcome::Success)
        .tenant(p.tenant_id)
        .source(source)
}

/// Store a new or changed channel and audit it (name taken: 409 naming the field).
async fn save(
    state: &AppState,
    p: &Principal,
    row: &ChannelRow,
    new: bool,
    source: Option<String>,
) -> Result<(), ApiError> {
    let stored = if new {
        state.notifications.create_channel(row).await
    } else {
        state.notifications.update_channel(row).await
    };
    stored.map_err(|e| conflict(e, &row.name))?;
    let action = if new {
        "channel.create"
    } else {
        "channel.update"
    };
    audit::record(
        state,
        changed(p, action, format!("channel:{}", row.name), source)
            .details(json!({"type": row.kind, "target": row.target})),
    )
    .await;
    Ok(())
}

fn conflict(err: storage::StorageError, name: &str) -> ApiError {
    match err {
        storage::StorageError::Conflict(_) => ApiError::new(
            ErrorKind::Conflict,
            format!("name: a channel {name:?} exists"),
        ),
        other => other.into(),
    }
}

/// The tenant's channels (never their secrets).
#[utoipa::path(get, path = "/api/v1/channels", tag = "paging",
    responses((status = 200, body = ChannelList)))]
pub async fn list_channels(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ChannelList>, ApiError> {
    let rows = state.notifications.channels(p.tenant_id).await?;
    Ok(Json(ChannelList {
        channels: rows.into_iter().map(Channel::from).collect(),
    }))
}

/// Add a channel. Its destination is checked now (and again at every send).
#[utoipa::path(post, path = "/api/v1/channels", tag = "paging", request_body = ChannelRequest,
    responses((status = 201, body = ChannelCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<(StatusCode, Json<ChannelCreated>), ApiError> {
    let row = create(&state, &p, req, source).await?;
    Ok((
        StatusCode::CREATED,
        Json(ChannelCreated {
            channel: Channel::from(row),
        }),
    ))
}

/// Create a channel of the caller's tenant (API and UI), bounded per tenant.
pub(crate) async fn create(
    state: &AppState,
    p: &Principal,
    req: ChannelRequest,
    source: Option<String>,
) -> Result<ChannelRow, ApiError> {
    let existing = state.notifications.channels(p.tenant_id).await?.len();
    if existing >= notify::channel::MAX_CHANNELS_PER_TENANT {
        return Err(invalid(format!(
            "a tenant has at most {} channels",
            notify::channel::MAX_CHANNELS_PER_TENANT
        )));
    }
    let row = channel_row(state, p.tenant_id, Uuid::now_v7(), req).await?;
    save(state, p, &row, true, source).await?;
    Ok(row)
}

/// One channel.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "paging",
    params(("id" = uuid::Uuid, Path, description = "channel id")),
    responses((status = 200, body = Channel), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
) -> Result<Json<Channel>, ApiError> {
    Ok(Json(Channel::from(
        state.notifications.channel(p.tenant_id, id).await?,
    )))
}

/// Replace a channel's name and settings (its type stays).
#[utoipa::path(put, path = "/api/v1/channels/{id}", tag = "paging", request_body = ChannelRequest,
    params(("id" = uuid::Uuid, Path, description = "channel id")),
    responses((status = 200, body = Channel), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_channel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<Json<Channel>, ApiError> {
    let existing = state.notifications.channel(p.tenant_id, id).await?;
    if existing.kind != req.kind {
        return Err(invalid(format!(
            "type: a {} channel stays one; create a new channel instead",
            existing.kind
        )));
    }
    let mut row = channel_row(&state, p.tenant_id, id, req).await?;
    row.created_at = existing.created_at;
    save(&state, &p, &row, false, source).await?;
    Ok(Json(Channel::from(row)))
}

/// Delete a channel (its pending notifications go with it).
#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "paging",
    params(("id" = uuid::Uuid, Path, description = "channel id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Changed>, ApiError> {
    let existing = state.notifications.channel(p.tenant_id, id).await?;
    state.notifications.delete_channel(p.tenant_id, id).await?;
    audit::record(
        &state,
        changed(
            &p,
            "channel.delete",
            format!("channel:{}", existing.name),
            source,
        ),
    )
    .await;
    Ok(Json(Changed {
        id,
        disabled: None,
        revoked: None,
        expired: None,
        deleted: Some(true),
    }))
}

/// Send a test notification now and return the receiver's answer.
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "paging",
    params(("id" = uuid::Uuid, Path, description = "channel id")),
    responses((status = 200, body = ChannelTest), (status = 404, body = ErrorBody)))]
pub async fn test_channel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<ChannelTest>, ApiError> {
    Ok(Json(run_test(&state, &p, id, source).await?))
}

/// Send a test notification on channel `id` now; the receiver's answer (API and UI).
pub(crate) async fn run_test(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    source: Option<String>,
) -> Result<ChannelTest, ApiError> {
    let row = state.notifications.channel(p.tenant_id, id).await?;
    let sender = &state.notifier;
    let secrets = sender
        .secrets(&row)
        .map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
    let kind = Kind::parse(&row.kind).map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
    let now = Utc::now();
    let alert = json!({
        "id": null, "rule_id": "palisade-test", "fingerprint": format!("test-{id}"),
        "state": "firing", "severity": "info", "labels": {"rule": "palisade-test"},
        "annotations": {"summary": format!("Test notification for channel {} from Palisade", row.name)},
        "event_ids": [], "event_count": 0, "started_at": now, "firing_at": now, "resolved_at": null,
    });
    let notice = sender
        .notice(p.tenant_id, Uuid::now_v7(), "test", alert, None)
        .await;
    let out = notify::payload::build(kind, &notice, &secrets, now)
        .ok_or_else(|| invalid("this channel type has no test message"))?;
    let answer = sender.send(&out).await;
    audit::record(
        state,
        changed(p, "channel.test", format!("channel:{}", row.name), source)
            .details(json!({"status": answer.status})),
    )
    .await;
    Ok(ChannelTest {
        delivered: answer.ok(),
        status: answer.status,
        latency_ms: answer.latency.as_millis() as u64,
        response: answer.detail,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// `pending`, `grouped`, `delivered`, `dead` or `skipped` (not routed to that channel).
    state: Option<String>,
    /// Only this alert's notifications.
    alert: Option<Uuid>,
    /// 1-1000 [default: 100].
    limit: Option<i64>,
}

/// Notifications, newest first; `state=dead` is the dead-letter queue.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "paging", params(NotificationQuery),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody)))]
pub async fn list_notifications(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    if let Some(s) = &q.state
        && !["pending", "grouped", "delivered", "dead", "skipped"].contains(&s.as_str())
    {
        return Err(invalid(format!(
            "state: expected pending, grouped, delivered, dead or skipped, got {s:?}"
        )));
    }
    let limit = crate::extract::list_limit(q.limit, 100)?;
    let rows = state
        .notifications
        .list(p.tenant_id, q.state.as_deref(), q.alert, limit)
        .await?;
    Ok(Json(NotificationList {
        notifications: rows.into_iter().map(NotificationBody::from).collect(),
    }))
}

/// One notification with every delivery attempt.
#[utoipa::path(get, path = "/api/v1/notifications/{id}", tag = "paging",
    params(("id" = uuid::Uuid, Path, description = "notification id")),
    responses((status = 200, body = NotificationDetail), (status = 404, body = ErrorBody)))]
pub async fn get_notification(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
) -> Result<Json<NotificationDetail>, ApiError> {
    let row = state.notifications.get(p.tenant_id, id).await?;
    let attempts = state.notifications.attempts(p.tenant_id, id).await?;
    Ok(Json(NotificationDetail::new(row, attempts)))
}

/// The tenant's routing tree, or `{"route": null}` when every alert goes to every channel.
#[utoipa::path(get, path = "/api/v1/routing", tag = "paging",
    responses((status = 200, body = RoutingBody)))]
pub async fn get_routing(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<RoutingBody>, ApiError> {
    let tree = state.notifications.routing(p.tenant_id).await?;
    Ok(Json(RoutingBody {
        route: tree.and_then(|t| t.get("route").cloned()),
    }))
}

/// Replace the routing tree (YAML or JSON, docs/paging.md#routing); every channel it
/// names must exist.
#[utoipa::path(put, path = "/api/v1/routing", tag = "paging",
    request_body(content = String, content_type = "application/yaml", description = "a routing document"),
    responses((status = 200, body = RoutingBody), (status = 400, body = ErrorBody)))]
pub async fn put_routing(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: axum::body::Bytes,
) -> Result<Json<RoutingBody>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| invalid("body: not UTF-8"))?;
    let names: Vec<String> = state
        .notifications
        .channels(p.tenant_id)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let routing = notify::routing::Routing::parse(text, &names).map_err(invalid)?;
    let tree = serde_json::to_value(&routing).expect("routing serialises");
    state
        .notifications
        .put_routing(p.tenant_id, &tree, &p.actor())
        .await?;
    audit::record(
        &state,
        changed(&p, "routing.update", "routing".into(), source),
    )
    .await;
    Ok(Json(RoutingBody {
        route: tree.get("route").cloned(),
    }))
}

/// Remove the routing tree: every alert goes to every channel again.
#[utoipa::path(delete, path = "/api/v1/routing", tag = "paging",
    responses((status = 200, body = RoutingBody), (status = 404, body = ErrorBody)))]
pub async fn delete_routing(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
) -> Result<Json<RoutingBody>, ApiError> {
    if !state.notifications.delete_routing(p.tenant_id).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "no routing tree: every alert already goes to every channel",
        ));
    }
    audit::record(
        &state,
        changed(&p, "routing.delete", "routing".into(), source),
    )
    .await;
    Ok(Json(RoutingBody { route: None }))
}
