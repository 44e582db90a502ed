//! `/api/v1` search handlers. Authorisation happened in `routes::authorize`; the
//! handler receives the [`Principal`] and uses only its tenant.

use axum::Json;
use axum::extract::{Extension, State};
use model::{ErrorKind, Principal};
use query::search::{HistogramParams, SearchParams};

use crate::extract::ApiQuery;
use crate::wire::{ErrorBody, HistogramResponse, SearchResponse};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The query (docs/api.md#query-language); empty matches everything.
    q: Option<String>,
    /// RFC 3339 or relative (`now-15m`) [default: now-24h].
    from: Option<String>,
    /// RFC 3339 or relative [default: now+1d].
    to: Option<String>,
    /// 1-1000 [default: 100].
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `newest` (default) or `oldest`.
    sort: Option<String>,
}

/// Records matching a query, a page at a time, with the exact total.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(p): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResponse>, ApiError> {
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistogramQuery {
    /// The query; empty matches everything.
    q: Option<String>,
    /// RFC 3339 or relative [default: now-24h].
    from: Option<String>,
    /// RFC 3339 or relative [default: now].
    to: Option<String>,
    /// 1-1000 [default: 60].
    buckets: Option<String>,
}

/// Counts of matching records per equal-width time bucket.
#[utoipa::path(get, path = "/api/v1/search/histogram", tag = "search", params(HistogramQuery),
    responses((status = 200, body = HistogramResponse), (status = 400, body = ErrorBody)))]
pub async fn histogram(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(p): ApiQuery<HistogramQuery>,
) -> Result<Json<HistogramResponse>, ApiError> {
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

/// An event id from a path: a positive sequence id.
pub(crate) fn event_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidArgument,
            "id: not an event id (a positive integer, as search returns it)",
        )
    })
}

/// One stored event of the tenant, exactly as committed.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "search",
    params(("id" = String, Path, description = "the event id (as search returns it)")),
    responses((status = 200, body = crate::wire::Hit), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_event(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<crate::wire::Hit>, ApiError> {
    let seq = event_id(&id)?;
    let found = state
        .engine
        .logs()
        .fetch_by_seqs(principal.tenant_id, &[seq], None)
        .await?;
    let event = found
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "event not found"))?;
    Ok(Json(crate::wire::Hit::from(event)))
}
