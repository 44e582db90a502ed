//! Silences: label matchers (`=`, `!=`, `=~`, `!~`) over a time range.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Validate (compile the regex, anchored like Alertmanager's).
    pub fn validate(&self) -> Result<(), String> {
        if self.label.is_empty() {
            return Err("matcher label must not be empty".into());
        }
        if matches!(self.op, MatchOp::Regex | MatchOp::NotRegex) {
            regex::Regex::new(&format!("^(?:{})$", self.value))
                .map_err(|e| format!("matcher regex {:?}: {e}", self.value))?;
        }
        Ok(())
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.label).map(String::as_str).unwrap_or("");
        let regex = || {
            regex::Regex::new(&format!("^(?:{})$", self.value))
                .map(|r| r.is_match(value))
                .unwrap_or(false)
        };
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => regex(),
            MatchOp::NotRegex => !regex(),
        }
    }
}

/// Whether a silence with `matchers` active from `starts_at` to `ends_at` silences an
/// alert with `labels` at `now`. All matchers must match.
pub fn silences(
    matchers: &[Matcher],
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> bool {
    starts_at <= now
        && now < ends_at
        && !matchers.is_empty()
        && matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(label: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher {
            label: label.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn matchers_and_time_window() {
        let labels: BTreeMap<String, String> = [
            ("rule".to_string(), "root-login".to_string()),
            ("attributes.user.name".to_string(), "alice".to_string()),
        ]
        .into();
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        assert!(silences(
            &[m("rule", MatchOp::Equal, "root-login")],
            now - hour,
            now + hour,
            &labels,
            now
        ));
        assert!(silences(
            &[m("attributes.user.name", MatchOp::Regex, "al.*")],
            now - hour,
            now + hour,
            &labels,
            now
        ));
        assert!(
            !silences(
                &[m("attributes.user.name", MatchOp::Regex, "al")],
                now - hour,
                now + hour,
                &labels,
                now
            ),
            "anchored"
        );
        assert!(!silences(
            &[m("rule", MatchOp::NotEqual, "root-login")],
            now - hour,
            now + hour,
            &labels,
            now
        ));
        assert!(silences(
            &[m("severity", MatchOp::NotRegex, "crit.*")],
            now - hour,
            now + hour,
            &labels,
            now
        ));
        assert!(
            !silences(
                &[m("rule", MatchOp::Equal, "root-login")],
                now + hour,
                now + hour * 2,
                &labels,
                now
            ),
            "not started"
        );
        assert!(
            !silences(
                &[m("rule", MatchOp::Equal, "root-login")],
                now - hour * 2,
                now - hour,
                &labels,
                now
            ),
            "expired"
        );
        assert!(m("x", MatchOp::Regex, "(").validate().is_err());
    }
}
