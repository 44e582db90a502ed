//! Connection pool and migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::Result;

/// Migrations embedded from the workspace's `migrations/` directory.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle on the system of record.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: PgPool,
}

/// Pool sizing and timeouts.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before it gets a 503.
    pub acquire_timeout: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl Db {
    /// Connect lazily: the pool opens connections on demand, so the server can start
    /// (and answer 503) while Postgres is down.
    pub fn connect_lazy(options: PgConnectOptions, config: &DbConfig) -> Db {
        let options = options.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Db { pool }
    }

    pub fn options_from_url(url: &str) -> Result<PgConnectOptions> {
        PgConnectOptions::from_str(url)
            .map_err(|err| crate::StorageError::Invalid(format!("database url: {err}")))
    }

    /// Apply pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(inner) => crate::StorageError::from(inner),
            other => crate::StorageError::Internal(format!("migration failed: {other}")),
        })
    }

    /// Whether every embedded migration has been applied.
    pub async fn migrations_applied(&self) -> Result<bool> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)))
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Run a `CREATE TABLE IF NOT EXISTS … PARTITION OF …` statement. Two writers racing
/// to create the same partition: the loser sees a duplicate (42P07) or a unique
/// violation on the catalogue (23505); both mean the partition exists.
pub(crate) async fn create_partition(db: &Db, sql: String) -> crate::Result<()> {
    match sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P07") | Some("23505")) =>
        {
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
