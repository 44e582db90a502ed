//! `palisade serve`: wiring and graceful shutdown.
//!
//! Tasks:
//! * three listeners (API, OTLP/HTTP, OTLP/gRPC), each with graceful shutdown;
//! * the ingest writer (group commit), owned by `ingest::writer::Ingestor`;
//! * the indexer, following the committed sequence into tantivy;
//! * the retention task, dropping expired daily partitions once an hour.
//!
//! Shutdown (SIGINT/SIGTERM): stop accepting and drain in-flight requests, so every
//! acknowledged batch is committed; stop the indexer (it commits the index); close the
//! pool; stop the embedded cluster if we started it.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use alerting::runtime::{Engine, RuleSet};
use anyhow::{Context, bail};
use chrono::Utc;
use ingest::limits::{LimitConfig, TokenLimits};
use ingest::metrics::IngestMetrics;
use ingest::normalize::TimePolicy;
use ingest::writer::{IngestConfig, Ingestor};
use query::search::SearchService;
use std::net::SocketAddr;
use storage::access::AccessStore;
use storage::alerts::AlertStore;
use storage::audit::AuditStore;
use storage::index::{IndexConfig, LogIndex};
use storage::indexer::IndexerStatus;
use storage::logs::LogStore;
use tokio::net::TcpListener;
use web::AppState;
use web::auth::SessionConfig;
use web::login_guard::LoginGuard;
use web::ops::Gauges;

use crate::config::Settings;
use crate::database::{Database, token_key};
use crate::tls::{TlsListener, TlsState};

/// Hold an exclusive lock on the data dir for the life of the server, so two servers
/// never share one index and one embedded cluster.
fn lock_data_dir(settings: &Settings) -> anyhow::Result<File> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let path = settings.data_dir.join("palisade.lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!(
            "another palisade server is using {}; stop it or choose another --data-dir",
            settings.data_dir.display()
        );
    }
    Ok(file)
}

async fn migrate_with_retry(db: &storage::Db) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match db.migrate().await {
            Ok(()) => return Ok(()),
            Err(err)
                if err.kind() == model::ErrorKind::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %err, "database not reachable yet; retrying migrations");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(err) => return Err(err).context("running migrations"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The three listeners, bound before anything else starts: a port in use is one clear
/// error, before a database is opened or a background task runs.
struct Listeners {
    api: TcpListener,
    otlp_http: TcpListener,
    grpc: TcpListener,
}

impl Listeners {
    async fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            api: bind(settings.http_addr, "http-addr").await?,
            otlp_http: bind(settings.otlp_http_addr, "otlp-http-addr").await?,
            grpc: bind(settings.otlp_grpc_addr, "otlp-grpc-addr").await?,
        })
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&settings)?;
    let listeners = Listeners::bind(&settings).await?;
    let database = Database::open(&settings, true).await?;
    // Every background task stops when this token is cancelled: at a signal, and also
    // when start-up fails half way.
    let shutdown = CancellationToken::new();
    let result = run_with(&settings, &database, listeners, shutdown.clone()).await;
    shutdown.cancel();
    database.close().await;
    result
}

async fn run_with(
    settings: &Settings,
    database: &Database,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let db = database.db.clone();
    migrate_with_retry(&db).await?;
    let migrated = Arc::new(AtomicBool::new(true));
    let key = token_key(&settings.data_dir, &db).await?;
    let access = Arc::new(AccessStore::new(db.clone(), key));
    if let Some(path) = crate::bootstrap::ensure(&access, &settings.data_dir).await? {
        println!(
            "palisade: first start: admin credentials and tokens written to {} (mode 0600)",
            path.display()
        );
    }

    let logs = Arc::new(LogStore::new(db.clone()));
    let max_seq = logs.max_seq().await?;
    let index_dir = settings.data_dir.join("index");
    let mut index = LogIndex::open_or_create(&index_dir, &IndexConfig::default())?;
    if index.checkpoint() > max_seq {
        // The index claims records the database does not have (restored or replaced
        // database): it cannot be trusted. Rebuild it from Postgres.
        tracing::warn!(
            checkpoint = index.checkpoint(),
            max_seq,
            "index is ahead of the database; rebuilding"
        );
        drop(index);
        std::fs::remove_dir_all(&index_dir)?;
        index = LogIndex::open_or_create(&index_dir, &IndexConfig::default())?;
    }
    let index = Arc::new(index);

    let registry = prometheus::Registry::new();
    let metrics = IngestMetrics::register(&registry)?;
    let gauges = Gauges::register(&registry)?;
    let retention = chrono::Duration::days(i64::from(settings.retention_days));
    let ingest_config = IngestConfig {
        time_policy: TimePolicy {
            max_age: retention,
            ..TimePolicy::default()
        },
        ..IngestConfig::default()
    };
    let (ingestor, writer_task) = Ingestor::start(logs.clone(), ingest_config, metrics, max_seq);

    let indexer_status = Arc::new(IndexerStatus::default());
    let metric_store = storage::metrics::MetricStore::new(db.clone());
    let metrics_ingest = Arc::new(ingest::otlp_metrics::MetricsIngest {
        store: metric_store.clone(),
        max_age_ms: retention.num_milliseconds(),
    });
    tokio::spawn(compact_loop(metric_store.clone(), shutdown.clone()));
    let retention_task = tokio::spawn(retention_loop(
        logs.clone(),
        metric_store.clone(),
        indexer_status.clone(),
        retention,
        shutdown.clone(),
    ));
    let indexer_task = tokio::spawn(storage::indexer::run(
        logs.clone(),
        index.clone(),
        ingestor.committed(),
        Some(ingestor.subscribe_batches()),
        indexer_status.clone(),
        shutdown.clone(),
    ));

    let file_rules: Vec<Arc<alerting::rule::Rule>> =
        crate::rules::file_rules(settings.rules_dir.as_deref(), !settings.no_builtin_rules)?
            .into_iter()
            .map(Arc::new)
            .collect();
    println!(
        "palisade: {} rule(s) in force for every tenant",
        file_rules.len()
    );
    let engine = Engine::new(
        AlertStore::new(db.clone()),
        logs.clone(),
        index.clone(),
        RuleSet {
            file: file_rules,
            tenants: Default::default(),
        },
    );
    engine.set_metric_store(metric_store.clone());
    engine.reload_tenant_rules().await?;
    engine.restore().await?;
    // Correlation signals (alerting::signal) are committed like any record; a weak
    // handle so the writer still stops when the server drops the ingestor.
    let writer = Arc::downgrade(&ingestor);
    engine.set_signal_sink(Arc::new(move |signals| {
        if let Some(writer) = writer.upgrade() {
            tokio::spawn(async move {
                if let Err(err) = writer.write(signals).await {
                    tracing::warn!(error = %err, "correlation signals not written");
                }
            });
        }
    }));
    engine.set_tenants(
        access
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
    );
    tokio::spawn(engine.clone().run_events(
        ingestor.committed(),
        Some(ingestor.subscribe_batches()),
        shutdown.clone(),
    ));
    tokio::spawn(engine.clone().run_schedule(shutdown.clone()));
    tokio::spawn(refresh_tenants(
        engine.clone(),
        access.clone(),
        shutdown.clone(),
    ));

    let limits = Arc::new(TokenLimits::new(LimitConfig {
        ingest_per_second: settings.ingest_rate_limit,
        api_per_second: settings.api_rate_limit,
    }));
    let dummy_hash: Arc<str> =
        tokio::task::spawn_blocking(|| model::password::hash(&model::token::random_password(24)))
            .await?
            .into();
    // Paging: the outbox worker, and the sender the channel test uses.
    let keys = crate::database::secrets_key(settings)?;
    let policy = Arc::new(notify::guard::Destinations::new(
        settings.allow_private_destinations.clone(),
    ));
    let notify_config = notify::worker::Config {
        public_url: settings.public_url.clone(),
        ..notify::worker::Config::default()
    };
    let notifier = Arc::new(notify::worker::Sender {
        keys,
        client: notify::worker::client(policy.clone(), notify_config.timeout),
        policy,
        logs: logs.clone(),
        config: notify_config,
    });
    let notifications = storage::notify::NotificationStore::new(db.clone());
    if let Some(path) = &settings.channels_file {
        let written = crate::paging::apply(path, &access, &notifications, &notifier).await?;
        println!("palisade: {written} channel(s) from {}", path.display());
    }
    let worker = Arc::new(notify::worker::Worker::new(
        notifications.clone(),
        notifier.clone(),
        notify::worker::NotifyMetrics::register(&registry)?,
    ));
    tokio::spawn(worker.run(shutdown.clone()));

    let incidents = storage::incidents::IncidentStore::new(db.clone());
    let state = AppState {
        db: db.clone(),
        access: access.clone(),
        ingestor: ingestor.clone(),
        search: Arc::new(SearchService::new(index.clone(), logs.clone())),
        index: index.clone(),
        indexer: indexer_status,
        migrated,
        registry,
        gauges,
        audit: Arc::new(AuditStore::new(db.clone())),
        sessions: SessionConfig {
            idle: settings.session_idle,
            absolute: settings.session_absolute,
            tls: settings.tls.is_some(),
        },
        limits: limits.clone(),
        login_guard: Arc::new(LoginGuard::default()),
        dummy_hash,
        token_default_days: settings.token_expiry_days,
        engine: engine.clone(),
        backtests: Default::default(),
        notifications,
        notifier,
        incidents,
        metrics: metric_store.clone(),
        metrics_ingest: metrics_ingest.clone(),
    };

    let tls = match &settings.tls {
        Some((cert, key)) => {
            let tls = TlsState::load(cert, key)?;
            crate::tls::spawn_reloader(tls.clone())?;
            Some(tls)
        }
        None => None,
    };
    let Listeners {
        api: api_listener,
        otlp_http: otlp_http_listener,
        grpc: grpc_listener,
    } = listeners;
    let api_addr = api_listener.local_addr()?;
    let otlp_http_addr = otlp_http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let grpc_service = ingest::grpc::logs_service(ingestor.clone(), access.clone(), limits.clone());
    let conn_limits = crate::conn::ConnLimits {
        header_timeout: settings.header_timeout,
        max_connections: settings.max_connections,
    };
    let grpc_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(settings.header_timeout))
        .http2_keepalive_timeout(Some(settings.header_timeout))
        .concurrency_limit_per_connection(256)
        .timeout(Duration::from_secs(60))
        .add_service(grpc_service)
        .add_service(ingest::otlp_metrics::metrics_service(
            ingest::otlp_metrics::MetricsGrpc {
                ingest: metrics_ingest.clone(),
                access: access.clone(),
                limits: limits.clone(),
                ingestor: ingestor.clone(),
            },
        ));
    let apps = (
        web::api_router(state.clone()),
        web::otlp_router(state.clone()),
    );
    let servers = match tls.clone() {
        None => tokio::spawn(run_listeners(
            api_listener,
            otlp_http_listener,
            grpc_server.serve_with_incoming_shutdown(
                crate::conn::grpc_plain_incoming(grpc_listener, conn_limits),
                shutdown.clone().cancelled_owned(),
            ),
            apps,
            conn_limits,
            shutdown.clone(),
        )),
        Some(tls) => tokio::spawn(run_listeners(
            TlsListener::new(api_listener, tls.clone())?,
            TlsListener::new(otlp_http_listener, tls.clone())?,
            grpc_server.serve_with_incoming_shutdown(
                crate::conn::slotted(crate::tls::grpc_incoming(grpc_listener, tls), conn_limits),
                shutdown.clone().cancelled_owned(),
            ),
            apps,
            conn_limits,
            shutdown.clone(),
        )),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("palisade: API and UI listening on {scheme}://{api_addr}");
    println!("palisade: OTLP/HTTP listening on {scheme}://{otlp_http_addr}");
    let grpc_note = if tls.is_some() { " (TLS)" } else { "" };
    println!("palisade: OTLP/gRPC listening on {grpc_addr}{grpc_note}");
    println!(
        "palisade: ready to serve (api={api_addr} otlp_http={otlp_http_addr} otlp_grpc={grpc_addr})"
    );
    tracing::info!(%api_addr, %otlp_http_addr, %grpc_addr, tls = tls.is_some(), "palisade started");

    shutdown_signal().await;
    tracing::info!("shutting down: draining requests");
    shutdown.cancel();
    let served = servers.await;
    // Every handler has returned, so the writer has answered every queued batch.
    drop(state);
    drop(ingestor);
    let _ = tokio::time::timeout(Duration::from_secs(30), writer_task).await;
    let _ = indexer_task.await;
    retention_task.abort();
    tracing::info!("palisade stopped");
    served??;
    Ok(())
}

/// Keep the engine's tenant list fresh (threshold rules from files run per tenant).
async fn refresh_tenants(
    engine: Arc<Engine>,
    access: Arc<AccessStore>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Ok(tenants) = access.list_tenants().await {
            engine.set_tenants(tenants.into_iter().map(|t| t.id).collect());
        }
    }
}

/// Serve the two HTTP listeners and the gRPC server until shutdown, each draining
/// its in-flight requests.
async fn run_listeners<L1, L2>(
    api: L1,
    otlp: L2,
    grpc: impl std::future::Future<Output = Result<(), tonic::transport::Error>>,
    (api_app, otlp_app): (axum::Router, axum::Router),
    limits: crate::conn::ConnLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    L1: axum::serve::Listener<Addr = SocketAddr>,
    L2: axum::serve::Listener<Addr = SocketAddr>,
{
    let api = crate::conn::serve_http(api, api_app, limits, shutdown.clone());
    let otlp = crate::conn::serve_http(otlp, otlp_app, limits, shutdown);
    let ((), (), c) = tokio::join!(api, otlp, grpc);
    c.context("otlp/grpc listener")?;
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        let why = match err.kind() {
            std::io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
            std::io::ErrorKind::AddrNotAvailable => "no local interface has this address".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            _ => err.to_string(),
        };
        anyhow::anyhow!("cannot listen on {addr} (--{flag}): {why}")
    })
}

/// Merge metric sample rows into one chunk per series and hour, every 30 seconds
/// (and at once again while there is a backlog).
async fn compact_loop(store: storage::metrics::MetricStore, shutdown: CancellationToken) {
    loop {
        let pause = match store.compact(Utc::now().timestamp_millis()).await {
            Ok(0) => Duration::from_secs(30),
            Ok(n) => {
                tracing::debug!(rows = n, "metric chunks compacted");
                Duration::from_millis(200)
            }
            Err(err) => {
                tracing::warn!(error = %err, "metric compaction failed");
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Drop expired partitions (and their index documents) at start and then hourly;
/// pre-create today's and tomorrow's partitions so ingest rarely runs DDL.
async fn retention_loop(
    logs: Arc<LogStore>,
    metric_store: storage::metrics::MetricStore,
    indexer: Arc<IndexerStatus>,
    retention: chrono::Duration,
    shutdown: CancellationToken,
) {
    loop {
        let now = Utc::now();
        let today = now.date_naive();
        if let Err(err) = logs
            .ensure_partitions([today, today + chrono::Duration::days(1)])
            .await
        {
            tracing::warn!(error = %err, "cannot pre-create partitions");
        }
        let cutoff = now - retention;
        match metric_store.drop_before(cutoff.timestamp_millis()).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(
                    partitions = dropped.len(),
                    "retention dropped expired metric partitions"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "metric retention run failed"),
        }
        match logs.drop_partitions_before(cutoff).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(
                    partitions = dropped.len(),
                    "retention dropped expired partitions"
                );
                indexer.delete_before.store(
                    cutoff.timestamp_micros(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "retention run failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
