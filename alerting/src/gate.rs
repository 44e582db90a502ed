//! Gates: cheap necessary conditions of a rule's selector, checked before the rule is
//! evaluated on a record.
//!
//! Most rules start with an exact attribute value (`attributes.k8s.object.resource:
//! (secrets OR configmaps)`, `attributes.k8s.audit.verb:create`, a `field: …, equals:`
//! condition). A gate is such a conjunct: the rule can only select a record whose
//! attribute at `path` holds one of `terms`. The follower reads each gated path of a
//! record once ([`GateView`]) and skips every rule whose gate is closed, instead of
//! running every rule's whole query (each clause a nested lookup) on every record.
//!
//! A gate never changes a result: it is derived only from conjuncts whose match is an
//! exact string (or boolean) comparison in [`crate::eval`], so a closed gate implies
//! the selector does not hold. Terms that could match otherwise (numbers, CIDR
//! prefixes, prefixes, ranges, text fields) make no gate.

use std::collections::HashSet;

use model::LogRecord;
use query::ast::{Expr, FieldRef, Value as QValue};
use serde_json::Value;

use crate::eval::{FieldValue, field_values};
use crate::rule::{Op, Selector};

/// The record's attribute at `path` must hold one of `terms` (exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub path: String,
    pub terms: HashSet<String>,
}

/// A term whose clause matches only a string (or boolean) value equal to it.
fn exact_term(value: &QValue) -> Option<&str> {
    let (QValue::Term(t) | QValue::Phrase(t)) = value else {
        return None;
    };
    // Numbers compare numerically, CIDR prefixes by network: no gate for them.
    if t.is_empty() || t.parse::<f64>().is_ok() || query::values::cidr_prefix(t).is_some() {
        return None;
    }
    Some(t)
}

/// The gate of one query conjunct: a clause on an attribute with an exact term, or an
/// `OR` of such clauses on the same attribute.
fn gate_of(expr: &Expr) -> Option<Gate> {
    match expr {
        Expr::Clause {
            field: FieldRef::Attribute(path),
            value,
        } => Some(Gate {
            path: path.clone(),
            terms: HashSet::from([exact_term(value)?.to_string()]),
        }),
        Expr::Or(parts) if !parts.is_empty() => {
            let mut gates = parts.iter().map(gate_of);
            let mut gate = gates.next()??;
            for other in gates {
                let other = other?;
                if other.path != gate.path {
                    return None;
                }
                gate.terms.extend(other.terms);
            }
            Some(gate)
        }
        _ => None,
    }
}

/// Every gate of a selector: the gated conjuncts of its query and its `equals`/`in`
/// conditions on attributes with string or boolean values.
pub fn gates(selector: &Selector) -> Vec<Gate> {
    let mut out = Vec::new();
    match &selector.query {
        Some(Expr::And(parts)) => out.extend(parts.iter().filter_map(gate_of)),
        Some(other) => out.extend(gate_of(other)),
        None => {}
    }
    for condition in &selector.conditions {
        let Some(FieldRef::Attribute(path)) = query::parse::field_ref(&condition.field) else {
            continue;
        };
        let options: Vec<&Value> = match &condition.op {
            Op::Equals(v) => vec![v],
            Op::In(options) => options.iter().collect(),
            _ => continue,
        };
        let terms: Option<HashSet<String>> = options
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect();
        if let Some(terms) = terms {
            out.push(Gate { path, terms });
        }
    }
    out
}

/// The values of a record's gated attributes, each read once.
pub struct GateView<'r, 'g> {
    record: &'r LogRecord,
    read: Vec<(&'g str, Vec<&'r str>)>,
}

impl<'r, 'g> GateView<'r, 'g> {
    pub fn new(record: &'r LogRecord) -> Self {
        GateView {
            record,
            read: Vec::new(),
        }
    }

    fn values(&mut self, path: &'g str) -> &[&'r str] {
        let at = match self.read.iter().position(|(p, _)| *p == path) {
            Some(at) => at,
            None => {
                let field = FieldRef::Attribute(path.to_string());
                let values = field_values(self.record, &field)
                    .into_iter()
                    .filter_map(|v| match v {
                        FieldValue::Json(Value::String(s)) => Some(s.as_str()),
                        FieldValue::Json(Value::Bool(true)) => Some("true"),
                        FieldValue::Json(Value::Bool(false)) => Some("false"),
                        _ => None,
                    })
                    .collect();
                self.read.push((path, values));
                self.read.len() - 1
            }
        };
        &self.read[at].1
    }

    /// Whether every gate is open for this record (the rule may select it).
    pub fn open(&mut self, gates: &'g [Gate]) -> bool {
        gates.iter().all(|gate| {
            self.values(&gate.path)
                .iter()
                .any(|v| gate.terms.contains(*v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::selects;
    use chrono::Utc;
    use model::TenantId;
    use serde_json::json;

    fn record(attributes: Value) -> LogRecord {
        let mut r = LogRecord::new(TenantId(uuid::Uuid::nil()), Utc::now(), "");
        r.attributes = attributes.as_object().cloned().unwrap_or_default();
        r
    }

    fn selector(query: &str) -> Selector {
        Selector {
            query: Some(query::parse::parse(query).expect("query")),
            query_text: Some(query.to_string()),
            conditions: Vec::new(),
        }
    }

    #[test]
    fn gates_come_from_exact_conjuncts_only() {
        let s = selector(
            "attributes.k8s.verb:(create OR patch) AND attributes.k8s.allowed:true AND attributes.code:403 AND attributes.ip:10.0.0.0/8 AND attributes.name:adm* AND body:shell",
        );
        let gates = gates(&s);
        let paths: Vec<&str> = gates.iter().map(|g| g.path.as_str()).collect();
        assert_eq!(paths, ["k8s.verb", "k8s.allowed"]);
        assert_eq!(
            gates[0].terms,
            HashSet::from(["create".to_string(), "patch".to_string()])
        );
        // An OR across two attributes is not a gate.
        assert!(super::gates(&selector("attributes.a:x OR attributes.b:y")).is_empty());
        // A NOT is not a gate.
        assert!(super::gates(&selector("NOT attributes.a:x")).is_empty());
    }

    #[test]
    fn a_closed_gate_means_the_selector_does_not_hold() {
        let queries = [
            "attributes.k8s.verb:(create OR patch) AND attributes.k8s.allowed:true",
            "attributes.k8s.object.resource:secrets",
            "attributes.k8s.rbac.subjects:\"Group:system:masters\"",
        ];
        let records = [
            json!({"k8s.verb": "create", "k8s.allowed": true}),
            json!({"k8s.verb": "create", "k8s.allowed": "true"}),
            json!({"k8s.verb": "Create", "k8s.allowed": true}),
            json!({"k8s": {"verb": "patch", "allowed": true}}),
            json!({"k8s.verb": ["get", "patch"], "k8s.allowed": true}),
            json!({"k8s.verb": "create", "k8s.allowed": false}),
            json!({"k8s.object.resource": "secrets"}),
            json!({"k8s.object": {"resource": "secrets"}}),
            json!({"k8s.object.resource": "configmaps"}),
            json!({"k8s.rbac.subjects": ["User:a", "Group:system:masters"]}),
            json!({"k8s.rbac.subjects": "Group:system"}),
            json!({}),
        ];
        for q in queries {
            let s = selector(q);
            let gates = gates(&s);
            assert!(!gates.is_empty(), "{q}");
            for r in &records {
                let r = record(r.clone());
                let open = GateView::new(&r).open(&gates);
                let holds = selects(&s, &r);
                assert!(
                    open || !holds,
                    "{q} on {:?}: gate closed but selector holds",
                    r.attributes
                );
            }
        }
        // And it does close: a record without the values is skipped.
        let s = selector(queries[0]);
        let g = gates(&s);
        assert!(!GateView::new(&record(json!({"k8s.verb": "get"}))).open(&g));
    }
}
