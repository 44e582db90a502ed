//! The stored half of `k8saudit::inventory`: loading the state a batch needs from
//! `k8s_audit_requests`, `k8s_pod_ips` and `k8s_minted_credentials`, and saving what
//! the batch changed, inside the ingest transaction. The marks and decisions are
//! `k8saudit`'s.

use chrono::{DateTime, Utc};
pub use k8saudit::inventory::needs_enrichment;
use k8saudit::inventory::{Inventory, Mint, RequestState, keys};
use model::{LogRecord, TenantId};
use sqlx::{PgConnection, Row};

use crate::Result;

/// Mark the records of a batch, reading and updating `k8s_audit_requests` and
/// `k8s_pod_ips`. Call inside the ingest transaction, after the ingest lock.
pub async fn enrich_batch(conn: &mut PgConnection, records: &mut [LogRecord]) -> Result<()> {
    let mut inventory = Inventory::default();
    let keys = keys(records);
    let (mut p_tenants, mut p_clusters, mut p_namespaces, mut p_pods) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for key in keys.pods {
        p_tenants.push(key.0.0);
        p_clusters.push(key.1);
        p_namespaces.push(key.2);
        p_pods.push(key.3);
    }
    let rows = load_by_key(
        conn,
        "SELECT r.tenant_id, r.cluster, r.audit_id AS key, r.rank, r.stages, r.evaluated \
         FROM k8s_audit_requests r \
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, cluster, key) \
           ON r.tenant_id = k.tenant_id AND r.cluster = k.cluster AND r.audit_id = k.key",
        keys.requests,
    )
    .await?;
    for row in rows {
        let state = RequestState {
            rank: row.try_get("rank")?,
            stages: row.try_get("stages")?,
            evaluated: row.try_get("evaluated")?,
        };
        inventory.load_request(row_key(&row)?, state);
    }
    let rows = load_by_key(
        conn,
        "SELECT m.tenant_id, m.cluster, m.principal AS key, m.minted_at, m.minted_ip, m.audit_id, m.minted_by, \
                m.used_at IS NOT NULL AS used \
         FROM k8s_minted_credentials m \
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, cluster, key) \
           ON m.tenant_id = k.tenant_id AND m.cluster = k.cluster AND m.principal = k.key",
        keys.principals,
    )
    .await?;
    for row in rows {
        let mint = Mint {
            at: row.try_get("minted_at")?,
            ip: row.try_get("minted_ip")?,
            audit_id: row.try_get("audit_id")?,
            by: row.try_get("minted_by")?,
            used: row.try_get("used")?,
        };
        inventory.load_mint(row_key(&row)?, mint);
    }
    if !p_pods.is_empty() {
        let rows = sqlx::query(
            "SELECT DISTINCT p.tenant_id, p.cluster, p.namespace, p.pod, p.ips FROM k8s_pod_ips p \
             JOIN unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS k(tenant_id, cluster, namespace, pod) \
               ON p.tenant_id = k.tenant_id AND p.cluster = k.cluster AND p.namespace = k.namespace AND p.pod = k.pod",
        )
        .bind(&p_tenants)
        .bind(&p_clusters)
        .bind(&p_namespaces)
        .bind(&p_pods)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            inventory.load_pod(
                (
                    TenantId(row.try_get("tenant_id")?),
                    row.try_get("cluster")?,
                    row.try_get("namespace")?,
                    row.try_get("pod")?,
                ),
                row.try_get("ips")?,
            );
        }
    }
    for r in records.iter_mut() {
        inventory.enrich(r);
    }
    save_requests(conn, &inventory).await?;
    save_pods(conn, &inventory).await?;
    save_mints(conn, &inventory).await
}

async fn save_mints(conn: &mut PgConnection, inventory: &Inventory) -> Result<()> {
    for (key, mint) in inventory.changed_mints() {
        sqlx::query(
            "INSERT INTO k8s_minted_credentials (tenant_id, cluster, principal, minted_at, minted_ip, audit_id, minted_by, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() END) \
             ON CONFLICT (tenant_id, cluster, principal) DO UPDATE SET minted_at = EXCLUDED.minted_at, \
               minted_ip = EXCLUDED.minted_ip, audit_id = EXCLUDED.audit_id, minted_by = EXCLUDED.minted_by, \
               used_at = EXCLUDED.used_at",
        )
        .bind(key.0.0)
        .bind(&key.1)
        .bind(&key.2)
        .bind(mint.at)
        .bind(&mint.ip)
        .bind(&mint.audit_id)
        .bind(&mint.by)
        .bind(mint.used)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Rows of a table keyed by `(tenant, cluster, key)`, for the distinct `keys`; `sql`
/// joins `unnest($1 tenants, $2 clusters, $3 keys)` and selects `tenant_id`, `cluster`
/// and `key`.
async fn load_by_key(
    conn: &mut PgConnection,
    sql: &'static str,
    mut keys: Vec<(TenantId, String, String)>,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut tenants = Vec::with_capacity(keys.len());
    let mut clusters = Vec::with_capacity(keys.len());
    let mut names = Vec::with_capacity(keys.len());
    for (tenant, cluster, name) in keys {
        tenants.push(tenant.0);
        clusters.push(cluster);
        names.push(name);
    }
    Ok(sqlx::query(sql)
        .bind(&tenants)
        .bind(&clusters)
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?)
}

fn row_key(row: &sqlx::postgres::PgRow) -> Result<(TenantId, String, String)> {
    Ok((
        TenantId(row.try_get("tenant_id")?),
        row.try_get("cluster")?,
        row.try_get("key")?,
    ))
}

async fn save_requests(conn: &mut PgConnection, inventory: &Inventory) -> Result<()> {
    if inventory.changed_requests().next().is_none() {
        return Ok(());
    }
    let (mut t, mut c, mut a, mut rank, mut stages, mut evaluated, mut times) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (key, state, time) in inventory.changed_requests() {
        t.push(key.0.0);
        c.push(key.1.clone());
        a.push(key.2.clone());
        rank.push(state.rank);
        // Postgres has no ragged arrays: pass the stage lists as text.
        stages.push(state.stages.join(","));
        evaluated.push(state.evaluated);
        times.push(time);
    }
    sqlx::query(
        "INSERT INTO k8s_audit_requests AS r (tenant_id, cluster, audit_id, rank, stages, evaluated, last_time) \
         SELECT tenant_id, cluster, audit_id, rank, string_to_array(stages, ','), evaluated, last_time \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::bool[], $7::timestamptz[]) \
           AS k(tenant_id, cluster, audit_id, rank, stages, evaluated, last_time) \
         ON CONFLICT (tenant_id, cluster, audit_id) DO UPDATE SET \
           rank = EXCLUDED.rank, stages = EXCLUDED.stages, evaluated = EXCLUDED.evaluated, \
           last_time = GREATEST(r.last_time, EXCLUDED.last_time)",
    )
    .bind(&t)
    .bind(&c)
    .bind(&a)
    .bind(&rank)
    .bind(&stages)
    .bind(&evaluated)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn save_pods(conn: &mut PgConnection, inventory: &Inventory) -> Result<()> {
    if inventory.changed_pods().next().is_none() {
        return Ok(());
    }
    let (mut t, mut c, mut n, mut p, mut ips, mut times) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (key, pod_ips, time) in inventory.changed_pods() {
        t.push(key.0.0);
        c.push(key.1.clone());
        n.push(key.2.clone());
        p.push(key.3.clone());
        ips.push(pod_ips.join(","));
        times.push(time);
    }
    sqlx::query(
        "INSERT INTO k8s_pod_ips AS p (tenant_id, cluster, namespace, pod, ips, updated_at) \
         SELECT tenant_id, cluster, namespace, pod, string_to_array(ips, ','), updated_at \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) \
           AS k(tenant_id, cluster, namespace, pod, ips, updated_at) \
         ON CONFLICT (tenant_id, cluster, namespace, pod) DO UPDATE SET \
           ips = EXCLUDED.ips, updated_at = GREATEST(p.updated_at, EXCLUDED.updated_at)",
    )
    .bind(&t)
    .bind(&c)
    .bind(&n)
    .bind(&p)
    .bind(&ips)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forget requests whose last line is older than `cutoff` (retention).
pub async fn prune(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM k8s_audit_requests WHERE last_time < $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
    let pods = sqlx::query("DELETE FROM k8s_pod_ips WHERE updated_at < $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
    let mints = sqlx::query("DELETE FROM k8s_minted_credentials WHERE minted_at < $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() + pods.rows_affected() + mints.rows_affected())
}
