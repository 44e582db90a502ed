//! The rule document as written: the YAML schema (`apiVersion: palisade/v1`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Match,
    Threshold,
    Sequence,
    /// A PromQL expression evaluated every `interval`; each returned series is an
    /// alert keyed by its labels (Prometheus alerting-rule semantics).
    Metric,
    /// Fires when a combination of `group_by` values appears for the first time
    /// within `history`, after a `learning` period (Elastic's new-terms rules).
    #[serde(rename = "new_terms")]
    NewTerms,
}

/// A structured condition on one field; exactly one operator is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConditionDoc {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "in")]
    pub in_: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionDoc>,
}

/// One event of a rule test case. Unset fields take neutral defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Offset from the test's start, e.g. `30s`.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub severity_text: String,
    #[serde(default)]
    pub severity_number: i16,
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    #[serde(default)]
    pub resource: serde_json::Map<String, Value>,
    /// A Kubernetes audit event (`audit.k8s.io/v1` `Event`, defaults filled in) that
    /// goes through the same normalisation as ingest; `attributes` are added on top.
    #[serde(default)]
    pub audit: Option<Value>,
    /// Instrumentation scope, e.g. `palisade.alert` for a correlation signal.
    #[serde(default)]
    pub scope_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateDoc {
    pub query: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    /// Labels the alert must carry (a subset of its labels).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Expected evidence count, when given.
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub events: Vec<TestEvent>,
    /// The alerts expected to fire (empty: expect none).
    #[serde(default)]
    pub expect: Vec<ExpectedAlert>,
}

/// A rule document as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub kind: Kind,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ConditionDoc>,
    #[serde(default)]
    pub exceptions: Vec<String>,
    /// Raise the severity of an alert when its event (the last one, for thresholds
    /// and sequences) also matches `query`; the highest matching entry wins and an
    /// open alert is only ever raised.
    #[serde(default)]
    pub escalate: Vec<EscalateDoc>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub resolve_after: Option<String>,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Count distinct values of this field instead of events (threshold).
    #[serde(default)]
    pub distinct: Option<String>,
    /// Threshold only: alternative `{window, threshold, distinct}` conditions over the
    /// same matching events; the rule holds when the main one or any of these does.
    #[serde(default)]
    pub also: Vec<AltCountDoc>,
    #[serde(default)]
    pub within: Option<String>,
    /// New-terms rules: how long a combination is remembered (default 14d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// New-terms rules: how long after the rule is first evaluated it only learns
    /// (default 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<String>,
    /// Metric rules: the PromQL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepDoc>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
    /// What the rule knowingly misses (documentation only; listed in the catalogue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_gaps: Vec<String>,
    /// Rules of other projects this one covers (documentation only; the catalogue's
    /// "outside equivalents" column), e.g. `Falco: Create NodePort Service`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `also` entry of a threshold rule, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AltCountDoc {
    pub window: String,
    pub threshold: f64,
    #[serde(default)]
    pub distinct: Option<String>,
}
