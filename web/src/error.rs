//! The API error type: `{"error":{"code":..,"message":..}}` with the status of its
//! [`ErrorKind`]. 5xx bodies are generic; their detail goes to the log.

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if status.is_server_error() && self.kind == ErrorKind::Internal {
            tracing::error!(error = %self.message, "internal error");
            "internal error".to_string()
        } else {
            self.message
        };
        let body = Json(json!({"error": {"code": self.kind.as_str(), "message": message}}));
        let mut response = (status, body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.kind == ErrorKind::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<query::QueryError> for ApiError {
    fn from(err: query::QueryError) -> Self {
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
