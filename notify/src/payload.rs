//! What each channel kind receives. Pure functions of the alert snapshot, so tests
//! assert exact payloads.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};

use crate::channel::{Kind, Secrets, signing_key};

/// Everything a notification says.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The notification's id: its idempotency key across retries.
    pub id: String,
    /// `trigger`, `acknowledge`, `resolve` or `test`.
    pub event: String,
    /// The alert as decided (`storage::notify::snapshot`).
    pub alert: Value,
    /// Deep link to the alert in the UI (`--public-url`), when configured.
    pub link: Option<String>,
    /// The first evidence events, as stored (already redacted).
    pub evidence: Vec<Value>,
    /// Kubernetes audit ids of the evidence.
    pub audit_ids: Vec<String>,
    /// Set when the routing groups this page (`group_by`): the group's label values
    /// and the other alerts it carries (snapshots, oldest first).
    pub group: Option<Group>,
}

/// A grouped page's group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub labels: Value,
    pub others: Vec<Value>,
}

impl Notice {
    /// Every alert this page is about: its own, then the group's others.
    pub fn alerts(&self) -> Vec<&Value> {
        std::iter::once(&self.alert)
            .chain(self.group.iter().flat_map(|g| g.others.iter()))
            .collect()
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The alert's one-line summary: its `summary` annotation, else rule and severity.
pub fn summary(alert: &Value) -> String {
    let s = alert["annotations"]["summary"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} ({})", text(alert, "rule_id"), text(alert, "severity")));
    truncate(&s, 1024)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Palisade severities to PagerDuty's four.
pub fn pagerduty_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

fn dedup_key(n: &Notice) -> String {
    if n.event == "test" {
        format!("palisade-test-{}", n.id)
    } else {
        text(&n.alert, "fingerprint")
    }
}

/// PagerDuty Events API v2.
pub fn pagerduty(n: &Notice, secrets: &Secrets) -> Outgoing {
    let routing_key = secrets.routing_key.clone().unwrap_or_default();
    let action = match n.event.as_str() {
        "acknowledge" => "acknowledge",
        "resolve" => "resolve",
        _ => "trigger",
    };
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n),
    });
    if action == "trigger" {
        let a = &n.alert;
        body["payload"] = json!({
            "summary": summary(a),
            "source": "palisade",
            "severity": pagerduty_severity(&text(a, "severity")),
            "timestamp": a.get("firing_at").filter(|t| !t.is_null()).unwrap_or(&a["started_at"]),
            "component": text(a, "rule_id"),
            "class": a["labels"]["tactic"].as_str().unwrap_or("detection"),
            "custom_details": {
                "rule": text(a, "rule_id"),
                "labels": a["labels"],
                "annotations": a["annotations"],
                "event_count": a["event_count"],
                "audit_ids": n.audit_ids,
                "evidence": n.evidence,
                "link": n.link,
            },
        });
        body["client"] = json!("Palisade");
        if let Some(link) = &n.link {
            body["client_url"] = json!(link);
            body["links"] = json!([{"href": link, "text": "Alert in Palisade"}]);
        }
    }
    Outgoing {
        url: secrets.url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// Escape text for Slack's mrkdwn (`&`, `<`, `>`), so log content cannot form links,
/// mentions or markup.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Alerts listed by name in a grouped Slack message.
pub const SLACK_GROUP_LINES: usize = 10;

/// A Slack incoming-webhook message.
pub fn slack(n: &Notice, secrets: &Secrets) -> Outgoing {
    let a = &n.alert;
    let severity = text(a, "severity").to_uppercase();
    let head = match n.event.as_str() {
        "resolve" => "Resolved",
        "acknowledge" => "Acknowledged",
        "test" => "Test notification",
        _ => "Firing",
    };
    let mut lines = vec![format!(
        "*{head}* [{}] `{}`: {}",
        slack_escape(&severity),
        slack_escape(&text(a, "rule_id")),
        slack_escape(&summary(a))
    )];
    if let Some(group) = n.group.as_ref().filter(|g| !g.others.is_empty()) {
        let by = group
            .labels
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        lines[0] = format!(
            "*{head}*: {} alerts ({})",
            group.others.len() + 1,
            slack_escape(&by)
        );
        let all = n.alerts();
        for other in all.iter().take(SLACK_GROUP_LINES) {
            lines.push(format!(
                "• [{}] `{}`: {}",
                slack_escape(&text(other, "severity").to_uppercase()),
                slack_escape(&text(other, "rule_id")),
                slack_escape(&summary(other))
            ));
        }
        if all.len() > SLACK_GROUP_LINES {
            lines.push(format!("…and {} more", all.len() - SLACK_GROUP_LINES));
        }
    } else if n.event == "trigger" {
        for e in n.evidence.iter().take(3) {
            let body = e["body"].as_str().unwrap_or_default();
            lines.push(format!("> {}", slack_escape(&truncate(body, 300))));
        }
        if !n.audit_ids.is_empty() {
            lines.push(format!(
                "audit ids: {}",
                slack_escape(
                    &n.audit_ids
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            ));
        }
    }
    if let Some(link) = &n.link {
        lines.push(format!(
            "<{}|Open in Palisade>",
            link.replace(['|', '>', '<'], "")
        ));
    }
    Outgoing {
        url: secrets.url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"text": lines.join("\n")}).to_string().into_bytes(),
    }
}

/// The generic webhook body (schema in docs/paging.md).
pub fn webhook_body(n: &Notice) -> Value {
    json!({
        "type": format!("alert.{}", n.event),
        "id": n.id,
        "alert": n.alert,
        "summary": summary(&n.alert),
        "link": n.link,
        "audit_ids": n.audit_ids,
        "evidence": n.evidence,
        "group": n.group.as_ref().map(|g| json!({
            "labels": g.labels,
            "alerts": n.alerts(),
        })),
    })
}

/// A Standard Webhooks signature: `v1,` and base64 of HMAC-SHA256 over
/// `id.timestamp.body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&signing_key(secret))
        .expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A signed generic webhook (Standard Webhooks headers; `webhook-id` is the same on
/// every retry).
pub fn webhook(n: &Notice, secrets: &Secrets, now: DateTime<Utc>) -> Outgoing {
    let body = webhook_body(n).to_string().into_bytes();
    let ts = now.timestamp();
    let signature = sign(
        secrets.secret.as_deref().unwrap_or_default(),
        &n.id,
        ts,
        &body,
    );
    Outgoing {
        url: secrets.url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), n.id.clone()),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), signature),
        ],
        body,
    }
}

/// A label name Alertmanager accepts (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn string_map(v: &Value) -> Map<String, Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (label_name(k), Value::String(text))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How long a pushed firing alert stays firing in Alertmanager without another push
/// (the worker re-pushes firing alerts every [`crate::worker::ALERTMANAGER_REFRESH`]).
pub const ALERTMANAGER_HOLD_HOURS: i64 = 4;

/// One alert as Alertmanager takes it (`link` is the alert's deep link).
fn alertmanager_alert(
    a: &Value,
    event: &str,
    audit_ids: &[String],
    link: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let mut labels = string_map(&a["labels"]);
    labels.insert("alertname".into(), json!(text(a, "rule_id")));
    labels.insert("severity".into(), json!(text(a, "severity")));
    labels.insert("palisade_fingerprint".into(), json!(text(a, "fingerprint")));
    let mut annotations = string_map(&a["annotations"]);
    annotations.insert("summary".into(), json!(summary(a)));
    if !audit_ids.is_empty() {
        annotations.insert("audit_ids".into(), json!(audit_ids.join(",")));
    }
    let starts = a
        .get("firing_at")
        .filter(|t| !t.is_null())
        .unwrap_or(&a["started_at"])
        .clone();
    let ends = match event {
        "resolve" => a["resolved_at"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| now.to_rfc3339()),
        _ => (now + chrono::Duration::hours(ALERTMANAGER_HOLD_HOURS)).to_rfc3339(),
    };
    let mut alert = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts,
        "endsAt": ends,
    });
    if let Some(link) = link {
        alert["generatorURL"] = json!(link);
    }
    alert
}

/// Alertmanager `POST /api/v2/alerts` (`url` is Alertmanager's base URL): every alert
/// of the page in one request.
pub fn alertmanager(n: &Notice, secrets: &Secrets, now: DateTime<Utc>) -> Outgoing {
    let base_link = n
        .link
        .as_deref()
        .and_then(|l| l.rsplit_once("/alerts/").map(|(base, _)| base));
    let mut alerts = vec![alertmanager_alert(
        &n.alert,
        &n.event,
        &n.audit_ids,
        n.link.as_deref(),
        now,
    )];
    for other in n.group.iter().flat_map(|g| g.others.iter()) {
        let link = base_link.map(|b| format!("{b}/alerts/{}", text(other, "id")));
        alerts.push(alertmanager_alert(
            other,
            &n.event,
            &[],
            link.as_deref(),
            now,
        ));
    }
    Outgoing {
        url: format!("{}/api/v2/alerts", secrets.url.trim_end_matches('/')),
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!(alerts).to_string().into_bytes(),
    }
}

/// The request for `kind`, or `None` when the kind has nothing to say about the event
/// (Alertmanager has no acknowledgement).
pub fn build(kind: Kind, n: &Notice, secrets: &Secrets, now: DateTime<Utc>) -> Option<Outgoing> {
    match kind {
        Kind::PagerDuty => Some(pagerduty(n, secrets)),
        Kind::Slack => Some(slack(n, secrets)),
        Kind::Webhook => Some(webhook(n, secrets, now)),
        Kind::Alertmanager if n.event == "acknowledge" => None,
        Kind::Alertmanager => Some(alertmanager(n, secrets, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: &str) -> Notice {
        Notice {
            id: "0193a000-0000-7000-8000-000000000001".into(),
            event: event.into(),
            alert: json!({"id": "a1", "rule_id": "K8S-001", "fingerprint": "fp1", "state": "firing",
                "severity": "high", "labels": {"rule": "K8S-001", "attributes.entity.actor": "mallory", "tactic": "execution"},
                "annotations": {"summary": "mallory exec <@U123> & <https://evil|click>"}, "event_count": 2,
                "started_at": "2026-11-30T10:00:00Z", "firing_at": "2026-11-30T10:00:00Z", "resolved_at": null}),
            link: Some("https://palisade.example/alerts/a1".into()),
            evidence: vec![json!({"body": "exec <script>"})],
            audit_ids: vec!["e1".into()],
            group: None,
        }
    }

    #[test]
    fn grouped_pages_carry_every_alert() {
        let mut n = notice("trigger");
        let mut other = n.alert.clone();
        other["id"] = json!("a2");
        other["fingerprint"] = json!("fp2");
        other["annotations"]["summary"] = json!("second <b>");
        n.group = Some(Group {
            labels: json!({"tactic": "execution"}),
            others: vec![other],
        });
        let secrets = Secrets {
            url: "https://hooks.example/x".into(),
            routing_key: None,
            secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        };
        let slack: Value = serde_json::from_slice(&slack(&n, &secrets).body).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("*Firing*: 2 alerts (tactic=execution)"),
            "{text}"
        );
        assert!(text.contains("second &lt;b&gt;"), "{text}");
        let hook = webhook_body(&n);
        assert_eq!(hook["group"]["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(hook["group"]["labels"]["tactic"], "execution");
        let am: Value = serde_json::from_slice(
            &alertmanager(&n, &secrets, "2026-11-30T10:05:00Z".parse().unwrap()).body,
        )
        .unwrap();
        assert_eq!(am.as_array().unwrap().len(), 2);
        assert_eq!(am[1]["labels"]["palisade_fingerprint"], "fp2");
        assert_eq!(am[1]["generatorURL"], "https://palisade.example/alerts/a2");
        assert!(webhook_body(&notice("trigger"))["group"].is_null());
    }

    #[test]
    fn pagerduty_v2_shapes_and_one_dedup_key() {
        let secrets = Secrets {
            url: "https://pd.example/v2/enqueue".into(),
            routing_key: Some("R0UTING".into()),
            secret: None,
        };
        let trigger: Value =
            serde_json::from_slice(&pagerduty(&notice("trigger"), &secrets).body).unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UTING");
        assert_eq!(trigger["dedup_key"], "fp1");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["source"], "palisade");
        assert_eq!(
            trigger["payload"]["custom_details"]["audit_ids"],
            json!(["e1"])
        );
        assert_eq!(
            trigger["links"][0]["href"],
            "https://palisade.example/alerts/a1"
        );
        for event in ["acknowledge", "resolve"] {
            let body: Value =
                serde_json::from_slice(&pagerduty(&notice(event), &secrets).body).unwrap();
            assert_eq!(
                body,
                json!({"routing_key": "R0UTING", "event_action": event, "dedup_key": "fp1"})
            );
        }
    }

    #[test]
    fn slack_escapes_everything_the_user_controls() {
        let secrets = Secrets {
            url: "https://hooks.slack.example/x".into(),
            routing_key: None,
            secret: None,
        };
        let body: Value =
            serde_json::from_slice(&slack(&notice("trigger"), &secrets).body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;@U123&gt; &amp; &lt;https://evil|click&gt;"),
            "{text}"
        );
        assert!(text.contains("&lt;script&gt;"), "{text}");
        assert!(
            !text.contains("<@U123>") && !text.contains("<https://evil"),
            "{text}"
        );
        assert!(
            text.contains("<https://palisade.example/alerts/a1|Open in Palisade>"),
            "{text}"
        );
    }

    #[test]
    fn webhook_signature_follows_standard_webhooks() {
        // The Standard Webhooks reference test vector.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn alertmanager_labels_are_valid_names_and_resolve_ends() {
        let secrets = Secrets {
            url: "http://am.example:9093/".into(),
            routing_key: None,
            secret: None,
        };
        let now = DateTime::parse_from_rfc3339("2026-11-30T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let out = alertmanager(&notice("trigger"), &secrets, now);
        assert_eq!(out.url, "http://am.example:9093/api/v2/alerts");
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        let labels = &body[0]["labels"];
        assert_eq!(labels["alertname"], "K8S-001");
        assert_eq!(labels["attributes_entity_actor"], "mallory");
        assert_eq!(body[0]["startsAt"], "2026-11-30T10:00:00Z");
        let mut resolved = notice("resolve");
        resolved.alert["resolved_at"] = json!("2026-11-30T10:04:00Z");
        let body: Value =
            serde_json::from_slice(&alertmanager(&resolved, &secrets, now).body).unwrap();
        assert_eq!(body[0]["endsAt"], "2026-11-30T10:04:00Z");
        assert!(build(Kind::Alertmanager, &notice("acknowledge"), &secrets, now).is_none());
        assert_eq!(label_name("9x.y-z"), "_9x_y_z");
    }
}
