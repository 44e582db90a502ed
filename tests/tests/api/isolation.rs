//! One request's bad data never fails another's: the group-commit writer against a
//! real Postgres. A record dated 5000 BC passes Rust (chrono) but has no partition and
//! no Postgres timestamp; the store refuses it as data. Committed in the same group as
//! clean requests of other tenants, only its own request is refused, permanently (400,
//! not a 503 that clients retry forever), and the isolation is counted.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ingest::writer::{IngestConfig, Ingestor};
use model::{ErrorKind, LogRecord, TenantId};
use storage::logs::LogStore;
use storage::pg::{Db, DbConfig};

fn record(tenant: TenantId, time: chrono::DateTime<Utc>) -> LogRecord {
    LogRecord {
        severity_number: 9,
        severity_text: "INFO".into(),
        ..LogRecord::new(tenant, time, "clean")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_group_commit_refuses_only_the_offending_request() {
    let url = palisade_tests::fresh_database().await.unwrap();
    let db = Db::connect_lazy(Db::options_from_url(&url).unwrap(), &DbConfig::default());
    db.migrate().await.unwrap();
    let logs = Arc::new(LogStore::new(db));
    let registry = prometheus::Registry::new();
    let metrics = ingest::metrics::IngestMetrics::register(&registry).unwrap();
    let (ingestor, _task) = Ingestor::start(logs.clone(), IngestConfig::default(), metrics, 0);
    let bad_time = Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap();
    // A large first request keeps the writer busy, so everything queued meanwhile —
    // many clean requests and one poisoned one — is committed as one group.
    let first = {
        let ingestor = ingestor.clone();
        tokio::spawn(async move {
            ingestor
                .write(vec![
                    record(
                        TenantId(uuid::Uuid::from_u128(1000)),
                        Utc::now()
                    );
                    20_000
                ])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut clean = Vec::new();
    for i in 0..20 {
        let ingestor = ingestor.clone();
        let tenant = TenantId(uuid::Uuid::from_u128(i + 1));
        clean.push(tokio::spawn(async move {
            ingestor.write(vec![record(tenant, Utc::now()); 50]).await
        }));
    }
    let poisoned = {
        let ingestor = ingestor.clone();
        tokio::spawn(async move {
            ingestor
                .write(vec![record(TenantId(uuid::Uuid::from_u128(99)), bad_time)])
                .await
        })
    };
    first.await.unwrap().expect("the first request commits");
    for handle in clean {
        handle.await.unwrap().expect("a clean request must commit");
    }
    let err = poisoned
        .await
        .unwrap()
        .expect_err("the poisoned request fails");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("cannot be stored"), "{err}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM log_records")
        .fetch_one(&logs_pool(&url).await)
        .await
        .unwrap();
    assert_eq!(stored, 20_000 + 20 * 50);
    let isolations = registry
        .gather()
        .into_iter()
        .find(|m| m.name() == "palisade_ingest_batch_isolations_total")
        .map(|m| m.get_metric()[0].get_counter().get_value())
        .unwrap_or_default();
    assert_eq!(isolations, 1.0, "the poisoned group was isolated once");
}

async fn logs_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.unwrap()
}
