//! Who is looking at a page: the browser session (the same sessions as the API), a
//! redirect to `/login` without one, and the CSRF check of every form.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use model::{Credential, Permission, Principal};

use crate::AppState;
use crate::auth::cookie;

/// A signed-in browser user.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    pub username: String,
    pub role: String,
    pub tenant: String,
    /// Every tenant the user can switch to (home first); one entry for most users.
    pub tenants: Vec<String>,
    pub session_id: String,
    pub csrf: String,
}

impl Viewer {
    pub fn can(&self, permission: Permission) -> bool {
        self.principal.can(permission)
    }
}

fn login_redirect(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next: String = url_encode(next);
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// Percent-encode a query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A redirect target that stays on this site (`/` and a path, never `//host`).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/incidents".to_string(),
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, Response> {
        let Some(id) = cookie(&parts.headers, state.sessions.cookie_name()) else {
            return Err(login_redirect(parts));
        };
        let session = match state.access.session(&id, state.sessions.idle).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(login_redirect(parts)),
            Err(err) => return Err(crate::ApiError::from(err).into_response()),
        };
        let tenants = match state.access.tenants_of_user(session.user_id).await {
            Ok(list) => list,
            Err(err) => return Err(crate::ApiError::from(err).into_response()),
        };
        let tenant = tenants
            .iter()
            .find(|(t, _)| t.id == session.tenant_id)
            .map(|(t, _)| t.name.clone())
            .unwrap_or_default();
        let tenants = tenants.into_iter().map(|(t, _)| t.name).collect();
        Ok(Viewer {
            principal: Principal {
                tenant_id: session.tenant_id,
                credential: Credential::Session {
                    user_id: session.user_id,
                    username: session.username.clone(),
                    role: session.role,
                    instance_admin: session.instance_admin,
                },
            },
            username: session.username,
            role: session.role.as_str().to_string(),
            tenant,
            tenants,
            session_id: id,
            csrf: session.csrf_token,
        })
    }
}

/// A form post must come from our own page: same origin (when the browser says) and
/// the session's CSRF token in the `csrf` field.
pub fn check_form(viewer: &Viewer, headers: &HeaderMap, csrf: &str) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return false;
        }
    }
    csrf.len() == viewer.csrf.len()
        && csrf
            .bytes()
            .zip(viewer.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
