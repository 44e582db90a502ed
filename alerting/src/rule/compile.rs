//! Validation: a [`RuleDoc`] becomes a [`Rule`], or an error naming the rule, the field
//! and the line.

use std::time::Duration;

use query::ast::Expr;

use super::compiled::{AltCount, Condition, Op, Rule, Selector, Spec, Step};
use super::doc::{ConditionDoc, Kind, RuleDoc};
use super::{API_VERSION, DEFAULT_RESOLVE_AFTER, MAX_GROUP_BY, MIN_INTERVAL};

/// A validation error: which rule, which field, which line (1-based, in the file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}line {line}: {field}: {message}", rule.as_ref().map(|r| format!("rule {r:?}, ")).unwrap_or_default())]
pub struct RuleError {
    pub rule: Option<String>,
    pub field: String,
    pub line: usize,
    pub message: String,
}

/// The longest `history` or `learning` of a new_terms rule.
const MAX_HISTORY: Duration = Duration::from_secs(90 * 86_400);

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = query::time::parse_duration(text.trim())?;
    d.to_std().map_err(|_| format!("{text:?} must be positive"))
}

/// The line (1-based, within `doc`) where `key:` first appears, else the first line.
pub(super) fn line_of(doc: &str, key: &str) -> usize {
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
        ops.push(Op::Cidr(super::compiled::Cidr::parse(v)?));
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
        // An error about entry `index` of a list: the line of that entry.
        let err_at = |field: &str, index: usize, message: String| RuleError {
            rule: rule_id.clone(),
            field: format!("{field}[{index}]"),
            line: first_line + entry_line(doc_text, field, index) - 1,
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
                .map(|(i, c)| compile_condition(c).map_err(|m| err_at("conditions", i, m)))
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
            .enumerate()
            .map(|(i, q)| {
                query::parse::parse(q).map_err(|e| err_at("exceptions", i, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let escalations = self
            .escalate
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if e.severity <= self.severity {
                    return Err(err_at(
                        "escalate",
                        i,
                        format!(
                            "severity {} does not raise the rule's {}",
                            e.severity.as_str(),
                            self.severity.as_str()
                        ),
                    ));
                }
                let query = query::parse::parse(&e.query)
                    .map_err(|m| err_at("escalate", i, format!("query: {m}")))?;
                Ok((query, e.severity))
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
                            .map_err(|m| err_at("also", i, format!("window: {m}")))?;
                        if !a.threshold.is_finite() || a.threshold <= 0.0 {
                            return Err(err_at(
                                "also",
                                i,
                                "threshold must be a positive number".into(),
                            ));
                        }
                        if let Some(field) = &a.distinct {
                            check_field(field)
                                .map_err(|m| err_at("also", i, format!("distinct: {m}")))?;
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
                            return Err(err_at(
                                "steps",
                                i,
                                "a step needs a query or conditions".into(),
                            ));
                        }
                        let selector =
                            selector("steps", &s.query, &s.conditions).map_err(|e| RuleError {
                                field: format!("steps[{i}]"),
                                line: first_line + entry_line(doc_text, "steps", i) - 1,
                                ..e
                            })?;
                        Ok(Step {
                            name: s.name.clone().unwrap_or_else(|| format!("step {}", i + 1)),
                            selector,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Spec::Sequence { steps, within }
            }
            Kind::NewTerms => {
                if main.query.is_none() {
                    return Err(err("query", "a new_terms rule needs a query".into()));
                }
                if self.group_by.is_empty() {
                    return Err(err("group_by", "a new_terms rule needs group_by: the fields whose combination is new (e.g. [attributes.entity.actor, attributes.k8s.client.ip])".into()));
                }
                let history =
                    duration("history", &self.history)?.unwrap_or(Duration::from_secs(14 * 86_400));
                if history > MAX_HISTORY || history < Duration::from_secs(60) {
                    return Err(err(
                        "history",
                        format!("must be between 1m and {}d", MAX_HISTORY.as_secs() / 86_400),
                    ));
                }
                let learning = duration("learning", &self.learning)?
                    .unwrap_or(Duration::from_secs(7 * 86_400));
                if learning > MAX_HISTORY {
                    return Err(err(
                        "learning",
                        format!("must be at most {}d", MAX_HISTORY.as_secs() / 86_400),
                    ));
                }
                Spec::NewTerms { history, learning }
            }
            Kind::Metric => {
                let text = self.expr.as_deref().ok_or_else(|| {
                    err(
                        "expr",
                        "required for metric rules (a PromQL expression)".into(),
                    )
                })?;
                let query =
                    metrics::promql::Query::parse(text).map_err(|e| err("expr", e.to_string()))?;
                if self.query.is_some() || !self.conditions.is_empty() {
                    return Err(err(
                        if self.query.is_some() {
                            "query"
                        } else {
                            "conditions"
                        },
                        "metric rules select series with expr, not log events".into(),
                    ));
                }
                let interval =
                    duration("interval", &self.interval)?.unwrap_or(Duration::from_secs(60));
                if interval < MIN_INTERVAL {
                    return Err(err(
                        "interval",
                        format!("must be at least {}s", MIN_INTERVAL.as_secs()),
                    ));
                }
                if !self.tests.is_empty() {
                    return Err(err(
                        "tests",
                        "test cases replay log events; a metric rule is checked against series (docs/metrics.md)".into(),
                    ));
                }
                Spec::Metric { query, interval }
            }
        };
        if self.kind != Kind::NewTerms && (self.history.is_some() || self.learning.is_some()) {
            return Err(err(
                if self.history.is_some() {
                    "history"
                } else {
                    "learning"
                },
                format!(
                    "only new_terms rules take this field, this rule is kind {:?}",
                    self.kind
                ),
            ));
        }
        if self.kind != Kind::Metric && self.expr.is_some() {
            return Err(err(
                "expr",
                format!(
                    "only metric rules take expr, this rule is kind {:?}",
                    self.kind
                ),
            ));
        }
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
            gates: crate::gate::gates(&main),
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

/// A YAML or schema error of one document, with the field it is about: the key the
/// parser names, else the key path of the line it points at (`steps[1].query`).
fn yaml_error(e: &serde_saphyr::Error, doc: &str, first_line: usize) -> RuleError {
    let local = e.location().map(|loc| loc.line() as usize);
    let text = e.to_string();
    let mut message = text.lines().next().unwrap_or_default().trim().to_string();
    // "error: line 4 column 11: unknown variant ..." -> "unknown variant ..."
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    if message.starts_with("line ")
        && let Some((_, rest)) = message.split_once(": ")
    {
        message = rest.to_string();
    }
    let named = message.split('`').nth(1).map(str::to_string);
    let field = if message.starts_with("unknown field") || message.starts_with("missing field") {
        named.clone().unwrap_or_else(|| "document".into())
    } else {
        local.map_or_else(|| "document".into(), |l| key_path(doc, l))
    };
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once('`')
    {
        message = format!("unknown value {value:?}{expected}");
    }
    RuleError {
        rule: None,
        field,
        line: first_line + local.unwrap_or(1) - 1,
        message,
    }
}

/// The key path of line `line` (1-based) of `doc`: the top-level key above it, the
/// index of the list entry it is in, and its own key (`steps[1].query`).
fn key_path(doc: &str, line: usize) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let Some(here) = lines.get(line.saturating_sub(1)) else {
        return "document".into();
    };
    let key_of = |l: &str| -> Option<String> {
        let t = l.trim_start().trim_start_matches("- ");
        let (k, _) = t.split_once(':')?;
        let k = k.trim();
        (!k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
        .then(|| k.to_string())
    };
    let top = (0..line)
        .rev()
        .find(|&i| !lines[i].starts_with([' ', '-', '#']) && key_of(lines[i]).is_some());
    let Some(top) = top else {
        return "document".into();
    };
    let top_key = key_of(lines[top]).unwrap_or_default();
    if top + 1 == line {
        return top_key;
    }
    let entries = lines[top + 1..line]
        .iter()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| l.len() - l.trim_start().len())
        .collect::<Vec<_>>();
    let mut path = top_key;
    if let Some(indent) = entries.iter().min() {
        let index = entries.iter().filter(|i| *i == indent).count();
        path = format!("{path}[{}]", index.saturating_sub(1));
    }
    if let Some(own) = key_of(here) {
        path = format!("{path}.{own}");
    }
    path
}

/// The line (1-based, within `doc`) of entry `index` of the block list under the
/// top-level `key`, else the line of `key`.
pub(super) fn entry_line(doc: &str, key: &str, index: usize) -> usize {
    let start = line_of(doc, key);
    let lines: Vec<&str> = doc.lines().collect();
    let mut indent = None;
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate().skip(start) {
        if !l.starts_with([' ', '-', '#']) && !l.trim().is_empty() {
            break;
        }
        let t = l.trim_start();
        if !t.starts_with("- ") && t != "-" {
            continue;
        }
        let width = l.len() - t.len();
        if *indent.get_or_insert(width) != width {
            continue;
        }
        if seen == index {
            return i + 1;
        }
        seen += 1;
    }
    start
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
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (first_line, doc) in documents(text) {
        let parsed: RuleDoc =
            serde_saphyr::from_str(&doc).map_err(|e| yaml_error(&e, &doc, first_line))?;
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
    use crate::rule::Spec;
    use crate::rule::tenant_rule;

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
            "conditions[0]",
            7,
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
            "also[0]",
            10,
            "window:",
        );
        check_err(
            &format!("{base}kind: match\nquery: a\nescalate:\n  - {{query: b, severity: low}}\n"),
            "escalate[0]",
            8,
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
        // An unknown value names the field, the value and what is expected.
        let err = parse_rules(&base.replace("high", "extreme")).unwrap_err();
        assert_eq!(err.field, "severity", "{err}");
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.message.starts_with(
                "unknown value \"extreme\", expected one of info, low, medium, high, critical"
            ),
            "{err}"
        );
        // A wrong step or exception is reported at its own line.
        check_err(
            &format!(
                "{base}kind: sequence\ngroup_by: [attributes.user.name]\nwithin: 10m\nsteps:\n  - query: a\n  - query: '(b'\n"
            ),
            "steps[1]",
            10,
            "position",
        );
        check_err(
            &format!("{base}kind: match\nquery: a\nexceptions:\n  - b\n  - c\n  - 'd AND'\n"),
            "exceptions[2]",
            10,
            "",
        );
        let err = parse_rules(&format!(
            "{base}kind: sequence\ngroup_by: [attributes.user.name]\nwithin: 10m\nsteps:\n  - query: a\n  - quer: b\n"
        ))
        .unwrap_err();
        assert_eq!((err.field.as_str(), err.line), ("quer", 10), "{err}");
        let err = parse_rules(&format!(
            "{base}kind: threshold\nquery: a\nwindow: 5m\nthreshold: [3]\n"
        ))
        .unwrap_err();
        assert_eq!((err.field.as_str(), err.line), ("threshold", 8), "{err}");
    }
}
