//! One logical record per Kubernetes API request.
//!
//! kube-apiserver writes up to three lines with the same `auditID` (RequestReceived,
//! ResponseStarted, ResponseComplete; Panic on crashes), and at-least-once shippers
//! may send a line twice. Every line is kept in `log_records` (raw evidence), but the
//! writer marks each one, under the ingest lock and in the transaction that stores it,
//! with what it is for the request `(tenant, cluster, auditID)`:
//!
//! * `k8s.audit.record = first` — the first line seen of the request;
//! * `update` — a richer stage than any seen before: it **replaces** the request's
//!   previous line in the search index (so search shows one record, the richest);
//! * `duplicate` — nothing richer than what is stored: kept in Postgres, never indexed.
//!
//! and `k8s.audit.detect = true` on exactly one line per request: the first line that
//! carries a response (any stage but RequestReceived). Match and sequence rules
//! evaluate only that line, so a detection fires once per request, across batches,
//! transports and restarts (the state lives in `k8s_audit_requests`).
//! `k8s.audit.stages` lists the stages seen so far, in order of richness.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::{LogRecord, TenantId};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};

use crate::Result;

pub const ATTR_AUDIT_ID: &str = "k8s.audit.id";
pub const ATTR_CLUSTER: &str = "k8s.cluster.name";
pub const ATTR_STAGE: &str = "k8s.audit.stage";
pub const ATTR_STAGES: &str = "k8s.audit.stages";
pub const ATTR_RECORD: &str = "k8s.audit.record";
pub const ATTR_DETECT: &str = "k8s.audit.detect";

/// How rich a stage is: later stages carry everything earlier ones do.
pub fn stage_rank(stage: &str) -> i16 {
    match stage {
        "RequestReceived" => 0,
        "ResponseStarted" => 1,
        "ResponseComplete" => 2,
        "Panic" => 3,
        _ => -1,
    }
}

/// What the store remembers of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestState {
    pub rank: i16,
    pub stages: Vec<String>,
    pub evaluated: bool,
}

/// Scope of the records `k8saudit` produces (reserved: clients cannot send it).
pub const AUDIT_SCOPE: &str = "k8s.audit";

/// `(cluster, auditID)` of a Kubernetes audit record.
pub fn request_key(record: &LogRecord) -> Option<(String, String)> {
    if record.scope_name != AUDIT_SCOPE {
        return None;
    }
    let id = record.attributes.get(ATTR_AUDIT_ID)?.as_str()?;
    let cluster = record
        .attributes
        .get(ATTR_CLUSTER)
        .and_then(Value::as_str)
        .unwrap_or("");
    Some((cluster.to_string(), id.to_string()))
}

/// The key the search index uses to replace a request's previous line.
pub fn index_key(record: &LogRecord) -> Option<String> {
    request_key(record).map(|(cluster, id)| format!("{}/{cluster}/{id}", record.tenant_id))
}

/// Whether rules evaluating single events (match, sequence) should look at `record`:
/// every record that is not a Kubernetes audit line, and the one line per request
/// the writer marked.
pub fn evaluable(record: &LogRecord) -> bool {
    record.scope_name != AUDIT_SCOPE
        || record
            .attributes
            .get(ATTR_DETECT)
            .is_none_or(|d| d.as_bool() == Some(true))
}

/// Mark one record against the request's previous state and return the new state.
pub fn merge(previous: Option<&RequestState>, record: &mut LogRecord) -> RequestState {
    let stage = record
        .attributes
        .get(ATTR_STAGE)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let rank = stage_rank(&stage);
    let mut state = previous.cloned().unwrap_or(RequestState {
        rank: -2,
        stages: Vec::new(),
        evaluated: false,
    });
    let disposition = match previous {
        None => "first",
        Some(p) if rank > p.rank => "update",
        Some(_) => "duplicate",
    };
    if !state.stages.contains(&stage) {
        state.stages.push(stage.clone());
        state.stages.sort_by_key(|s| stage_rank(s));
    }
    let detect = disposition != "duplicate" && rank >= 1 && !state.evaluated;
    state.evaluated |= detect;
    state.rank = state.rank.max(rank);
    let a = &mut record.attributes;
    a.insert(ATTR_RECORD.into(), json!(disposition));
    a.insert(ATTR_DETECT.into(), json!(detect));
    a.insert(ATTR_STAGES.into(), json!(state.stages));
    state
}

type RequestKey = (TenantId, String, String);
/// `(tenant, cluster, principal)`.
type PrincipalKey = (TenantId, String, String);

/// A credential issued for a principal and not yet seen used from elsewhere (C-03).
#[derive(Debug, Clone, PartialEq)]
pub struct Mint {
    pub at: DateTime<Utc>,
    pub ip: String,
    pub audit_id: String,
    pub by: String,
    pub used: bool,
}

/// How long after its issue a credential's first use from another address is joined.
pub const MINT_WINDOW_HOURS: i64 = 24;
/// `(tenant, cluster, namespace, pod)`.
type PodKey = (TenantId, String, String, String);

/// Cross-event state the writer keeps for Kubernetes records: the requests seen
/// (stage folding) and the pod IP inventory (a pod-bound service-account token used
/// from another address, C-05). The writer loads the rows a batch needs, applies
/// [`Inventory::enrich`] to each record in order and writes back what changed;
/// `rules test` keeps one in memory for a whole test case.
#[derive(Debug, Default)]
pub struct Inventory {
    requests: HashMap<RequestKey, RequestState>,
    pods: HashMap<PodKey, Vec<String>>,
    changed_requests: HashMap<RequestKey, DateTime<Utc>>,
    changed_pods: HashMap<PodKey, DateTime<Utc>>,
    mints: HashMap<PrincipalKey, Mint>,
    changed_mints: std::collections::HashSet<PrincipalKey>,
}

/// Principals a record may mint for or act as (for loading pending mints).
fn principals(record: &LogRecord) -> Vec<PrincipalKey> {
    if record.scope_name != AUDIT_SCOPE {
        return Vec::new();
    }
    let cluster = attr(record, ATTR_CLUSTER).unwrap_or("").to_string();
    ["k8s.credential.minted_for", "k8s.user.name"]
        .iter()
        .filter_map(|k| attr(record, k))
        .map(|p| (record.tenant_id, cluster.clone(), p.to_string()))
        .collect()
}

fn attr<'a>(record: &'a LogRecord, key: &str) -> Option<&'a str> {
    record
        .attributes
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A pod's IPs as a record reports them: an audit event about the pod carrying
/// `status.podIP(s)` (`k8s.pod.ips`), or a log record enriched by the OpenTelemetry
/// `k8sattributes` processor (resource `k8s.pod.ip`, `k8s.pod.name`,
/// `k8s.namespace.name`).
fn pod_fact(record: &LogRecord) -> Option<(PodKey, Vec<String>)> {
    let tenant = record.tenant_id;
    if record.scope_name == AUDIT_SCOPE {
        let ips: Vec<String> = record
            .attributes
            .get("k8s.pod.ips")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let key = (
            tenant,
            attr(record, ATTR_CLUSTER).unwrap_or("").to_string(),
            attr(record, "k8s.object.namespace")?.to_string(),
            attr(record, "k8s.object.name")?.to_string(),
        );
        return (!ips.is_empty()).then_some((key, ips));
    }
    let res = |k: &str| {
        record
            .resource
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let key = (
        tenant,
        res("k8s.cluster.name").unwrap_or("").to_string(),
        res("k8s.namespace.name")?.to_string(),
        res("k8s.pod.name")?.to_string(),
    );
    Some((key, vec![res("k8s.pod.ip")?.to_string()]))
}

/// The pod a service-account token is bound to (`user.extra` pod-name; the pod lives
/// in the service account's namespace) and the request's client IP.
fn pod_user(record: &LogRecord) -> Option<(PodKey, String)> {
    if record.scope_name != AUDIT_SCOPE {
        return None;
    }
    let key = (
        record.tenant_id,
        attr(record, ATTR_CLUSTER).unwrap_or("").to_string(),
        attr(record, "k8s.user.sa_namespace")?.to_string(),
        attr(record, "k8s.user.pod_name")?.to_string(),
    );
    Some((key, attr(record, "k8s.client.ip")?.to_string()))
}

impl Inventory {
    /// Set the writer's marks on one record (stage folding; off-pod token use) and
    /// learn what it says (stages seen, pod IPs).
    pub fn enrich(&mut self, record: &mut LogRecord) {
        if let Some((cluster, id)) = request_key(record) {
            let key = (record.tenant_id, cluster, id);
            let next = merge(self.requests.get(&key), record);
            self.requests.insert(key.clone(), next);
            let t = self.changed_requests.entry(key).or_insert(record.time);
            *t = (*t).max(record.time);
        }
        if let Some((key, ips)) = pod_fact(record)
            && self.pods.get(&key) != Some(&ips)
        {
            self.pods.insert(key.clone(), ips);
            self.changed_pods.insert(key, record.time);
        }
        self.track_credentials(record);
        if let Some((key, client_ip)) = pod_user(record)
            && let Some(ips) = self.pods.get(&key)
        {
            let off = !ips.contains(&client_ip);
            record
                .attributes
                .insert("k8s.user.off_pod".into(), json!(off));
            record
                .attributes
                .insert("k8s.user.pod_ips".into(), json!(ips));
        }
    }
}

impl Inventory {
    /// C-03: remember credentials issued by someone other than a node or the control
    /// plane; mark the first request that uses one from another address within
    /// [`MINT_WINDOW_HOURS`]. A service account's requests through a pod-bound token
    /// (`k8s.user.pod_name`) are its pods, not the issued credential, and are ignored.
    fn track_credentials(&mut self, record: &mut LogRecord) {
        if record.scope_name != AUDIT_SCOPE
            || record.attributes.get(ATTR_DETECT).and_then(Value::as_bool) != Some(true)
        {
            return;
        }
        let cluster = attr(record, ATTR_CLUSTER).unwrap_or("").to_string();
        let ip = attr(record, "k8s.client.ip").unwrap_or("").to_string();
        if let Some(principal) = attr(record, "k8s.credential.minted_for") {
            if !matches!(
                attr(record, "k8s.actor.kind"),
                Some("node" | "controlplane")
            ) {
                let key = (record.tenant_id, cluster, principal.to_string());
                let mint = Mint {
                    at: record.time,
                    ip,
                    audit_id: attr(record, ATTR_AUDIT_ID).unwrap_or("").to_string(),
                    by: attr(record, "k8s.user.name").unwrap_or("").to_string(),
                    used: false,
                };
                self.mints.insert(key.clone(), mint);
                self.changed_mints.insert(key);
            }
            return;
        }
        let Some(user) = attr(record, "k8s.user.name") else {
            return;
        };
        if record.attributes.contains_key("k8s.user.pod_name") {
            return;
        }
        let key = (record.tenant_id, cluster, user.to_string());
        let Some(mint) = self.mints.get_mut(&key) else {
            return;
        };
        let age = record.time - mint.at;
        if mint.used
            || age <= chrono::Duration::zero()
            || age > chrono::Duration::hours(MINT_WINDOW_HOURS)
            || ip.is_empty()
            || ip == mint.ip
        {
            return;
        }
        mint.used = true;
        let a = &mut record.attributes;
        a.insert("k8s.credential.minted_use".into(), json!(true));
        a.insert("k8s.credential.minted_by".into(), json!(mint.by));
        a.insert("k8s.credential.minted_ip".into(), json!(mint.ip));
        a.insert("k8s.credential.mint_audit_id".into(), json!(mint.audit_id));
        self.changed_mints.insert(key);
    }
}

/// Whether a batch has records [`Inventory::enrich`] reads or marks.
pub fn needs_enrichment(records: &[LogRecord]) -> bool {
    records
        .iter()
        .any(|r| request_key(r).is_some() || pod_fact(r).is_some())
}

/// Mark the records of a batch, reading and updating `k8s_audit_requests` and
/// `k8s_pod_ips`. Call inside the ingest transaction, after the ingest lock.
pub async fn enrich_batch(conn: &mut PgConnection, records: &mut [LogRecord]) -> Result<()> {
    let mut inventory = Inventory::default();
    let mut request_keys: Vec<RequestKey> = Vec::new();
    let mut principal_keys: Vec<PrincipalKey> = Vec::new();
    let (mut p_tenants, mut p_clusters, mut p_namespaces, mut p_pods) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records.iter() {
        if let Some((cluster, id)) = request_key(r) {
            request_keys.push((r.tenant_id, cluster, id));
        }
        principal_keys.extend(principals(r));
        for key in [pod_fact(r).map(|(k, _)| k), pod_user(r).map(|(k, _)| k)]
            .into_iter()
            .flatten()
        {
            p_tenants.push(key.0.0);
            p_clusters.push(key.1);
            p_namespaces.push(key.2);
            p_pods.push(key.3);
        }
    }
    let rows = load_by_key(
        conn,
        "SELECT r.tenant_id, r.cluster, r.audit_id AS key, r.rank, r.stages, r.evaluated \
         FROM k8s_audit_requests r \
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, cluster, key) \
           ON r.tenant_id = k.tenant_id AND r.cluster = k.cluster AND r.audit_id = k.key",
        request_keys,
    )
    .await?;
    for row in rows {
        let state = RequestState {
            rank: row.try_get("rank")?,
            stages: row.try_get("stages")?,
            evaluated: row.try_get("evaluated")?,
        };
        inventory.requests.insert(row_key(&row)?, state);
    }
    let rows = load_by_key(
        conn,
        "SELECT m.tenant_id, m.cluster, m.principal AS key, m.minted_at, m.minted_ip, m.audit_id, m.minted_by, \
                m.used_at IS NOT NULL AS used \
         FROM k8s_minted_credentials m \
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, cluster, key) \
           ON m.tenant_id = k.tenant_id AND m.cluster = k.cluster AND m.principal = k.key",
        principal_keys,
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
        inventory.mints.insert(row_key(&row)?, mint);
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
            inventory.pods.insert(
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
    for key in &inventory.changed_mints {
        let mint = &inventory.mints[key];
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
    if inventory.changed_requests.is_empty() {
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
    for (key, time) in &inventory.changed_requests {
        let state = &inventory.requests[key];
        t.push(key.0.0);
        c.push(key.1.clone());
        a.push(key.2.clone());
        rank.push(state.rank);
        // Postgres has no ragged arrays: pass the stage lists as text.
        stages.push(state.stages.join(","));
        evaluated.push(state.evaluated);
        times.push(*time);
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
    if inventory.changed_pods.is_empty() {
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
    for (key, time) in &inventory.changed_pods {
        t.push(key.0.0);
        c.push(key.1.clone());
        n.push(key.2.clone());
        p.push(key.3.clone());
        ips.push(inventory.pods[key].join(","));
        times.push(*time);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(body: &str) -> LogRecord {
        LogRecord {
            severity_number: 9,
            severity_text: "INFO".into(),
            ..LogRecord::new(TenantId(uuid::Uuid::nil()), Utc::now(), body)
        }
    }

    fn line(id: &str, stage: &str) -> LogRecord {
        let mut r = plain("x");
        r.scope_name = AUDIT_SCOPE.into();
        r.attributes.insert(ATTR_AUDIT_ID.into(), json!(id));
        r.attributes.insert(ATTR_STAGE.into(), json!(stage));
        r.attributes.insert(ATTR_CLUSTER.into(), json!("c"));
        r
    }

    fn marks(r: &LogRecord) -> (String, bool) {
        (
            r.attributes[ATTR_RECORD].as_str().unwrap().to_string(),
            r.attributes[ATTR_DETECT].as_bool().unwrap(),
        )
    }

    #[test]
    fn one_detection_per_request_whatever_the_order() {
        let mut inventory = Inventory::default();
        let mut seen = Vec::new();
        for (id, stage) in [
            ("a", "RequestReceived"),
            ("a", "ResponseStarted"),
            ("a", "ResponseComplete"),
            ("a", "ResponseComplete"), // shipper retry
            ("b", "ResponseComplete"),
            ("b", "RequestReceived"), // late
            ("c", "RequestReceived"),
        ] {
            let mut r = line(id, stage);
            inventory.enrich(&mut r);
            seen.push(marks(&r));
        }
        let expect = [
            ("first", false),
            ("update", true),
            ("update", false),
            ("duplicate", false),
            ("first", true),
            ("duplicate", false),
            ("first", false),
        ];
        for (got, want) in seen.iter().zip(expect) {
            assert_eq!((got.0.as_str(), got.1), want);
        }
        let a = &inventory.requests[&(TenantId(uuid::Uuid::nil()), "c".into(), "a".into())];
        assert_eq!(
            a.stages,
            ["RequestReceived", "ResponseStarted", "ResponseComplete"]
        );
        assert!(evaluable(&plain("plain log")));
    }

    #[test]
    fn pod_bound_tokens_used_off_their_pod_are_marked() {
        let mut inventory = Inventory::default();
        // A kubelet's status update reports the pod's IP ...
        let mut status = line("s1", "ResponseComplete");
        for (k, v) in [
            ("k8s.object.namespace", json!("shop")),
            ("k8s.object.name", json!("web-1")),
            ("k8s.pod.ips", json!(["10.244.1.5"])),
        ] {
            status.attributes.insert(k.into(), v);
        }
        inventory.enrich(&mut status);
        // ... and a log line enriched by k8sattributes reports another pod's.
        let mut app = plain("hello");
        for (k, v) in [
            ("k8s.cluster.name", "c"),
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "web-2"),
            ("k8s.pod.ip", "10.244.1.6"),
        ] {
            std::sync::Arc::make_mut(&mut app.resource).insert(k.into(), json!(v));
        }
        inventory.enrich(&mut app);
        let request = |id: &str, pod: &str, ip: &str| {
            let mut r = line(id, "ResponseComplete");
            for (k, v) in [
                ("k8s.user.sa_namespace", pod.split('/').next().unwrap()),
                ("k8s.user.pod_name", pod.split('/').nth(1).unwrap()),
                ("k8s.client.ip", ip),
            ] {
                r.attributes.insert(k.into(), json!(v));
            }
            r
        };
        let mut at_home = request("r1", "shop/web-1", "10.244.1.5");
        let mut stolen = request("r2", "shop/web-2", "203.0.113.50");
        let mut unknown = request("r3", "shop/web-9", "203.0.113.50");
        for r in [&mut at_home, &mut stolen, &mut unknown] {
            inventory.enrich(r);
        }
        assert_eq!(at_home.attributes["k8s.user.off_pod"], false);
        assert_eq!(stolen.attributes["k8s.user.off_pod"], true);
        assert_eq!(stolen.attributes["k8s.user.pod_ips"], json!(["10.244.1.6"]));
        assert!(unknown.attributes.get("k8s.user.off_pod").is_none());
    }
}
