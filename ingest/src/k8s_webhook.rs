//! kube-apiserver's audit webhook (`POST /v1/k8s/audit` on the OTLP/HTTP listener):
//! an `audit.k8s.io/v1` `EventList` in JSON.
//!
//! The transport (`web`) authenticates and reads the body; this module decodes it and
//! [`Ingestor::export_audit`] normalises each item with the same [`TimePolicy`] as
//! OTLP (`--retention-days`) and commits through the same writer. A malformed item
//! is rejected with its reason and the rest are kept; a batch in which nothing is kept
//! is an error, never a silent 200.

use chrono::Utc;
use k8saudit::attr;
use model::TenantId;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::IngestError;
use crate::decode::MAX_RECORDS_PER_REQUEST;
use crate::writer::Ingestor;

/// Reasons listed in an answer; the count is always complete.
const MAX_LISTED_ERRORS: usize = 20;

/// A decoded webhook body: the events, with the list's type for items without one.
#[derive(Debug)]
pub struct AuditBatch {
    items: Vec<Value>,
    api_version: Option<String>,
}

impl AuditBatch {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What the webhook answers (kube-apiserver only reads the status; people read this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditExport {
    pub accepted: u64,
    pub rejected: u64,
    /// The first reasons, `item <n>: <why>`.
    pub errors: Vec<String>,
}

/// The cluster name (the `?cluster=` of the webhook URL) keys every request of the
/// cluster (stage folding, inventories): a short, printable name, like a Kubernetes
/// object name. Absent or empty: [`k8saudit::DEFAULT_CLUSTER`].
pub fn cluster_name(given: Option<&str>) -> Result<String, IngestError> {
    let cluster = given
        .filter(|c| !c.is_empty())
        .unwrap_or(k8saudit::DEFAULT_CLUSTER);
    if cluster.len() > 253
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(IngestError::Malformed(
            "cluster: use 1-253 letters, digits, '-', '_', '.' or ':'".into(),
        ));
    }
    Ok(cluster.to_string())
}

/// Decode a (decompressed) webhook body.
pub fn decode_event_list(bytes: &[u8]) -> Result<AuditBatch, IngestError> {
    let list: Value = serde_json::from_slice(bytes)
        .map_err(|e| IngestError::Malformed(format!("invalid EventList JSON: {e}")))?;
    let (items, api_version) = k8saudit::event_list_items(list).map_err(IngestError::Malformed)?;
    if items.len() > MAX_RECORDS_PER_REQUEST {
        return Err(IngestError::TooManyRecords {
            limit: MAX_RECORDS_PER_REQUEST,
            what: "audit events",
        });
    }
    Ok(AuditBatch { items, api_version })
}

impl Ingestor {
    /// Normalise a webhook batch for `tenant` and commit what is valid.
    pub async fn export_audit(
        &self,
        tenant: TenantId,
        cluster: &str,
        batch: AuditBatch,
    ) -> Result<AuditExport, IngestError> {
        let policy = self.time_policy();
        let now = Utc::now();
        let (oldest, newest) = (now - policy.max_age, now + policy.max_future);
        let mut resource = Map::new();
        resource.insert("service.name".into(), json!("kube-apiserver"));
        resource.insert(attr::CLUSTER_NAME.into(), json!(cluster));
        let (mut records, mut rejected, mut errors) = (Vec::new(), 0u64, Vec::new());
        let api_version = batch.api_version;
        // Redaction and derivation are CPU work: off the async workers.
        tokio::task::block_in_place(|| {
            for (i, mut item) in batch.items.into_iter().enumerate() {
                // kube-apiserver's webhook backend encodes an EventList whose items
                // carry no kind/apiVersion of their own: the list's type applies.
                if let (Some(obj), Some(version)) = (item.as_object_mut(), api_version.as_deref()) {
                    obj.entry("kind").or_insert_with(|| json!("Event"));
                    obj.entry("apiVersion").or_insert_with(|| json!(version));
                }
                let mut reject = |reason: String| {
                    rejected += 1;
                    if errors.len() < MAX_LISTED_ERRORS {
                        errors.push(format!("item {i}: {reason}"));
                    }
                };
                if !k8saudit::is_audit_event(&item) {
                    reject("not an audit.k8s.io Event".into());
                    continue;
                }
                match k8saudit::to_record(item, tenant, cluster, now, resource.clone()) {
                    Ok(r) if r.time < oldest || r.time > newest => reject(format!(
                        "stageTimestamp {} is outside the accepted window ({} to {})",
                        r.time.to_rfc3339(),
                        oldest.to_rfc3339(),
                        newest.to_rfc3339()
                    )),
                    Ok(r) => records.push(r),
                    Err(m) => reject(m.0),
                }
            }
        });
        let metrics = self.metrics();
        if rejected > 0 {
            metrics
                .rejected
                .with_label_values(&["invalid_k8s_audit_event"])
                .inc_by(rejected);
        }
        let accepted = records.len() as u64;
        if accepted == 0 && rejected > 0 {
            return Err(IngestError::Malformed(format!(
                "all {rejected} audit event(s) rejected: {}",
                errors.join("; ")
            )));
        }
        metrics
            .records
            .with_label_values(&["k8s_webhook", "rejected"])
            .inc_by(rejected);
        if accepted > 0 {
            self.write(records).await?;
            metrics
                .records
                .with_label_values(&["k8s_webhook", "accepted"])
                .inc_by(accepted);
        }
        Ok(AuditExport {
            accepted,
            rejected,
            errors,
        })
    }
}
