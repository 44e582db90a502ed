//! The alerting error type: what rules, the runtime and backtests fail with.

use model::ErrorKind;
use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    /// A rule, query or range the caller gave is not valid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing alert state, rules or events failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Searching the events a rule reads failed.
    #[error(transparent)]
    Query(#[from] query::QueryError),
    /// A bug or an unexpected state (a panicked evaluation task).
    #[error("{0}")]
    Internal(String),
}

impl AlertingError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AlertingError::Invalid(_) => ErrorKind::InvalidArgument,
            AlertingError::Storage(err) => err.kind(),
            AlertingError::Query(err) => err.kind(),
            AlertingError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl model::PublicError for AlertingError {
    fn kind(&self) -> ErrorKind {
        AlertingError::kind(self)
    }
}

pub type Result<T> = std::result::Result<T, AlertingError>;
