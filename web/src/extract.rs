//! Shared extractors: each turns axum's rejection into the API's error shape once,
//! instead of per handler.
//!
//! * [`ApiJson`]: a JSON body; a bad body is a 400 naming what is wrong, a too large
//!   one a 413, a wrong content type a 415.
//! * [`ApiQuery`]: query-string parameters; a bad one is a 400 naming it.
//! * [`ObjectId`]: a UUID path segment; a malformed id is a 404, the same answer as an
//!   unknown one (it cannot name an object of this tenant).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use model::ErrorKind;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let kind = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
        _ => ErrorKind::InvalidArgument,
    };
    ApiError::new(kind, rejection.body_text())
}

/// Query-string parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::new(ErrorKind::InvalidArgument, rejection.body_text())
            })
    }
}

/// The `{id}` of an object path: a UUID, or 404.
#[derive(Debug, Clone, Copy)]
pub struct ObjectId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ObjectId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::new(ErrorKind::NotFound, "not found");
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        Uuid::parse_str(&text)
            .map(ObjectId)
            .map_err(|_| not_found())
    }
}

/// A list route's `limit`: 1..=1000, `default` when absent (400 naming it otherwise).
pub(crate) fn list_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            model::ErrorKind::InvalidArgument,
            "limit must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

/// An optional time parameter (RFC 3339 or relative to `now`), named in its error.
pub(crate) fn optional_time(
    text: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    field: &'static str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    Ok(text
        .map(|t| query::time::parse_time(t, now, field))
        .transpose()?)
}
