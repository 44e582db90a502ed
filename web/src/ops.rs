//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::AppState;
use crate::wire::{Readiness, ReadyChecks, StatusBody};

/// Gauges computed at scrape time.
#[derive(Clone)]
pub struct Gauges {
    index_lag: IntGauge,
    indexed_seq: IntGauge,
    committed_seq: IntGauge,
    index_docs: IntGauge,
    pool_size: IntGauge,
    pool_idle: IntGauge,
    template_budget: prometheus::IntCounter,
}

impl Gauges {
    pub fn register(registry: &Registry) -> prometheus::Result<Gauges> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Gauges {
            index_lag: gauge(
                "palisade_index_lag_records",
                "Committed log records not yet searchable (committed seq - indexed seq)",
            )?,
            indexed_seq: gauge(
                "palisade_index_checkpoint_seq",
                "Highest sequence id searchable",
            )?,
            committed_seq: gauge(
                "palisade_ingest_committed_seq",
                "Highest sequence id committed by this process",
            )?,
            index_docs: gauge("palisade_index_documents", "Documents in the search index")?,
            pool_size: gauge(
                "palisade_db_pool_connections",
                "Open Postgres connections in the pool",
            )?,
            pool_idle: gauge(
                "palisade_db_pool_idle_connections",
                "Idle Postgres connections in the pool",
            )?,
            template_budget: {
                let c = prometheus::IntCounter::new(
                    "palisade_rule_template_budget_exceeded_total",
                    "Annotation renderings stopped by the template budget (instructions or output size)",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
        })
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = StatusBody)))]
pub async fn healthz() -> impl IntoResponse {
    Json(StatusBody {
        status: "ok".into(),
    })
}

/// Ready when the database answers, migrations are applied and the index has caught
/// up with Postgres after start. Each check is reported.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.db.ping().await.is_ok();
    let migrations = state.migrated.load(Ordering::Relaxed);
    let index = state.indexer.caught_up.load(Ordering::Relaxed);
    let ready = database && migrations && index;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" }.into(),
        checks: ReadyChecks {
            database,
            migrations,
            index_caught_up: index,
        },
    };
    let mut response = (status, Json(body)).into_response();
    if !ready {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(5));
    }
    response
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let g = &state.gauges;
    let committed = *state.ingestor.committed().borrow();
    let indexed = state.indexer.indexed_seq.load(Ordering::Relaxed);
    g.committed_seq.set(committed);
    g.indexed_seq.set(indexed);
    g.index_lag.set((committed - indexed).max(0));
    g.index_docs.set(state.index.num_docs() as i64);
    g.pool_size.set(i64::from(state.db.pool.size()));
    g.pool_idle.set(state.db.pool.num_idle() as i64);
    let exceeded = alerting::template::budget_exceeded();
    g.template_budget
        .inc_by(exceeded.saturating_sub(g.template_budget.get()));
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&state.registry.gather(), &mut buffer) {
        tracing::error!(error = %err, "metrics encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        buffer,
    )
        .into_response()
}
