//! Shared state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ingest::writer::Ingestor;
use query::search::SearchService;
use storage::Db;
use storage::access::AccessStore;
use storage::index::LogIndex;
use storage::indexer::IndexerStatus;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub access: Arc<AccessStore>,
    pub ingestor: Arc<Ingestor>,
    pub search: Arc<SearchService>,
    pub index: Arc<LogIndex>,
    pub indexer: Arc<IndexerStatus>,
    /// Set once migrations have been applied at start.
    pub migrated: Arc<AtomicBool>,
    pub registry: prometheus::Registry,
    pub gauges: crate::ops::Gauges,
}
