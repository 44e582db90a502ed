//! Domain types shared by every Palisade crate.
//!
//! This crate does no IO: no SQL, no HTTP, no index. It holds the vocabulary the
//! other crates speak — tenants, scopes, tokens, log records — and [`ErrorKind`], the
//! one table that maps a failure class to both an HTTP status and a gRPC code.

pub mod access;
pub mod audit;
pub mod error;
pub mod ids;
pub mod incident;
pub mod ip;
pub mod password;
pub mod record;
pub mod token;

pub use access::{Access, Credential, Permission, Principal};
pub use error::{ErrorKind, Public, PublicError};
pub use ids::{Role, Scope, TenantId};
pub use record::{LogRecord, StoredLog};
