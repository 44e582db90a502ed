//! Incidents: what an alert is about (its entities), how alerts group, and the hash
//! chain that seals an incident's exported timeline.
//!
//! Entities come from two places: the alert's group labels (the values of the rule's
//! `group_by` fields, e.g. `attributes.entity.actor` → `actor`,
//! `attributes.user.name` → `user.name`) and the `entity.*` attributes of its
//! evidence events (the Kubernetes audit normaliser sets `entity.actor`,
//! `entity.namespace`, `entity.pod`, `entity.workload`, `entity.node`,
//! `entity.client_ip`). An alert joins an open incident that shares an entity of a
//! grouping kind and was active within the grouping window.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One thing an incident is about: `actor`/`alice@example.com`,
/// `namespace`/`prod`, `user.name`/`root`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entity {
    pub kind: String,
    pub value: String,
}

impl Entity {
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Entity {
        Entity {
            kind: kind.into(),
            value: value.into(),
        }
    }

    /// `kind:value`, the form the API's `entity=` filters take.
    pub fn parse(text: &str) -> Result<Entity, String> {
        let (kind, value) = text
            .split_once(':')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("entity: expected kind:value, got {text:?}"))?;
        Ok(Entity::new(kind, value))
    }

    /// The attribute path events carry this entity under (`entity.actor`, or the label
    /// path itself for label-derived kinds such as `user.name`).
    pub fn attribute(&self) -> String {
        if ENTITY_KINDS.contains(&self.kind.as_str()) {
            format!("entity.{}", self.kind)
        } else {
            self.kind.clone()
        }
    }
}

/// The kinds the Kubernetes audit normaliser sets as `entity.<kind>`.
pub const ENTITY_KINDS: &[&str] = &["actor", "namespace", "pod", "workload", "node", "client_ip"];

/// The grouping kinds by default; `labels` stands for every kind that comes from a
/// rule's group labels (other than the entity kinds).
pub const DEFAULT_GROUP_ON: &[&str] = &["actor", "namespace", "workload", "client_ip", "labels"];

/// Longest entity value kept (longer values are cut, not refused: they come from
/// logs).
pub const MAX_ENTITY_VALUE: usize = 512;
/// Most entities taken from one alert.
pub const MAX_ENTITIES_PER_ALERT: usize = 32;

/// Labels that say what rule fired, not what it is about.
const NOT_ENTITIES: &[&str] = &["rule", "severity"];

fn cut(value: &str) -> String {
    let mut end = value.len().min(MAX_ENTITY_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

/// The kind a group label names: `attributes.entity.actor` → `actor`, an aliased
/// path (`aliases`: attribute path → kind, e.g. the Kubernetes client IP →
/// `client_ip`) → its kind, `attributes.user.name` → `user.name`; `None` for labels
/// that are not record fields (static rule labels).
pub fn label_kind(label: &str, aliases: &[(&str, &str)]) -> Option<String> {
    if NOT_ENTITIES.contains(&label) {
        return None;
    }
    let path = label
        .strip_prefix("attributes.")
        .or_else(|| label.strip_prefix("resource."))?;
    if let Some(kind) = path.strip_prefix("entity.") {
        return Some(kind.to_string());
    }
    Some(
        aliases
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(path, |(_, kind)| kind)
            .to_string(),
    )
}

/// The entities of an alert: from its labels and its evidence events' attributes
/// (`entity.*`, and `trace_id` when the evidence carries one).
pub fn entities(
    labels: &Value,
    evidence: &[(Value, Option<String>)],
    aliases: &[(&str, &str)],
) -> Vec<Entity> {
    let mut out = BTreeSet::new();
    if let Some(map) = labels.as_object() {
        for (label, value) in map {
            let Some(kind) = label_kind(label, aliases) else {
                continue;
            };
            let value = value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            if !value.is_empty() && value != "null" {
                out.insert(Entity::new(kind, cut(&value)));
            }
        }
    }
    for (attributes, trace_id) in evidence {
        if let Some(map) = attributes.as_object() {
            for (key, value) in map {
                if let Some(kind) = key.strip_prefix("entity.")
                    && let Some(v) = value.as_str().filter(|v| !v.is_empty())
                {
                    out.insert(Entity::new(kind, cut(v)));
                }
            }
        }
        if let Some(t) = trace_id.as_deref().filter(|t| !t.is_empty()) {
            out.insert(Entity::new("trace_id", cut(t)));
        }
    }
    out.into_iter().take(MAX_ENTITIES_PER_ALERT).collect()
}

/// Whether an entity of `kind` groups alerts under `group_on`.
pub fn groups_on(group_on: &[String], kind: &str) -> bool {
    group_on.iter().any(|g| g == kind)
        || (group_on.iter().any(|g| g == "labels")
            && !ENTITY_KINDS.contains(&kind)
            && kind != "trace_id")
}

/// Severity order: `critical` > `high` > `medium` > `low` > `info`.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// The higher of two severities.
pub fn max_severity<'a>(a: &'a str, b: &'a str) -> &'a str {
    if severity_rank(b) > severity_rank(a) {
        b
    } else {
        a
    }
}

/// The first link of an export's hash chain.
pub const CHAIN_START: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The next link of a hash chain: hex SHA-256 of the previous link, a newline and the
/// entry's canonical text.
pub fn chain_link(previous: &str, entry: &str) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(entry.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entities_come_from_group_labels_and_evidence() {
        let labels = json!({
            "rule": "K8S-001", "severity": "high", "tactic": "execution",
            "attributes.entity.actor": "mallory", "attributes.net.client": "203.0.113.9",
            "attributes.user.name": "root", "attributes.empty": ""
        });
        let evidence = vec![(
            json!({"entity.namespace": "prod", "entity.pod": "web-1", "k8s.verb": "create"}),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string()),
        )];
        let got = entities(&labels, &evidence, &[("net.client", "client_ip")]);
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.kind.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("actor", "mallory"),
                ("client_ip", "203.0.113.9"),
                ("namespace", "prod"),
                ("pod", "web-1"),
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("user.name", "root"),
            ]
        );
        let group_on: Vec<String> = DEFAULT_GROUP_ON.iter().map(|s| s.to_string()).collect();
        assert!(groups_on(&group_on, "actor"));
        assert!(groups_on(&group_on, "user.name"), "labels");
        assert!(!groups_on(&group_on, "pod"));
        assert!(!groups_on(&group_on, "trace_id"));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_ENTITY_VALUE);
        let got = entities(&json!({"attributes.entity.actor": long}), &[], &[]);
        assert!(got[0].value.len() <= MAX_ENTITY_VALUE);
        assert!(got[0].value.chars().all(|c| c == 'é'));
    }

    #[test]
    fn entity_filters_parse_and_name_the_field() {
        assert_eq!(
            Entity::parse("actor:system:admin").unwrap(),
            Entity::new("actor", "system:admin")
        );
        assert!(Entity::parse("actor").unwrap_err().contains("entity"));
        assert_eq!(Entity::new("actor", "x").attribute(), "entity.actor");
        assert_eq!(Entity::new("user.name", "x").attribute(), "user.name");
    }

    #[test]
    fn the_chain_changes_when_any_entry_changes() {
        let a = chain_link(CHAIN_START, "one");
        let b = chain_link(&a, "two");
        assert_ne!(b, chain_link(&a, "tw0"));
        assert_ne!(b, chain_link(&chain_link(CHAIN_START, "0ne"), "two"));
        assert_eq!(b.len(), 64);
        assert_eq!(max_severity("high", "critical"), "critical");
        assert_eq!(max_severity("high", "low"), "high");
    }
}
