//! Rules, alerts, silences and backtests.

use alerting::rule::Rule;
use alerting::silence::Matcher;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use k8saudit::attr;
use model::audit::{AuditEvent, Outcome};
use model::{ErrorKind, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use storage::alerts::{AlertFilter, AlertRow};
use uuid::Uuid;

use crate::auth::ClientAddr;
use crate::session::json_body;
use crate::{ApiError, AppState, audit};

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

/// Kubernetes audit ids of the evidence events (`k8s.audit.id`; for a correlation,
/// the `alert.audit_id` of each signal: the request that raised that detection), by
/// sequence id.
async fn audit_ids(
    state: &AppState,
    tenant: model::TenantId,
    rows: &[AlertRow],
) -> Result<std::collections::HashMap<i64, String>, ApiError> {
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
                .or_else(|| attributes.get("alert.audit_id"))?
                .as_str()?
                .to_string();
            Some((e.seq, id))
        })
        .collect())
}

/// An alert with `evidence.audit_ids` for Kubernetes audit evidence.
fn alert_json_with(row: &AlertRow, audit: &std::collections::HashMap<i64, String>) -> Value {
    let mut body = alert_json(row);
    let ids: Vec<&String> = row
        .event_ids
        .iter()
        .filter_map(|id| audit.get(id))
        .collect();
    if !ids.is_empty() {
        body["evidence"]["audit_ids"] = json!(ids);
    }
    body
}

fn alert_json(row: &AlertRow) -> Value {
    json!({
        "id": row.id,
        "rule_id": row.rule_id,
        "fingerprint": row.fingerprint,
        "state": row.state,
        "severity": row.severity,
        "labels": row.labels,
        "annotations": row.annotations,
        "evidence": {"event_ids": row.event_ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(), "count": row.event_count},
        "started_at": row.started_at,
        "firing_at": row.firing_at,
        "resolved_at": row.resolved_at,
        "silenced": row.silenced,
    })
}

fn rule_summary(rule: &Rule, source: &str, version: Option<i32>) -> Value {
    json!({
        "id": rule.id(),
        "title": rule.doc.title,
        "kind": rule.doc.kind,
        "severity": rule.doc.severity,
        "enabled": rule.doc.enabled,
        "source": source,
        "version": version,
    })
}

/// A rule body as text: YAML is UTF-8, anything else is a 400 in the API's error shape.
fn rule_text(body: &axum::body::Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        invalid(format!(
            "body: the rule document is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Parse a request body holding exactly one rule document (YAML; JSON is YAML too):
/// a rule, or a tuning (`tunes: <shipped id>`) of a shipped rule.
fn one_rule(state: &AppState, body: &str) -> Result<Rule, ApiError> {
    alerting::rule::tenant_rule(body, &state.engine.rules().file)
        .map_err(|e| invalid(e.to_string()))
}

async fn reload(state: &AppState) -> Result<(), ApiError> {
    state
        .engine
        .reload_tenant_rules()
        .await
        .map_err(ApiError::from)
}

pub async fn list_rules(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let stored = state.engine.store().rules(p.tenant_id).await?;
    let set = state.engine.rules();
    let mut out = Vec::new();
    for rule in &set.file {
        if !stored.iter().any(|s| s.id == rule.id()) {
            out.push(rule_summary(rule, "file", None));
        }
    }
    for row in &stored {
        if let Ok(rule) = one_rule(&state, &row.yaml) {
            let source = if alerting::rule::is_tuning(&row.yaml) {
                "tuned"
            } else {
                "api"
            };
            out.push(rule_summary(&rule, source, Some(row.version)));
        }
    }
    Ok(Json(json!({"rules": out})))
}

pub async fn get_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.engine.store().rule(p.tenant_id, &id).await {
        Ok(row) => Ok(Json(
            json!({"id": row.id, "source": "api", "version": row.version, "yaml": row.yaml, "updated_at": row.updated_at, "updated_by": row.updated_by}),
        )),
        Err(storage::StorageError::NotFound(_)) => {
            let set = state.engine.rules();
            let rule = set.file.iter().find(|r| r.id() == id).ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("rule {id:?} not found"))
            })?;
            Ok(Json(
                json!({"id": rule.id(), "source": "file", "rule": rule.doc}),
            ))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn create_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = rule_text(&body)?;
    let rule = one_rule(&state, body)?;
    let row = state
        .engine
        .store()
        .put_rule(p.tenant_id, rule.id(), body, &p.actor(), false)
        .await?;
    reload(&state).await?;
    audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "rule.create",
            format!("rule:{}", rule.id()),
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source)
        .details(json!({"version": row.version})),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": row.id, "version": row.version})),
    ))
}

pub async fn update_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = rule_text(&body)?;
    let rule = one_rule(&state, body)?;
    if rule.id() != id {
        return Err(invalid(format!(
            "id: the document's id {:?} differs from the path's {id:?}",
            rule.id()
        )));
    }
    let row = state
        .engine
        .store()
        .put_rule(p.tenant_id, &id, body, &p.actor(), true)
        .await?;
    reload(&state).await?;
    audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "rule.update",
            format!("rule:{id}"),
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source)
        .details(json!({"version": row.version})),
    )
    .await;
    Ok(Json(json!({"id": row.id, "version": row.version})))
}

pub async fn delete_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .engine
        .store()
        .delete_rule(p.tenant_id, &id, &p.actor())
        .await?;
    reload(&state).await?;
    audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "rule.delete",
            format!("rule:{id}"),
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source),
    )
    .await;
    Ok(Json(json!({"id": id, "deleted": true})))
}

pub async fn rule_versions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = state.engine.store().rule_versions(p.tenant_id, &id).await?;
    if versions.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("rule {id:?} has no stored versions"),
        ));
    }
    Ok(Json(json!({"id": id, "versions": versions})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// A saved rule (file or API) ...
    rule_id: Option<String>,
    /// ... or a draft.
    yaml: Option<String>,
    from: String,
    #[serde(default)]
    to: Option<String>,
}

fn backtest_inputs(
    state: &AppState,
    p: &Principal,
    req: &BacktestRequest,
) -> Result<(Rule, DateTime<Utc>, DateTime<Utc>), ApiError> {
    let rule =
        match (&req.rule_id, &req.yaml) {
            (Some(id), None) => (*state.engine.rules().find(p.tenant_id, id).ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("rule {id:?} not found"))
            })?)
            .clone(),
            (None, Some(yaml)) => one_rule(state, yaml)?,
            _ => return Err(invalid("give exactly one of rule_id or yaml")),
        };
    let now = Utc::now();
    let from = query::time::parse_time(&req.from, now, "from")?;
    let to = query::time::parse_time(req.to.as_deref().unwrap_or("now"), now, "to")?;
    if from >= to {
        return Err(invalid("from must be before to"));
    }
    Ok((rule, from, to))
}

/// `POST /api/v1/rules/backtest`: run a backtest and wait for its result.
pub async fn backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<BacktestRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let (rule, from, to) = backtest_inputs(&state, &p, &req)?;
    let events = state
        .engine
        .candidate_events(p.tenant_id, &rule, from, to)
        .await?;
    let truncated = events.len() >= alerting::runtime::MAX_EVALUATED_EVENTS;
    let result =
        tokio::task::spawn_blocking(move || alerting::runtime::backtest(&rule, &events, truncated))
            .await
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(Json(serde_json::to_value(result).unwrap_or_default()))
}

/// `POST /api/v1/rules/backtests`: start a background backtest (long ranges).
pub async fn start_backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<BacktestRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let (rule, from, to) = backtest_inputs(&state, &p, &req)?;
    let job = state
        .backtests
        .start(state.engine.clone(), p.tenant_id, rule, from, to);
    Ok((StatusCode::ACCEPTED, Json(job.status())))
}

/// The tenant's backtest job `id`; any other id, malformed or not, is a 404.
fn find_job(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<std::sync::Arc<alerting::runtime::BacktestJob>, ApiError> {
    let not_found = || ApiError::new(ErrorKind::NotFound, "backtest not found");
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    state.backtests.get(p.tenant_id, id).ok_or_else(not_found)
}

/// `GET /api/v1/rules/backtests/{id}`: progress, then the result.
pub async fn backtest_status(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find_job(&state, &p, &id)?.status()))
}

/// `DELETE /api/v1/rules/backtests/{id}`: cancel.
pub async fn cancel_backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = find_job(&state, &p, &id)?;
    job.cancel();
    Ok(Json(job.status()))
}

#[derive(Debug, Deserialize)]
pub struct AlertQuery {
    state: Option<String>,
    rule: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

pub async fn list_alerts(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = params.map_err(|e| invalid(e.body_text()))?;
    if let Some(s) = &q.state
        && alerting::lifecycle::State::parse(s).is_none()
    {
        return Err(invalid(format!(
            "state: expected pending, firing or resolved, got {s:?}"
        )));
    }
    let now = Utc::now();
    let time = |v: &Option<String>, field| {
        v.as_deref()
            .map(|t| query::time::parse_time(t, now, field))
            .transpose()
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit must be between 1 and 1000"));
    }
    let filter = AlertFilter {
        state: q.state,
        rule: q.rule,
        from: time(&q.from, "from")?,
        to: time(&q.to, "to")?,
        limit,
    };
    let rows = state.engine.store().list(p.tenant_id, &filter).await?;
    let audit = audit_ids(&state, p.tenant_id, &rows).await?;
    let alerts: Vec<Value> = rows.iter().map(|r| alert_json_with(r, &audit)).collect();
    Ok(Json(json!({ "alerts": alerts })))
}

pub async fn get_alert(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::new(ErrorKind::NotFound, "alert not found"))?;
    let (row, transitions) = state.engine.store().get(p.tenant_id, id).await?;
    let audit = audit_ids(&state, p.tenant_id, std::slice::from_ref(&row)).await?;
    let mut body = alert_json_with(&row, &audit);
    body["transitions"] = serde_json::to_value(transitions).unwrap_or_default();
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    matchers: Vec<Matcher>,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    /// RFC 3339 or relative (`now+2h`).
    ends_at: String,
    comment: String,
    /// Maintenance window: a cron schedule (UTC), e.g. `0 2 * * 6` ...
    #[serde(default)]
    schedule: Option<String>,
    /// ... and how long each window lasts, e.g. `2h`.
    #[serde(default)]
    duration: Option<String>,
}

pub async fn list_silences(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"silences": state.engine.store().silences(p.tenant_id, true).await?}),
    ))
}

pub async fn create_silence(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    if req.matchers.is_empty() {
        return Err(invalid("matchers: at least one matcher is required"));
    }
    for m in &req.matchers {
        m.validate()
            .map_err(|e| invalid(format!("matchers: {e}")))?;
    }
    if req.comment.trim().is_empty() {
        return Err(invalid("comment is required"));
    }
    let now = Utc::now();
    let starts_at = req.starts_at.unwrap_or(now);
    let ends_at = query::time::parse_time(&req.ends_at, now, "to")
        .map_err(|e| invalid(format!("ends_at: {e}")))?;
    if ends_at <= starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    let recurrence = match (&req.schedule, &req.duration) {
        (None, None) => None,
        (Some(schedule), Some(duration)) => {
            let duration = query::time::parse_duration(duration)
                .ok()
                .and_then(|d| d.to_std().ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(format!(
                        "duration: {duration:?} is not a positive duration like 2h"
                    ))
                })?;
            alerting::silence::Recurrence::parse(schedule, duration)
                .map_err(|e| invalid(format!("schedule: {e}")))?;
            Some((schedule.as_str(), duration.as_secs() as i64))
        }
        _ => {
            return Err(invalid(
                "schedule and duration go together (a maintenance window needs both)",
            ));
        }
    };
    let matchers = serde_json::to_value(&req.matchers).unwrap_or_default();
    let silence = state
        .engine
        .store()
        .create_silence(
            p.tenant_id,
            &storage::alerts::NewSilence {
                matchers: &matchers,
                starts_at,
                ends_at,
                recurrence,
                created_by: &p.actor(),
                comment: &req.comment,
            },
        )
        .await?;
    state.engine.refresh_silences().await?;
    audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "silence.create",
            format!("silence:{}", silence.id),
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source)
        .details(json!({"matchers": matchers, "ends_at": ends_at})),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json!({"silence": silence}))))
}

pub async fn expire_silence(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::new(ErrorKind::NotFound, "silence not found"))?;
    state.engine.store().expire_silence(p.tenant_id, id).await?;
    state.engine.refresh_silences().await?;
    audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "silence.expire",
            format!("silence:{id}"),
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source),
    )
    .await;
    Ok(Json(json!({"id": id, "expired": true})))
}
