//! Tenant administration: users, tokens, the audit trail; tenants (instance admins).
//! Every query is scoped to the caller's tenant; another tenant's object is 404.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use chrono::{Duration, Utc};
use model::audit::{AuditEvent, Outcome};
use model::{ErrorKind, Principal, Role, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::ClientAddr;
use crate::session::{check_new_password, json_body};
use crate::{ApiError, AppState, audit};

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    // A malformed id cannot name an object of this tenant: same answer as unknown.
    Uuid::parse_str(text).map_err(|_| ApiError::new(ErrorKind::NotFound, "not found"))
}

fn event(
    principal: &Principal,
    action: &str,
    target: String,
    source: &Option<String>,
) -> AuditEvent {
    AuditEvent::new(principal.actor(), action, target, Outcome::Success)
        .tenant(principal.tenant_id)
        .source(source.clone())
}

pub async fn list_users(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let users = state.access.list_tenant_users(p.tenant_id).await?;
    Ok(Json(json!({"users": users})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: String| ApiError::new(ErrorKind::InvalidArgument, format!("role: {e}")))?;
    if req.username.is_empty()
        || req.username.len() > 64
        || req.username.chars().any(char::is_whitespace)
    {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "username: 1-64 characters without spaces",
        ));
    }
    check_new_password(&req.password).map_err(|_| {
        ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "password must have at least {} characters",
                crate::session::MIN_PASSWORD_LEN
            ),
        )
    })?;
    let password = req.password.clone();
    let hash = tokio::task::spawn_blocking(move || model::password::hash(&password))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let id = match state
        .access
        .create_user(p.tenant_id, &req.username, &hash, role, false)
        .await
    {
        Ok(id) => id,
        // Usernames are unique across the instance (login takes no tenant). Only a
        // clash inside the caller's own tenant is named; another tenant's user is
        // never confirmed.
        Err(storage::StorageError::Conflict(_)) => {
            let ours = state
                .access
                .list_tenant_users(p.tenant_id)
                .await?
                .iter()
                .any(|u| u.username == req.username);
            let message = if ours {
                format!("user {:?} already exists", req.username)
            } else {
                "username is not available; choose another".to_string()
            };
            return Err(ApiError::new(ErrorKind::Conflict, message));
        }
        Err(other) => return Err(other.into()),
    };
    audit::record(
        &state,
        event(&p, "user.create", format!("user:{}", req.username), &source)
            .details(json!({"role": role.as_str()})),
    )
    .await;
    Ok(Json(
        json!({"id": id, "username": req.username, "role": role.as_str()}),
    ))
}

pub async fn disable_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let username = state.access.disable_user(p.tenant_id, id).await?;
    audit::record(
        &state,
        event(&p, "user.disable", format!("user:{username}"), &source),
    )
    .await;
    Ok(Json(json!({"id": id, "disabled": true})))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"tokens": state.access.list_tokens(p.tenant_id).await?}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    scope: String,
    #[serde(default)]
    name: String,
    expires_in_days: Option<i64>,
    #[serde(default)]
    no_expiry: bool,
}

pub async fn create_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let scope: Scope = req
        .scope
        .parse()
        .map_err(|e: String| ApiError::new(ErrorKind::InvalidArgument, format!("scope: {e}")))?;
    let expires = match (req.no_expiry, req.expires_in_days) {
        (true, Some(_)) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "no_expiry and expires_in_days exclude each other",
            ));
        }
        (true, None) => None,
        (false, Some(days)) if !(1..=3650).contains(&days) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "expires_in_days must be between 1 and 3650",
            ));
        }
        (false, days) => {
            Some(Utc::now() + Duration::days(days.unwrap_or(state.token_default_days)))
        }
    };
    let (id, token) = state
        .access
        .mint_token(p.tenant_id, scope, &req.name, expires)
        .await?;
    audit::record(
        &state,
        event(&p, "token.create", format!("token:{id}"), &source)
            .details(json!({"scope": scope.as_str()})),
    )
    .await;
    Ok(Json(
        json!({"id": id, "token": token, "scope": scope.as_str(), "expires_at": expires}),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    state.access.revoke_token(p.tenant_id, id).await?;
    audit::record(
        &state,
        event(&p, "token.revoke", format!("token:{id}"), &source),
    )
    .await;
    Ok(Json(json!({"id": id, "revoked": true})))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

pub async fn list_audit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = params.map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.body_text()))?;
    let now = Utc::now();
    let from = query::time::parse_time(q.from.as_deref().unwrap_or("now-7d"), now, "from")?;
    let to = query::time::parse_time(q.to.as_deref().unwrap_or("now"), now, "to")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "limit must be between 1 and 1000",
        ));
    }
    let entries = state.audit.list(p.tenant_id, from, to, limit).await?;
    Ok(Json(json!({"entries": entries})))
}

pub async fn list_tenants(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"tenants": state.access.list_tenants().await?})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
}

pub async fn create_tenant(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body)?;
    let tenant = state.access.create_tenant(&req.name).await?;
    audit::record(
        &state,
        event(
            &p,
            "tenant.create",
            format!("tenant:{}", tenant.name),
            &source,
        ),
    )
    .await;
    Ok(Json(json!({"tenant": tenant})))
}
