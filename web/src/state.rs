//! Shared state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ingest::limits::TokenLimits;
use ingest::writer::Ingestor;
use query::search::SearchService;
use storage::Db;
use storage::access::AccessStore;
use storage::audit::AuditStore;
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
    pub audit: Arc<AuditStore>,
    pub sessions: crate::auth::SessionConfig,
    pub limits: Arc<TokenLimits>,
    pub login_guard: Arc<crate::login_guard::LoginGuard>,
    /// An argon2id hash verified when a login names no (active) user, so the
    /// response takes as long as for a real account.
    pub dummy_hash: Arc<str>,
    /// Default lifetime of tokens created without an explicit expiry.
    pub token_default_days: i64,
    /// The rule engine (rules, alerts, silences).
    pub engine: Arc<alerting::runtime::Engine>,
    /// Background backtests of this process.
    pub backtests: Arc<alerting::runtime::BacktestJobs>,
    /// Paging channels and the notification outbox.
    pub notifications: storage::notify::NotificationStore,
    /// Opens channel secrets, checks destinations and sends (channel tests).
    pub notifier: Arc<notify::worker::Sender>,
    /// Incidents and their activity.
    pub incidents: storage::incidents::IncidentStore,
    /// Metric series and samples (PromQL loads).
    pub metrics: storage::metrics::MetricStore,
    /// The OTLP metrics ingest path (HTTP here, gRPC in `server`).
    pub metrics_ingest: std::sync::Arc<ingest::otlp_metrics::MetricsIngest>,
}
