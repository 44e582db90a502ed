//! `palisade rules test`: run the test cases a rule file carries, offline, on a
//! simulated clock (in the spirit of `promtool test rules`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use model::{LogRecord, TenantId};

use crate::engine::{SequenceState, match_event, threshold_groups};
use crate::rule::{Rule, Spec, TestCase};

/// The simulated start time of every test case.
pub fn test_epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub rule: String,
    pub case: String,
    pub passed: bool,
    pub detail: String,
}

/// A fired alert in a test run: labels and evidence count.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub labels: BTreeMap<String, String>,
    pub count: u64,
}

/// A test case's events as ingest would have stored them (normalised, in time order,
/// stages of one request marked), with their sequence numbers.
pub fn case_events(case: &TestCase) -> Result<Vec<(i64, LogRecord)>, String> {
    let start = test_epoch();
    let mut out = Vec::new();
    for (i, e) in case.events.iter().enumerate() {
        let offset = match &e.at {
            Some(text) => {
                query::time::parse_duration(text).map_err(|m| format!("event {i}: at: {m}"))?
            }
            None => chrono::Duration::seconds(i as i64),
        };
        let time = start + offset;
        if let Some(audit) = &e.audit {
            let mut record = audit_record(audit, i, time)?;
            record.attributes.extend(e.attributes.clone());
            out.push((i as i64 + 1, record));
            continue;
        }
        out.push((
            i as i64 + 1,
            LogRecord {
                tenant_id: TenantId(uuid::Uuid::nil()),
                time,
                observed_time: time,
                severity_number: e.severity_number,
                severity_text: e.severity_text.clone(),
                body: e.body.clone(),
                attributes: e.attributes.clone(),
                resource: e.resource.clone().into(),
                scope_name: e.scope_name.clone(),
                scope_version: String::new(),
                trace_id: None,
                span_id: None,
                flags: 0,
            },
        ));
    }
    out.sort_by_key(|(seq, r)| (r.time, *seq));
    // Stages of one Kubernetes request are marked as the writer marks them.
    let mut inventory = k8saudit::inventory::Inventory::default();
    for (_, record) in &mut out {
        inventory.enrich(record);
    }
    Ok(out)
}

/// What the search index holds of `events`: one line per Kubernetes request (the
/// richest so far), everything else as is. Threshold rules count over this.
fn indexed_view(events: &[(i64, LogRecord)]) -> Vec<(i64, &LogRecord)> {
    let mut out: Vec<Option<(i64, &LogRecord)>> = Vec::new();
    let mut latest: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (seq, record) in events {
        let mark = record
            .attributes
            .get(k8saudit::attr::AUDIT_RECORD)
            .and_then(serde_json::Value::as_str);
        if mark == Some("duplicate") {
            continue;
        }
        if let Some(key) = k8saudit::inventory::index_key(record) {
            if mark == Some("update")
                && let Some(previous) = latest.get(&key)
            {
                out[*previous] = None;
            }
            latest.insert(key, out.len());
        }
        out.push(Some((*seq, record)));
    }
    out.into_iter().flatten().collect()
}

/// Normalise a test's audit event as ingest would, filling in what a test need not
/// spell out: kind, apiVersion, auditID, stage (`ResponseComplete`), level, the
/// timestamps (the event's test time) and a 200 response.
fn audit_record(
    audit: &serde_json::Value,
    i: usize,
    time: DateTime<Utc>,
) -> Result<LogRecord, String> {
    use serde_json::{Value, json};
    let mut event = audit.clone();
    let Some(map) = event.as_object_mut() else {
        return Err(format!("event {i}: audit must be a mapping"));
    };
    let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let defaults = [
        ("kind", json!("Event")),
        ("apiVersion", json!("audit.k8s.io/v1")),
        ("auditID", json!(format!("test-{i}"))),
        ("stage", json!("ResponseComplete")),
        ("level", json!("RequestResponse")),
        ("requestReceivedTimestamp", json!(stamp)),
        ("stageTimestamp", json!(stamp)),
        ("sourceIPs", json!(["192.0.2.10"])),
    ];
    for (k, v) in defaults {
        map.entry(k).or_insert(v);
    }
    if map.get("stage").and_then(Value::as_str) != Some("RequestReceived") {
        map.entry("responseStatus").or_insert(json!({"code": 200}));
    }
    k8saudit::to_record(
        event,
        TenantId(uuid::Uuid::nil()),
        "test",
        time,
        Default::default(),
    )
    .map_err(|m| format!("event {i}: {}", m.0))
}

/// Run a rule over a list of events and return what fired, by fingerprint.
pub fn fire(rule: &Rule, events: &[(i64, LogRecord)]) -> BTreeMap<String, Fired> {
    let mut fired: BTreeMap<String, Fired> = BTreeMap::new();
    let mut add = |fp: String, labels: BTreeMap<String, String>, count: u64, replace: bool| {
        let entry = fired.entry(fp).or_insert(Fired { labels, count: 0 });
        entry.count = if replace {
            entry.count.max(count)
        } else {
            entry.count + count
        };
    };
    match &rule.spec {
        Spec::Match => {
            for (seq, record) in events {
                // Through the rule's gates, as the event follower runs it: a case that
                // should fire fails if a gate wrongly closes.
                if crate::gate::GateView::new(record).open(&rule.gates)
                    && let Some(hit) = match_event(rule, record, *seq)
                {
                    add(hit.fingerprint, hit.labels, hit.count, false);
                }
            }
        }
        Spec::Sequence { .. } => {
            let mut state = SequenceState::default();
            for (seq, record) in events {
                if let Some(hit) = state.on_event(rule, record, *seq) {
                    add(hit.fingerprint, hit.labels, hit.count, false);
                }
            }
        }
        // Compile refuses test cases on metric rules (they replay log events).
        Spec::Metric { .. } => {}
        Spec::NewTerms { .. } => {
            for hit in crate::engine::new_terms_replay(rule, events.iter().map(|(s, r)| (*s, r))) {
                add(hit.fingerprint, hit.labels, hit.count, false);
            }
        }
        Spec::Threshold { .. } => {
            let refs = indexed_view(events);
            // Evaluate at every event's time, as a scheduler with a short interval would.
            for (_, record) in events {
                for group in threshold_groups(rule, &refs, record.time) {
                    if group.holds {
                        add(
                            group.hit.fingerprint,
                            group.hit.labels,
                            group.value as u64,
                            true,
                        );
                    }
                }
            }
        }
    }
    fired
}

/// Run every test case of a rule.
pub fn run_rule_tests(rule: &Rule) -> Vec<CaseResult> {
    rule.doc
        .tests
        .iter()
        .map(|case| {
            let result = |passed: bool, detail: String| CaseResult {
                rule: rule.id().to_string(),
                case: case.name.clone(),
                passed,
                detail,
            };
            let events = match case_events(case) {
                Ok(e) => e,
                Err(m) => return result(false, m),
            };
            let fired: Vec<Fired> = fire(rule, &events).into_values().collect();
            let mut unmatched: Vec<&Fired> = fired.iter().collect();
            for (i, expected) in case.expect.iter().enumerate() {
                let found = unmatched.iter().position(|f| {
                    expected.labels.iter().all(|(k, v)| f.labels.get(k) == Some(v)) && expected.count.is_none_or(|c| c == f.count)
                });
                match found {
                    Some(idx) => {
                        unmatched.remove(idx);
                    }
                    None => {
                        return result(false, format!("expected alert {i} ({:?}, count {:?}) did not fire; fired: {fired:?}", expected.labels, expected.count));
                    }
                }
            }
            if !unmatched.is_empty() {
                return result(false, format!("unexpected alerts fired: {unmatched:?}"));
            }
            result(true, format!("{} alert(s) as expected", case.expect.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_rules;

    fn run(yaml: &str) -> Vec<CaseResult> {
        parse_rules(yaml)
            .unwrap()
            .iter()
            .flat_map(run_rule_tests)
            .collect()
    }

    fn assert_all_pass(yaml: &str) {
        for r in run(yaml) {
            assert!(r.passed, "{}: {}: {}", r.rule, r.case, r.detail);
        }
    }

    #[test]
    fn match_rules_group_and_honour_exceptions() {
        assert_all_pass(
            r#"
apiVersion: palisade/v1
id: root-login
title: Root login
severity: critical
kind: match
query: 'attributes.user.name:root AND body:login'
group_by: [attributes.source.ip]
exceptions: ['attributes.source.ip:10.0.0.5']
tests:
  - name: two sources, one excepted, no duplicates
    events:
      - {body: "login ok", attributes: {user.name: root, source.ip: 192.0.2.1}}
      - {body: "login ok", attributes: {user.name: root, source.ip: 192.0.2.1}}
      - {body: "login ok", attributes: {user.name: root, source.ip: 198.51.100.7}}
      - {body: "login ok", attributes: {user.name: root, source.ip: 10.0.0.5}}
    expect:
      - {labels: {attributes.source.ip: 192.0.2.1, rule: root-login, severity: critical}, count: 2}
      - {labels: {attributes.source.ip: 198.51.100.7}, count: 1}
  - name: near misses
    events:
      - {body: "login ok", attributes: {user.name: alice}}
      - {body: "logout", attributes: {user.name: root}}
    expect: []
"#,
        );
    }

    #[test]
    fn thresholds_at_the_boundary_and_sliding_windows() {
        assert_all_pass(
            r#"
apiVersion: palisade/v1
id: failed-login-burst
title: Repeated failed logins for one user
severity: high
kind: threshold
query: 'body:"failed login"'
group_by: [attributes.user.name]
window: 5m
interval: 10s
threshold: 5
tests:
  - name: four is below, five fires
    events:
      - {at: 0s, body: failed login, attributes: {user.name: alice}}
      - {at: 10s, body: failed login, attributes: {user.name: alice}}
      - {at: 20s, body: failed login, attributes: {user.name: alice}}
      - {at: 30s, body: failed login, attributes: {user.name: alice}}
      - {at: 40s, body: failed login, attributes: {user.name: bob}}
      - {at: 50s, body: failed login, attributes: {user.name: bob}}
    expect: []
  - name: fifth within the window fires for that user only
    events:
      - {at: 0s, body: failed login, attributes: {user.name: alice}}
      - {at: 60s, body: failed login, attributes: {user.name: alice}}
      - {at: 120s, body: failed login, attributes: {user.name: alice}}
      - {at: 180s, body: failed login, attributes: {user.name: alice}}
      - {at: 240s, body: failed login, attributes: {user.name: alice}}
      - {at: 240s, body: failed login, attributes: {user.name: bob}}
    expect:
      - {labels: {attributes.user.name: alice}, count: 5}
  - name: the window slides, old events drop out
    events:
      - {at: 0s, body: failed login, attributes: {user.name: carol}}
      - {at: 100s, body: failed login, attributes: {user.name: carol}}
      - {at: 200s, body: failed login, attributes: {user.name: carol}}
      - {at: 300s, body: failed login, attributes: {user.name: carol}}
      - {at: 400s, body: failed login, attributes: {user.name: carol}}
    expect: []
"#,
        );
    }

    #[test]
    fn distinct_counts() {
        assert_all_pass(
            r#"
apiVersion: palisade/v1
id: spray
title: Password spray
severity: high
kind: threshold
query: 'body:"failed login"'
group_by: [attributes.source.ip]
distinct: attributes.user.name
window: 10m
interval: 30s
threshold: 3
tests:
  - name: three distinct users from one address
    events:
      - {body: failed login, attributes: {user.name: a, source.ip: 192.0.2.9}}
      - {body: failed login, attributes: {user.name: a, source.ip: 192.0.2.9}}
      - {body: failed login, attributes: {user.name: b, source.ip: 192.0.2.9}}
      - {body: failed login, attributes: {user.name: c, source.ip: 192.0.2.9}}
      - {body: failed login, attributes: {user.name: a, source.ip: 192.0.2.10}}
    expect:
      - {labels: {attributes.source.ip: 192.0.2.9}, count: 3}
"#,
        );
    }

    #[test]
    fn sequences_complete_in_order_and_expire() {
        assert_all_pass(
            r#"
apiVersion: palisade/v1
id: escalate-then-exec
title: Binding to cluster-admin, then exec, by the same identity
severity: critical
kind: sequence
group_by: [attributes.user.name]
within: 10m
steps:
  - name: binding
    query: 'body:clusterrolebinding AND attributes.role:cluster-admin'
  - name: exec
    conditions:
      - {field: attributes.subresource, equals: exec}
tests:
  - name: completes for the same identity
    events:
      - {at: 0s, body: create clusterrolebinding, attributes: {user.name: mallory, role: cluster-admin}}
      - {at: 60s, body: exec, attributes: {user.name: eve, subresource: exec}}
      - {at: 120s, body: exec, attributes: {user.name: mallory, subresource: exec}}
    expect:
      - {labels: {attributes.user.name: mallory}, count: 2}
  - name: wrong order does not complete
    events:
      - {at: 0s, body: exec, attributes: {user.name: mallory, subresource: exec}}
      - {at: 60s, body: create clusterrolebinding, attributes: {user.name: mallory, role: cluster-admin}}
    expect: []
  - name: expires after within
    events:
      - {at: 0s, body: create clusterrolebinding, attributes: {user.name: mallory, role: cluster-admin}}
      - {at: 11m, body: exec, attributes: {user.name: mallory, subresource: exec}}
    expect: []
"#,
        );
    }

    #[test]
    fn a_failing_expectation_is_reported() {
        let results = run(r#"
apiVersion: palisade/v1
id: r
title: R
severity: low
kind: match
query: boom
tests:
  - name: wrong expectation
    events: [{body: boom}]
    expect: []
"#);
        assert!(!results[0].passed);
        assert!(
            results[0].detail.contains("unexpected"),
            "{}",
            results[0].detail
        );
    }
}
