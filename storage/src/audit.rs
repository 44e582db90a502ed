//! The audit trail store: append-only, hash-chained (see `model::audit`).
//!
//! Appends lock the single `audit_chain_head` row FOR UPDATE, so entries are chained in
//! one order even when several processes write. [`AuditStore::verify`] recomputes the
//! whole chain and names the first broken entry.

use chrono::{DateTime, SubsecRound, Utc};
use model::TenantId;
use model::audit::{AuditEvent, GENESIS_HASH, Outcome, canonical, chain_hash};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Db, Result, StorageError};

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: AuditEvent,
    pub hash: String,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Intact { entries: i64 },
    Broken { entry: i64, reason: String },
}

#[derive(Debug, Clone)]
pub struct AuditStore {
    db: Db,
}

fn parse_outcome(text: &str) -> Result<Outcome> {
    match text {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        "denied" => Ok(Outcome::Denied),
        other => Err(StorageError::Internal(format!(
            "unknown audit outcome {other:?}"
        ))),
    }
}

fn decode(row: &PgRow) -> Result<(AuditRecord, String)> {
    let tenant: Option<uuid::Uuid> = row.try_get("tenant_id")?;
    let outcome: String = row.try_get("outcome")?;
    Ok((
        AuditRecord {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            event: AuditEvent {
                tenant_id: tenant.map(TenantId),
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                outcome: parse_outcome(&outcome)?,
                source_addr: row.try_get("source_addr")?,
                details: row.try_get("details")?,
            },
            hash: row.try_get("hash")?,
        },
        row.try_get("prev_hash")?,
    ))
}

const SELECT: &str = "SELECT id, at, tenant_id, actor, action, target, outcome, source_addr, details, prev_hash, hash FROM audit_log";

impl AuditStore {
    pub fn new(db: Db) -> AuditStore {
        AuditStore { db }
    }

    /// Append one entry to the chain. Returns its id.
    pub async fn append(&self, event: &AuditEvent) -> Result<i64> {
        let at = Utc::now().trunc_subsecs(6);
        let mut tx = self.db.pool.begin().await?;
        let head = sqlx::query("SELECT last_id, last_hash FROM audit_chain_head FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let last_id: i64 = head.try_get("last_id")?;
        let last_hash: String = head.try_get("last_hash")?;
        let id = last_id + 1;
        let hash = chain_hash(&last_hash, &canonical(id, &at, event));
        sqlx::query(
            "INSERT INTO audit_log (id, at, tenant_id, actor, action, target, outcome, source_addr, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(at)
        .bind(event.tenant_id.map(|t| t.0))
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(&event.source_addr)
        .bind(&event.details)
        .bind(&last_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_chain_head SET last_id = $1, last_hash = $2")
            .bind(id)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Entries of one tenant, newest first.
    pub async fn list(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE tenant_id = $1 AND at >= $2 AND at <= $3 ORDER BY id DESC LIMIT $4"
        )))
        .bind(tenant.0)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(|r| decode(r).map(|(rec, _)| rec)).collect()
    }

    /// Recompute the chain from the first entry. Detects edited entries (hash
    /// mismatch), deleted entries (gap in ids or a broken link) and truncation (the
    /// chain head points past the last entry).
    pub async fn verify(&self) -> Result<Verification> {
        let mut expected_prev = GENESIS_HASH.to_string();
        let mut expected_id = 1i64;
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE id > $1 ORDER BY id LIMIT 10000"
            )))
            .bind(after)
            .fetch_all(&self.db.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let (record, prev_hash) = decode(row)?;
                if record.id != expected_id {
                    return Ok(Verification::Broken {
                        entry: expected_id,
                        reason: format!(
                            "entry {expected_id} is missing (deleted); next entry is {}",
                            record.id
                        ),
                    });
                }
                if prev_hash != expected_prev {
                    return Ok(Verification::Broken {
                        entry: record.id,
                        reason: format!("entry {} does not link to the entry before it", record.id),
                    });
                }
                let recomputed =
                    chain_hash(&prev_hash, &canonical(record.id, &record.at, &record.event));
                if recomputed != record.hash {
                    return Ok(Verification::Broken {
                        entry: record.id,
                        reason: format!(
                            "entry {} was modified: its contents do not match its hash",
                            record.id
                        ),
                    });
                }
                expected_prev = record.hash;
                expected_id += 1;
                after = record.id;
            }
        }
        let head = sqlx::query("SELECT last_id, last_hash FROM audit_chain_head")
            .fetch_one(&self.db.pool)
            .await?;
        let last_id: i64 = head.try_get("last_id")?;
        let last_hash: String = head.try_get("last_hash")?;
        if last_id != expected_id - 1 || last_hash != expected_prev {
            return Ok(Verification::Broken {
                entry: expected_id,
                reason: format!(
                    "the chain head records {last_id} entries but the log ends at {}: entries were deleted",
                    expected_id - 1
                ),
            });
        }
        Ok(Verification::Intact {
            entries: expected_id - 1,
        })
    }
}
