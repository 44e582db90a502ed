//! `/api/v1/rules/backtest(s)`: replay stored events through a saved or draft rule.

use alerting::rule::Rule;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use model::{ErrorKind, Principal};
use serde::Deserialize;

use crate::extract::{ApiJson, ObjectId};
use crate::rules::{invalid, one_rule};
use crate::wire::{Backtest, BacktestJob, ErrorBody};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// A saved rule (file or API) ...
    rule_id: Option<String>,
    /// ... or a draft (one YAML document).
    yaml: Option<String>,
    /// RFC 3339 or relative (`now-7d`).
    from: String,
    /// RFC 3339 or relative [default: now].
    #[serde(default)]
    to: Option<String>,
}

fn inputs(
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
    if matches!(rule.spec, alerting::rule::Spec::Metric { .. }) {
        return Err(invalid(
            "metric rules are not backtested: run their expr over the window with /prometheus/api/v1/query_range",
        ));
    }
    let now = Utc::now();
    let from = query::time::parse_time(&req.from, now, "from")?;
    let to = query::time::parse_time(req.to.as_deref().unwrap_or("now"), now, "to")?;
    if from >= to {
        return Err(invalid("from must be before to"));
    }
    Ok((rule, from, to))
}

/// Run a backtest and wait for its result.
#[utoipa::path(post, path = "/api/v1/rules/backtest", tag = "rules",
    request_body = BacktestRequest,
    responses((status = 200, body = Backtest), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<BacktestRequest>,
) -> Result<Json<Backtest>, ApiError> {
    let (rule, from, to) = inputs(&state, &p, &req)?;
    let events = state
        .engine
        .candidate_events(p.tenant_id, &rule, from, to)
        .await?;
    let truncated = events.len() >= alerting::runtime::MAX_EVALUATED_EVENTS;
    let result =
        tokio::task::spawn_blocking(move || alerting::runtime::backtest(&rule, &events, truncated))
            .await
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(Json(Backtest::from(result)))
}

/// Start a background backtest (long ranges); poll it by id.
#[utoipa::path(post, path = "/api/v1/rules/backtests", tag = "rules",
    request_body = BacktestRequest,
    responses((status = 202, body = BacktestJob), (status = 400, body = ErrorBody)))]
pub async fn start_backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<BacktestRequest>,
) -> Result<(StatusCode, Json<BacktestJob>), ApiError> {
    let (rule, from, to) = inputs(&state, &p, &req)?;
    let job = state
        .backtests
        .start(state.engine.clone(), p.tenant_id, rule, from, to);
    Ok((StatusCode::ACCEPTED, Json(BacktestJob::from(job.status()))))
}

/// The tenant's backtest job `id`; any other id is a 404.
fn find_job(
    state: &AppState,
    p: &Principal,
    ObjectId(id): ObjectId,
) -> Result<std::sync::Arc<alerting::runtime::BacktestJob>, ApiError> {
    state
        .backtests
        .get(p.tenant_id, id)
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "backtest not found"))
}

/// Progress, then the result.
#[utoipa::path(get, path = "/api/v1/rules/backtests/{id}", tag = "rules",
    params(("id" = uuid::Uuid, Path, description = "backtest job id")),
    responses((status = 200, body = BacktestJob), (status = 404, body = ErrorBody)))]
pub async fn backtest_status(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: ObjectId,
) -> Result<Json<BacktestJob>, ApiError> {
    Ok(Json(BacktestJob::from(find_job(&state, &p, id)?.status())))
}

/// Cancel a background backtest.
#[utoipa::path(delete, path = "/api/v1/rules/backtests/{id}", tag = "rules",
    params(("id" = uuid::Uuid, Path, description = "backtest job id")),
    responses((status = 200, body = BacktestJob), (status = 404, body = ErrorBody)))]
pub async fn cancel_backtest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    id: ObjectId,
) -> Result<Json<BacktestJob>, ApiError> {
    let job = find_job(&state, &p, id)?;
    job.cancel();
    Ok(Json(BacktestJob::from(job.status())))
}
