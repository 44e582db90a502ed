//! The OpenAPI 3.1 document of the API listener, generated from the handlers' and the
//! wire types' declarations and served at `GET /api/v1/openapi.json`. A test checks
//! that it lists exactly the routes of [`crate::routes::route_table`].

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    admin, alerts, api, backtests, channels, incidents, ops, rules, session, silences, wire,
};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`palisade token create`, `POST /api/v1/tokens`) of the scope the route needs",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "palisade_session",
                "A browser session (`POST /api/v1/auth/login`); state changes also need the X-CSRF-Token header",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade API",
        description = "Search, alerts, rules and administration of a Palisade server. Errors are `{\"error\": {\"code\", \"message\"}}` with the status of their class; see docs/api.md.",
        license(name = "Apache-2.0"),
    ),
    security(("bearer" = []), ("session" = [])),
    modifiers(&Security),
    paths(
        ops::healthz, ops::readyz, ops::metrics, openapi_json,
        crate::prometheus::query, crate::prometheus::query_range, crate::prometheus::series,
        crate::prometheus::labels, crate::prometheus::label_values,
        crate::prometheus::query_exemplars, crate::prometheus::metadata,
        crate::prometheus::buildinfo, crate::prometheus::query_post,
        crate::prometheus::query_range_post, crate::prometheus::series_post,
        crate::prometheus::labels_post, crate::prometheus::query_exemplars_post,
        session::login, session::logout, session::current, session::change_password, session::switch_tenant,
        api::search, api::histogram, api::get_event,
        admin::list_users, admin::create_user, admin::disable_user, admin::add_member, admin::remove_member,
        admin::list_tokens, admin::create_token, admin::revoke_token,
        admin::list_audit, admin::list_tenants, admin::create_tenant,
        rules::list_rules, rules::create_rule, rules::get_rule, rules::update_rule,
        rules::delete_rule, rules::rule_versions,
        backtests::backtest, backtests::start_backtest, backtests::backtest_status,
        backtests::cancel_backtest,
        alerts::list_alerts, alerts::get_alert, alerts::acknowledge,
        channels::list_channels, channels::create_channel, channels::get_channel,
        channels::update_channel, channels::delete_channel, channels::test_channel,
        channels::list_notifications, channels::get_notification,
        channels::get_routing, channels::put_routing, channels::delete_routing,
        silences::list_silences, silences::create_silence, silences::expire_silence,
        incidents::list_incidents, incidents::get_incident, incidents::patch_incident,
        incidents::acknowledge_incident, incidents::resolve_incident, incidents::reopen_incident, incidents::assign_incident,
        incidents::add_note, incidents::add_pin, incidents::merge_incidents, incidents::split_incident,
        incidents::get_timeline, incidents::stream_events, incidents::export_incident,
        incidents::get_incident_settings, incidents::put_incident_settings,
    ),
    components(schemas(wire::ErrorBody, wire::ErrorDetail)),
    tags(
        (name = "search", description = "The query language over stored records"),
        (name = "alerts", description = "Alerts and silences"),
        (name = "incidents", description = "Incidents, their timelines and exports"),
        (name = "paging", description = "Channels alerts are paged to, and the notification outbox"),
        (name = "rules", description = "Alert rules, tunings and backtests"),
        (name = "admin", description = "Users, tokens, tenants and the audit trail"),
        (name = "auth", description = "Browser sessions"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serialises")
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The document lists exactly the API listener's routes, with their methods.
    #[test]
    fn the_document_lists_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = crate::routes::route_table()
            .into_iter()
            .filter(|r| r.listener == "api")
            .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes without documentation: {missing:?}"
        );
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
        // Public routes say so; the others need a credential.
        for route in crate::routes::route_table()
            .iter()
            .filter(|r| r.listener == "api")
        {
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let public = op["security"] == serde_json::json!([{}]);
            assert_eq!(
                public,
                route.access == model::Access::Public,
                "{} {}: security {}",
                route.method,
                route.path,
                op["security"]
            );
        }
    }
}
