//! Recording Palisade's own actions: the hash-chained audit table (authoritative)
//! and, so it is searchable like any other stream, a log record in the tenant's
//! stream (`resource.service.name:palisade`, `scope.name:palisade.audit`).

use chrono::Utc;
use model::LogRecord;
use model::audit::AuditEvent;
use serde_json::{Map, Value, json};

use crate::AppState;

pub async fn record(state: &AppState, event: AuditEvent) {
    let id = match state.audit.append(&event).await {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(error = %err, action = %event.action, "audit entry not recorded");
            return;
        }
    };
    let Some(tenant) = event.tenant_id else {
        return;
    };
    let mut attributes = Map::new();
    attributes.insert("audit.id".into(), json!(id));
    attributes.insert("audit.actor".into(), json!(event.actor));
    attributes.insert("audit.action".into(), json!(event.action));
    attributes.insert("audit.target".into(), json!(event.target));
    attributes.insert("audit.outcome".into(), json!(event.outcome.as_str()));
    if let Some(addr) = &event.source_addr {
        attributes.insert("source.address".into(), json!(addr));
    }
    if let Value::Object(details) = &event.details {
        for (k, v) in details {
            attributes.insert(format!("audit.details.{k}"), v.clone());
        }
    }
    let mut resource = Map::new();
    resource.insert("service.name".into(), json!("palisade"));
    let now = Utc::now();
    let log = LogRecord {
        tenant_id: tenant,
        time: now,
        observed_time: now,
        severity_number: if event.outcome == model::audit::Outcome::Success {
            9
        } else {
            13
        },
        severity_text: if event.outcome == model::audit::Outcome::Success {
            "INFO"
        } else {
            "WARN"
        }
        .into(),
        body: format!(
            "{} {} {} {}",
            event.actor,
            event.action,
            event.target,
            event.outcome.as_str()
        ),
        attributes,
        resource: resource.into(),
        scope_name: "palisade.audit".into(),
        scope_version: env!("CARGO_PKG_VERSION").into(),
        trace_id: None,
        span_id: None,
        flags: 0,
    };
    if let Err(err) = state.ingestor.write(vec![log]).await {
        tracing::warn!(error = %err, audit_id = id, "audit entry not copied to the searchable stream");
    }
}
