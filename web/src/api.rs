//! `/api/v1` search handlers. Authorisation happened in `routes::authorize`; the
//! handler receives the [`Principal`] and uses only its tenant.

use axum::Json;
use axum::extract::{Extension, Query, State};
use model::{ErrorKind, Principal};
use query::search::{HistogramParams, SearchParams};

use crate::wire::{HistogramResponse, SearchResponse};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    sort: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.body_text()))?;
    let params = SearchParams {
        q: p.q,
        from: p.from,
        to: p.to,
        limit: p.limit,
        cursor: p.cursor,
        sort: p.sort,
    };
    let request = params.resolve(principal.tenant_id, chrono::Utc::now())?;
    let result = state.search.run(&request).await?;
    Ok(Json(SearchResponse::from(result)))
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
    Extension(principal): Extension<Principal>,
    params: Result<Query<HistogramQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistogramResponse>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e.body_text()))?;
    let params = HistogramParams {
        q: p.q,
        from: p.from,
        to: p.to,
        buckets: p.buckets,
    };
    let request = params.resolve(principal.tenant_id, chrono::Utc::now())?;
    let result = state.search.histogram(&request).await?;
    Ok(Json(HistogramResponse::from(result)))
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such endpoint")
}
