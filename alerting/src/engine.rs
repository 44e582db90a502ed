//! The three rule kinds as pure functions and state machines over events.
//!
//! Each produces [`Hit`]s: "the condition holds for this fingerprint at this time,
//! with this evidence". The alert lifecycle (`lifecycle`) turns hits and quiet
//! periods into alert transitions; the server persists both.

use k8saudit::attr;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use model::LogRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::eval::{group_value, matches, selects};
use crate::rule::{Rule, Spec};

/// The condition of a rule holds for one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub rule_id: String,
    pub fingerprint: String,
    /// Rule labels, `rule`, `severity`, and the group values.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub event_ids: Vec<i64>,
    pub count: u64,
    pub at: DateTime<Utc>,
    /// What the hit is about, for correlation signals: `entity.actor`,
    /// `k8s.client.ip`, `entity.namespace` from the group or the last event.
    pub entity: BTreeMap<String, String>,
}

/// The rule's severity, raised by the highest `escalate` entry the event matches.
pub fn severity_of(rule: &Rule, event: Option<&LogRecord>) -> crate::rule::Severity {
    let raised = event.and_then(|e| {
        rule.escalations
            .iter()
            .filter(|(query, _)| matches(query, e))
            .map(|(_, severity)| *severity)
            .max()
    });
    raised.map_or(rule.doc.severity, |s| s.max(rule.doc.severity))
}

/// Attributes that say what an alert is about, carried into its signal record
/// (`k8s.audit.id`, of the last event, becomes the signal's `alert.audit_id`).
pub const ENTITY_KEYS: [&str; 4] = [
    "entity.actor",
    attr::CLIENT_IP,
    "entity.namespace",
    attr::AUDIT_ID,
];

fn entity_of(
    group: &BTreeMap<String, String>,
    event: Option<&LogRecord>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ENTITY_KEYS {
        let from_group = group
            .get(&format!("attributes.{key}"))
            .filter(|v| !v.is_empty())
            .cloned();
        let from_event = event.map(|e| crate::eval::group_value(e, &format!("attributes.{key}")));
        if let Some(v) = from_group.or(from_event).filter(|v| !v.is_empty()) {
            out.insert(key.to_string(), v);
        }
    }
    out
}

/// Identity of an alert: the rule id and the group values.
pub fn fingerprint(rule_id: &str, group: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule_id.as_bytes());
    for (k, v) in group {
        hasher.update(b"\0");
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(v.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

fn group_of(rule: &Rule, record: &LogRecord) -> BTreeMap<String, String> {
    rule.group_by
        .iter()
        .map(|f| (f.clone(), group_value(record, f)))
        .collect()
}

fn excepted(rule: &Rule, record: &LogRecord) -> bool {
    rule.exceptions.iter().any(|e| matches(e, record))
}

fn hit(
    rule: &Rule,
    group: BTreeMap<String, String>,
    event: Option<&LogRecord>,
    event_ids: Vec<i64>,
    count: u64,
    at: DateTime<Utc>,
) -> Hit {
    let event_context = event.map(|e| {
        json!({
            "body": e.body, "attributes": e.attributes, "resource": e.resource,
            "severity_text": e.severity_text, "severity_number": e.severity_number,
            "time": e.time.to_rfc3339(),
        })
    });
    let entity = entity_of(&group, event);
    let mut hit = make_hit(
        rule,
        group,
        severity_of(rule, event),
        ("event", event_context.unwrap_or(serde_json::Value::Null)),
        json!(count),
        at,
    );
    hit.entity = entity;
    hit.event_ids = event_ids;
    hit.count = count;
    hit
}

/// Labels (rule labels, `rule`, `severity`, the group), annotations rendered with
/// `{rule, labels, group, count}` plus one extra context entry, fingerprint.
fn make_hit(
    rule: &Rule,
    group: BTreeMap<String, String>,
    severity: crate::rule::Severity,
    extra: (&str, serde_json::Value),
    count: serde_json::Value,
    at: DateTime<Utc>,
) -> Hit {
    let mut labels = rule.doc.labels.clone();
    labels.insert("rule".into(), rule.id().to_string());
    labels.insert("severity".into(), severity.as_str().to_string());
    labels.extend(group.clone());
    let mut context = json!({
        "rule": {"id": rule.id(), "title": rule.doc.title},
        "labels": labels,
        "group": group,
        "count": count,
    });
    context[extra.0] = extra.1;
    let mut annotations: BTreeMap<String, String> = rule
        .doc
        .annotations
        .iter()
        .map(|(k, t)| (k.clone(), crate::template::render(t, &context)))
        .collect();
    // Pages, incidents and the UI show `summary`: a rule without one gets its title
    // and what the alert is about (the non-empty group values).
    if annotations
        .get("summary")
        .is_none_or(|s| s.trim().is_empty())
        && !rule.doc.title.trim().is_empty()
    {
        let about: Vec<&str> = group
            .values()
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .collect();
        // Through the template engine, so the group values (event content) are escaped
        // like every annotation; the title is the rule author's text, as written.
        context["about"] = json!(about.join(", "));
        let summary = crate::template::render(
            "{{ rule.title | safe }}{% if about %} ({{ about }}){% endif %}",
            &context,
        );
        annotations.insert("summary".into(), summary);
    }
    Hit {
        rule_id: rule.id().to_string(),
        entity: BTreeMap::new(),
        fingerprint: fingerprint(rule.id(), &group),
        labels,
        annotations,
        event_ids: Vec::new(),
        count: 0,
        at,
    }
}

/// A metric rule's series: its labels are the group (Prometheus alert labels), the
/// sample value is `value` in annotation templates and the alert's count.
pub fn metric_hit(
    rule: &Rule,
    group: BTreeMap<String, String>,
    value: f64,
    at: DateTime<Utc>,
) -> Hit {
    let entity = entity_of(&group, None);
    let mut hit = make_hit(
        rule,
        group,
        rule.doc.severity,
        ("value", json!(value)),
        json!(value),
        at,
    );
    hit.entity = entity;
    hit.count = if value.is_finite() && value >= 0.0 {
        value.round() as u64
    } else {
        0
    };
    hit
}

/// `match`: one event, one hit (or none).
/// Whether a record is one a rule counts (its query and conditions hold, no exception
/// applies), whatever the rule's kind.
pub fn counts(rule: &Rule, record: &LogRecord) -> bool {
    rule.doc.enabled
        && k8saudit::inventory::evaluable(record)
        && selects(&rule.selector, record)
        && !excepted(rule, record)
}

/// Most groups [`CrossingTracker`] follows (all are forgotten when it is full: the
/// schedule still evaluates every rule each `interval`).
pub const CROSSING_GROUPS: usize = 50_000;
/// Most events it keeps per group.
pub const CROSSING_EVENTS_PER_GROUP: usize = 4_096;

/// Sliding in-memory counts of threshold rules per group, so the event follower sees
/// a group reach its threshold without reading the index: per (tenant, rule, group),
/// the times of the group's counted events within the rule's longest window and the
/// values of its `distinct` fields. Only when a group holds here is the rule evaluated
/// (through the index) at once. Bounded by [`CROSSING_GROUPS`] and
/// [`CROSSING_EVENTS_PER_GROUP`]; starts empty at process start.
#[derive(Debug, Default)]
pub struct CrossingTracker {
    groups: HashMap<(model::TenantId, String), GroupEvents>,
}

/// A group's counted events: time and the values of the rule's `distinct` fields.
type GroupEvents = VecDeque<(DateTime<Utc>, Vec<String>)>;

impl CrossingTracker {
    /// Count `record` (which `rule` counts) for its group; whether the group now
    /// holds the rule's main condition or one of its `also` conditions.
    pub fn observe(&mut self, tenant: model::TenantId, rule: &Rule, record: &LogRecord) -> bool {
        let Spec::Threshold {
            window,
            threshold,
            distinct,
            also,
            ..
        } = &rule.spec
        else {
            return false;
        };
        let conditions: Vec<(std::time::Duration, f64, Option<&String>)> =
            std::iter::once((*window, *threshold, distinct.as_ref()))
                .chain(
                    also.iter()
                        .map(|a| (a.window, a.threshold, a.distinct.as_ref())),
                )
                .collect();
        let longest = conditions.iter().map(|c| c.0).max().unwrap_or_default();
        let values: Vec<String> = conditions
            .iter()
            .map(|c| c.2.map(|f| group_value(record, f)).unwrap_or_default())
            .collect();
        let key = (tenant, group_fingerprint(rule, record));
        if self.groups.len() >= CROSSING_GROUPS && !self.groups.contains_key(&key) {
            self.groups.clear();
        }
        let events = self.groups.entry(key).or_default();
        events.push_back((record.time, values));
        let newest = events.iter().map(|e| e.0).max().unwrap_or(record.time);
        let oldest = newest - chrono::Duration::from_std(longest).unwrap_or_default();
        events.retain(|e| e.0 > oldest);
        while events.len() > CROSSING_EVENTS_PER_GROUP {
            events.pop_front();
        }
        conditions
            .iter()
            .enumerate()
            .any(|(i, (window, threshold, distinct))| {
                let since = newest - chrono::Duration::from_std(*window).unwrap_or_default();
                let inside = events.iter().filter(|e| e.0 > since);
                let value = if distinct.is_some() {
                    inside
                        .filter(|e| !e.1[i].is_empty())
                        .map(|e| e.1[i].as_str())
                        .collect::<HashSet<&str>>()
                        .len()
                } else {
                    inside.count()
                };
                value as f64 >= *threshold
            })
    }
}

/// The fingerprint of the alert a record would belong to (its rule and group).
pub fn group_fingerprint(rule: &Rule, record: &LogRecord) -> String {
    fingerprint(rule.id(), &group_of(rule, record))
}

/// A new_terms rule's key for a record it counts: the canonical text of its
/// `group_by` values and a 16-byte hash of it. `None` when a field is missing.
pub fn new_terms_key(rule: &Rule, record: &LogRecord) -> Option<(String, [u8; 16])> {
    if !matches!(rule.spec, Spec::NewTerms { .. }) || !counts(rule, record) {
        return None;
    }
    let group = group_of(rule, record);
    if group.values().any(String::is_empty) {
        return None;
    }
    let mut text = serde_json::to_string(&group).unwrap_or_default();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&digest[..16]);
    // The hash is the identity; the text is kept for people, bounded.
    if text.len() > MAX_TERMS_TEXT_BYTES {
        let mut end = MAX_TERMS_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    Some((text, h))
}

/// Most bytes of a new_terms combination's text stored beside its hash.
pub const MAX_TERMS_TEXT_BYTES: usize = 1024;

/// The alert of a new term: one per combination, carrying the event.
pub fn new_terms_hit(rule: &Rule, record: &LogRecord, seq: i64) -> Hit {
    hit(
        rule,
        group_of(rule, record),
        Some(record),
        vec![seq],
        1,
        record.time,
    )
}

/// Replay `events` (oldest first) through a new_terms rule with no stored history:
/// the first `learning` after the first event only learns; later, the first event
/// of each combination fires. Test cases and backtests use it.
pub fn new_terms_replay<'a>(
    rule: &Rule,
    events: impl IntoIterator<Item = (i64, &'a LogRecord)>,
) -> Vec<Hit> {
    let Spec::NewTerms { learning, .. } = &rule.spec else {
        return Vec::new();
    };
    let learning = chrono::Duration::from_std(*learning).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut start = None;
    let mut out = Vec::new();
    for (seq, record) in events {
        let Some((_, h)) = new_terms_key(rule, record) else {
            continue;
        };
        let start = *start.get_or_insert(record.time);
        if seen.insert(h) && record.time >= start + learning {
            out.push(new_terms_hit(rule, record, seq));
        }
    }
    out
}

pub fn match_event(rule: &Rule, record: &LogRecord, seq: i64) -> Option<Hit> {
    if !rule.doc.enabled || rule.spec != Spec::Match || !k8saudit::inventory::evaluable(record) {
        return None;
    }
    if !selects(&rule.selector, record) || excepted(rule, record) {
        return None;
    }
    Some(hit(
        rule,
        group_of(rule, record),
        Some(record),
        vec![seq],
        1,
        record.time,
    ))
}

/// One group's result of a threshold evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCount {
    pub hit: Hit,
    pub value: f64,
    pub holds: bool,
}

struct Acc<'a> {
    ids: Vec<i64>,
    count: u64,
    distinct: HashSet<String>,
    last: Option<&'a LogRecord>,
}

impl Acc<'_> {
    fn value(&self, distinct: bool) -> f64 {
        if distinct {
            self.distinct.len() as f64
        } else {
            self.count as f64
        }
    }
}

/// Per group, the matching events of `(now - window, now]`.
fn accumulate<'a>(
    rule: &Rule,
    events: &[(i64, &'a LogRecord)],
    window: std::time::Duration,
    distinct: Option<&String>,
    now: DateTime<Utc>,
) -> BTreeMap<BTreeMap<String, String>, Acc<'a>> {
    let since = now - chrono::Duration::from_std(window).unwrap_or_default();
    let mut groups: BTreeMap<BTreeMap<String, String>, Acc> = BTreeMap::new();
    for (seq, record) in events {
        if record.time <= since
            || record.time > now
            || !selects(&rule.selector, record)
            || excepted(rule, record)
        {
            continue;
        }
        let acc = groups.entry(group_of(rule, record)).or_insert_with(|| Acc {
            ids: Vec::new(),
            count: 0,
            distinct: HashSet::new(),
            last: None,
        });
        acc.count += 1;
        if acc.ids.len() < crate::lifecycle::MAX_EVIDENCE {
            acc.ids.push(*seq);
        }
        // Distinct values: an event without the field adds none.
        if let Some(field) = distinct {
            let value = group_value(record, field);
            if !value.is_empty() {
                acc.distinct.insert(value);
            }
        }
        acc.last = Some(record);
    }
    groups
}

/// `threshold`: count (or count distinct) the matching events of the window per
/// group and compare with the threshold; the rule's `also` conditions are counted
/// the same way over their own windows, and a group holds when any condition does
/// (its value and evidence are then those of the first condition that holds).
/// `events` are the candidates (already narrowed by the index query when run by the
/// server, over the longest window); they are re-checked.
pub fn threshold_groups(
    rule: &Rule,
    events: &[(i64, &LogRecord)],
    now: DateTime<Utc>,
) -> Vec<GroupCount> {
    let Spec::Threshold {
        window,
        threshold,
        distinct,
        also,
        ..
    } = &rule.spec
    else {
        return Vec::new();
    };
    let mut conditions = vec![(
        accumulate(rule, events, *window, distinct.as_ref(), now),
        *threshold,
        distinct.is_some(),
    )];
    for alt in also {
        conditions.push((
            accumulate(rule, events, alt.window, alt.distinct.as_ref(), now),
            alt.threshold,
            alt.distinct.is_some(),
        ));
    }
    let mut keys: Vec<BTreeMap<String, String>> = conditions
        .iter()
        .flat_map(|(groups, _, _)| groups.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|group| {
            let holding = conditions.iter().find(|(groups, limit, d)| {
                groups
                    .get(&group)
                    .is_some_and(|acc| acc.value(*d) >= *limit)
            });
            let (groups, _, d) = holding.or_else(|| {
                conditions
                    .iter()
                    .find(|(groups, _, _)| groups.contains_key(&group))
            })?;
            let acc = &groups[&group];
            let value = acc.value(*d);
            Some(GroupCount {
                hit: hit(rule, group, acc.last, acc.ids.clone(), acc.count, now),
                value,
                holds: holding.is_some(),
            })
        })
        .collect()
}

/// Progress of one group through a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub next_step: usize,
    pub started_at: DateTime<Utc>,
    pub event_ids: Vec<i64>,
}

/// `sequence`: per-group progress through ordered steps. Serializable, so the server
/// persists it and a restart does not lose a half-complete sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SequenceState {
    /// Keyed by the group values, JSON-encoded.
    pub progress: HashMap<String, Progress>,
}

impl SequenceState {
    /// Feed one event (in time order). Returns a hit when a sequence completes.
    pub fn on_event(&mut self, rule: &Rule, record: &LogRecord, seq: i64) -> Option<Hit> {
        let Spec::Sequence { steps, within } = &rule.spec else {
            return None;
        };
        if !rule.doc.enabled || !k8saudit::inventory::evaluable(record) || excepted(rule, record) {
            return None;
        }
        let group = group_of(rule, record);
        if group.values().all(String::is_empty) {
            return None; // no identity to correlate on
        }
        let key = serde_json::to_string(&group).expect("group serialises");
        let within = chrono::Duration::from_std(*within).unwrap_or_default();
        if let Some(p) = self.progress.get(&key)
            && record.time - p.started_at > within
        {
            self.progress.remove(&key);
        }
        if let Some(p) = self.progress.get_mut(&key)
            && selects(&steps[p.next_step].selector, record)
        {
            p.next_step += 1;
            p.event_ids.push(seq);
            if p.next_step == steps.len() {
                let done = self.progress.remove(&key).expect("present");
                let count = done.event_ids.len() as u64;
                return Some(hit(
                    rule,
                    group,
                    Some(record),
                    done.event_ids,
                    count,
                    record.time,
                ));
            }
            return None;
        }
        if selects(&steps[0].selector, record) && !self.progress.contains_key(&key) {
            self.progress.insert(
                key,
                Progress {
                    next_step: 1,
                    started_at: record.time,
                    event_ids: vec![seq],
                },
            );
        }
        None
    }

    /// Forget progress older than `within` at `now`.
    pub fn expire(&mut self, rule: &Rule, now: DateTime<Utc>) {
        if let Spec::Sequence { within, .. } = &rule.spec {
            let within = chrono::Duration::from_std(*within).unwrap_or_default();
            self.progress.retain(|_, p| now - p.started_at <= within);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::TenantId;

    fn record(user: &str, agent: &str) -> LogRecord {
        let mut r = LogRecord::new(TenantId(uuid::Uuid::nil()), Utc::now(), "");
        r.attributes = json!({"user": user, "agent": agent})
            .as_object()
            .cloned()
            .unwrap_or_default();
        r
    }

    #[test]
    fn new_terms_text_is_bounded_and_the_hash_tells_long_values_apart() {
        let rule = crate::rule::parse_rules(
            "apiVersion: palisade/v1\nid: nt\ntitle: New agent\nseverity: medium\nkind: new_terms\nquery: 'attributes.user:*'\ngroup_by: [attributes.user, attributes.agent]\n",
        )
        .expect("rule")
        .remove(0);
        let long = "é".repeat(4000);
        let (text, hash) =
            new_terms_key(&rule, &record("alice", &format!("{long}a"))).expect("key");
        assert!(
            text.len() <= MAX_TERMS_TEXT_BYTES + '…'.len_utf8(),
            "{}",
            text.len()
        );
        assert!(text.ends_with('…'));
        let (other_text, other_hash) =
            new_terms_key(&rule, &record("alice", &format!("{long}b"))).expect("key");
        assert_eq!(text, other_text, "both cut at the same place");
        assert_ne!(hash, other_hash, "but they are two combinations");
        let (short, _) = new_terms_key(&rule, &record("alice", "kubectl")).expect("key");
        assert!(short.contains("kubectl") && !short.ends_with('…'));
    }
}
