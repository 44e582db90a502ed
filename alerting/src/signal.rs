//! Correlation signals: every time an alert of a rule that carries a `tactic` label
//! opens or gains evidence, the engine writes one log record (scope
//! [`SIGNAL_SCOPE`]) through the ordinary ingest path. Rules then correlate over
//! detections with the same machinery they use for events, e.g. the built-in C-01
//! ("one entity, three tactic groups in 30 minutes") is a threshold rule over signals.
//!
//! Loops are impossible by construction: a rule whose `tactic` is `correlation` emits
//! no signal, and ingest refuses client records in the reserved scopes.

use k8saudit::attr;
use std::collections::BTreeMap;

use model::{LogRecord, TenantId};
use serde_json::{Map, Value, json};

use crate::engine::Hit;
use crate::rule::Rule;

/// Scope name of signal records (reserved: ingest refuses it from clients).
pub const SIGNAL_SCOPE: &str = "palisade.alert";
/// The audit id of the request that raised a detection, on its signal.
pub const ATTR_AUDIT_ID: &str = "alert.audit_id";
/// The rule whose detection a signal records.
pub const ATTR_RULE: &str = "alert.rule";

/// The `tactic` label value of rules that correlate and therefore emit no signal.
pub const CORRELATION_TACTIC: &str = "correlation";

/// The signal record of a hit, or `None` when the rule does not feed correlations.
pub fn signal_record(
    tenant: TenantId,
    rule: &Rule,
    hit: &Hit,
    alert_id: uuid::Uuid,
) -> Option<LogRecord> {
    let labels: &BTreeMap<String, String> = &rule.doc.labels;
    let tactic = labels.get("tactic")?;
    if tactic == CORRELATION_TACTIC {
        return None;
    }
    let mut attributes = Map::new();
    attributes.insert(ATTR_RULE.into(), json!(rule.id()));
    attributes.insert("alert.id".into(), json!(alert_id.to_string()));
    let severity = hit
        .labels
        .get("severity")
        .map_or(rule.doc.severity.as_str(), String::as_str);
    attributes.insert("alert.severity".into(), json!(severity));
    attributes.insert("alert.tactic".into(), json!(tactic));
    // Context-only detections count as detections, not as a tactic group (C-01).
    if tactic != "context" {
        attributes.insert("alert.tactic_group".into(), json!(tactic));
    }
    for (label, key) in [("attack", "alert.attack"), ("pack", "alert.pack")] {
        if let Some(v) = labels.get(label) {
            attributes.insert(key.into(), json!(v));
        }
    }
    attributes.insert("alert.count".into(), json!(hit.count));
    for (k, v) in &hit.entity {
        // The triggering request's audit id, under a name of its own: a search for
        // `attributes.k8s.audit.id:X` finds the request, not its signals.
        let key = if k == attr::AUDIT_ID {
            ATTR_AUDIT_ID
        } else {
            k.as_str()
        };
        attributes.insert(key.to_string(), Value::String(v.clone()));
    }
    let about = hit
        .entity
        .get("entity.actor")
        .or_else(|| hit.entity.get(attr::CLIENT_IP))
        .map(String::as_str)
        .unwrap_or("-");
    Some(LogRecord {
        tenant_id: tenant,
        time: hit.at,
        observed_time: chrono::Utc::now(),
        severity_number: 13,
        severity_text: "WARN".into(),
        body: format!("{} {} ({}): {about}", rule.id(), rule.doc.title, tactic),
        attributes,
        resource: Default::default(),
        scope_name: SIGNAL_SCOPE.into(),
        scope_version: String::new(),
        trace_id: None,
        span_id: None,
        flags: 0,
    })
}
