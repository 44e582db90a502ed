//! Resolving the database: a URL, or the embedded cluster of the data dir. Also the
//! token key, which must be the same for every process that mints or checks tokens.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use model::token::TokenKey;
use storage::Db;
use storage::access::AccessStore;
use storage::embedded::EmbeddedPostgres;
use storage::pg::DbConfig;

use crate::config::Settings;

pub struct Database {
    pub db: Db,
    /// The embedded cluster, when this process started it and must stop it.
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Open the configured database. With no URL the embedded cluster is used:
    /// `serve` always (re)starts it; an admin command reuses a running cluster (the
    /// server's) or starts one for the duration of the command.
    pub async fn open(settings: &Settings, for_server: bool) -> anyhow::Result<Database> {
        if let Some(url) = &settings.database_url {
            let options = Db::options_from_url(url)?;
            return Ok(Database {
                db: Db::connect_lazy(options, &DbConfig::default()),
                embedded: None,
            });
        }
        let cluster = EmbeddedPostgres::for_data_dir(&settings.data_dir)?;
        if let Some(reason) = &cluster.relocated_reason {
            eprintln!("palisade: {reason}");
        }
        let started_here = if !for_server && cluster.is_running() {
            false
        } else {
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.start()).await??;
            true
        };
        eprintln!(
            "palisade: embedded PostgreSQL cluster at {}",
            cluster.cluster_dir.display()
        );
        cluster.ensure_database().await?;
        Ok(Database {
            db: Db::connect_lazy(cluster.palisade_options(), &DbConfig::default()),
            embedded: started_here.then_some(cluster),
        })
    }

    /// Close the pool and stop the embedded cluster if this process started it.
    pub async fn close(self) {
        self.db.pool.close().await;
        if let Some(cluster) = self.embedded {
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => eprintln!("palisade: embedded PostgreSQL stopped"),
                Ok(Err(err)) => eprintln!("palisade: stopping embedded PostgreSQL failed: {err}"),
                Err(err) => eprintln!("palisade: stopping embedded PostgreSQL failed: {err}"),
            }
        }
    }
}

const KEY_FILE: &str = "token.key";
const FINGERPRINT_SETTING: &str = "token_key_fingerprint";

/// Load `<data-dir>/token.key`, creating it (0600) on first use, and check it against
/// the fingerprint recorded in the database so a command run with another data dir
/// cannot mint tokens the server would never accept.
pub async fn token_key(data_dir: &Path, access_db: &Db) -> anyhow::Result<TokenKey> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(KEY_FILE);
    let probe = AccessStore::new(access_db.clone(), TokenKey::new([0; 32]));
    let recorded = probe.setting(FINGERPRINT_SETTING).await?;
    let key = if path.exists() {
        let meta = std::fs::metadata(&path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} must not be readable by group or others (chmod 600)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)?;
        TokenKey::from_hex(&text)
            .with_context(|| format!("{} is not a 64-hex-digit key", path.display()))?
    } else {
        if recorded.is_some() {
            bail!(
                "this database's tokens were hashed with a key that is not in {}: point --data-dir at \
                 the server's data directory",
                path.display()
            );
        }
        let key = TokenKey::generate();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(key.to_hex().as_bytes())?;
        file.sync_all()?;
        key
    };
    let fingerprint = serde_json::Value::String(key.hash("palisade-token-key-fingerprint"));
    match recorded {
        Some(value) if value != fingerprint => bail!(
            "{} does not match the key this database's tokens were hashed with: point --data-dir at \
             the server's data directory",
            path.display()
        ),
        Some(_) => {}
        None => {
            probe
                .set_setting_once(FINGERPRINT_SETTING, &fingerprint)
                .await?;
        }
    }
    Ok(key)
}

/// The key-encryption key of channel secrets: from the environment or config, or a
/// file (0600; the default one, `<data-dir>/secrets.key`, is created on first use).
pub fn secrets_key(settings: &crate::config::Settings) -> anyhow::Result<notify::seal::Keyring> {
    use crate::config::KeySource;
    match &settings.key_source {
        KeySource::Inline(hex) => notify::seal::Keyring::from_hex(hex)
            .context("key_encryption_key: expected 64 hex digits"),
        KeySource::File { path, create } => {
            if !path.exists() && *create {
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                let key = notify::seal::Keyring::generate();
                write_private(path, &key.to_hex())?;
                return Ok(key);
            }
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read key file {}", path.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                bail!(
                    "{} must not be readable by group or others (chmod 600)",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)?;
            notify::seal::Keyring::from_hex(&text)
                .with_context(|| format!("{} is not a 64-hex-digit key", path.display()))
        }
    }
}

/// Write a new private (0600) file; fails if it exists.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
