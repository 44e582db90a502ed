//! An incident's timeline: one ordered stream merged from the alerts' transitions and
//! acknowledgements, the notification attempts, responders' activity and the
//! correlated events (found through the typed query core, like search and rules).
//!
//! Order: time, then kind rank (an event before the alert it raised, an alert before
//! its page), then a per-source id. A cursor is the key of the last entry returned.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use model::TenantId;
use model::incident::Entity;
use query::ast::{Expr, FieldRef, Value as QValue};
use query::search::{Cursor, Order, SearchRequest, TimeRange};
use serde_json::{Value, json};
use storage::incidents::IncidentRow;

use crate::wire::TimelineEntry;
use crate::{ApiError, AppState};

/// The kinds of entry, in tie-break order.
pub const KINDS: &[&str] = &[
    "event",
    "alert_fired",
    "alert_state",
    "alert_resolved",
    "notification",
    "state_change",
    "assignment",
    "note",
    "pin",
];

/// How far before the incident correlated events are looked for.
pub const MARGIN: chrono::Duration = chrono::Duration::minutes(15);
/// Entities searched for correlated events (the first ones, by kind order).
pub const MAX_CORRELATED_ENTITIES: usize = 64;
/// Entity kinds not used to find correlated events (too broad: every pod of a node).
const NOT_CORRELATED: &[&str] = &["node", "workload"];

fn rank(kind: &str) -> u8 {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

/// Where an entry sits in the stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub time: i64,
    pub rank: u8,
    pub id: i64,
}

impl Key {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", self.time, self.rank, self.id))
    }

    pub fn decode(text: &str) -> Result<Key, ApiError> {
        let invalid = || crate::rules::invalid("cursor: not a cursor returned by this API");
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let mut parts = raw.split(':');
        let mut next = || parts.next().and_then(|p| p.parse::<i64>().ok());
        let (Some(time), Some(rank), Some(id)) = (next(), next(), next()) else {
            return Err(invalid());
        };
        Ok(Key {
            time,
            rank: u8::try_from(rank).map_err(|_| invalid())?,
            id,
        })
    }

    /// The key of the first entry at or after `time`.
    pub fn before(time: DateTime<Utc>) -> Key {
        Key {
            time: time.timestamp_micros() - 1,
            rank: u8::MAX,
            id: i64::MAX,
        }
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Query {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `None`: every kind.
    pub kinds: Option<HashSet<String>>,
    /// Only correlated events of this entity.
    pub entity: Option<Entity>,
    pub after: Option<Key>,
    pub limit: usize,
}

/// The incident's default window: from [`MARGIN`] before it opened to its resolution
/// (or now).
pub fn window(incident: &IncidentRow) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        incident.opened_at - MARGIN,
        incident
            .resolved_at
            .unwrap_or_else(Utc::now)
            .max(incident.last_activity_at),
    )
}

fn entry(
    time: DateTime<Utc>,
    kind: &str,
    actor: &str,
    payload: Value,
    id: i64,
) -> (Key, TimelineEntry) {
    (
        Key {
            time: time.timestamp_micros(),
            rank: rank(kind),
            id,
        },
        TimelineEntry {
            time,
            kind: kind.to_string(),
            actor: actor.to_string(),
            payload,
        },
    )
}

/// The query matching the correlated events of `entities`.
pub fn correlation(entities: &[Entity]) -> Option<Expr> {
    let clauses: Vec<Expr> = entities
        .iter()
        .filter(|e| !NOT_CORRELATED.contains(&e.kind.as_str()))
        .take(MAX_CORRELATED_ENTITIES)
        .map(|e| Expr::Clause {
            field: if e.kind == "trace_id" {
                FieldRef::TraceId
            } else {
                FieldRef::Attribute(e.attribute())
            },
            value: QValue::Phrase(e.value.clone()),
        })
        .collect();
    (!clauses.is_empty()).then_some(Expr::Or(clauses))
}

fn matched(
    entities: &[Entity],
    attributes: &serde_json::Map<String, Value>,
    trace_id: Option<&str>,
) -> Vec<Value> {
    entities
        .iter()
        .filter(|e| {
            if e.kind == "trace_id" {
                trace_id == Some(e.value.as_str())
            } else {
                attributes.get(&e.attribute()).and_then(Value::as_str) == Some(e.value.as_str())
            }
        })
        .map(|e| json!({"kind": e.kind, "value": e.value}))
        .collect()
}

/// One page of the timeline (each entry with its key) and the key of its last entry
/// when more follow.
pub async fn read(
    state: &AppState,
    tenant: TenantId,
    incident: &IncidentRow,
    q: &Query,
) -> Result<(Vec<(Key, TimelineEntry)>, Option<Key>), ApiError> {
    let wants = |kind: &str| q.kinds.as_ref().is_none_or(|k| k.contains(kind));
    let store = &state.incidents;
    let from = match &q.after {
        Some(k) => q
            .from
            .max(DateTime::from_timestamp_micros(k.time).unwrap_or(q.from)),
        None => q.from,
    };
    let mut all: Vec<(Key, TimelineEntry)> = Vec::new();
    let mut evidence: HashSet<i64> = HashSet::new();
    if ["alert_fired", "alert_state", "alert_resolved", "event"]
        .iter()
        .any(|k| wants(k))
    {
        let far_past = q.from - chrono::Duration::days(3650);
        for step in store
            .alert_steps(tenant, incident.id, far_past, q.to)
            .await?
        {
            evidence.extend(step.alert.event_ids.iter().copied());
            if step.at < from {
                continue;
            }
            let kind = match step.to.as_str() {
                "firing" => "alert_fired",
                "resolved" => "alert_resolved",
                _ => "alert_state",
            };
            if !wants(kind) {
                continue;
            }
            let a = &step.alert;
            let payload = json!({
                "alert_id": a.id, "rule_id": a.rule_id, "severity": a.severity,
                "from": step.from, "to": step.to, "silenced": step.silenced,
                "summary": a.annotations["summary"], "labels": a.labels,
                "evidence": a.event_ids.iter().map(i64::to_string).collect::<Vec<_>>(),
                "event_count": a.event_count,
            });
            all.push(entry(step.at, kind, "palisade", payload, step.id));
        }
    }
    if wants("alert_state") {
        for (i, (alert, rule, at, by)) in store
            .alert_acks(tenant, incident.id)
            .await?
            .into_iter()
            .enumerate()
        {
            if at >= from && at <= q.to {
                let payload = json!({"alert_id": alert, "rule_id": rule, "to": "acknowledged"});
                all.push(entry(at, "alert_state", &by, payload, i64::MAX - i as i64));
            }
        }
    }
    if wants("notification") {
        for a in store.attempt_steps(tenant, incident.id, from, q.to).await? {
            let ok = a.status.is_some_and(|s| (200..300).contains(&s));
            let payload = json!({
                "notification_id": a.notification_id, "alert_id": a.alert_id,
                "channel": a.channel, "channel_type": a.channel_kind, "event": a.event,
                "status": a.status, "latency_ms": a.latency_ms, "error": a.error,
                "outcome": if ok { "delivered" } else { "failed" },
            });
            all.push(entry(a.at, "notification", "palisade", payload, a.id));
        }
    }
    if ["state_change", "assignment", "note", "pin"]
        .iter()
        .any(|k| wants(k))
    {
        for row in store.activity(tenant, incident.id, from, q.to).await? {
            if wants(&row.kind) {
                all.push(entry(row.at, &row.kind, &row.actor, row.payload, row.id));
            }
        }
    }
    all.retain(|(k, _)| q.after.as_ref().is_none_or(|after| k > after));
    let mut more = false;
    if wants("event") {
        let entities: Vec<Entity> = match &q.entity {
            Some(e) => vec![e.clone()],
            None => incident.entities.clone(),
        };
        if let Some(expr) = correlation(&entities) {
            // Resume right after the cursor: events rank first, so a cursor on another
            // kind at the same microsecond has passed every event of that microsecond.
            let cursor = q.after.as_ref().map(|k| {
                let seq = if k.rank == rank("event") {
                    k.id
                } else {
                    i64::MAX
                };
                Cursor::after(k.time, seq, Order::Oldest)
            });
            let result = state
                .search
                .run(&SearchRequest {
                    tenant,
                    query: expr,
                    range: TimeRange { from, to: q.to },
                    limit: q.limit + 1,
                    cursor,
                    order: Order::Oldest,
                })
                .await?;
            more = result.events.len() > q.limit;
            for e in result.events.into_iter().take(q.limit) {
                let r = &e.record;
                let actor = r
                    .attributes
                    .get("entity.actor")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let payload = json!({
                    "id": e.seq.to_string(), "correlated": true,
                    "evidence": evidence.contains(&e.seq),
                    "matched": matched(&entities, &r.attributes, r.trace_id.as_deref()),
                    "body": r.body, "severity_text": r.severity_text,
                    "attributes": r.attributes, "trace_id": r.trace_id,
                });
                all.push(entry(r.time, "event", &actor, payload, e.seq));
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    if all.len() > q.limit {
        more = true;
        all.truncate(q.limit);
    } else if more && let Some((last_event, _)) = all.iter().rev().find(|(_, e)| e.kind == "event")
    {
        // The events were cut at the page size: entries after the last event wait for
        // the next page, which reads them again in order.
        let last = last_event.clone();
        all.retain(|(k, _)| *k <= last);
    }
    let next = if more {
        all.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Ok((all, next))
}
