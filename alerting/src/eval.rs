//! Evaluate the query language and structured conditions against one record in
//! memory, with the index's semantics: text is tokenized like the index (split on
//! non-alphanumerics, lower-cased, tokens up to 255 bytes), attribute keys match flat
//! (`"user.name"`) or nested (`{"user":{"name":..}}`), arrays match if any element
//! does, numbers and booleans match their typed values.

use std::net::IpAddr;

use model::LogRecord;
use query::ast::{Bound, Expr, FieldRef, Value as QValue};
use serde_json::{Map, Value};

use crate::rule::{Condition, Op, Selector};

/// Tokens as the index produces them.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() < 256)
        .map(str::to_lowercase)
        .collect()
}

fn contains_phrase(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn prefix_phrase(haystack: &[String], needle: &[String]) -> bool {
    let Some((last, head)) = needle.split_last() else {
        return !haystack.is_empty();
    };
    haystack
        .windows(needle.len())
        .any(|w| w[..head.len()] == *head && w[head.len()].starts_with(last.as_str()))
}

/// Look a dotted path up in a JSON object, trying every split of the path into flat
/// keys and nesting (`a.b.c` matches `{"a.b.c"}`, `{"a":{"b.c"}}`, `{"a.b":{"c"}}`...).
pub fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if let Some(v) = map.get(path) {
        out.push(v);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(Value::Object(inner)) = map.get(&path[..i]) {
            out.extend(lookup(inner, &path[i + 1..]));
        }
    }
    out
}

/// The values a field has in a record (several for arrays or ambiguous paths).
pub fn field_values<'a>(record: &'a LogRecord, field: &FieldRef) -> Vec<FieldValue<'a>> {
    let flatten = |values: Vec<&'a Value>| -> Vec<FieldValue<'a>> {
        let mut out = Vec::new();
        for v in values {
            match v {
                Value::Array(items) => out.extend(items.iter().map(FieldValue::Json)),
                other => out.push(FieldValue::Json(other)),
            }
        }
        out
    };
    match field {
        FieldRef::Body => vec![FieldValue::Text(&record.body)],
        FieldRef::SeverityText => vec![FieldValue::Text(&record.severity_text)],
        FieldRef::SeverityNumber => vec![FieldValue::Number(f64::from(record.severity_number))],
        FieldRef::ScopeName => vec![FieldValue::Keyword(&record.scope_name)],
        FieldRef::TraceId => record
            .trace_id
            .as_deref()
            .map(FieldValue::Keyword)
            .into_iter()
            .collect(),
        FieldRef::SpanId => record
            .span_id
            .as_deref()
            .map(FieldValue::Keyword)
            .into_iter()
            .collect(),
        FieldRef::Attribute(path) => flatten(lookup(&record.attributes, path)),
        FieldRef::Resource(path) => flatten(lookup(&record.resource, path)),
        // The words of a value: strings compare like `body`.
        FieldRef::AttributeText(path) | FieldRef::ResourceText(path) => {
            let map = if matches!(field, FieldRef::AttributeText(_)) {
                &record.attributes
            } else {
                &record.resource
            };
            flatten(lookup(map, path))
                .into_iter()
                .map(|v| match v {
                    FieldValue::Json(Value::String(s)) => FieldValue::Text(s),
                    other => other,
                })
                .collect()
        }
    }
}

/// Whether a CIDR clause matches: IP-valued strings at the top level of the map
/// (flat key, or an array of at most `MAX_IPS_PER_ATTRIBUTE`), as the index stores them.
fn cidr_matches(record: &LogRecord, field: &FieldRef, prefix: &str) -> bool {
    let (map, path) = match field {
        FieldRef::Attribute(path) => (&record.attributes, path),
        FieldRef::Resource(path) => (&*record.resource, path),
        _ => return false,
    };
    let check = |v: &Value| {
        v.as_str()
            .is_some_and(|s| query::values::in_cidr(s, prefix))
    };
    match map.get(path.as_str()) {
        Some(Value::Array(items)) => items
            .iter()
            .take(query::values::MAX_IPS_PER_ATTRIBUTE)
            .any(check),
        Some(other) => check(other),
        None => false,
    }
}

#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Keyword(&'a str),
    Number(f64),
    Json(&'a Value),
}

impl FieldValue<'_> {
    /// The value as a string (for conditions and group keys).
    pub fn as_string(&self) -> Option<String> {
        match self {
            FieldValue::Text(s) | FieldValue::Keyword(s) => Some((*s).to_string()),
            FieldValue::Number(n) => Some(format_number(*n)),
            FieldValue::Json(Value::String(s)) => Some(s.clone()),
            FieldValue::Json(Value::Number(n)) => Some(n.to_string()),
            FieldValue::Json(Value::Bool(b)) => Some(b.to_string()),
            FieldValue::Json(_) => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            FieldValue::Number(n) => Some(*n),
            FieldValue::Json(Value::Number(n)) => n.as_f64(),
            FieldValue::Json(Value::String(s)) => s.trim().parse().ok(),
            FieldValue::Text(s) | FieldValue::Keyword(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// A needle that is one ASCII word can be compared without tokenizing into new
/// strings (the common case for rule clauses such as `attributes.verb:delete`).
fn single_ascii_token(text: &str) -> bool {
    !text.is_empty() && text.len() < 256 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn contains_token(haystack: &str, needle: &str) -> bool {
    haystack
        .split(|c: char| !c.is_alphanumeric())
        .any(|t| t.eq_ignore_ascii_case(needle))
}

fn term_matches(value: &FieldValue, text: &str, prefix: bool) -> bool {
    if !prefix
        && single_ascii_token(text)
        && let FieldValue::Text(s) = value
    {
        return contains_token(s, text);
    }
    // Attribute and resource strings are whole values (exact, case-sensitive), as the
    // index's exact fields hold them (values over MAX_EXACT_BYTES are not indexed).
    if let FieldValue::Json(Value::String(s)) = value {
        return s.len() <= storage::index::MAX_EXACT_BYTES
            && if prefix {
                s.starts_with(text)
            } else {
                s == text
            };
    }
    let needle = tokens(text);
    let text_match = |s: &str| {
        let hay = tokens(s);
        if prefix {
            prefix_phrase(&hay, &needle)
        } else {
            contains_phrase(&hay, &needle)
        }
    };
    match value {
        FieldValue::Text(s) => text_match(s),
        FieldValue::Keyword(s) => {
            if prefix {
                s.to_ascii_lowercase()
                    .starts_with(&text.to_ascii_lowercase())
            } else {
                s.eq_ignore_ascii_case(text)
            }
        }
        FieldValue::Number(n) => !prefix && text.parse::<f64>().is_ok_and(|t| t == *n),
        FieldValue::Json(Value::String(_)) => unreachable!("handled above"),
        FieldValue::Json(Value::Number(n)) => {
            !prefix
                && text
                    .parse::<f64>()
                    .ok()
                    .zip(n.as_f64())
                    .is_some_and(|(a, b)| a == b)
        }
        FieldValue::Json(Value::Bool(b)) => !prefix && text == if *b { "true" } else { "false" },
        FieldValue::Json(_) => false,
    }
}

fn in_range(value: &FieldValue, lower: &Bound, upper: &Bound) -> bool {
    let n = match value {
        FieldValue::Number(n) => *n,
        FieldValue::Json(Value::Number(n)) => match n.as_f64() {
            Some(n) => n,
            None => return false,
        },
        _ => return false,
    };
    let check = |b: &Bound, low: bool| match b {
        Bound::Unbounded => true,
        Bound::Included(t) => t
            .parse::<f64>()
            .is_ok_and(|v| if low { n >= v } else { n <= v }),
        Bound::Excluded(t) => t
            .parse::<f64>()
            .is_ok_and(|v| if low { n > v } else { n < v }),
    };
    check(lower, true) && check(upper, false)
}

/// Whether `expr` matches `record`.
pub fn matches(expr: &Expr, record: &LogRecord) -> bool {
    match expr {
        Expr::All => true,
        Expr::And(parts) => parts.iter().all(|p| matches(p, record)),
        Expr::Or(parts) => parts.iter().any(|p| matches(p, record)),
        Expr::Not(inner) => !matches(inner, record),
        Expr::Clause { field, value } => {
            // The bodies of audit records are searched by their words only.
            if let FieldRef::Attribute(path) = field
                && k8saudit::attr::words_only(&record.scope_name, path)
            {
                return false;
            }
            if let QValue::Term(t) = value
                && matches!(field, FieldRef::Attribute(_) | FieldRef::Resource(_))
                && let Some(prefix) = query::values::cidr_prefix(t)
            {
                return prefix.is_ok_and(|p| cidr_matches(record, field, &p));
            }
            if let (FieldRef::SeverityText, QValue::Term(t) | QValue::Phrase(t)) = (field, value)
                && let Some((lo, hi)) = query::values::level_range(t)
                && (lo..=hi).contains(&i64::from(record.severity_number))
            {
                return true;
            }
            let values = field_values(record, field);
            match value {
                QValue::Term(t) | QValue::Phrase(t) => {
                    values.iter().any(|v| term_matches(v, t, false))
                }
                QValue::Prefix(p) => values.iter().any(|v| term_matches(v, p, true)),
                QValue::Range { lower, upper } => values.iter().any(|v| in_range(v, lower, upper)),
            }
        }
    }
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn condition_holds(condition: &Condition, record: &LogRecord) -> bool {
    let field = query::parse::field_ref(&condition.field).expect("validated field");
    let values = field_values(record, &field);
    let present = values
        .iter()
        .any(|v| !matches!(v, FieldValue::Json(Value::Null)));
    let as_json = |v: &FieldValue| -> Value {
        match v {
            FieldValue::Json(j) => (*j).clone(),
            FieldValue::Number(n) => serde_json::json!(n),
            FieldValue::Text(s) | FieldValue::Keyword(s) => Value::String((*s).to_string()),
        }
    };
    let any = |f: &dyn Fn(&FieldValue) -> bool| values.iter().any(f);
    match &condition.op {
        Op::Exists(wanted) => present == *wanted,
        Op::Equals(expected) => any(&|v| json_equal(&as_json(v), expected)),
        Op::In(options) => any(&|v| options.iter().any(|o| json_equal(&as_json(v), o))),
        Op::Prefix(p) => any(&|v| v.as_string().is_some_and(|s| s.starts_with(p.as_str()))),
        Op::Contains(p) => any(&|v| v.as_string().is_some_and(|s| s.contains(p.as_str()))),
        Op::Cidr(net) => any(&|v| {
            v.as_string()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| net.contains(&ip))
        }),
        Op::Gt(x) => any(&|v| v.as_number().is_some_and(|n| n > *x)),
        Op::Gte(x) => any(&|v| v.as_number().is_some_and(|n| n >= *x)),
        Op::Lt(x) => any(&|v| v.as_number().is_some_and(|n| n < *x)),
        Op::Lte(x) => any(&|v| v.as_number().is_some_and(|n| n <= *x)),
    }
}

/// Whether a record satisfies a selector (query and every condition).
pub fn selects(selector: &Selector, record: &LogRecord) -> bool {
    selector.query.as_ref().is_none_or(|q| matches(q, record))
        && selector
            .conditions
            .iter()
            .all(|c| condition_holds(c, record))
}

/// The value of a group-by field in a record, as a label value ("" when absent).
pub fn group_value(record: &LogRecord, field: &str) -> String {
    query::parse::field_ref(field)
        .map(|f| field_values(record, &f))
        .and_then(|values| values.iter().find_map(FieldValue::as_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Cidr;
    use chrono::Utc;
    use model::TenantId;
    use serde_json::json;

    fn rec(body: &str, attributes: Value) -> LogRecord {
        LogRecord {
            tenant_id: TenantId(uuid::Uuid::nil()),
            time: Utc::now(),
            observed_time: Utc::now(),
            severity_number: 13,
            severity_text: "WARN".into(),
            body: body.into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            resource: json!({"service.name": "auth"})
                .as_object()
                .cloned()
                .unwrap()
                .into(),
            scope_name: "s".into(),
            scope_version: String::new(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            flags: 0,
        }
    }

    fn check(q: &str, record: &LogRecord, expected: bool) {
        let expr = query::parse::parse(q).unwrap();
        assert_eq!(matches(&expr, record), expected, "{q}");
    }

    #[test]
    fn query_semantics_mirror_the_index() {
        let r = rec(
            "Failed login for root from 10.0.0.1",
            json!({"user.name": "root", "http": {"status_code": 401}, "tags": ["a", "b"], "ok": false, "ratio": 0.5}),
        );
        check("failed", &r, true);
        check("FAILED LOGIN", &r, true);
        check("\"login failed\"", &r, false);
        check("body:\"failed login\"", &r, true);
        check("attributes.user.name:root", &r, true);
        check("attributes.user.name:ROOT", &r, false);
        check("attributes_text.user.name:ROOT", &r, true);
        check("attributes.user.name:alice", &r, false);
        check("attributes.http.status_code:401", &r, true);
        check("attributes.http.status_code:>=400", &r, true);
        check("attributes.http.status_code:[200 TO 299]", &r, false);
        check("attributes.tags:b", &r, true);
        check("attributes.ok:false", &r, true);
        check("attributes.ratio:<1", &r, true);
        check("resource.service.name:auth", &r, true);
        check("severity_number:>=13 AND severity_text:warn", &r, true);
        check("NOT root", &r, false);
        check("roo*", &r, true);
        check("attributes.user.name:ro*", &r, true);
        check("attributes.user.name:RO*", &r, false);
        check("trace_id:0AF7651916CD43DD8448EB211C80319C", &r, true);
        check("10.0.0.1", &r, true);
        check("alice OR (root AND login)", &r, true);
    }

    #[test]
    fn conditions() {
        let r = rec(
            "x",
            json!({"user.name": "system:serviceaccount:kube-system:default", "code": 403, "ip": "10.1.2.3", "ip6": "2001:db8::1"}),
        );
        let cond = |field: &str, op: Op| Condition {
            field: field.into(),
            op,
        };
        let holds = |c: Condition| condition_holds(&c, &r);
        assert!(holds(cond(
            "attributes.user.name",
            Op::Prefix("system:serviceaccount:".into())
        )));
        assert!(holds(cond(
            "attributes.user.name",
            Op::Contains("kube-system".into())
        )));
        assert!(!holds(cond(
            "attributes.user.name",
            Op::Equals(json!("root"))
        )));
        assert!(holds(cond(
            "attributes.code",
            Op::In(vec![json!(401), json!(403)])
        )));
        assert!(holds(cond("attributes.code", Op::Gte(403.0))));
        assert!(!holds(cond("attributes.code", Op::Gt(403.0))));
        assert!(holds(cond("attributes.code", Op::Lt(500.0))));
        assert!(holds(cond(
            "attributes.ip",
            Op::Cidr(Cidr::parse("10.0.0.0/8").unwrap())
        )));
        assert!(!holds(cond(
            "attributes.ip",
            Op::Cidr(Cidr::parse("192.168.0.0/16").unwrap())
        )));
        assert!(holds(cond(
            "attributes.ip6",
            Op::Cidr(Cidr::parse("2001:db8::/32").unwrap())
        )));
        assert!(holds(cond("attributes.missing", Op::Exists(false))));
        assert!(holds(cond("attributes.code", Op::Exists(true))));
        assert!(holds(cond("severity_number", Op::Equals(json!(13)))));
        assert_eq!(group_value(&r, "attributes.code"), "403");
        assert_eq!(group_value(&r, "attributes.none"), "");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}
