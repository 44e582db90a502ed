//! Tunings: a tenant switches a shipped rule off or adds exceptions, without copying it.

use serde::{Deserialize, Serialize};

use super::API_VERSION;
use super::compile::{RuleError, line_of, parse_rules};
use super::compiled::Rule;

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

/// A tuning document parsed on its own (no check against the shipped rules).
pub fn parse_tuning(text: &str) -> Result<TuningDoc, String> {
    serde_saphyr::from_str(text)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

/// A tuning as YAML (the form `is_tuning` recognises), every string single-quoted.
pub fn tuning_yaml(doc: &TuningDoc) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut out = format!(
        "apiVersion: {}\ntunes: {}\n",
        quote(&doc.api_version),
        quote(&doc.tunes)
    );
    if let Some(enabled) = doc.enabled {
        out.push_str(&format!("enabled: {enabled}\n"));
    }
    if !doc.exceptions.is_empty() {
        out.push_str("exceptions:\n");
        for e in &doc.exceptions {
            out.push_str(&format!("  - {}\n", quote(e)));
        }
    }
    out
}

#[cfg(test)]
mod yaml_tests {
    use super::*;

    #[test]
    fn a_tuning_round_trips_through_its_yaml() {
        let doc = TuningDoc {
            api_version: API_VERSION.into(),
            tunes: "K8S-001".into(),
            enabled: Some(false),
            exceptions: vec!["attributes.user.name:\"it's ok\"".into()],
        };
        let text = tuning_yaml(&doc);
        assert!(is_tuning(&text), "{text}");
        assert_eq!(parse_tuning(&text).unwrap(), doc);
    }
}
