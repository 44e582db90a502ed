//! Routing: which channels an alert pages, how long the first page waits, and how
//! often an unacknowledged firing alert pages again.
//!
//! A tenant without a routing tree pages every channel at once, once per event. With
//! one, like Alertmanager's: the root route matches every alert; its `routes` are tried
//! in order, an alert goes to the first child whose `matchers` all match (and on to
//! the next ones when that child says `continue: true`), recursively; when no child
//! matches, the route itself takes it. Settings not given on a route are inherited
//! from its parent. `group_wait` delays the first page of an alert (critical alerts
//! never wait); `repeat_interval` pages a firing, unacknowledged alert again.
//!
//! `group_by` (label names) makes one page of the alerts that share those labels'
//! values on a channel: when the first page of a group is due it carries every other
//! pending page of the group; later alerts of the group wait until `group_interval`
//! (default 5m) has passed since the group's last page. PagerDuty channels are never
//! grouped: each alert keeps its own `dedup_key` (PagerDuty groups into incidents
//! itself).

use std::collections::BTreeMap;
use std::time::Duration;

use alerting::silence::Matcher;
use serde::{Deserialize, Serialize};

/// The routing document (`PUT /api/v1/routing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    pub route: Route,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// All must match (`label`, `op` one of `=`, `!=`, `=~`, `!~`, `value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Matcher>,
    /// Channel names; inherited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Keep trying the following sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// How long the first page of an alert waits (`30s`); critical alerts never wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// Page a firing, unacknowledged alert again after this long (`4h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Alerts sharing these labels' values make one page; inherited when absent,
    /// `[]` turns grouping off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// How long after a group's page its next alerts wait (`5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub channel: String,
    pub group_wait: Duration,
    pub repeat_interval: Option<Duration>,
    /// Empty: every alert is paged alone.
    pub group_by: Vec<String>,
    pub group_interval: Duration,
}

/// `group_interval` when a tree does not say.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// Most labels in a `group_by`, and alerts carried by one grouped page.
pub const MAX_GROUP_BY: usize = 16;
pub const MAX_GROUP_SIZE: i64 = 100;

fn duration(field: &str, text: &Option<String>) -> Result<Option<Duration>, String> {
    text.as_deref()
        .map(|t| {
            query::time::parse_duration(t)
                .ok()
                .and_then(|d| d.to_std().ok())
                .ok_or_else(|| format!("{field}: {t:?} is not a duration like 30s or 4h"))
        })
        .transpose()
}

/// The smallest `repeat_interval` allowed (a page storm guard).
pub const MIN_REPEAT: Duration = Duration::from_secs(1);
/// Deepest route nesting.
pub const MAX_DEPTH: usize = 8;
/// Most routes in a tree, and matchers on one route.
pub const MAX_ROUTES: usize = 256;
pub const MAX_MATCHERS: usize = 32;

impl Routing {
    /// Parse YAML or JSON and validate against the tenant's channel names.
    pub fn parse(text: &str, channels: &[String]) -> Result<Routing, String> {
        let routing: Routing = serde_saphyr::from_str(text)
            .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
        routing.validate(channels)?;
        Ok(routing)
    }

    pub fn validate(&self, channels: &[String]) -> Result<(), String> {
        fn walk(
            route: &Route,
            path: &str,
            depth: usize,
            channels: &[String],
        ) -> Result<(), String> {
            if depth > MAX_DEPTH {
                return Err(format!("{path}: routes nest deeper than {MAX_DEPTH}"));
            }
            if route.matchers.len() > MAX_MATCHERS {
                return Err(format!("{path}.matchers: at most {MAX_MATCHERS}"));
            }
            for m in &route.matchers {
                m.validate().map_err(|e| format!("{path}.matchers: {e}"))?;
            }
            for name in route.channels.iter().flatten() {
                if !channels.contains(name) {
                    return Err(format!("{path}.channels: no channel named {name:?}"));
                }
            }
            duration(&format!("{path}.group_wait"), &route.group_wait)?;
            duration(&format!("{path}.group_interval"), &route.group_interval)?;
            if let Some(by) = &route.group_by {
                if by.len() > MAX_GROUP_BY {
                    return Err(format!("{path}.group_by: at most {MAX_GROUP_BY} labels"));
                }
                if let Some(bad) = by.iter().find(|l| l.is_empty() || l.len() > 256) {
                    return Err(format!("{path}.group_by: {bad:?} is not a label name"));
                }
            }
            if let Some(d) = duration(&format!("{path}.repeat_interval"), &route.repeat_interval)?
                && d < MIN_REPEAT
            {
                return Err(format!("{path}.repeat_interval: at least 1s"));
            }
            for (i, child) in route.routes.iter().enumerate() {
                walk(child, &format!("{path}.routes[{i}]"), depth + 1, channels)?;
            }
            Ok(())
        }
        fn count(route: &Route) -> usize {
            1 + route.routes.iter().map(count).sum::<usize>()
        }
        if count(&self.route) > MAX_ROUTES {
            return Err(format!("route: at most {MAX_ROUTES} routes"));
        }
        if !self.route.matchers.is_empty() {
            return Err("route.matchers: the root route matches every alert".into());
        }
        if self.route.channels.as_ref().is_none_or(Vec::is_empty) {
            return Err("route.channels: the root route needs at least one channel".into());
        }
        walk(&self.route, "route", 0, channels)
    }

    /// Where an alert with `labels` (including `severity`) goes.
    pub fn targets(&self, labels: &BTreeMap<String, String>) -> Vec<Target> {
        #[derive(Clone)]
        struct Inherited {
            channels: Vec<String>,
            wait: Duration,
            repeat: Option<Duration>,
            group_by: Vec<String>,
            group_interval: Duration,
        }
        fn settle(route: &Route, parent: &Inherited) -> Inherited {
            Inherited {
                channels: route
                    .channels
                    .clone()
                    .unwrap_or_else(|| parent.channels.clone()),
                wait: duration("", &route.group_wait)
                    .ok()
                    .flatten()
                    .unwrap_or(parent.wait),
                repeat: duration("", &route.repeat_interval)
                    .ok()
                    .flatten()
                    .or(parent.repeat),
                group_by: route
                    .group_by
                    .clone()
                    .unwrap_or_else(|| parent.group_by.clone()),
                group_interval: duration("", &route.group_interval)
                    .ok()
                    .flatten()
                    .unwrap_or(parent.group_interval),
            }
        }
        fn walk(
            route: &Route,
            settings: &Inherited,
            labels: &BTreeMap<String, String>,
            out: &mut Vec<Target>,
        ) {
            let mut matched_child = false;
            for child in &route.routes {
                if child.matchers.iter().all(|m| m.matches(labels)) {
                    matched_child = true;
                    walk(child, &settle(child, settings), labels, out);
                    if !child.continue_ {
                        break;
                    }
                }
            }
            if !matched_child {
                for channel in &settings.channels {
                    if !out.iter().any(|t| &t.channel == channel) {
                        out.push(Target {
                            channel: channel.clone(),
                            group_wait: settings.wait,
                            repeat_interval: settings.repeat,
                            group_by: settings.group_by.clone(),
                            group_interval: settings.group_interval,
                        });
                    }
                }
            }
        }
        let root = settle(
            &self.route,
            &Inherited {
                channels: Vec::new(),
                wait: Duration::ZERO,
                repeat: None,
                group_by: Vec::new(),
                group_interval: DEFAULT_GROUP_INTERVAL,
            },
        );
        let mut out = Vec::new();
        walk(&self.route, &root, labels, &mut out);
        if labels.get("severity").map(String::as_str) == Some("critical") {
            for t in &mut out {
                t.group_wait = Duration::ZERO;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = r#"
route:
  channels: [slack]
  group_wait: 30s
  routes:
    - matchers: [{label: severity, op: "=~", value: "critical|high"}]
      channels: [pagerduty]
      repeat_interval: 4h
      continue: true
    - matchers: [{label: rule, op: "=~", value: "K8S-.*"}]
      channels: [security]
"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(targets: &[Target]) -> Vec<&str> {
        targets.iter().map(|t| t.channel.as_str()).collect()
    }

    #[test]
    fn alerts_follow_the_tree_with_continue_and_inheritance() {
        let channels: Vec<String> = ["slack", "pagerduty", "security"]
            .map(String::from)
            .to_vec();
        let routing = Routing::parse(TREE, &channels).unwrap();
        let high_k8s = routing.targets(&labels(&[("severity", "high"), ("rule", "K8S-001")]));
        assert_eq!(names(&high_k8s), ["pagerduty", "security"]);
        assert_eq!(
            high_k8s[0].repeat_interval,
            Some(Duration::from_secs(4 * 3600))
        );
        assert_eq!(high_k8s[1].group_wait, Duration::from_secs(30), "inherited");
        let low = routing.targets(&labels(&[("severity", "low"), ("rule", "custom")]));
        assert_eq!(names(&low), ["slack"]);
        let critical = routing.targets(&labels(&[("severity", "critical"), ("rule", "custom")]));
        assert_eq!(names(&critical), ["pagerduty"]);
        assert_eq!(
            critical[0].group_wait,
            Duration::ZERO,
            "critical never waits"
        );
        assert!(critical[0].group_by.is_empty(), "no grouping unless asked");
        assert_eq!(critical[0].group_interval, DEFAULT_GROUP_INTERVAL);
    }

    #[test]
    fn group_settings_inherit_and_an_empty_list_turns_grouping_off() {
        let channels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let tree = r#"
route:
  channels: [a]
  group_by: [namespace]
  group_interval: 1m
  routes:
    - matchers: [{label: team, op: "=", value: db}]
      channels: [b]
    - matchers: [{label: team, op: "=", value: web}]
      group_by: []
"#;
        let routing = Routing::parse(tree, &channels).unwrap();
        let db = routing.targets(&labels(&[("team", "db")]));
        assert_eq!(db[0].group_by, ["namespace"]);
        assert_eq!(db[0].group_interval, Duration::from_secs(60));
        let web = routing.targets(&labels(&[("team", "web")]));
        assert!(web[0].group_by.is_empty());
        let too_many = format!(
            "route: {{channels: [a], group_by: [{}]}}",
            (0..=MAX_GROUP_BY)
                .map(|i| format!("l{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(
            Routing::parse(&too_many, &channels)
                .unwrap_err()
                .contains("route.group_by")
        );
        assert!(
            Routing::parse("route: {channels: [a], group_interval: x}", &channels)
                .unwrap_err()
                .contains("route.group_interval")
        );
    }

    #[test]
    fn bad_trees_name_the_place() {
        let channels = vec!["slack".to_string()];
        for (tree, fragment) in [
            (
                "route: {channels: [nope]}",
                "route.channels: no channel named \"nope\"",
            ),
            (
                "route: {channels: []}",
                "route.channels: the root route needs",
            ),
            (
                "route: {channels: [slack], routes: [{matchers: [{label: a, op: '=~', value: '('}]}]}",
                "route.routes[0].matchers",
            ),
            (
                "route: {channels: [slack], group_wait: soon}",
                "route.group_wait",
            ),
            (
                "route: {channels: [slack], repeat_interval: 0s}",
                "route.repeat_interval",
            ),
            (
                "route: {channels: [slack], matchers: [{label: a, op: '=', value: b}]}",
                "route.matchers",
            ),
            ("route: {channels: [slack], extra: 1}", "unknown field"),
        ] {
            let err = Routing::parse(tree, &channels).unwrap_err();
            assert!(err.contains(fragment), "{tree}: {err}");
        }
    }
}
