//! `/api/v1` handlers.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use model::{ErrorKind, Scope};
use query::search::{HistogramParams, HistogramResponse, SearchParams, SearchResponse};
use serde::Deserialize;
use storage::access::TokenGrant;

use crate::{ApiError, AppState};

/// Authenticate the bearer token and check it grants `needed`.
pub async fn require(
    state: &AppState,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<TokenGrant, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let grant = state
        .access
        .authenticate(header)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    if !grant.scope.allows(needed) {
        return Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "this token has scope {}; this endpoint needs {}",
                grant.scope, needed
            ),
        ));
    }
    Ok(grant)
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let grant = require(&state, &headers, Scope::Read).await?;
    let Query(p) = params.map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.body_text()))?;
    let params = SearchParams {
        q: p.q,
        from: p.from,
        to: p.to,
        limit: p.limit,
        cursor: p.cursor,
    };
    Ok(Json(state.search.search(grant.tenant_id, &params).await?))
}

#[derive(Debug, Deserialize)]
pub struct HistogramQuery {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    buckets: Option<String>,
}

pub async fn histogram(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<HistogramQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistogramResponse>, ApiError> {
    let grant = require(&state, &headers, Scope::Read).await?;
    let Query(p) = params.map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.body_text()))?;
    let params = HistogramParams {
        q: p.q,
        from: p.from,
        to: p.to,
        buckets: p.buckets,
    };
    Ok(Json(
        state.search.histogram(grant.tenant_id, &params).await?,
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such endpoint")
}
