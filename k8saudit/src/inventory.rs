//! One logical record per Kubernetes API request, and the inventories the writer
//! keeps across events (the pure half: keys, marks and decisions; the SQL that loads
//! and saves them is `storage::requests`).
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

use crate::attr;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::{LogRecord, TenantId};
use serde_json::{Value, json};

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

/// `(cluster, auditID)` of a Kubernetes audit record.
pub fn request_key(record: &LogRecord) -> Option<(String, String)> {
    if record.scope_name != attr::AUDIT_SCOPE {
        return None;
    }
    let id = record.attributes.get(attr::AUDIT_ID)?.as_str()?;
    let cluster = record
        .attributes
        .get(attr::CLUSTER_NAME)
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
    record.scope_name != attr::AUDIT_SCOPE
        || record
            .attributes
            .get(attr::AUDIT_DETECT)
            .is_none_or(|d| d.as_bool() == Some(true))
}

/// Mark one record against the request's previous state and return the new state.
pub fn merge(previous: Option<&RequestState>, record: &mut LogRecord) -> RequestState {
    let stage = record
        .attributes
        .get(attr::AUDIT_STAGE)
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
    a.insert(attr::AUDIT_RECORD.into(), json!(disposition));
    a.insert(attr::AUDIT_DETECT.into(), json!(detect));
    a.insert(attr::AUDIT_STAGES.into(), json!(state.stages));
    state
}

/// `(tenant, cluster, auditID)`.
pub type RequestKey = (TenantId, String, String);
/// `(tenant, cluster, principal)`.
pub type PrincipalKey = (TenantId, String, String);

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
pub type PodKey = (TenantId, String, String, String);

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
    if record.scope_name != attr::AUDIT_SCOPE {
        return Vec::new();
    }
    let cluster = attr(record, attr::CLUSTER_NAME).unwrap_or("").to_string();
    [attr::CREDENTIAL_MINTED_FOR, attr::USER_NAME]
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
    if record.scope_name == attr::AUDIT_SCOPE {
        let ips: Vec<String> = record
            .attributes
            .get(attr::POD_IPS)?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let key = (
            tenant,
            attr(record, attr::CLUSTER_NAME).unwrap_or("").to_string(),
            attr(record, attr::OBJECT_NAMESPACE)?.to_string(),
            attr(record, attr::OBJECT_NAME)?.to_string(),
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
        res(attr::CLUSTER_NAME).unwrap_or("").to_string(),
        res(attr::NAMESPACE_NAME)?.to_string(),
        res(attr::POD_NAME)?.to_string(),
    );
    Some((key, vec![res(attr::POD_IP)?.to_string()]))
}

/// The pod a service-account token is bound to (`user.extra` pod-name; the pod lives
/// in the service account's namespace) and the request's client IP.
fn pod_user(record: &LogRecord) -> Option<(PodKey, String)> {
    if record.scope_name != attr::AUDIT_SCOPE {
        return None;
    }
    let key = (
        record.tenant_id,
        attr(record, attr::CLUSTER_NAME).unwrap_or("").to_string(),
        attr(record, attr::USER_SA_NAMESPACE)?.to_string(),
        attr(record, attr::USER_POD_NAME)?.to_string(),
    );
    Some((key, attr(record, attr::CLIENT_IP)?.to_string()))
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
                .insert(attr::USER_OFF_POD.into(), json!(off));
            record
                .attributes
                .insert(attr::USER_POD_IPS.into(), json!(ips));
        }
    }
}

impl Inventory {
    /// C-03: remember credentials issued by someone other than a node or the control
    /// plane; mark the first request that uses one from another address within
    /// [`MINT_WINDOW_HOURS`]. A service account's requests through a pod-bound token
    /// (`k8s.user.pod_name`) are its pods, not the issued credential, and are ignored.
    fn track_credentials(&mut self, record: &mut LogRecord) {
        if record.scope_name != attr::AUDIT_SCOPE
            || record
                .attributes
                .get(attr::AUDIT_DETECT)
                .and_then(Value::as_bool)
                != Some(true)
        {
            return;
        }
        let cluster = attr(record, attr::CLUSTER_NAME).unwrap_or("").to_string();
        let ip = attr(record, attr::CLIENT_IP).unwrap_or("").to_string();
        if let Some(principal) = attr(record, attr::CREDENTIAL_MINTED_FOR) {
            if !matches!(
                attr(record, attr::ACTOR_KIND),
                Some("node" | "controlplane")
            ) {
                let key = (record.tenant_id, cluster, principal.to_string());
                let mint = Mint {
                    at: record.time,
                    ip,
                    audit_id: attr(record, attr::AUDIT_ID).unwrap_or("").to_string(),
                    by: attr(record, attr::USER_NAME).unwrap_or("").to_string(),
                    used: false,
                };
                self.mints.insert(key.clone(), mint);
                self.changed_mints.insert(key);
            }
            return;
        }
        let Some(user) = attr(record, attr::USER_NAME) else {
            return;
        };
        if record.attributes.contains_key(attr::USER_POD_NAME) {
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
        a.insert(attr::CREDENTIAL_MINTED_USE.into(), json!(true));
        a.insert(attr::CREDENTIAL_MINTED_BY.into(), json!(mint.by));
        a.insert(attr::CREDENTIAL_MINTED_IP.into(), json!(mint.ip));
        a.insert(attr::CREDENTIAL_MINT_AUDIT_ID.into(), json!(mint.audit_id));
        self.changed_mints.insert(key);
    }
}

/// Whether a batch has records [`Inventory::enrich`] reads or marks.
pub fn needs_enrichment(records: &[LogRecord]) -> bool {
    records
        .iter()
        .any(|r| request_key(r).is_some() || pod_fact(r).is_some())
}

/// The stored state a batch needs before [`Inventory::enrich`] can mark it.
#[derive(Debug, Default)]
pub struct Keys {
    pub requests: Vec<RequestKey>,
    pub principals: Vec<PrincipalKey>,
    pub pods: Vec<PodKey>,
}

/// The keys of every request, principal and pod `records` read or update.
pub fn keys(records: &[LogRecord]) -> Keys {
    let mut keys = Keys::default();
    for r in records {
        if let Some((cluster, id)) = request_key(r) {
            keys.requests.push((r.tenant_id, cluster, id));
        }
        keys.principals.extend(principals(r));
        keys.pods.extend(
            [pod_fact(r).map(|(k, _)| k), pod_user(r).map(|(k, _)| k)]
                .into_iter()
                .flatten(),
        );
    }
    keys
}

impl Inventory {
    /// Seed the state of a request as stored.
    pub fn load_request(&mut self, key: RequestKey, state: RequestState) {
        self.requests.insert(key, state);
    }

    /// Seed a pending credential as stored.
    pub fn load_mint(&mut self, key: PrincipalKey, mint: Mint) {
        self.mints.insert(key, mint);
    }

    /// Seed a pod's IPs as stored.
    pub fn load_pod(&mut self, key: PodKey, ips: Vec<String>) {
        self.pods.insert(key, ips);
    }

    /// Requests whose state changed, with the latest event time seen.
    pub fn changed_requests(
        &self,
    ) -> impl Iterator<Item = (&RequestKey, &RequestState, DateTime<Utc>)> {
        self.changed_requests
            .iter()
            .map(|(key, time)| (key, &self.requests[key], *time))
    }

    /// Pods whose IPs changed, with the time of the event that reported them.
    pub fn changed_pods(&self) -> impl Iterator<Item = (&PodKey, &[String], DateTime<Utc>)> {
        self.changed_pods
            .iter()
            .map(|(key, time)| (key, self.pods[key].as_slice(), *time))
    }

    /// Credentials issued or first used elsewhere in this batch.
    pub fn changed_mints(&self) -> impl Iterator<Item = (&PrincipalKey, &Mint)> {
        self.changed_mints.iter().map(|key| (key, &self.mints[key]))
    }
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
        r.scope_name = attr::AUDIT_SCOPE.into();
        r.attributes.insert(attr::AUDIT_ID.into(), json!(id));
        r.attributes.insert(attr::AUDIT_STAGE.into(), json!(stage));
        r.attributes.insert(attr::CLUSTER_NAME.into(), json!("c"));
        r
    }

    fn marks(r: &LogRecord) -> (String, bool) {
        (
            r.attributes[attr::AUDIT_RECORD]
                .as_str()
                .unwrap()
                .to_string(),
            r.attributes[attr::AUDIT_DETECT].as_bool().unwrap(),
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
