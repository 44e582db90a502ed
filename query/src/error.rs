//! Query errors.

use model::ErrorKind;
use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is invalid at byte `position` (0-based).
    #[error("query syntax error at position {position}: {message}")]
    Syntax { position: usize, message: String },
    /// A request parameter is invalid; `field` names it.
    #[error("invalid {field}: {message}")]
    InvalidParam {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A bug or an unexpected state (a failed index task).
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Syntax { .. } | QueryError::InvalidParam { .. } => {
                ErrorKind::InvalidArgument
            }
            QueryError::Storage(err) => err.kind(),
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn syntax(position: usize, message: impl Into<String>) -> QueryError {
        QueryError::Syntax {
            position,
            message: message.into(),
        }
    }
}

impl model::PublicError for QueryError {
    fn kind(&self) -> model::ErrorKind {
        QueryError::kind(self)
    }
}
