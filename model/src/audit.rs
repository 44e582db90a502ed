//! Palisade's own audit trail entries and their hash chain.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::TenantId;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An audit entry as recorded (before chaining).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub tenant_id: Option<TenantId>,
    /// `user:<name>`, `token:<id>`, `cli`, `system`, or `anonymous`.
    pub actor: String,
    /// Dotted verb, e.g. `auth.login`, `token.create`, `tenant.create`.
    pub action: String,
    /// What was acted on, e.g. `user:alice`, `token:<id>`, `tenant:acme`.
    pub target: String,
    pub outcome: Outcome,
    pub source_addr: Option<String>,
    /// Extra facts (never secrets).
    pub details: Value,
}

impl AuditEvent {
    pub fn new(
        actor: impl Into<String>,
        action: &str,
        target: impl Into<String>,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent {
            tenant_id: None,
            actor: actor.into(),
            action: action.to_string(),
            target: target.into(),
            outcome,
            source_addr: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn tenant(mut self, tenant: TenantId) -> AuditEvent {
        self.tenant_id = Some(tenant);
        self
    }

    pub fn source(mut self, addr: Option<String>) -> AuditEvent {
        self.source_addr = addr;
        self
    }

    pub fn details(mut self, details: Value) -> AuditEvent {
        self.details = details;
        self
    }
}

/// The canonical text an entry's hash covers. Field order is fixed; `details` keys
/// are sorted (serde_json's map is ordered by key), so re-reading the row from
/// Postgres (jsonb) reproduces the same bytes.
pub fn canonical(id: i64, at: &DateTime<Utc>, event: &AuditEvent) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        id: i64,
        at: String,
        tenant_id: Option<String>,
        actor: &'a str,
        action: &'a str,
        target: &'a str,
        outcome: &'a str,
        source_addr: Option<&'a str>,
        details: &'a Value,
    }
    serde_json::to_string(&Canonical {
        id,
        at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
        tenant_id: event.tenant_id.map(|t| t.to_string()),
        actor: &event.actor,
        action: &event.action,
        target: &event.target,
        outcome: event.outcome.as_str(),
        source_addr: event.source_addr.as_deref(),
        details: &event.details,
    })
    .expect("canonical entry serialises")
}

/// `sha256(prev_hash || "\n" || canonical)`, hex.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_every_field_and_the_previous_hash() {
        let at = Utc::now();
        let event = AuditEvent::new("user:alice", "auth.login", "user:alice", Outcome::Success);
        let h1 = chain_hash(GENESIS_HASH, &canonical(1, &at, &event));
        assert_eq!(h1.len(), 64);
        assert_ne!(h1, chain_hash(&h1, &canonical(1, &at, &event)));
        let mut edited = event.clone();
        edited.outcome = Outcome::Failure;
        assert_ne!(h1, chain_hash(GENESIS_HASH, &canonical(1, &at, &edited)));
        assert_ne!(h1, chain_hash(GENESIS_HASH, &canonical(2, &at, &event)));
    }
}
