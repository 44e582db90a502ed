//! Login, logout, the current session and password change.

use std::time::Instant;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use model::audit::{AuditEvent, Outcome};
use model::{Credential, ErrorKind, Principal};
use serde::Deserialize;

use crate::auth::{ClientAddr, SessionContext, cookie};
use crate::extract::ApiJson;
use crate::login_guard::MAX_USERNAME_BYTES;
use crate::wire::{ErrorBody, LoggedIn, SessionInfo, StatusBody, TenantRole};
use crate::{ApiError, AppState, audit};

pub const MIN_PASSWORD_LEN: usize = 12;

fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(model::token::random_bytes::<32>())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
}

fn set_cookie(state: &AppState, value: &str, max_age: Option<u64>) -> HeaderValue {
    let name = state.sessions.cookie_name();
    let age = match max_age {
        Some(secs) => format!("; Max-Age={secs}"),
        None => "; Max-Age=0".into(),
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    ))
    .expect("cookie is ascii")
}

/// Usernames over [`MAX_USERNAME_BYTES`] are refused before they reach the throttle
/// map or the audit trail.
fn check_username(username: &str) -> Result<(), ApiError> {
    if username.len() > MAX_USERNAME_BYTES {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("username: at most {MAX_USERNAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Count an attempt against the account and address before verifying anything.
fn reserve_attempt(state: &AppState, username: &str, source: Option<&str>) -> Result<(), ApiError> {
    state
        .login_guard
        .reserve(username, source, Instant::now())
        .map_err(|wait| {
            let mut err = ApiError::new(
                ErrorKind::ResourceExhausted,
                "too many failed attempts; try again later",
            );
            err.retry_after = Some(wait.as_secs().max(1));
            err
        })
}

/// Verify a password in one of the few hashing slots (429 when they stay busy).
async fn verify_password(
    state: &AppState,
    password: String,
    hash: String,
) -> Result<bool, ApiError> {
    let Some(_slot) = state.login_guard.hashing_slot().await else {
        let mut err = ApiError::new(
            ErrorKind::ResourceExhausted,
            "too many password checks in progress; try again shortly",
        );
        err.retry_after = Some(1);
        return Err(err);
    };
    tokio::task::spawn_blocking(move || model::password::verify(&password, &hash))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

/// `POST /api/v1/auth/login`. Unknown users, wrong passwords and disabled users get
/// the same answer after the same work (a hash verification), so neither the
/// response nor its timing tells whether an account exists.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    security(()),
    responses((status = 200, body = LoggedIn, description = "signed in; the session cookie is set"),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let signed = sign_in(&state, source, &headers, &req.username, req.password).await?;
    let mut response = Json(signed.body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, signed.cookie);
    Ok(response)
}

/// A new session: who signed in, and the cookie that carries it.
pub(crate) struct SignedIn {
    pub body: LoggedIn,
    pub cookie: HeaderValue,
}

/// Check a username and password and open a session (the API's login and the UI's
/// login form share it).
pub(crate) async fn sign_in(
    state: &AppState,
    source: Option<String>,
    headers: &HeaderMap,
    username: &str,
    password: String,
) -> Result<SignedIn, ApiError> {
    check_username(username)?;
    reserve_attempt(state, username, source.as_deref())?;
    let user = state.access.user_for_login(username).await?;
    let hash = match &user {
        Some(u) if !u.disabled => u.password_hash.clone(),
        _ => state.dummy_hash.to_string(),
    };
    let verified = verify_password(state, password, hash).await?;
    let user = match user {
        Some(u) if verified && !u.disabled => u,
        other => {
            let mut event = AuditEvent::new(
                "anonymous",
                "auth.login",
                format!("user:{username}"),
                Outcome::Failure,
            )
            .source(source.clone());
            if let Some(u) = other {
                event = event.tenant(u.tenant_id);
            }
            audit::record(state, event).await;
            return Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "invalid username or password",
            ));
        }
    };
    state.login_guard.success(username, source.as_deref());
    // Always a brand-new session id (fixation defence); any session the browser
    // presented is ended.
    if let Some(old) = cookie(headers, state.sessions.cookie_name()) {
        state.access.delete_session(&old).await?;
    }
    let id = random_id();
    let csrf = random_id();
    state
        .access
        .create_session(
            &id,
            &user,
            &csrf,
            state.sessions.absolute,
            source.as_deref(),
        )
        .await?;
    audit::record(
        state,
        AuditEvent::new(
            format!("user:{}", user.username),
            "auth.login",
            format!("user:{}", user.username),
            Outcome::Success,
        )
        .tenant(user.tenant_id)
        .source(source),
    )
    .await;
    let tenant = state.access.tenant_by_id(user.tenant_id).await?;
    Ok(SignedIn {
        body: LoggedIn {
            username: user.username,
            tenant: tenant.name,
            role: user.role.as_str().to_string(),
            instance_admin: user.instance_admin,
            csrf_token: csrf,
        },
        cookie: set_cookie(state, &id, Some(state.sessions.absolute.as_secs())),
    })
}

/// End a browser session server-side (API logout and the UI's sign-out button).
pub(crate) async fn sign_out(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
) -> Result<HeaderValue, ApiError> {
    state.access.delete_session(session_id).await?;
    audit::record(
        state,
        AuditEvent::new(
            principal.actor(),
            "auth.logout",
            principal.actor(),
            Outcome::Success,
        )
        .tenant(principal.tenant_id),
    )
    .await;
    Ok(set_cookie(state, "", None))
}

/// `POST /api/v1/auth/logout`: ends the session server-side.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, body = StatusBody), (status = 400, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionContext>>,
) -> Result<Response, ApiError> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "logout ends a browser session; tokens are revoked instead",
        ));
    };
    let cleared = sign_out(&state, &principal, &session.id).await?;
    let mut response = Json(StatusBody {
        status: "logged out".into(),
    })
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(response)
}

/// `GET /api/v1/auth/session`: who am I, and the CSRF token for state changes.
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth",
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)))]
pub async fn current(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionContext>>,
) -> Result<Json<SessionInfo>, ApiError> {
    let tenant = state.access.tenant_by_id(principal.tenant_id).await?;
    let tenants = match &principal.credential {
        Credential::Session { user_id, .. } => state
            .access
            .tenants_of_user(*user_id)
            .await?
            .into_iter()
            .map(|(t, role)| TenantRole {
                name: t.name,
                role: role.as_str().to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Json(SessionInfo {
        tenant: tenant.name,
        tenants,
        principal: serde_json::to_value(&principal.credential).unwrap_or_default(),
        csrf_token: session.map(|Extension(s)| s.csrf_token),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSwitch {
    /// The name of a tenant the user belongs to.
    pub(crate) tenant: String,
}

/// `POST /api/v1/auth/tenant`: act in another tenant the signed-in user belongs to.
/// The session keeps its id and CSRF token; its role becomes the user's role there.
#[utoipa::path(post, path = "/api/v1/auth/tenant", tag = "auth", request_body = TenantSwitch,
    responses((status = 200, body = StatusBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn switch_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionContext>>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<TenantSwitch>,
) -> Result<Json<StatusBody>, ApiError> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "a token belongs to one tenant; switching is for browser sessions",
        ));
    };
    switch(&state, &principal, &session.id, &req.tenant, source).await?;
    Ok(Json(StatusBody {
        status: format!("acting in tenant {}", req.tenant),
    }))
}

/// Move a session to another of its user's tenants (API and UI). Unknown tenants and
/// tenants the user is not in are the same 404.
pub(crate) async fn switch(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    tenant: &str,
    source: Option<String>,
) -> Result<(), ApiError> {
    let not_member = || ApiError::new(ErrorKind::NotFound, "tenant: not one of yours");
    let Credential::Session { user_id, .. } = &principal.credential else {
        return Err(not_member());
    };
    if tenant.len() > 63 {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "tenant: at most 63 characters",
        ));
    }
    let target = match state.access.tenant_by_name(tenant).await {
        Ok(t) => t,
        Err(storage::StorageError::NotFound(_)) => return Err(not_member()),
        Err(other) => return Err(other.into()),
    };
    match state
        .access
        .switch_session_tenant(session_id, *user_id, target.id)
        .await
    {
        Ok(()) => {}
        Err(storage::StorageError::NotFound(_)) => return Err(not_member()),
        Err(other) => return Err(other.into()),
    }
    // Recorded in both tenants' trails: where the user left and where they arrived.
    for tenant_id in [principal.tenant_id, target.id] {
        audit::record(
            state,
            AuditEvent::new(
                principal.actor(),
                "auth.switch_tenant",
                format!("tenant:{}", target.name),
                Outcome::Success,
            )
            .tenant(tenant_id)
            .source(source.clone()),
        )
        .await;
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("new_password must have at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// `POST /api/v1/auth/password`: change one's own password; ends every session of
/// the user, this one included.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = StatusBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let Credential::Session {
        username, user_id, ..
    } = &principal.credential
    else {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "only users have passwords",
        ));
    };
    check_new_password(&req.new_password)?;
    let user = state
        .access
        .user_for_login(username)
        .await?
        .ok_or_else(|| {
            ApiError::new(ErrorKind::Unauthenticated, "session user no longer exists")
        })?;
    // Password changes are throttled like logins: a stolen session cannot guess the
    // current password at hashing speed.
    reserve_attempt(&state, username, None)?;
    let (current, stored) = (req.current_password.clone(), user.password_hash.clone());
    let ok = verify_password(&state, current, stored).await?;
    if !ok {
        audit::record(
            &state,
            AuditEvent::new(
                principal.actor(),
                "user.password",
                principal.actor(),
                Outcome::Failure,
            )
            .tenant(principal.tenant_id),
        )
        .await;
        return Err(ApiError::new(
            ErrorKind::PermissionDenied,
            "current_password is wrong",
        ));
    }
    state.login_guard.success(username, None);
    let new = req.new_password.clone();
    let hash = tokio::task::spawn_blocking(move || model::password::hash(&new))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    state.access.set_password(*user_id, &hash).await?;
    audit::record(
        &state,
        AuditEvent::new(
            principal.actor(),
            "user.password",
            principal.actor(),
            Outcome::Success,
        )
        .tenant(principal.tenant_id),
    )
    .await;
    let mut response = Json(StatusBody {
        status: "password changed; log in again".into(),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, "", None));
    Ok(response)
}
