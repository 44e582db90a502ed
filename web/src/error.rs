//! The API error type and the JSON renderer: `{"error":{"code":..,"message":..}}` with
//! the status of its [`ErrorKind`]. Every error reaches a client through
//! [`model::Public`]: 5xx bodies are generic and carry a request id; their detail goes
//! to the log under that id.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::ErrorKind;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        let retry_after = match kind {
            ErrorKind::ResourceExhausted => Some(1),
            ErrorKind::Unavailable => Some(5),
            _ => None,
        };
        ApiError {
            kind,
            message: message.into(),
            retry_after,
        }
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            ErrorKind::Unauthenticated,
            "missing or invalid bearer token",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl model::PublicError for ApiError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(&model::Public::of(&self))
    }
}

/// The JSON renderer: `{"error": {"code", "message", "request_id"?}}` with the kind's
/// status, `Retry-After` for transient kinds and `WWW-Authenticate` for 401.
pub fn json_error(public: &model::Public) -> Response {
    let status = StatusCode::from_u16(public.kind.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut error = json!({"code": public.kind.as_str(), "message": public.message});
    if let Some(id) = &public.request_id {
        error["request_id"] = json!(id);
    }
    let mut response = (status, Json(json!({ "error": error }))).into_response();
    with_headers(&mut response, public);
    response
}

/// `Retry-After` and `WWW-Authenticate`, the same for every wire format.
pub fn with_headers(response: &mut Response, public: &model::Public) {
    if let Some(secs) = public.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(id) = &public.request_id
        && let Ok(value) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert("x-request-id", value);
    }
    if public.kind == ErrorKind::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
}

impl From<query::QueryError> for ApiError {
    fn from(err: query::QueryError) -> Self {
        ApiError::new(err.kind(), err.to_string())
    }
}

impl From<alerting::AlertingError> for ApiError {
    fn from(err: alerting::AlertingError) -> Self {
        ApiError::new(err.kind(), err.to_string())
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(err: storage::StorageError) -> Self {
        ApiError::new(err.kind(), err.to_string())
    }
}

impl From<ingest::IngestError> for ApiError {
    fn from(err: ingest::IngestError) -> Self {
        let mut api = ApiError::new(err.kind(), err.to_string());
        api.retry_after = err.retry_after_secs();
        api
    }
}
