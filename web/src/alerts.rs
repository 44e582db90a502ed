//! `/api/v1/alerts`: the tenant's alerts, with their evidence and history.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, State};
use chrono::Utc;
use k8saudit::attr;
use model::Principal;
use serde::Deserialize;
use storage::alerts::{AlertFilter, AlertRow};

use crate::extract::{ApiQuery, ObjectId};
use crate::rules::invalid;
use crate::wire::{Alert, AlertList, ErrorBody, Transition};
use crate::{ApiError, AppState};

/// Kubernetes audit ids of the evidence events (`k8s.audit.id`; for a correlation,
/// the `alert.audit_id` of each signal: the request that raised that detection), by
/// sequence id.
async fn audit_ids(
    state: &AppState,
    tenant: model::TenantId,
    rows: &[AlertRow],
) -> Result<HashMap<i64, String>, ApiError> {
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.event_ids.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(10_000);
    let events = state
        .engine
        .logs()
        .fetch_by_seqs(tenant, &ids, None)
        .await?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let attributes = &e.record.attributes;
            let id = attributes
                .get(attr::AUDIT_ID)
                .or_else(|| attributes.get(alerting::signal::ATTR_AUDIT_ID))?
                .as_str()?
                .to_string();
            Some((e.seq, id))
        })
        .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `pending`, `firing` or `resolved`.
    state: Option<String>,
    /// Only this rule's alerts.
    rule: Option<String>,
    /// Started at or after (RFC 3339 or relative, `now-1h`).
    from: Option<String>,
    /// Started at or before.
    to: Option<String>,
    /// 1-1000 [default: 100].
    limit: Option<i64>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<AlertList>, ApiError> {
    if let Some(s) = &q.state
        && alerting::lifecycle::State::parse(s).is_none()
    {
        return Err(invalid(format!(
            "state: expected pending, firing or resolved, got {s:?}"
        )));
    }
    let now = Utc::now();
    let limit = crate::extract::list_limit(q.limit, 100)?;
    let filter = AlertFilter {
        state: q.state,
        rule: q.rule,
        from: crate::extract::optional_time(q.from.as_deref(), now, "from")?,
        to: crate::extract::optional_time(q.to.as_deref(), now, "to")?,
        limit,
    };
    let rows = state.engine.store().list(p.tenant_id, &filter).await?;
    let audit = audit_ids(&state, p.tenant_id, &rows).await?;
    Ok(Json(AlertList {
        alerts: rows.iter().map(|r| Alert::new(r, &audit)).collect(),
    }))
}

/// One alert with its state changes.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "alert id")),
    responses((status = 200, body = Alert), (status = 404, body = ErrorBody)))]
pub async fn get_alert(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
) -> Result<Json<Alert>, ApiError> {
    let (row, transitions) = state.engine.store().get(p.tenant_id, id).await?;
    let audit = audit_ids(&state, p.tenant_id, std::slice::from_ref(&row)).await?;
    let mut alert = Alert::new(&row, &audit);
    alert.transitions = Some(transitions.into_iter().map(Transition::from).collect());
    Ok(Json(alert))
}

/// Acknowledge a firing alert: repeat pages stop and PagerDuty is told (`acknowledge`).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "alert id")),
    responses((status = 200, body = Alert), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Alert>, ApiError> {
    let row = state
        .engine
        .store()
        .acknowledge(p.tenant_id, id, &p.actor())
        .await?;
    crate::audit::record(
        &state,
        model::audit::AuditEvent::new(
            p.actor(),
            "alert.acknowledge",
            format!("alert:{id}"),
            model::audit::Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source),
    )
    .await;
    let audit = audit_ids(&state, p.tenant_id, std::slice::from_ref(&row)).await?;
    Ok(Json(Alert::new(&row, &audit)))
}
