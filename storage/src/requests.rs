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

/// Merge the in-memory way (rule tests, backtests over raw lines): the same marks the
/// writer sets, with state kept in `states`.
pub fn merge_in_memory(
    states: &mut HashMap<(TenantId, String, String), RequestState>,
    record: &mut LogRecord,
) {
    if let Some((cluster, id)) = request_key(record) {
        let key = (record.tenant_id, cluster, id);
        let next = merge(states.get(&key), record);
        states.insert(key, next);
    }
}

/// Mark every Kubernetes audit record of a batch, reading and updating
/// `k8s_audit_requests`. Call inside the ingest transaction, after the ingest lock.
pub async fn merge_batch(conn: &mut PgConnection, records: &mut [LogRecord]) -> Result<()> {
    let mut tenants = Vec::new();
    let mut clusters = Vec::new();
    let mut ids = Vec::new();
    for r in records.iter() {
        if let Some((cluster, id)) = request_key(r) {
            tenants.push(r.tenant_id.0);
            clusters.push(cluster);
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT r.tenant_id, r.cluster, r.audit_id, r.rank, r.stages, r.evaluated \
         FROM k8s_audit_requests r \
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, cluster, audit_id) \
           ON r.tenant_id = k.tenant_id AND r.cluster = k.cluster AND r.audit_id = k.audit_id",
    )
    .bind(&tenants)
    .bind(&clusters)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut states: HashMap<(TenantId, String, String), RequestState> = HashMap::new();
    for row in rows {
        states.insert(
            (
                TenantId(row.try_get("tenant_id")?),
                row.try_get("cluster")?,
                row.try_get("audit_id")?,
            ),
            RequestState {
                rank: row.try_get("rank")?,
                stages: row.try_get("stages")?,
                evaluated: row.try_get("evaluated")?,
            },
        );
    }
    let mut last_time: HashMap<(TenantId, String, String), DateTime<Utc>> = HashMap::new();
    for r in records.iter_mut() {
        if let Some((cluster, id)) = request_key(r) {
            let key = (r.tenant_id, cluster, id);
            let next = merge(states.get(&key), r);
            let t = last_time.entry(key.clone()).or_insert(r.time);
            *t = (*t).max(r.time);
            states.insert(key, next);
        }
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
    for (key, time) in last_time {
        let state = &states[&key];
        t.push(key.0.0);
        c.push(key.1);
        a.push(key.2);
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

/// Forget requests whose last line is older than `cutoff` (retention).
pub async fn prune(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM k8s_audit_requests WHERE last_time < $1")
        .bind(cutoff)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(body: &str) -> LogRecord {
        let now = Utc::now();
        LogRecord {
            tenant_id: TenantId(uuid::Uuid::nil()),
            time: now,
            observed_time: now,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: body.into(),
            attributes: Default::default(),
            resource: Default::default(),
            scope_name: String::new(),
            scope_version: String::new(),
            trace_id: None,
            span_id: None,
            flags: 0,
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
        let mut states = HashMap::new();
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
            merge_in_memory(&mut states, &mut r);
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
        let a = &states[&(TenantId(uuid::Uuid::nil()), "c".into(), "a".into())];
        assert_eq!(
            a.stages,
            ["RequestReceived", "ResponseStarted", "ResponseComplete"]
        );
        assert!(evaluable(&plain("plain log")));
    }
}
