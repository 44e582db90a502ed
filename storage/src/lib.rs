//! Postgres stores and the tantivy index: the only crate with SQL.
//!
//! * [`pg`] connects and migrates (migrations are embedded from `migrations/`).
//! * [`embedded`] runs a private PostgreSQL cluster for the zero-configuration default.
//! * [`logs`] writes batches of log records with COPY under the ingest lock and
//!   reads them back by sequence.
//! * [`access`] stores tenants, users and hashed tokens.
//! * [`requests`] folds the stages of one Kubernetes API request into one logical
//!   record (marks set in the ingest transaction).
//! * [`index`] is the tantivy index, a derived view of `log_records` that can always
//!   be rebuilt from Postgres.

pub mod access;
pub mod alerts;
pub mod audit;
pub mod embedded;
pub mod error;
pub mod follow;
pub mod incidents;
pub mod index;
pub mod indexer;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod pg;
pub mod requests;

pub use error::StorageError;
pub use pg::Db;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
