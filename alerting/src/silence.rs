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

/// A maintenance window: the silence is active for `duration` from each occurrence of
/// a cron `schedule` (UTC), within its validity.
#[derive(Debug, Clone)]
pub struct Recurrence {
    pub schedule: croner::Cron,
    pub duration: std::time::Duration,
}

impl Recurrence {
    pub fn parse(schedule: &str, duration: std::time::Duration) -> Result<Recurrence, String> {
        let schedule: croner::Cron = schedule
            .parse()
            .map_err(|e| format!("schedule {schedule:?} is not a cron expression: {e}"))?;
        if duration.is_zero() {
            return Err("duration must be positive".into());
        }
        Ok(Recurrence { schedule, duration })
    }

    /// Whether `now` falls in a window that started at an occurrence.
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        match self.schedule.find_previous_occurrence(&now, true) {
            Ok(start) => {
                now < start + chrono::Duration::from_std(self.duration).unwrap_or_default()
            }
            Err(_) => false,
        }
    }
}

/// Whether a silence with `matchers`, valid from `starts_at` to `ends_at` (and, for a
/// maintenance window, only inside its recurrence), silences `labels` at `now`. All
/// matchers must match.
pub fn silences(
    matchers: &[Matcher],
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    recurrence: Option<&Recurrence>,
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> bool {
    starts_at <= now
        && now < ends_at
        && recurrence.is_none_or(|r| r.covers(now))
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
    fn maintenance_windows_recur() {
        let labels: BTreeMap<String, String> = [("rule".to_string(), "r".to_string())].into();
        let matchers = [m("rule", MatchOp::Equal, "r")];
        // Saturdays 02:00-04:00 UTC.
        let window =
            Recurrence::parse("0 2 * * 6", std::time::Duration::from_secs(2 * 3600)).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let (valid_from, valid_to) = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        let check = |now: &str| {
            silences(
                &matchers,
                valid_from,
                valid_to,
                Some(&window),
                &labels,
                at(now),
            )
        };
        assert!(
            check("2026-11-28T02:00:00Z"),
            "window opens on Saturday 02:00"
        );
        assert!(check("2026-11-28T03:59:59Z"));
        assert!(!check("2026-11-28T04:00:00Z"), "closes after the duration");
        assert!(!check("2026-11-27T03:00:00Z"), "not on Friday");
        assert!(check("2026-12-05T02:30:00Z"), "and again next week");
        assert!(
            !silences(
                &matchers,
                valid_from,
                at("2026-12-01T00:00:00Z"),
                Some(&window),
                &labels,
                at("2026-12-05T02:30:00Z")
            ),
            "not after the validity"
        );
        assert!(Recurrence::parse("every saturday", std::time::Duration::from_secs(60)).is_err());
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
            None,
            &labels,
            now
        ));
        assert!(silences(
            &[m("attributes.user.name", MatchOp::Regex, "al.*")],
            now - hour,
            now + hour,
            None,
            &labels,
            now
        ));
        assert!(
            !silences(
                &[m("attributes.user.name", MatchOp::Regex, "al")],
                now - hour,
                now + hour,
                None,
                &labels,
                now
            ),
            "anchored"
        );
        assert!(!silences(
            &[m("rule", MatchOp::NotEqual, "root-login")],
            now - hour,
            now + hour,
            None,
            &labels,
            now
        ));
        assert!(silences(
            &[m("severity", MatchOp::NotRegex, "crit.*")],
            now - hour,
            now + hour,
            None,
            &labels,
            now
        ));
        assert!(
            !silences(
                &[m("rule", MatchOp::Equal, "root-login")],
                now + hour,
                now + hour * 2,
                None,
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
                None,
                &labels,
                now
            ),
            "expired"
        );
        assert!(m("x", MatchOp::Regex, "(").validate().is_err());
    }
}
