//! Tenants, users, API tokens and instance settings.
//!
//! Tokens are looked up by their keyed hash only; the plaintext never reaches this
//! crate's SQL. Revocation and expiry are checked on every lookup, so they take
//! effect immediately.

use chrono::{DateTime, Utc};
use model::{Role, Scope, TenantId};
use sqlx::Row;
use uuid::Uuid;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use model::token::TokenKey;

use crate::{Db, Result, StorageError};

/// The token of a `Bearer` authorization value (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An authenticated token: who it belongs to and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenGrant {
    pub token_id: Uuid,
    pub tenant_id: TenantId,
    pub scope: Scope,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub username: String,
    pub role: String,
    pub instance_admin: bool,
    /// A member from another home tenant (`tenant_members`), not a home user.
    pub member: bool,
}

#[derive(Debug)]
pub struct AccessStore {
    db: Db,
    token_key: TokenKey,
    /// Last time each token's `last_used_*` columns were written: usage is recorded
    /// at most once a minute per token so authentication does not add a write per
    /// request.
    touched: Mutex<HashMap<Uuid, Instant>>,
}

const TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Tenant names: lower-case letters, digits, `-` and `_`, 1-63 chars, starting with a
/// letter or digit (mirrors the database CHECK so the error names the field).
pub fn validate_tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "tenant name {name:?}: use 1-63 lower-case letters, digits, '-' or '_'"
        )))
    }
}

impl AccessStore {
    pub fn new(db: Db, token_key: TokenKey) -> AccessStore {
        AccessStore {
            db,
            token_key,
            touched: Mutex::new(HashMap::new()),
        }
    }

    pub fn token_key(&self) -> &TokenKey {
        &self.token_key
    }

    /// Resolve an `Authorization: Bearer <token>` header value to a live grant.
    /// Malformed values are refused without a database round trip; `Ok(None)` means
    /// unauthenticated, `Err` means the database could not be asked.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        source: Option<&str>,
    ) -> Result<Option<TokenGrant>> {
        let Some(token) = header.and_then(bearer_token) else {
            return Ok(None);
        };
        if !model::token::is_well_formed(token) {
            return Ok(None);
        }
        let grant = self.token_by_hash(&self.token_key.hash(token)).await?;
        if let Some(grant) = &grant {
            let due = {
                let mut touched = self.touched.lock().expect("touch map poisoned");
                let now = Instant::now();
                match touched.get(&grant.token_id) {
                    Some(last) if now.duration_since(*last) < TOUCH_INTERVAL => false,
                    _ => {
                        touched.insert(grant.token_id, now);
                        true
                    }
                }
            };
            if due {
                self.touch_token(grant.token_id, source).await?;
            }
        }
        Ok(grant)
    }

    /// Mint a token: returns the plaintext (show once) and stores only its keyed hash.
    pub async fn mint_token(
        &self,
        tenant: TenantId,
        scope: Scope,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(Uuid, String)> {
        let token = model::token::generate();
        let id = self
            .create_token(
                tenant,
                scope,
                name,
                &self.token_key.hash(&token),
                expires_at,
            )
            .await?;
        Ok((id, token))
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        validate_tenant_name(name)?;
        let id = Uuid::now_v7();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at",
        )
        .bind(id)
        .bind(name)
        .fetch_one(&self.db.pool)
        .await
        .map_err(|err| match StorageError::from(err) {
            StorageError::Conflict(_) => StorageError::Conflict(format!("tenant {name:?}")),
            other => other,
        })?;
        Ok(Tenant {
            id: TenantId(id),
            name: name.to_string(),
            created_at,
        })
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("tenant {name:?}")))?;
        decode_tenant(&row)
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(decode_tenant).collect()
    }

    pub async fn create_user(
        &self,
        tenant: TenantId,
        username: &str,
        password_hash: &str,
        role: Role,
        instance_admin: bool,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (id, tenant_id, username, password_hash, role, instance_admin) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(instance_admin)
        .execute(&self.db.pool)
        .await
        .map_err(|err| match StorageError::from(err) {
            StorageError::Conflict(_) => StorageError::Conflict(format!("user {username:?}")),
            other => other,
        })?;
        Ok(id)
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, username, role, instance_admin, false AS member FROM users ORDER BY username",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_user).collect()
    }

    /// Store a new token's keyed hash. The caller shows the plaintext once.
    pub async fn create_token(
        &self,
        tenant: TenantId,
        scope: Scope,
        name: &str,
        token_hash: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, name, token_hash, scope, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(name)
        .bind(token_hash)
        .bind(scope.as_str())
        .bind(expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok(id)
    }

    /// Find a live (unrevoked, unexpired) token by keyed hash.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenGrant>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, scope FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL \
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(token_hash)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let scope: String = row.try_get("scope")?;
        Ok(Some(TokenGrant {
            token_id: row.try_get("id")?,
            tenant_id: TenantId(row.try_get("tenant_id")?),
            scope: scope.parse().map_err(StorageError::Internal)?,
        }))
    }

    /// Record that a token was used (time and source address).
    pub async fn touch_token(&self, token_id: Uuid, addr: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = now(), last_used_addr = $2 WHERE id = $1",
        )
        .bind(token_id)
        .bind(addr)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    pub async fn revoke_token(&self, tenant: TenantId, token_id: Uuid) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 \
             AND revoked_at IS NULL",
        )
        .bind(token_id)
        .bind(tenant.0)
        .execute(&self.db.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("token".into()));
        }
        Ok(())
    }

    pub async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.db.pool)
                .await?,
        )
    }

    /// Set a setting only if absent; returns whether this call set it.
    pub async fn set_setting_once(&self, key: &str, value: &serde_json::Value) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO instance_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.db.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A user with the secret parts needed to log in.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub instance_admin: bool,
    pub disabled: bool,
}

/// A live session joined with its user.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user_id: Uuid,
    pub tenant_id: TenantId,
    pub username: String,
    pub role: Role,
    pub instance_admin: bool,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
}

/// Token metadata as listed to admins (never the secret).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_addr: Option<String>,
}

/// SHA-256 of a session id: what the sessions table stores.
pub fn session_hash(id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn decode_user(row: &sqlx::postgres::PgRow) -> Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        tenant_id: TenantId(row.try_get("tenant_id")?),
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        instance_admin: row.try_get("instance_admin")?,
        member: row.try_get::<Option<bool>, _>("member")?.unwrap_or(false),
    })
}

fn decode_tenant(row: &sqlx::postgres::PgRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn role_of(text: &str) -> Result<Role> {
    text.parse().map_err(StorageError::Internal)
}

impl AccessStore {
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| StorageError::NotFound("tenant".into()))?;
        decode_tenant(&row)
    }

    pub async fn user_for_login(&self, username: &str) -> Result<Option<LoginUser>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, username, password_hash, role, instance_admin, disabled_at IS NOT NULL AS disabled \
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        Ok(Some(LoginUser {
            id: row.try_get("id")?,
            tenant_id: TenantId(row.try_get("tenant_id")?),
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            role: role_of(&role)?,
            instance_admin: row.try_get("instance_admin")?,
            disabled: row.try_get("disabled")?,
        }))
    }

    /// Replace a user's password hash and end all of their sessions.
    pub async fn set_password(&self, user_id: Uuid, password_hash: &str) -> Result<()> {
        let mut tx = self.db.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
        )
        .bind(user_id)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("user".into()));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Users of one tenant.
    pub async fn list_tenant_users(&self, tenant: TenantId) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, username, role, instance_admin, false AS member FROM users \
             WHERE tenant_id = $1 AND disabled_at IS NULL \
             UNION ALL \
             SELECT u.id, m.tenant_id, u.username, m.role, false, true FROM tenant_members m \
             JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND u.disabled_at IS NULL \
             ORDER BY username",
        )
        .bind(tenant.0)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(decode_user).collect()
    }

    /// Disable a user of `tenant` (another tenant's user is "not found") and end
    /// their sessions.
    pub async fn disable_user(&self, tenant: TenantId, user_id: Uuid) -> Result<String> {
        let mut tx = self.db.pool.begin().await?;
        let username: Option<String> = sqlx::query_scalar(
            "UPDATE users SET disabled_at = now() WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NULL \
             RETURNING username",
        )
        .bind(user_id)
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let username = username.ok_or_else(|| StorageError::NotFound("user".into()))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(username)
    }

    /// Start a session. `id` is the cookie value (random); only its hash is stored.
    pub async fn create_session(
        &self,
        id: &str,
        user: &LoginUser,
        csrf_token: &str,
        absolute: std::time::Duration,
        source_addr: Option<&str>,
    ) -> Result<()> {
        let expires = Utc::now()
            + chrono::Duration::from_std(absolute).unwrap_or(chrono::Duration::hours(12));
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, tenant_id, csrf_token, expires_at, source_addr) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session_hash(id))
        .bind(user.id)
        .bind(user.tenant_id.0)
        .bind(csrf_token)
        .bind(expires)
        .bind(source_addr)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// A live session: not expired (absolute), not idle longer than `idle`, user not
    /// disabled. Refreshes its last-seen time (at most once a minute).
    pub async fn session(
        &self,
        id: &str,
        idle: std::time::Duration,
    ) -> Result<Option<SessionInfo>> {
        let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::minutes(30));
        let row = sqlx::query(
            "SELECT s.user_id, s.tenant_id, u.username, \
                    CASE WHEN s.tenant_id = u.tenant_id THEN u.role ELSE m.role END AS role, \
                    u.instance_admin, s.csrf_token, s.last_seen_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             LEFT JOIN tenant_members m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
             WHERE s.id_hash = $1 AND s.expires_at > now() AND s.last_seen_at > now() - $2::interval \
               AND u.disabled_at IS NULL AND (s.tenant_id = u.tenant_id OR m.role IS NOT NULL)",
        )
        .bind(session_hash(id))
        .bind(format!("{} seconds", idle.num_seconds()))
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        let info = SessionInfo {
            user_id: row.try_get("user_id")?,
            tenant_id: TenantId(row.try_get("tenant_id")?),
            username: row.try_get("username")?,
            role: role_of(&role)?,
            instance_admin: row.try_get("instance_admin")?,
            csrf_token: row.try_get("csrf_token")?,
            last_seen_at: row.try_get("last_seen_at")?,
        };
        if Utc::now() - info.last_seen_at > chrono::Duration::seconds(60) {
            sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1")
                .bind(session_hash(id))
                .execute(&self.db.pool)
                .await?;
        }
        Ok(Some(info))
    }

    /// The tenants a user can act in: the home tenant first, then memberships by name.
    pub async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<(Tenant, Role)>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created_at, u.role, 0 AS rank FROM users u \
             JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1 \
             UNION ALL \
             SELECT t.id, t.name, t.created_at, m.role, 1 FROM tenant_members m \
             JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 \
             ORDER BY rank, name",
        )
        .bind(user_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok((decode_tenant(row)?, role_of(&role)?))
            })
            .collect()
    }

    /// Move a session to another tenant the user belongs to. Not a member: NotFound
    /// (the tenant's existence is not confirmed).
    pub async fn switch_session_tenant(
        &self,
        id: &str,
        user_id: Uuid,
        tenant: TenantId,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE sessions SET tenant_id = $3 WHERE id_hash = $1 AND user_id = $2 AND ( \
               EXISTS (SELECT 1 FROM users WHERE id = $2 AND tenant_id = $3) OR \
               EXISTS (SELECT 1 FROM tenant_members WHERE user_id = $2 AND tenant_id = $3))",
        )
        .bind(session_hash(id))
        .bind(user_id)
        .bind(tenant.0)
        .execute(&self.db.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound("tenant".into()));
        }
        Ok(())
    }

    /// Make an existing user (found by name, not disabled, homed in another tenant) a
    /// member of `tenant` with `role`, or change the role of an existing membership.
    /// Returns the user's id; NotFound when there is no such user elsewhere.
    pub async fn add_member(&self, tenant: TenantId, username: &str, role: Role) -> Result<Uuid> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO tenant_members (user_id, tenant_id, role) \
             SELECT id, $1, $3 FROM users WHERE username = $2 AND tenant_id <> $1 AND disabled_at IS NULL \
             ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = EXCLUDED.role \
             RETURNING user_id",
        )
        .bind(tenant.0)
        .bind(username)
        .bind(role.as_str())
        .fetch_optional(&self.db.pool)
        .await?;
        id.ok_or_else(|| StorageError::NotFound("user".into()))
    }

    /// End a membership and the user's sessions acting in that tenant.
    pub async fn remove_member(&self, tenant: TenantId, user_id: Uuid) -> Result<String> {
        let mut tx = self.db.pool.begin().await?;
        let username: Option<String> = sqlx::query_scalar(
            "DELETE FROM tenant_members m USING users u \
             WHERE m.user_id = $1 AND m.tenant_id = $2 AND u.id = m.user_id RETURNING u.username",
        )
        .bind(user_id)
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let username = username.ok_or_else(|| StorageError::NotFound("member".into()))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND tenant_id = $2")
            .bind(user_id)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(username)
    }

    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(session_hash(id))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Tokens of one tenant (metadata only).
    pub async fn list_tokens(&self, tenant: TenantId) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, expires_at, revoked_at, last_used_at, last_used_addr \
             FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at",
        )
        .bind(tenant.0)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    scope: row.try_get("scope")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    last_used_addr: row.try_get("last_used_addr")?,
                })
            })
            .collect()
    }
}
