//! Storage errors and their classification.

use model::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Postgres is unreachable, shutting down or out of connections: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("{0}")]
    Internal(String),
}

impl StorageError {
    /// Whether the statement failed because of the data it carried (SQLSTATE class 22,
    /// data exception; 23, integrity; 54, program limit): retrying the same data fails
    /// again, so the client must be told (400), not asked to retry.
    pub fn is_data_error(&self) -> bool {
        match self {
            StorageError::Invalid(_) => true,
            StorageError::Database(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
            }
            _ => false,
        }
    }

    /// Where Postgres says a failing statement went wrong (`COPY log_records, line 3,
    /// column attributes: ...`), when it says.
    pub fn context(&self) -> Option<String> {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.r#where().map(str::to_string)),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Unavailable(_) => ErrorKind::Unavailable,
            StorageError::Conflict(_) => ErrorKind::Conflict,
            StorageError::NotFound(_) => ErrorKind::NotFound,
            StorageError::Invalid(_) => ErrorKind::InvalidArgument,
            StorageError::Database(_) | StorageError::Index(_) | StorageError::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        if is_transient(&err) {
            return StorageError::Unavailable(err.to_string());
        }
        if let sqlx::Error::Database(db) = &err
            && db.code().as_deref() == Some("23505")
        {
            return StorageError::Conflict(db.constraint().unwrap_or("row").to_string());
        }
        StorageError::Database(err)
    }
}

/// Whether an error means "the database is not reachable right now" rather than
/// "this statement is wrong". Connection loss, pool exhaustion and Postgres' own
/// shutdown / overload SQLSTATE classes are transient.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception, 53: insufficient resources,
            // 57P01..57P03: admin shutdown / crash shutdown / cannot connect now,
            // 40001/40P01: serialization failure / deadlock (safe to retry).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
        _ => false,
    }
}

impl From<std::io::Error> for StorageError {
    fn from(err: std::io::Error) -> Self {
        StorageError::Internal(err.to_string())
    }
}

impl model::PublicError for StorageError {
    fn kind(&self) -> model::ErrorKind {
        StorageError::kind(self)
    }
}
