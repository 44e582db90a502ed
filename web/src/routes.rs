//! The route table: every API route is registered together with the [`Access`] it
//! needs, so a route cannot exist without a declared permission. The
//! [`authorize`] middleware enforces the table before any handler runs, and the
//! authorisation-matrix test is generated from [`route_table`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use model::{Access, ErrorKind, Permission};
use serde::Serialize;

use crate::{
    ApiError, AppState, admin, alerts, api, auth, backtests, channels, incidents, ops, prometheus,
    rules, session, silences,
};

/// One route of a listener and what it needs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteSpec {
    pub listener: &'static str,
    #[serde(serialize_with = "method_str")]
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

fn method_str<S: serde::Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

struct Table {
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Table {
    fn new() -> Table {
        Table {
            router: Router::new(),
            specs: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Table
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("standard method");
        self.router = self.router.route(path, on(filter, handler));
        self.specs.push(RouteSpec {
            listener: "api",
            method,
            path,
            access,
        });
        self
    }
}

fn api_table() -> Table {
    use Access::{Public, Requires};
    use Permission::*;
    Table::new()
        .add(Method::GET, "/healthz", Public, ops::healthz)
        .add(Method::GET, "/readyz", Public, ops::readyz)
        .add(Method::GET, "/metrics", Public, ops::metrics)
        .add(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            crate::openapi::openapi_json,
        )
        .add(Method::POST, "/api/v1/auth/login", Public, session::login)
        .add(
            Method::POST,
            "/api/v1/auth/logout",
            Requires(Authenticated),
            session::logout,
        )
        .add(
            Method::GET,
            "/api/v1/auth/session",
            Requires(Authenticated),
            session::current,
        )
        .add(
            Method::POST,
            "/api/v1/auth/password",
            Requires(Authenticated),
            session::change_password,
        )
        .add(
            Method::POST,
            "/api/v1/auth/tenant",
            Requires(Authenticated),
            session::switch_tenant,
        )
        .add(Method::GET, "/api/v1/search", Requires(Read), api::search)
        .add(
            Method::GET,
            "/prometheus/api/v1/query",
            Requires(Read),
            prometheus::query,
        )
        .add(
            Method::POST,
            "/prometheus/api/v1/query",
            Requires(Read),
            prometheus::query_post,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/query_range",
            Requires(Read),
            prometheus::query_range,
        )
        .add(
            Method::POST,
            "/prometheus/api/v1/query_range",
            Requires(Read),
            prometheus::query_range_post,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/series",
            Requires(Read),
            prometheus::series,
        )
        .add(
            Method::POST,
            "/prometheus/api/v1/series",
            Requires(Read),
            prometheus::series_post,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/labels",
            Requires(Read),
            prometheus::labels,
        )
        .add(
            Method::POST,
            "/prometheus/api/v1/labels",
            Requires(Read),
            prometheus::labels_post,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/label/{name}/values",
            Requires(Read),
            prometheus::label_values,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/query_exemplars",
            Requires(Read),
            prometheus::query_exemplars,
        )
        .add(
            Method::POST,
            "/prometheus/api/v1/query_exemplars",
            Requires(Read),
            prometheus::query_exemplars_post,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/metadata",
            Requires(Read),
            prometheus::metadata,
        )
        .add(
            Method::GET,
            "/prometheus/api/v1/status/buildinfo",
            Requires(Read),
            prometheus::buildinfo,
        )
        .add(
            Method::GET,
            "/api/v1/search/histogram",
            Requires(Read),
            api::histogram,
        )
        .add(
            Method::GET,
            "/api/v1/users",
            Requires(Admin),
            admin::list_users,
        )
        .add(
            Method::POST,
            "/api/v1/users",
            Requires(Admin),
            admin::create_user,
        )
        .add(
            Method::DELETE,
            "/api/v1/users/{id}",
            Requires(Admin),
            admin::disable_user,
        )
        .add(
            Method::POST,
            "/api/v1/members",
            Requires(Admin),
            admin::add_member,
        )
        .add(
            Method::DELETE,
            "/api/v1/members/{id}",
            Requires(Admin),
            admin::remove_member,
        )
        .add(
            Method::GET,
            "/api/v1/tokens",
            Requires(Admin),
            admin::list_tokens,
        )
        .add(
            Method::POST,
            "/api/v1/tokens",
            Requires(Admin),
            admin::create_token,
        )
        .add(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            Requires(Admin),
            admin::revoke_token,
        )
        .add(
            Method::GET,
            "/api/v1/audit",
            Requires(Admin),
            admin::list_audit,
        )
        .add(
            Method::GET,
            "/api/v1/rules",
            Requires(Admin),
            rules::list_rules,
        )
        .add(
            Method::POST,
            "/api/v1/rules",
            Requires(Admin),
            rules::create_rule,
        )
        .add(
            Method::POST,
            "/api/v1/rules/backtest",
            Requires(Admin),
            backtests::backtest,
        )
        .add(
            Method::POST,
            "/api/v1/rules/backtests",
            Requires(Admin),
            backtests::start_backtest,
        )
        .add(
            Method::GET,
            "/api/v1/rules/backtests/{id}",
            Requires(Admin),
            backtests::backtest_status,
        )
        .add(
            Method::DELETE,
            "/api/v1/rules/backtests/{id}",
            Requires(Admin),
            backtests::cancel_backtest,
        )
        .add(
            Method::GET,
            "/api/v1/rules/{id}",
            Requires(Admin),
            rules::get_rule,
        )
        .add(
            Method::PUT,
            "/api/v1/rules/{id}",
            Requires(Admin),
            rules::update_rule,
        )
        .add(
            Method::DELETE,
            "/api/v1/rules/{id}",
            Requires(Admin),
            rules::delete_rule,
        )
        .add(
            Method::GET,
            "/api/v1/rules/{id}/versions",
            Requires(Admin),
            rules::rule_versions,
        )
        .add(
            Method::GET,
            "/api/v1/alerts",
            Requires(Read),
            alerts::list_alerts,
        )
        .add(
            Method::GET,
            "/api/v1/alerts/{id}",
            Requires(Read),
            alerts::get_alert,
        )
        .add(
            Method::POST,
            "/api/v1/alerts/{id}/acknowledge",
            Requires(Respond),
            alerts::acknowledge,
        )
        .add(
            Method::GET,
            "/api/v1/events/{id}",
            Requires(Read),
            api::get_event,
        )
        .add(
            Method::GET,
            "/api/v1/incidents",
            Requires(Read),
            incidents::list_incidents,
        )
        .add(
            Method::GET,
            "/api/v1/incidents/{id}",
            Requires(Read),
            incidents::get_incident,
        )
        .add(
            Method::PATCH,
            "/api/v1/incidents/{id}",
            Requires(Respond),
            incidents::patch_incident,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/acknowledge",
            Requires(Respond),
            incidents::acknowledge_incident,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/resolve",
            Requires(Respond),
            incidents::resolve_incident,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/reopen",
            Requires(Respond),
            incidents::reopen_incident,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/assign",
            Requires(Respond),
            incidents::assign_incident,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/notes",
            Requires(Respond),
            incidents::add_note,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/pins",
            Requires(Respond),
            incidents::add_pin,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/merge",
            Requires(Respond),
            incidents::merge_incidents,
        )
        .add(
            Method::POST,
            "/api/v1/incidents/{id}/split",
            Requires(Respond),
            incidents::split_incident,
        )
        .add(
            Method::GET,
            "/api/v1/incidents/{id}/timeline",
            Requires(Read),
            incidents::get_timeline,
        )
        .add(
            Method::GET,
            "/api/v1/incidents/{id}/events",
            Requires(Read),
            incidents::stream_events,
        )
        .add(
            Method::GET,
            "/api/v1/incidents/{id}/export",
            Requires(Read),
            incidents::export_incident,
        )
        .add(
            Method::GET,
            "/api/v1/incident-settings",
            Requires(Read),
            incidents::get_incident_settings,
        )
        .add(
            Method::PUT,
            "/api/v1/incident-settings",
            Requires(Admin),
            incidents::put_incident_settings,
        )
        .add(
            Method::GET,
            "/api/v1/channels",
            Requires(Admin),
            channels::list_channels,
        )
        .add(
            Method::POST,
            "/api/v1/channels",
            Requires(Admin),
            channels::create_channel,
        )
        .add(
            Method::GET,
            "/api/v1/channels/{id}",
            Requires(Admin),
            channels::get_channel,
        )
        .add(
            Method::PUT,
            "/api/v1/channels/{id}",
            Requires(Admin),
            channels::update_channel,
        )
        .add(
            Method::DELETE,
            "/api/v1/channels/{id}",
            Requires(Admin),
            channels::delete_channel,
        )
        .add(
            Method::POST,
            "/api/v1/channels/{id}/test",
            Requires(Admin),
            channels::test_channel,
        )
        .add(
            Method::GET,
            "/api/v1/routing",
            Requires(Admin),
            channels::get_routing,
        )
        .add(
            Method::PUT,
            "/api/v1/routing",
            Requires(Admin),
            channels::put_routing,
        )
        .add(
            Method::DELETE,
            "/api/v1/routing",
            Requires(Admin),
            channels::delete_routing,
        )
        .add(
            Method::GET,
            "/api/v1/notifications",
            Requires(Read),
            channels::list_notifications,
        )
        .add(
            Method::GET,
            "/api/v1/notifications/{id}",
            Requires(Read),
            channels::get_notification,
        )
        .add(
            Method::GET,
            "/api/v1/silences",
            Requires(Read),
            silences::list_silences,
        )
        .add(
            Method::POST,
            "/api/v1/silences",
            Requires(Respond),
            silences::create_silence,
        )
        .add(
            Method::DELETE,
            "/api/v1/silences/{id}",
            Requires(Respond),
            silences::expire_silence,
        )
        .add(
            Method::GET,
            "/api/v1/tenants",
            Requires(InstanceAdmin),
            admin::list_tenants,
        )
        .add(
            Method::POST,
            "/api/v1/tenants",
            Requires(InstanceAdmin),
            admin::create_tenant,
        )
}

/// Every route of both listeners with its access rule (the OTLP listener's routes
/// authorise inside the shared ingest path, by the same rule).
pub fn route_table() -> Vec<RouteSpec> {
    let mut specs = api_table().specs;
    for path in ["/v1/logs", "/v1/metrics", "/v1/k8s/audit"] {
        specs.push(RouteSpec {
            listener: "otlp_http",
            method: Method::POST,
            path,
            access: Access::Requires(Permission::Ingest),
        });
    }
    specs
}

type AccessMap = Arc<HashMap<(Method, &'static str), Access>>;

/// The API router with authorisation enforced from the table.
pub fn api_routes(state: AppState) -> Router<AppState> {
    let table = api_table();
    let map: AccessMap = Arc::new(
        table
            .specs
            .iter()
            .map(|s| ((s.method.clone(), s.path), s.access))
            .collect(),
    );
    table
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            (state, map),
            authorize,
        ))
}

/// Look up the matched route's access rule, authenticate, check the permission and
/// hand the [`model::Principal`] to the handler as an extension. A route missing
/// from the table is refused (deny by default).
async fn authorize(
    State((state, map)): State<(AppState, AccessMap)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let access = matched
        .as_deref()
        .and_then(|path| map.get(&(parts.method.clone(), path)).copied());
    let Some(access) = access else {
        // The path exists with other methods: a client mistake, not a server fault.
        if let Some(path) = matched.as_deref() {
            let mut allowed: Vec<&str> = map
                .keys()
                .filter(|(_, p)| *p == path)
                .map(|(m, _)| m.as_str())
                .collect();
            if !allowed.is_empty() {
                allowed.sort_unstable();
                let allow = allowed.join(", ");
                let mut response = ApiError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("method {} is not allowed here; use {allow}", parts.method),
                )
                .into_response();
                if let Ok(value) = axum::http::HeaderValue::from_str(&allow) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::ALLOW, value);
                }
                return response;
            }
        }
        tracing::error!(path = ?matched, "route without a declared permission refused");
        return ApiError::new(
            ErrorKind::PermissionDenied,
            "route has no declared permission",
        )
        .into_response();
    };
    let Access::Requires(needed) = access else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let authenticated = match auth::authenticate(&state, &parts).await {
        Ok(Some(a)) => a,
        Ok(None) => return ApiError::unauthenticated().into_response(),
        Err(err) => return err.into_response(),
    };
    if !authenticated.principal.can(needed) {
        return ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "this {} may not do this: it needs {needed:?}",
                authenticated.kind()
            ),
        )
        .into_response();
    }
    if let Some(session) = &authenticated.session {
        parts.extensions.insert(session.clone());
    }
    parts.extensions.insert(authenticated.principal);
    next.run(Request::from_parts(parts, body)).await
}
