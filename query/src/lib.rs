//! Query language, planning and execution: search and histograms.
//!
//! * [`parse`]: Lucene-like text -> [`ast::Expr`], errors carry a byte position.
//! * [`compile`]: [`ast::Expr`] -> tantivy query over the fields of `storage::index`.
//! * [`time`]: RFC 3339 and relative (`now-15m`) time expressions.
//! * [`search`]: the [`search::SearchService`] used by the HTTP API (and later the UI
//!   and alert rules): index lookup, then rows fetched from Postgres, the system of
//!   record.

pub mod ast;
pub mod compile;
pub mod error;
pub mod parse;
pub mod search;
pub mod time;
pub mod values;

pub use error::QueryError;
