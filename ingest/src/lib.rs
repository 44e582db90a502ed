//! OTLP decoding, normalisation and durable batching: the only crate that knows the
//! OTLP wire types.
//!
//! HTTP (`web`) and gRPC ([`grpc`]) are thin transports over one path:
//! bytes --[`decode`]--> `ExportLogsServiceRequest` --[`normalize`]--> `LogRecord`s
//! (invalid ones counted and explained) --[`writer::Ingestor`]--> committed in
//! Postgres (group commit) --> acknowledged.

pub mod body;
pub mod decode;
pub mod error;
pub mod grpc;
pub mod k8s_webhook;
pub mod limits;
pub mod metrics;
pub mod normalize;
pub mod otlp_metrics;
pub mod writer;

pub use error::IngestError;

/// Largest accepted request body, after decompression.
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
/// Deepest accepted AnyValue nesting (kvlist/array inside kvlist/array ...).
pub const MAX_ANYVALUE_DEPTH: usize = 32;

use model::Scope;
use storage::access::{AccessStore, TokenGrant};

/// Authenticate an `Authorization` header value for ingest, and apply the token's
/// ingest rate limit. Database trouble is a retryable error, never a 401: a client
/// must not drop data because we are down.
pub async fn authenticate_ingest(
    access: &AccessStore,
    limits: &limits::TokenLimits,
    header: Option<&str>,
    source: Option<&str>,
) -> Result<TokenGrant, IngestError> {
    let grant = access
        .authenticate(header, source)
        .await?
        .ok_or(IngestError::Unauthenticated)?;
    if !grant.scope.allows(Scope::Ingest) {
        return Err(IngestError::Forbidden);
    }
    if let Err(wait) = limits.check_ingest(grant.token_id) {
        return Err(IngestError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    Ok(grant)
}
