//! Tenant administration: users, tokens, the audit trail; tenants (instance admins).
//! Every query is scoped to the caller's tenant; another tenant's object is 404.

use axum::Json;
use axum::extract::{Extension, State};
use chrono::{Duration, Utc};
use model::audit::{AuditEvent, Outcome};
use model::{ErrorKind, Principal, Role, Scope};
use serde::Deserialize;
use serde_json::json;

use crate::auth::ClientAddr;
use crate::extract::{ApiJson, ApiQuery, ObjectId};
use crate::session::check_new_password;
use crate::wire::{
    AuditEntry, AuditList, Changed, ErrorBody, TenantBody, TenantCreated, TenantList, Token,
    TokenCreated, TokenList, User, UserCreated, UserList,
};
use crate::{ApiError, AppState, audit};

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

/// The tenant's users.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<UserList>, ApiError> {
    let users = state.access.list_tenant_users(p.tenant_id).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(User::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) role: String,
}

/// Add a user to the tenant.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = NewUser,
    responses((status = 200, body = UserCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<Json<UserCreated>, ApiError> {
    Ok(Json(add_user(&state, &p, req, source).await?))
}

/// Add a user to the caller's tenant (API and UI).
pub(crate) async fn add_user(
    state: &AppState,
    p: &Principal,
    req: NewUser,
    source: Option<String>,
) -> Result<UserCreated, ApiError> {
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
        state,
        event(p, "user.create", format!("user:{}", req.username), &source)
            .details(json!({"role": role.as_str()})),
    )
    .await;
    Ok(UserCreated {
        id,
        username: req.username,
        role: role.as_str().to_string(),
    })
}

/// Disable a user (their sessions end).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "user id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn disable_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Changed>, ApiError> {
    disable(&state, &p, id, source).await?;
    Ok(Json(Changed {
        id,
        disabled: Some(true),
        revoked: None,
        expired: None,
        deleted: None,
    }))
}

/// Disable a user of the caller's tenant (API and UI); their sessions end.
pub(crate) async fn disable(
    state: &AppState,
    p: &Principal,
    id: uuid::Uuid,
    source: Option<String>,
) -> Result<(), ApiError> {
    let username = state.access.disable_user(p.tenant_id, id).await?;
    audit::record(
        state,
        event(p, "user.disable", format!("user:{username}"), &source),
    )
    .await;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// An existing user whose home is another tenant.
    pub(crate) username: String,
    pub(crate) role: String,
}

/// Make an existing user of another tenant a member of this one (or change their role
/// here). Their home tenant, password and other memberships are untouched.
#[utoipa::path(post, path = "/api/v1/members", tag = "admin", request_body = NewMember,
    responses((status = 200, body = UserCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<NewMember>,
) -> Result<Json<UserCreated>, ApiError> {
    Ok(Json(member(&state, &p, req, source).await?))
}

/// Add a member (API and UI).
pub(crate) async fn member(
    state: &AppState,
    p: &Principal,
    req: NewMember,
    source: Option<String>,
) -> Result<UserCreated, ApiError> {
    let role: Role = req
        .role
        .parse()
        .map_err(|e: String| ApiError::new(ErrorKind::InvalidArgument, format!("role: {e}")))?;
    if req.username.is_empty() || req.username.len() > 64 {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "username: 1-64 characters",
        ));
    }
    let id = match state
        .access
        .add_member(p.tenant_id, &req.username, role)
        .await
    {
        Ok(id) => id,
        Err(storage::StorageError::NotFound(_)) => {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                "username: no active user of another tenant has this name",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    audit::record(
        state,
        event(p, "member.add", format!("user:{}", req.username), &source)
            .details(json!({"role": role.as_str()})),
    )
    .await;
    Ok(UserCreated {
        id,
        username: req.username,
        role: role.as_str().to_string(),
    })
}

/// End a user's membership of this tenant; their sessions acting here end.
#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "user id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Changed>, ApiError> {
    unmember(&state, &p, id, source).await?;
    Ok(Json(Changed {
        id,
        disabled: None,
        revoked: None,
        expired: None,
        deleted: Some(true),
    }))
}

/// Remove a member (API and UI).
pub(crate) async fn unmember(
    state: &AppState,
    p: &Principal,
    id: uuid::Uuid,
    source: Option<String>,
) -> Result<(), ApiError> {
    let username = state.access.remove_member(p.tenant_id, id).await?;
    audit::record(
        state,
        event(p, "member.remove", format!("user:{username}"), &source),
    )
    .await;
    Ok(())
}

/// The tenant's API tokens (metadata, never the secret).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses((status = 200, body = TokenList)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.access.list_tokens(p.tenant_id).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(Token::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub(crate) scope: String,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) expires_in_days: Option<i64>,
    #[serde(default)]
    pub(crate) no_expiry: bool,
}

/// Mint a token; its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = NewToken,
    responses((status = 200, body = TokenCreated), (status = 400, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Json<TokenCreated>, ApiError> {
    Ok(Json(mint(&state, &p, req, source).await?))
}

/// Mint a token of the caller's tenant (API and UI); the token itself is returned
/// once.
pub(crate) async fn mint(
    state: &AppState,
    p: &Principal,
    req: NewToken,
    source: Option<String>,
) -> Result<TokenCreated, ApiError> {
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
        state,
        event(p, "token.create", format!("token:{id}"), &source)
            .details(json!({"scope": scope.as_str()})),
    )
    .await;
    Ok(TokenCreated {
        id,
        token,
        scope: scope.as_str().to_string(),
        expires_at: expires,
    })
}

/// Revoke a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "token id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
) -> Result<Json<Changed>, ApiError> {
    state.access.revoke_token(p.tenant_id, id).await?;
    audit::record(
        &state,
        event(&p, "token.revoke", format!("token:{id}"), &source),
    )
    .await;
    Ok(Json(Changed {
        id,
        disabled: None,
        revoked: Some(true),
        expired: None,
        deleted: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// RFC 3339 or relative [default: now-7d].
    from: Option<String>,
    /// RFC 3339 or relative [default: now].
    to: Option<String>,
    /// 1-1000 [default: 100].
    limit: Option<i64>,
}

/// Palisade's own audit trail for the tenant, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
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
    Ok(Json(AuditList {
        entries: entries.into_iter().map(AuditEntry::from).collect(),
    }))
}

/// Every tenant (instance admins).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "admin",
    responses((status = 200, body = TenantList), (status = 403, body = ErrorBody)))]
pub async fn list_tenants(State(state): State<AppState>) -> Result<Json<TenantList>, ApiError> {
    let tenants = state.access.list_tenants().await?;
    Ok(Json(TenantList {
        tenants: tenants.into_iter().map(TenantBody::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
}

/// Create a tenant (instance admins).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "admin", request_body = NewTenant,
    responses((status = 200, body = TenantCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<NewTenant>,
) -> Result<Json<TenantCreated>, ApiError> {
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
    Ok(Json(TenantCreated {
        tenant: TenantBody::from(tenant),
    }))
}
