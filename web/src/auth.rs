//! Request authentication: bearer tokens and session cookies (+ CSRF), per-token
//! rate limits, and the source address of a request.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use model::{Credential, ErrorKind, Principal};

use crate::{ApiError, AppState};

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after login, however active.
    pub absolute: Duration,
    /// TLS is on: the cookie gets the `__Host-` prefix and HSTS is sent.
    pub tls: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            tls: false,
        }
    }
}

impl SessionConfig {
    pub fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-palisade_session"
        } else {
            "palisade_session"
        }
    }
}

/// The session a request came with (its cookie value and CSRF token).
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub id: String,
    pub csrf_token: String,
}

pub struct Authenticated {
    pub principal: Principal,
    pub session: Option<SessionContext>,
}

impl Authenticated {
    pub fn kind(&self) -> &'static str {
        match self.principal.credential {
            Credential::Session { .. } => "user",
            Credential::Token { .. } => "token",
        }
    }
}

/// The client address of a request (the TCP peer), when the listener provides it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

impl ClientAddr {
    pub fn of(parts: &Parts) -> ClientAddr {
        ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(parts))
    }
}

/// The value of cookie `name`, if present.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticate a request. `Ok(None)`: no valid credentials (401).
pub async fn authenticate(
    state: &AppState,
    parts: &Parts,
) -> Result<Option<Authenticated>, ApiError> {
    let headers = &parts.headers;
    let ClientAddr(source) = ClientAddr::of(parts);
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let Some(grant) = state
            .access
            .authenticate(Some(value), source.as_deref())
            .await?
        else {
            return Ok(None);
        };
        if let Err(wait) = state.limits.check_api(grant.token_id) {
            let mut err = ApiError::new(
                ErrorKind::ResourceExhausted,
                "rate limit exceeded for this token",
            );
            err.retry_after = Some(wait.as_secs().max(1));
            return Err(err);
        }
        return Ok(Some(Authenticated {
            principal: Principal {
                tenant_id: grant.tenant_id,
                credential: Credential::Token {
                    token_id: grant.token_id,
                    scope: grant.scope,
                },
            },
            session: None,
        }));
    }
    let Some(id) = cookie(headers, state.sessions.cookie_name()) else {
        return Ok(None);
    };
    let Some(session) = state.access.session(&id, state.sessions.idle).await? else {
        return Ok(None);
    };
    if !is_safe(&parts.method) {
        // Cookies ride along on cross-site requests; a state change must prove it
        // came from our own page: same origin and the session's CSRF token.
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host != host {
                return Err(ApiError::new(
                    ErrorKind::PermissionDenied,
                    "cross-origin request refused",
                ));
            }
        }
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(presented, &session.csrf_token) {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "missing or invalid X-CSRF-Token header (see GET /api/v1/auth/session)",
            ));
        }
    }
    Ok(Some(Authenticated {
        principal: Principal {
            tenant_id: session.tenant_id,
            credential: Credential::Session {
                user_id: session.user_id,
                username: session.username,
                role: session.role,
                instance_admin: session.instance_admin,
            },
        },
        session: Some(SessionContext {
            id,
            csrf_token: session.csrf_token,
        }),
    }))
}
