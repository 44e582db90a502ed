//! `/api/v1/rules`: the tenant's rules (file rules, API rules, tunings of shipped
//! rules), written as YAML documents, versioned and audited.

use alerting::rule::Rule;
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use model::audit::{AuditEvent, Outcome};
use model::{ErrorKind, Principal};
use serde_json::json;

use crate::auth::ClientAddr;
use crate::wire::{
    ErrorBody, RuleDetail, RuleList, RuleSummary, RuleVersion, RuleVersions, RuleWritten,
};
use crate::{ApiError, AppState, audit};

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

fn summary(rule: &Rule, source: &str, version: Option<i32>) -> RuleSummary {
    RuleSummary {
        id: rule.id().to_string(),
        title: rule.doc.title.clone(),
        kind: format!("{:?}", rule.doc.kind).to_lowercase(),
        severity: rule.doc.severity.as_str().to_string(),
        enabled: rule.doc.enabled,
        source: source.to_string(),
        version,
    }
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
pub(crate) fn one_rule(state: &AppState, body: &str) -> Result<Rule, ApiError> {
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

fn written(p: &Principal, action: &str, id: &str, source: Option<String>) -> AuditEvent {
    AuditEvent::new(p.actor(), action, format!("rule:{id}"), Outcome::Success)
        .tenant(p.tenant_id)
        .source(source)
}

/// The rules in force for the caller's tenant.
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules",
    responses((status = 200, body = RuleList), (status = 401, body = ErrorBody)))]
pub async fn list_rules(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<RuleList>, ApiError> {
    let stored = state.engine.store().rules(p.tenant_id).await?;
    let set = state.engine.rules();
    let mut rules = Vec::new();
    for rule in &set.file {
        if !stored.iter().any(|s| s.id == rule.id()) {
            rules.push(summary(rule, "file", None));
        }
    }
    for row in &stored {
        if let Ok(rule) = one_rule(&state, &row.yaml) {
            let source = if alerting::rule::is_tuning(&row.yaml) {
                "tuned"
            } else {
                "api"
            };
            rules.push(summary(&rule, source, Some(row.version)));
        }
    }
    Ok(Json(RuleList { rules }))
}

/// One rule: its stored YAML (API rules and tunings) or its document (file rules).
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "rule id")),
    responses((status = 200, body = RuleDetail), (status = 404, body = ErrorBody)))]
pub async fn get_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<RuleDetail>, ApiError> {
    match state.engine.store().rule(p.tenant_id, &id).await {
        Ok(row) => Ok(Json(RuleDetail::from(row))),
        Err(storage::StorageError::NotFound(_)) => {
            let set = state.engine.rules();
            let rule = set.file.iter().find(|r| r.id() == id).ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("rule {id:?} not found"))
            })?;
            Ok(Json(RuleDetail {
                id: rule.id().to_string(),
                source: "file".into(),
                version: None,
                yaml: None,
                updated_at: None,
                updated_by: None,
                rule: Some(serde_json::to_value(&rule.doc).unwrap_or_default()),
            }))
        }
        Err(err) => Err(err.into()),
    }
}

/// Create a rule or a tuning from one YAML document (the body).
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules",
    request_body(content = String, content_type = "application/yaml", description = "one rule document (docs/rules.md)"),
    responses((status = 201, body = RuleWritten), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RuleWritten>), ApiError> {
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
        written(&p, "rule.create", rule.id(), source).details(json!({"version": row.version})),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(RuleWritten {
            id: row.id,
            version: Some(row.version),
            deleted: None,
        }),
    ))
}

/// Replace a rule (a new version); the document's id must be the path's.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "rule id")),
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = RuleWritten), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RuleWritten>, ApiError> {
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
        written(&p, "rule.update", &id, source).details(json!({"version": row.version})),
    )
    .await;
    Ok(Json(RuleWritten {
        id: row.id,
        version: Some(row.version),
        deleted: None,
    }))
}

/// Delete an API rule or a tuning (a shipped rule then applies as shipped).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "rule id")),
    responses((status = 200, body = RuleWritten), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<RuleWritten>, ApiError> {
    state
        .engine
        .store()
        .delete_rule(p.tenant_id, &id, &p.actor())
        .await?;
    reload(&state).await?;
    audit::record(&state, written(&p, "rule.delete", &id, source)).await;
    Ok(Json(RuleWritten {
        id,
        version: None,
        deleted: Some(true),
    }))
}

/// Every stored version of a rule, newest first.
#[utoipa::path(get, path = "/api/v1/rules/{id}/versions", tag = "rules",
    params(("id" = String, Path, description = "rule id")),
    responses((status = 200, body = RuleVersions), (status = 404, body = ErrorBody)))]
pub async fn rule_versions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<RuleVersions>, ApiError> {
    let versions = state.engine.store().rule_versions(p.tenant_id, &id).await?;
    if versions.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("rule {id:?} has no stored versions"),
        ));
    }
    Ok(Json(RuleVersions {
        id,
        versions: versions.into_iter().map(RuleVersion::from).collect(),
    }))
}
