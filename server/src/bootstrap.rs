//! First start: a default tenant, an admin user and two tokens, written once to
//! `<data-dir>/initial-credentials.json` (mode 0600). Only the path is printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{Duration, Utc};
use model::{Role, Scope};
use serde_json::json;
use storage::StorageError;
use storage::access::AccessStore;

pub const DEFAULT_TENANT: &str = "default";
pub const ADMIN_USER: &str = "admin";
const DONE_SETTING: &str = "bootstrap_done";
pub const CREDENTIALS_FILE: &str = "initial-credentials.json";
/// Default lifetime of tokens minted without an explicit expiry.
pub const DEFAULT_TOKEN_DAYS: i64 = 90;

/// Run the bootstrap if this database has never had one. Returns the credentials
/// file path when it was written by this call.
pub async fn ensure(access: &AccessStore, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if access.setting(DONE_SETTING).await?.is_some() {
        return Ok(None);
    }
    let tenant = match access.create_tenant(DEFAULT_TENANT).await {
        Ok(t) => t,
        Err(StorageError::Conflict(_)) => access.tenant_by_name(DEFAULT_TENANT).await?,
        Err(err) => return Err(err.into()),
    };
    let password = model::token::random_password(24);
    let hash = tokio::task::spawn_blocking({
        let password = password.clone();
        move || model::password::hash(&password)
    })
    .await?;
    match access
        .create_user(tenant.id, ADMIN_USER, &hash, Role::Admin, true)
        .await
    {
        Ok(_) => {}
        // Another replica is bootstrapping concurrently; let it finish.
        Err(StorageError::Conflict(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let expires = Some(Utc::now() + Duration::days(DEFAULT_TOKEN_DAYS));
    let (_, ingest_token) = access
        .mint_token(tenant.id, Scope::Ingest, "initial ingest", expires)
        .await?;
    let (_, api_token) = access
        .mint_token(tenant.id, Scope::Admin, "initial api", expires)
        .await?;

    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(CREDENTIALS_FILE);
    let body = json!({
        "tenant": DEFAULT_TENANT,
        "admin_username": ADMIN_USER,
        "admin_password": password,
        "ingest_token": ingest_token,
        "api_token": api_token,
    });
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(&body)?.as_bytes())?;
    file.sync_all()?;
    access
        .set_setting_once(DONE_SETTING, &json!({"at": Utc::now().to_rfc3339()}))
        .await?;
    Ok(Some(path))
}
