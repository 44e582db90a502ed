//! HTTP: axum routers, DTOs, [`error::ApiError`]. The only crate that knows status
//! codes and JSON error shapes.
//!
//! Two routers are built from one [`state::AppState`]:
//! * [`api_router`] on the API listener: `/api/v1/*`, `/healthz`, `/readyz`, `/metrics`,
//!   and the web UI ([`ui`]);
//! * [`otlp_router`] on the OTLP/HTTP listener: `POST /v1/logs`.
//!
//! Both carry the security headers of [`security`].

pub mod admin;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backtests;
pub mod channels;
pub mod error;
pub mod extract;
pub mod incidents;
pub mod k8s_audit;
pub mod login_guard;
pub mod openapi;
pub mod ops;
pub mod otlp_http;
pub mod prometheus;
pub mod routes;
pub mod rules;
pub mod security;
pub mod session;
pub mod silences;
pub mod state;
pub mod ui;
pub mod wire;

use axum::Router;
use axum::routing::post;

pub use error::ApiError;
pub use state::AppState;

/// Largest body accepted by the JSON API (OTLP has its own, larger cap).
pub const API_BODY_LIMIT: usize = 1024 * 1024;

/// The API listener's router. Every route comes from [`routes`], with its declared
/// permission enforced before the handler runs.
pub fn api_router(state: AppState) -> Router {
    routes::api_routes(state.clone())
        .merge(ui::router())
        .fallback(api::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ))
        .with_state(state)
}

pub fn otlp_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/logs", post(otlp_http::export_logs))
        .route("/v1/metrics", post(otlp_http::export_metrics))
        .route("/v1/k8s/audit", post(k8s_audit::webhook))
        .fallback(api::not_found)
        // The handler enforces its own cap while reading; disable axum's default.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ))
        .with_state(state)
}
