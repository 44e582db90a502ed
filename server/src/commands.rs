//! Administrative commands. Each works against `--database-url` or the embedded
//! database of `--data-dir`, whether or not a server is running.

use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use clap::Subcommand;
use model::audit::{AuditEvent, Outcome};
use model::{Role, Scope};
use storage::access::AccessStore;
use storage::audit::{AuditStore, Verification};
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
pub enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated and
    /// printed (only the password) on stdout.
    Add {
        /// The sign-in name (at most 256 bytes, unique).
        username: String,
        /// Tenant the user belongs to.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// viewer, responder or admin.
        #[arg(long, default_value = "viewer")]
        role: Role,
        /// May manage tenants.
        #[arg(long)]
        instance_admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (ends their sessions). Same password options as `add`.
    Passwd {
        /// The user whose password changes.
        username: String,
        /// Read the password from the first line of standard input (else one is
        /// generated and printed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 and name the first broken entry if it fails.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The new tenant's name (unique).
        name: String,
    },
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
    f: impl AsyncFnOnce(&AccessStore, &AuditStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = open(settings).await?;
    let result = async {
        let key = token_key(&settings.data_dir, &database.db).await?;
        let access = AccessStore::new(database.db.clone(), key);
        let audit = AuditStore::new(database.db.clone());
        f(&access, &audit).await
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
    let token = with_access(settings, async |access, audit| {
        let tenant = access.tenant_by_name(&tenant).await?;
        let expires = (!no_expiry).then(|| Utc::now() + Duration::days(expires_in_days));
        let (id, token) = access.mint_token(tenant.id, scope, &name, expires).await?;
        audit
            .append(
                &AuditEvent::new(
                    "cli",
                    "token.create",
                    format!("token:{id}"),
                    Outcome::Success,
                )
                .tenant(tenant.id)
                .details(serde_json::json!({"scope": scope.as_str()})),
            )
            .await?;
        Ok(token)
    })
    .await?;
    println!("{token}");
    Ok(())
}

pub async fn tenant(settings: &Settings, cmd: TenantCommand) -> anyhow::Result<()> {
    with_access(settings, async |access, audit| {
        match cmd {
            TenantCommand::Create { name } => {
                let tenant = access.create_tenant(&name).await?;
                audit
                    .append(
                        &AuditEvent::new(
                            "cli",
                            "tenant.create",
                            format!("tenant:{name}"),
                            Outcome::Success,
                        )
                        .tenant(tenant.id),
                    )
                    .await?;
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

fn read_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((model::token::random_password(24), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.chars().count() < 12 {
        bail!("the password must have at least 12 characters");
    }
    Ok((password, false))
}

pub async fn user(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    with_access(settings, async |access, audit| {
        match cmd {
            UserCommand::Add {
                username,
                tenant,
                role,
                instance_admin,
                password_stdin,
            } => {
                let tenant = access.tenant_by_name(&tenant).await?;
                let (password, generated) = read_password(password_stdin)?;
                let printed = password.clone();
                let hash = tokio::task::spawn_blocking(move || model::password::hash(&password)).await?;
                access.create_user(tenant.id, &username, &hash, role, instance_admin).await?;
                audit
                    .append(
                        &AuditEvent::new("cli", "user.create", format!("user:{username}"), Outcome::Success)
                            .tenant(tenant.id)
                            .details(serde_json::json!({"role": role.as_str(), "instance_admin": instance_admin})),
                    )
                    .await?;
                if generated {
                    // Only the password on stdout, so it can be captured.
                    println!("{printed}");
                }
            }
            UserCommand::Passwd { username, password_stdin } => {
                let user = access
                    .user_for_login(&username)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no user {username:?}"))?;
                let (password, generated) = read_password(password_stdin)?;
                let printed = password.clone();
                let hash = tokio::task::spawn_blocking(move || model::password::hash(&password)).await?;
                access.set_password(user.id, &hash).await?;
                audit
                    .append(
                        &AuditEvent::new("cli", "user.password", format!("user:{username}"), Outcome::Success)
                            .tenant(user.tenant_id),
                    )
                    .await?;
                if generated {
                    println!("{printed}");
                }
            }
            UserCommand::List => {
                for user in access.list_users().await? {
                    let tenant = access.tenant_by_id(user.tenant_id).await?;
                    let admin = if user.instance_admin { "\tinstance-admin" } else { "" };
                    println!("{}\t{}\t{}{admin}", user.username, tenant.name, user.role);
                }
            }
        }
        Ok(())
    })
    .await
}

pub async fn audit(settings: &Settings, cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify = cmd;
    let database = open(settings).await?;
    let result = AuditStore::new(database.db.clone()).verify().await;
    database.close().await;
    match result? {
        Verification::Intact { entries } => {
            println!("audit trail intact: {entries} entries");
            Ok(())
        }
        Verification::Broken { entry, reason } => {
            bail!("audit trail broken at entry {entry}: {reason}")
        }
    }
}

/// Rebuild the index from scratch, with progress on stderr (a bar on a terminal, else
/// lines).
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
    let mut progress = crate::progress::Progress::new("reindex", "records", total);
    let mut last = 0;
    loop {
        let batch = logs.fetch_after(last, 10_000).await?;
        let Some(tail) = batch.last() else {
            break;
        };
        last = tail.seq;
        index.add(&batch)?;
        progress.inc(batch.len() as u64);
    }
    index.commit(last)?;
    progress.finish();
    eprintln!(
        "palisade: index rebuilt: {} records up to sequence {last}",
        index.num_docs()
    );
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a new key-encryption key and re-wrap every channel's secrets under it
    /// (the secrets themselves are not decrypted). Writes the new key to --to (default:
    /// the key file, replaced after the database commits) and prints where it is.
    Rotate {
        /// Where to write the new key (0600; must not exist) [default: the key file]
        #[arg(long)]
        to: Option<std::path::PathBuf>,
    },
}

pub async fn keys(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Rotate { to } = cmd;
    let current = crate::database::secrets_key(settings)?;
    let key_file = match &settings.key_source {
        crate::config::KeySource::File { path, .. } => Some(path.clone()),
        crate::config::KeySource::Inline(_) => None,
    };
    let (staged, target) = match (&to, &key_file) {
        (Some(path), _) => (path.clone(), path.clone()),
        (None, Some(path)) => (path.with_extension("key.next"), path.clone()),
        (None, None) => {
            bail!("the key comes from the environment or config: give --to FILE for the new key")
        }
    };
    let next = notify::seal::Keyring::generate();
    // The new key is durable before any secret depends on it.
    crate::database::write_private(&staged, &next.to_hex())?;
    let database = open(settings).await?;
    let store = storage::notify::NotificationStore::new(database.db.clone());
    let result = async {
        let channels = store.all_channels().await?;
        let mut resealed = Vec::with_capacity(channels.len());
        for c in &channels {
            if next.wraps(&c.sealed) {
                continue;
            }
            let bytes = current
                .rewrap(&c.sealed, c.id.as_bytes(), &next)
                .with_context(|| format!("channel {} ({})", c.name, c.id))?;
            resealed.push((c.id, bytes));
        }
        store.reseal(&resealed).await?;
        anyhow::Ok(resealed.len())
    }
    .await;
    database.close().await;
    let count = match result {
        Ok(n) => n,
        Err(err) => {
            let _ = std::fs::remove_file(&staged);
            return Err(err);
        }
    };
    if staged != target {
        std::fs::rename(&staged, &target)
            .with_context(|| format!("cannot move the new key to {}", target.display()))?;
    }
    println!(
        "palisade: {count} channel secret(s) re-wrapped under key {}; the key is in {}",
        next.id(),
        target.display()
    );
    if to.is_some() {
        println!("palisade: point --key-file (or PALISADE_KEY_FILE) at it before the next start");
    }
    Ok(())
}
