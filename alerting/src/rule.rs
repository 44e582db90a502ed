//! The rule schema and its validation.
//!
//! A rule file holds one or more YAML documents separated by `---`. Every error names
//! the rule (when known), the field and the line.

use std::collections::BTreeMap;
use std::time::Duration;

use query::ast::Expr;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "palisade/v1";
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_GROUP_BY: usize = 3;

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
    #[serde(default)]
    pub steps: Vec<StepDoc>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

fn yes() -> bool {
    true
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Equals(Value),
    In(Vec<Value>),
    Prefix(String),
    Contains(String),
    Cidr(crate::eval::Cidr),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
}

/// A query plus conditions: what one event must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub query: Option<Expr>,
    pub query_text: Option<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub selector: Selector,
}

/// Kind-specific compiled settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Match,
    Threshold {
        window: Duration,
        interval: Duration,
        threshold: f64,
        distinct: Option<String>,
        /// Further conditions over the same events; the rule holds when any does.
        also: Vec<AltCount>,
    },
    Sequence {
        steps: Vec<Step>,
        within: Duration,
    },
}

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub doc: RuleDoc,
    pub selector: Selector,
    pub exceptions: Vec<Expr>,
    /// `escalate` entries, compiled.
    pub escalations: Vec<(Expr, Severity)>,
    pub group_by: Vec<String>,
    pub spec: Spec,
    pub for_: Duration,
    pub resolve_after: Duration,
    pub keep_firing_for: Duration,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.doc.id
    }
}

/// An alternative condition of a threshold rule (`also`).
#[derive(Debug, Clone, PartialEq)]
pub struct AltCount {
    pub window: Duration,
    pub threshold: f64,
    pub distinct: Option<String>,
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

/// A validation error: which rule, which field, which line (1-based, in the file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}line {line}: {field}: {message}", rule.as_ref().map(|r| format!("rule {r:?}, ")).unwrap_or_default())]
pub struct RuleError {
    pub rule: Option<String>,
    pub field: String,
    pub line: usize,
    pub message: String,
}

/// Default quiet period after which match and sequence alerts resolve.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(5 * 60);

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = query::time::parse_duration(text.trim())?;
    d.to_std().map_err(|_| format!("{text:?} must be positive"))
}

/// The line (1-based, within `doc`) where `key:` first appears, else the first line.
fn line_of(doc: &str, key: &str) -> usize {
    let needle = format!("{key}:");
    doc.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&needle)
        })
        .map_or(1, |i| i + 1)
}

const FIELD_HINT: &str = "use body, severity_text, severity_number, scope.name, trace_id, span_id, attributes.<key> or resource.<key>";

fn check_field(field: &str) -> Result<(), String> {
    query::parse::field_ref(field)
        .map(|_| ())
        .ok_or_else(|| format!("unknown field {field:?}: {FIELD_HINT}"))
}

fn compile_condition(c: &ConditionDoc) -> Result<Condition, String> {
    check_field(&c.field)?;
    let mut ops = Vec::new();
    if let Some(v) = &c.equals {
        ops.push(Op::Equals(v.clone()));
    }
    if let Some(v) = &c.in_ {
        ops.push(Op::In(v.clone()));
    }
    if let Some(v) = &c.prefix {
        ops.push(Op::Prefix(v.clone()));
    }
    if let Some(v) = &c.contains {
        ops.push(Op::Contains(v.clone()));
    }
    if let Some(v) = &c.cidr {
        ops.push(Op::Cidr(crate::eval::Cidr::parse(v)?));
    }
    if let Some(v) = c.gt {
        ops.push(Op::Gt(v));
    }
    if let Some(v) = c.gte {
        ops.push(Op::Gte(v));
    }
    if let Some(v) = c.lt {
        ops.push(Op::Lt(v));
    }
    if let Some(v) = c.lte {
        ops.push(Op::Lte(v));
    }
    if let Some(v) = c.exists {
        ops.push(Op::Exists(v));
    }
    match ops.len() {
        1 => Ok(Condition {
            field: c.field.clone(),
            op: ops.remove(0),
        }),
        0 => Err(
            "needs one operator: equals, in, prefix, contains, cidr, gt, gte, lt, lte or exists"
                .into(),
        ),
        _ => Err("has more than one operator; use one condition per operator".into()),
    }
}

impl RuleDoc {
    /// Validate and compile. `doc_text` is this document's YAML (for line numbers)
    /// and `first_line` its first line in the file.
    pub fn compile(self, doc_text: &str, first_line: usize) -> Result<Rule, RuleError> {
        let rule_id = Some(self.id.clone());
        let err = |field: &str, message: String| RuleError {
            rule: rule_id.clone(),
            field: field.to_string(),
            line: first_line + line_of(doc_text, field.split(['[', '.']).next().unwrap_or(field))
                - 1,
            message,
        };
        if self.api_version != API_VERSION {
            return Err(err(
                "apiVersion",
                format!("expected {API_VERSION:?}, got {:?}", self.api_version),
            ));
        }
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && self.id.as_bytes()[0].is_ascii_alphanumeric();
        if !id_ok {
            return Err(err(
                "id",
                "use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit".into(),
            ));
        }
        if self.title.trim().is_empty() {
            return Err(err("title", "must not be empty".into()));
        }
        let parse_query = |field: &str, text: &str| -> Result<Expr, RuleError> {
            query::parse::parse(text).map_err(|e| err(field, e.to_string()))
        };
        let selector = |field: &str,
                        q: &Option<String>,
                        conditions: &[ConditionDoc]|
         -> Result<Selector, RuleError> {
            let query = q.as_deref().map(|t| parse_query(field, t)).transpose()?;
            let conditions = conditions
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    compile_condition(c)
                        .map_err(|m| err("conditions", format!("condition {i}: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Selector {
                query,
                query_text: q.clone(),
                conditions,
            })
        };
        let main = selector("query", &self.query, &self.conditions)?;
        let exceptions = self
            .exceptions
            .iter()
            .map(|q| parse_query("exceptions", q))
            .collect::<Result<Vec<_>, _>>()?;
        let escalations = self
            .escalate
            .iter()
            .map(|e| {
                if e.severity <= self.severity {
                    return Err(err(
                        "escalate",
                        format!(
                            "severity {} does not raise the rule's {}",
                            e.severity.as_str(),
                            self.severity.as_str()
                        ),
                    ));
                }
                Ok((parse_query("escalate", &e.query)?, e.severity))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.group_by.len() > MAX_GROUP_BY {
            return Err(err(
                "group_by",
                format!("at most {MAX_GROUP_BY} fields, got {}", self.group_by.len()),
            ));
        }
        for field in &self.group_by {
            check_field(field).map_err(|m| err("group_by", m))?;
        }
        let duration =
            |field: &str, value: &Option<String>| -> Result<Option<Duration>, RuleError> {
                value
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|m| err(field, m))
            };
        let for_ = duration("for", &self.for_)?.unwrap_or_default();
        let resolve_after =
            duration("resolve_after", &self.resolve_after)?.unwrap_or(DEFAULT_RESOLVE_AFTER);
        let keep_firing_for =
            duration("keep_firing_for", &self.keep_firing_for)?.unwrap_or_default();
        let spec = match self.kind {
            Kind::Match => {
                if main.query.is_none() && main.conditions.is_empty() {
                    return Err(err(
                        "query",
                        "a match rule needs a query or conditions".into(),
                    ));
                }
                Spec::Match
            }
            Kind::Threshold => {
                if main.query.is_none() {
                    return Err(err("query", "a threshold rule needs a query".into()));
                }
                let window = duration("window", &self.window)?.ok_or_else(|| {
                    err("window", "required for threshold rules (e.g. 5m)".into())
                })?;
                let interval =
                    duration("interval", &self.interval)?.unwrap_or(Duration::from_secs(60));
                if interval < MIN_INTERVAL {
                    return Err(err(
                        "interval",
                        format!("must be at least {}s", MIN_INTERVAL.as_secs()),
                    ));
                }
                let threshold = self.threshold.ok_or_else(|| {
                    err(
                        "threshold",
                        "required for threshold rules (fires when count >= threshold)".into(),
                    )
                })?;
                if !threshold.is_finite() || threshold <= 0.0 {
                    return Err(err("threshold", "must be a positive number".into()));
                }
                if let Some(field) = &self.distinct {
                    check_field(field).map_err(|m| err("distinct", m))?;
                }
                let also = self
                    .also
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let window = parse_duration(&a.window)
                            .map_err(|m| err("also", format!("entry {i}: window: {m}")))?;
                        if !a.threshold.is_finite() || a.threshold <= 0.0 {
                            return Err(err(
                                "also",
                                format!("entry {i}: threshold must be a positive number"),
                            ));
                        }
                        if let Some(field) = &a.distinct {
                            check_field(field)
                                .map_err(|m| err("also", format!("entry {i}: distinct: {m}")))?;
                        }
                        Ok(AltCount {
                            window,
                            threshold: a.threshold,
                            distinct: a.distinct.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Spec::Threshold {
                    window,
                    interval,
                    threshold,
                    distinct: self.distinct.clone(),
                    also,
                }
            }
            Kind::Sequence => {
                if self.steps.len() < 2 {
                    return Err(err("steps", "a sequence needs at least 2 steps".into()));
                }
                if self.group_by.is_empty() {
                    return Err(err("group_by", "a sequence needs group_by (the key the steps share, e.g. attributes.user.name)".into()));
                }
                let within = duration("within", &self.within)?.ok_or_else(|| {
                    err("within", "required for sequence rules (e.g. 10m)".into())
                })?;
                let steps = self
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        if s.query.is_none() && s.conditions.is_empty() {
                            return Err(err(
                                "steps",
                                format!("step {i} needs a query or conditions"),
                            ));
                        }
                        Ok(Step {
                            name: s.name.clone().unwrap_or_else(|| format!("step {}", i + 1)),
                            selector: selector("steps", &s.query, &s.conditions)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Spec::Sequence { steps, within }
            }
        };
        if self.kind != Kind::Threshold && (self.window.is_some() || self.threshold.is_some()) {
            return Err(err(
                if self.window.is_some() {
                    "window"
                } else {
                    "threshold"
                },
                format!(
                    "only threshold rules take this field, this rule is kind {:?}",
                    self.kind
                ),
            ));
        }
        for (key, template) in &self.annotations {
            crate::template::check(template)
                .map_err(|m| err("annotations", format!("{key}: {m}")))?;
        }
        Ok(Rule {
            group_by: self.group_by.clone(),
            doc: self,
            selector: main,
            exceptions,
            escalations,
            spec,
            for_,
            resolve_after,
            keep_firing_for,
        })
    }
}

/// Split a multi-document YAML text into (first line, text) per document.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        docs.push((start, current));
    }
    docs
}

/// Parse and validate every rule of a file. Errors carry file line numbers.
/// A tenant's tuning of a shipped rule: switch it off or add exceptions, without
/// copying it. Stored and versioned like a tenant rule, under the shipped rule's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningDoc {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The id of the shipped rule tuned.
    pub tunes: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Added to the shipped rule's exceptions.
    #[serde(default)]
    pub exceptions: Vec<String>,
}

/// Whether a document is a tuning (a top-level `tunes:` key).
pub fn is_tuning(text: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix("tunes")
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

/// A tenant's rule document: a complete rule, or a tuning applied to the shipped rule
/// it names (`shipped`: the file and built-in rules). Exactly one document.
pub fn tenant_rule(text: &str, shipped: &[std::sync::Arc<Rule>]) -> Result<Rule, RuleError> {
    let error = |field: &str, message: String| RuleError {
        rule: None,
        field: field.into(),
        line: 1,
        message,
    };
    if !is_tuning(text) {
        let mut rules = parse_rules(text)?;
        return match rules.len() {
            1 => Ok(rules.remove(0)),
            0 => Err(error("document", "the body holds no rule document".into())),
            n => Err(error(
                "document",
                format!("the body holds {n} rule documents; send one per request"),
            )),
        };
    }
    let doc: TuningDoc = serde_saphyr::from_str(text).map_err(|e| {
        let message = e.to_string().lines().next().unwrap_or_default().to_string();
        let line = e.location().map_or(1, |l| l.line() as usize);
        RuleError {
            rule: None,
            field: message.split('`').nth(1).unwrap_or("document").to_string(),
            line,
            message,
        }
    })?;
    let at = |field: &str, message: String| RuleError {
        rule: Some(doc.tunes.clone()),
        field: field.into(),
        line: line_of(text, field),
        message,
    };
    if doc.api_version != API_VERSION {
        return Err(at(
            "apiVersion",
            format!("expected {API_VERSION:?}, got {:?}", doc.api_version),
        ));
    }
    let base = shipped
        .iter()
        .find(|r| r.id() == doc.tunes)
        .ok_or_else(|| at("tunes", format!("no shipped rule has id {:?}", doc.tunes)))?;
    let mut rule = Rule::clone(base);
    if let Some(enabled) = doc.enabled {
        rule.doc.enabled = enabled;
    }
    for (i, q) in doc.exceptions.iter().enumerate() {
        let expr =
            query::parse::parse(q).map_err(|e| at("exceptions", format!("exception {i}: {e}")))?;
        rule.exceptions.push(expr);
        rule.doc.exceptions.push(q.clone());
    }
    Ok(rule)
}

pub fn parse_rules(text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (first_line, doc) in documents(text) {
        let parsed: RuleDoc = serde_saphyr::from_str(&doc).map_err(|e| {
            let (line, message) = match e.location() {
                Some(loc) => (first_line + loc.line() as usize - 1, e.to_string()),
                None => (first_line, e.to_string()),
            };
            let message = message.lines().next().unwrap_or_default().to_string();
            let field = message.split('`').nth(1).unwrap_or("document").to_string();
            RuleError {
                rule: None,
                field,
                line,
                message,
            }
        })?;
        let rule = parsed.compile(&doc, first_line)?;
        if rules.iter().any(|r: &Rule| r.id() == rule.id()) {
            return Err(RuleError {
                rule: Some(rule.id().to_string()),
                field: "id".into(),
                line: first_line + line_of(&doc, "id") - 1,
                message: "duplicate rule id in this file".into(),
            });
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = r#"apiVersion: palisade/v1
id: root-login
title: Root login
severity: critical
kind: match
query: 'attributes.user.name:root AND body:login'
---
apiVersion: palisade/v1
id: failed-login-burst
title: Repeated failed logins for one user
severity: high
kind: threshold
query: 'body:"failed login"'
group_by: [attributes.user.name]
window: 5m
interval: 10s
threshold: 5        # fires when count >= 5
"#;

    #[test]
    fn the_issue_examples_validate() {
        let rules = parse_rules(EXAMPLES).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].id(), "root-login");
        assert_eq!(rules[0].spec, Spec::Match);
        assert_eq!(
            rules[1].spec,
            Spec::Threshold {
                window: Duration::from_secs(300),
                interval: Duration::from_secs(10),
                threshold: 5.0,
                distinct: None,
                also: Vec::new(),
            }
        );
        assert_eq!(rules[1].group_by, vec!["attributes.user.name"]);
    }

    fn check_err(yaml: &str, field: &str, line: usize, fragment: &str) {
        let err = parse_rules(yaml).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert_eq!(err.line, line, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }

    #[test]
    fn tunings_switch_off_or_add_exceptions_to_a_shipped_rule() {
        let shipped: Vec<std::sync::Arc<Rule>> = parse_rules(
            "apiVersion: palisade/v1\nid: base\ntitle: T\nseverity: high\nkind: match\nquery: a\nexceptions: ['b']\n",
        )
        .unwrap()
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
        let tuned = tenant_rule(
            "apiVersion: palisade/v1\ntunes: base\nexceptions: ['c', 'd']\n",
            &shipped,
        )
        .unwrap();
        assert_eq!(tuned.id(), "base");
        assert_eq!(tuned.exceptions.len(), 3);
        assert_eq!(tuned.doc.exceptions, ["b", "c", "d"]);
        assert!(tuned.doc.enabled);
        let off = tenant_rule(
            "apiVersion: palisade/v1\ntunes: base\nenabled: false\n",
            &shipped,
        )
        .unwrap();
        assert!(!off.doc.enabled);
        let err = tenant_rule("apiVersion: palisade/v1\ntunes: nope\n", &shipped).unwrap_err();
        assert_eq!(err.field, "tunes", "{err}");
        let err = tenant_rule(
            "apiVersion: palisade/v1\ntunes: base\nexceptions: ['(c']\n",
            &shipped,
        )
        .unwrap_err();
        assert_eq!(err.field, "exceptions", "{err}");
        let err =
            tenant_rule("apiVersion: palisade/v1\ntunes: base\nquery: x\n", &shipped).unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
        // A complete rule is still a rule.
        assert_eq!(
            tenant_rule(
                "apiVersion: palisade/v1\nid: own\ntitle: T\nseverity: low\nkind: match\nquery: a\n",
                &shipped
            )
            .unwrap()
            .id(),
            "own"
        );
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let base = "apiVersion: palisade/v1\nid: r\ntitle: T\nseverity: high\n";
        check_err(
            &format!("{base}kind: threshold\nquery: x\nwindow: 5m\ninterval: 1s\nthreshold: 3\n"),
            "interval",
            8,
            "at least 5s",
        );
        check_err(
            &format!("{base}kind: threshold\nquery: x\ninterval: 10s\nthreshold: 3\n"),
            "window",
            1,
            "required",
        );
        check_err(
            &format!("{base}kind: match\nquery: '(a OR b'\n"),
            "query",
            6,
            "position 0",
        );
        check_err(
            &format!("{base}kind: match\nquery: a\ngroup_by: [nosuch]\n"),
            "group_by",
            7,
            "unknown field",
        );
        check_err(
            &format!(
                "{base}kind: match\nconditions:\n  - field: attributes.x\n    equals: 1\n    prefix: a\n"
            ),
            "conditions",
            6,
            "more than one operator",
        );
        check_err(
            &format!(
                "{base}kind: sequence\ngroup_by: [attributes.user.name]\nwithin: 10m\nsteps:\n  - query: a\n"
            ),
            "steps",
            8,
            "at least 2",
        );
        check_err(
            &format!(
                "{base}kind: threshold\nquery: a\nwindow: 5m\nthreshold: 3\nalso:\n  - {{window: soon, threshold: 4}}\n"
            ),
            "also",
            9,
            "entry 0: window",
        );
        check_err(
            &format!("{base}kind: match\nquery: a\nescalate:\n  - {{query: b, severity: low}}\n"),
            "escalate",
            7,
            "does not raise",
        );
        check_err(
            "apiVersion: palisade/v2\nid: r\ntitle: T\nseverity: high\nkind: match\nquery: a\n",
            "apiVersion",
            1,
            "palisade/v1",
        );
        check_err(
            &format!("{base}kind: match\nquery: a\n---\n{base}kind: match\nquery: b\n"),
            "id",
            9,
            "duplicate",
        );
        // A type error reported by the YAML parser carries its line too.
        let err =
            parse_rules(&format!("{base}kind: match\nquery: a\nseverity_x: 1\n")).unwrap_err();
        assert_eq!(err.line, 7, "{err}");
        let err = parse_rules(
            "apiVersion: palisade/v1\nid: r\ntitle: T\nseverity: urgent\nkind: match\nquery: a\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 4, "{err}");
    }
}
