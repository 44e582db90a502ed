//! Administrative commands. Each works against `--database-url` or the embedded
//! database of `--data-dir`, whether or not a server is running.

use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use clap::Subcommand;
use model::Scope;
use storage::access::AccessStore;
use storage::index::{IndexConfig, LogIndex};
use storage::logs::LogStore;

use crate::bootstrap::{DEFAULT_TENANT, DEFAULT_TOKEN_DAYS};
use crate::config::Settings;
use crate::database::{Database, token_key};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it (only the token) on stdout.
    Create {
        /// ingest, read, respond or admin.
        #[arg(long)]
        scope: Scope,
        /// Tenant the token belongs to.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = DEFAULT_TOKEN_DAYS, conflicts_with = "no_expiry")]
        expires_in_days: i64,
        /// Never expire (only when explicitly asked).
        #[arg(long)]
        no_expiry: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create { name: String },
    /// List tenants.
    List,
}

async fn open(settings: &Settings) -> anyhow::Result<Database> {
    let database = Database::open(settings, false).await?;
    database.db.migrate().await.context("running migrations")?;
    Ok(database)
}

async fn with_access<T>(
    settings: &Settings,
    f: impl AsyncFnOnce(&AccessStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = open(settings).await?;
    let result = async {
        let key = token_key(&settings.data_dir, &database.db).await?;
        let access = AccessStore::new(database.db.clone(), key);
        f(&access).await
    }
    .await;
    database.close().await;
    result
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let database = open(settings).await?;
    database.close().await;
    eprintln!("palisade: migrations applied");
    Ok(())
}

pub async fn token(settings: &Settings, cmd: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create {
        scope,
        tenant,
        name,
        expires_in_days,
        no_expiry,
    } = cmd;
    if !no_expiry && expires_in_days <= 0 {
        bail!(
            "--expires-in-days must be positive (use --no-expiry for a token that never expires)"
        );
    }
    let token = with_access(settings, async |access| {
        let tenant = access.tenant_by_name(&tenant).await?;
        let expires = (!no_expiry).then(|| Utc::now() + Duration::days(expires_in_days));
        let (_, token) = access.mint_token(tenant.id, scope, &name, expires).await?;
        Ok(token)
    })
    .await?;
    println!("{token}");
    Ok(())
}

pub async fn tenant(settings: &Settings, cmd: TenantCommand) -> anyhow::Result<()> {
    with_access(settings, async |access| {
        match cmd {
            TenantCommand::Create { name } => {
                let tenant = access.create_tenant(&name).await?;
                println!("{}\t{}", tenant.name, tenant.id);
            }
            TenantCommand::List => {
                for tenant in access.list_tenants().await? {
                    println!(
                        "{}\t{}\t{}",
                        tenant.name,
                        tenant.id,
                        tenant.created_at.to_rfc3339()
                    );
                }
            }
        }
        Ok(())
    })
    .await
}

/// Rebuild the index from scratch, with a progress bar on stderr.
pub async fn reindex(settings: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let lock = std::fs::File::create(settings.data_dir.join("palisade.lock"))?;
    if lock.try_lock().is_err() {
        bail!(
            "a palisade server is running on {}; stop it before reindexing",
            settings.data_dir.display()
        );
    }
    let database = open(settings).await?;
    let result = rebuild(settings, &database).await;
    database.close().await;
    result
}

async fn rebuild(settings: &Settings, database: &Database) -> anyhow::Result<()> {
    let logs = Arc::new(LogStore::new(database.db.clone()));
    let total = logs.count(None).await? as u64;
    let dir = settings.data_dir.join("index");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let index = LogIndex::open_or_create(&dir, &IndexConfig::default())?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let mut last = 0;
    loop {
        let batch = logs.fetch_after(last, 10_000).await?;
        let Some(tail) = batch.last() else {
            break;
        };
        last = tail.seq;
        index.add(&batch)?;
        bar.inc(batch.len() as u64);
    }
    index.commit(last)?;
    bar.finish();
    eprintln!(
        "palisade: index rebuilt: {} records up to sequence {last}",
        index.num_docs()
    );
    Ok(())
}
