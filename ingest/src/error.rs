//! Ingest errors.

use model::ErrorKind;
use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error("request body exceeds {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("request holds more than {limit} {what}; send smaller batches")]
    TooManyRecords { limit: usize, what: &'static str },
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("missing or invalid ingest token")]
    Unauthenticated,
    #[error("this token may not ingest: it needs the ingest scope")]
    Forbidden,
    #[error("ingest is overloaded; retry later")]
    Overloaded,
    #[error("rate limit exceeded for this token; retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("ingest is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Malformed(_) => ErrorKind::InvalidArgument,
            IngestError::TooLarge { .. } | IngestError::TooManyRecords { .. } => {
                ErrorKind::PayloadTooLarge
            }
            IngestError::UnsupportedMedia(_) => ErrorKind::UnsupportedMediaType,
            IngestError::Unauthenticated => ErrorKind::Unauthenticated,
            IngestError::Forbidden => ErrorKind::PermissionDenied,
            IngestError::Overloaded | IngestError::RateLimited { .. } => {
                ErrorKind::ResourceExhausted
            }
            IngestError::ShuttingDown => ErrorKind::Unavailable,
            IngestError::Storage(err) => match err.kind() {
                // Any storage failure on the ingest path is reported as retryable: the
                // batch was not committed, and OTLP clients drop data on a 500.
                ErrorKind::Internal => ErrorKind::Unavailable,
                other => other,
            },
        }
    }

    /// Seconds a client should wait before retrying a transient failure.
    pub fn retry_after_secs(&self) -> Option<u64> {
        if let IngestError::RateLimited { retry_after_secs } = self {
            return Some(*retry_after_secs);
        }
        match self.kind() {
            ErrorKind::ResourceExhausted => Some(1),
            ErrorKind::Unavailable => Some(5),
            _ => None,
        }
    }
}

impl model::PublicError for IngestError {
    fn kind(&self) -> model::ErrorKind {
        IngestError::kind(self)
    }

    fn retry_after_secs(&self) -> Option<u64> {
        IngestError::retry_after_secs(self)
    }
}
