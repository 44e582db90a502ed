//! Failure classes and their wire mappings.

/// The class of a failure, independent of transport.
///
/// Every crate's error type implements [`PublicError`]; the HTTP and gRPC renderers
/// translate a kind with [`ErrorKind::http_status`] and [`ErrorKind::grpc_code`] so
/// both transports always agree.
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

/// An error as the outside world sees it. Every crate's error type implements it, and
/// the wire renderers (the JSON API, OTLP/HTTP's `google.rpc.Status`, gRPC's status)
/// take nothing else, so all transports agree on status, message and retry hint.
pub trait PublicError: std::fmt::Display {
    fn kind(&self) -> ErrorKind;

    /// Seconds a client should wait before retrying (transient kinds only).
    fn retry_after_secs(&self) -> Option<u64> {
        match self.kind() {
            ErrorKind::ResourceExhausted => Some(1),
            ErrorKind::Unavailable => Some(5),
            _ => None,
        }
    }
}

/// What a renderer writes. Client errors (4xx) carry their own message, which names
/// the field at fault. Server-side failures (5xx) carry a generic message and a
/// request id; their details (database text, paths) go to the server log under that
/// id and never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    pub request_id: Option<String>,
}

impl Public {
    pub fn of<E: PublicError + ?Sized>(err: &E) -> Public {
        let kind = err.kind();
        let retry_after_secs = err.retry_after_secs();
        if kind.http_status() < 500 {
            return Public {
                kind,
                message: err.to_string(),
                retry_after_secs,
                request_id: None,
            };
        }
        let id = hex::encode(crate::token::random_bytes::<8>());
        let message = if kind == ErrorKind::Internal {
            tracing::error!(request_id = %id, error = %err, "internal error");
            format!("internal error (request id {id})")
        } else {
            tracing::warn!(request_id = %id, error = %err, kind = kind.as_str(), "request refused, retryable");
            format!("service temporarily unavailable; retry later (request id {id})")
        };
        Public {
            kind,
            message,
            retry_after_secs,
            request_id: Some(id),
        }
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

    #[derive(Debug)]
    struct Failure(ErrorKind, &'static str);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl PublicError for Failure {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }

    #[test]
    fn server_failures_show_a_request_id_never_their_details() {
        let detail = "database error: relation \"log_records_p20261130\" is full at /var/lib/pg";
        for kind in [ErrorKind::Internal, ErrorKind::Unavailable] {
            let public = Public::of(&Failure(kind, detail));
            let id = public.request_id.clone().expect("a request id");
            assert_eq!(id.len(), 16);
            assert!(public.message.contains(&id), "{public:?}");
            assert!(!public.message.contains("database"), "{public:?}");
            assert!(!public.message.contains("/var/lib"), "{public:?}");
        }
        assert_eq!(
            Public::of(&Failure(ErrorKind::Unavailable, detail)).retry_after_secs,
            Some(5)
        );
        let client = Public::of(&Failure(
            ErrorKind::InvalidArgument,
            "q: unexpected ')' at 3",
        ));
        assert_eq!(client.message, "q: unexpected ')' at 3");
        assert_eq!(client.request_id, None);
        assert_eq!(client.retry_after_secs, None);
    }
}
