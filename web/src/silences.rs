//! `/api/v1/silences`: mute alerts matching label matchers for a while or in a
//! recurring maintenance window.

use alerting::silence::Matcher;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use model::Principal;
use model::audit::{AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

use crate::auth::ClientAddr;
use crate::extract::{ApiJson, ObjectId};
use crate::rules::invalid;
use crate::wire::{Changed, ErrorBody, Silence, SilenceCreated, SilenceList};
use crate::{ApiError, AppState, audit};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Label matchers (`{"name", "value", "op": "=" | "!=" | "=~" | "!~"}`); all must match.
    #[schema(value_type = Vec<Object>)]
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

/// Silences, active and future.
#[utoipa::path(get, path = "/api/v1/silences", tag = "alerts",
    responses((status = 200, body = SilenceList)))]
pub async fn list_silences(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<SilenceList>, ApiError> {
    let silences = state.engine.store().silences(p.tenant_id, true).await?;
    Ok(Json(SilenceList {
        silences: silences.into_iter().map(Silence::from).collect(),
    }))
}

/// Create a silence or a maintenance window.
#[utoipa::path(post, path = "/api/v1/silences", tag = "alerts", request_body = NewSilence,
    responses((status = 201, body = SilenceCreated), (status = 400, body = ErrorBody)))]
pub async fn create_silence(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<NewSilence>,
) -> Result<(StatusCode, Json<SilenceCreated>), ApiError> {
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
    Ok((
        StatusCode::CREATED,
        Json(SilenceCreated {
            silence: Silence::from(silence),
        }),
    ))
}

/// End a silence now.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerts",
    params(("id" = uuid::Uuid, Path, description = "silence id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn expire_silence(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Changed>, ApiError> {
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
    Ok(Json(Changed {
        id,
        disabled: None,
        revoked: None,
        expired: Some(true),
        deleted: None,
    }))
}
