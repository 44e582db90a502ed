//! Failure classes and their wire mappings.

/// The class of a failure, independent of transport.
///
/// Every crate's error type exposes `fn kind(&self) -> ErrorKind`; the HTTP and gRPC
/// adapters translate a kind with [`ErrorKind::http_status`] and [`ErrorKind::grpc_code`]
/// so both transports always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed; retrying it unchanged will fail again.
    InvalidArgument,
    /// No or bad credentials.
    Unauthenticated,
    /// Valid credentials without the needed permission.
    PermissionDenied,
    /// The object does not exist (or belongs to another tenant).
    NotFound,
    /// The object already exists or was changed concurrently.
    Conflict,
    /// The path exists but not with this HTTP method.
    MethodNotAllowed,
    /// The body is larger than allowed (after decompression).
    PayloadTooLarge,
    /// The content type or encoding is not supported.
    UnsupportedMediaType,
    /// A dependency (Postgres) is unreachable; retry later.
    Unavailable,
    /// The server or the caller is over its budget; retry later.
    ResourceExhausted,
    /// A bug or an unexpected state. Details go to the log, never to the client.
    Internal,
}

impl ErrorKind {
    /// HTTP status code for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::ResourceExhausted => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// gRPC status code (numeric, as in `google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 3,
            ErrorKind::NotFound => 5,
            ErrorKind::Conflict => 6,
            ErrorKind::PermissionDenied => 7,
            // OTLP: both overload and outage must be retryable, and UNAVAILABLE is the
            // code every OTLP exporter retries.
            ErrorKind::ResourceExhausted | ErrorKind::Unavailable => 14,
            ErrorKind::PayloadTooLarge => 8,
            ErrorKind::UnsupportedMediaType | ErrorKind::MethodNotAllowed => 3,
            ErrorKind::Unauthenticated => 16,
            ErrorKind::Internal => 13,
        }
    }

    /// Machine-readable code used in JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether a client should retry later (and be told when with `Retry-After`).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::ResourceExhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_faults_are_never_500() {
        for kind in [ErrorKind::Unavailable, ErrorKind::ResourceExhausted] {
            assert!(kind.is_transient());
            assert_ne!(kind.http_status(), 500);
            assert_eq!(kind.grpc_code(), 14);
        }
        assert!(!ErrorKind::InvalidArgument.is_transient());
    }
}
