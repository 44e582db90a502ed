//! Redaction in every shape: every way a Secret's value can travel in an audit event
//! (request and response objects, lists, JSON patches at any path, merge and
//! strategic-merge patches, last-applied annotations, tokens) crossed with every
//! value encoding and every way the event can arrive (webhook item, OTLP body with or
//! without JSON escapes, OTLP attributes). For each combination the normalised
//! record, serialised whole, must not contain the seeded value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use model::TenantId;
use serde_json::{Map, Value, json};

fn stamp() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn event(resource: &str, verb: &str, request: Option<Value>, response: Option<Value>) -> Value {
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "prop-1", "stage": "ResponseComplete", "verb": verb,
        "requestURI": format!("/api/v1/namespaces/prod/{resource}/db"),
        "user": {"username": "mallory"}, "sourceIPs": ["10.1.2.3"],
        "objectRef": {"resource": resource, "namespace": "prod", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": stamp(), "stageTimestamp": stamp()
    });
    if let Some(r) = request {
        e["requestObject"] = r;
    }
    if let Some(r) = response {
        e["responseObject"] = r;
    }
    e
}

const APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Every shape a secret value `v` can take in an event.
fn shapes(v: &str) -> Vec<(&'static str, Value)> {
    let secret =
        json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db"}, "data": {"k": v}});
    let applied = json!({"kind": "Secret", "data": {"k": v}}).to_string();
    let applied_string_data = json!({"stringData": {"k": v}}).to_string();
    let patch = |path: &str, value: Value| json!([{"op": "add", "path": path, "value": value}]);
    vec![
        (
            "create",
            event("secrets", "create", Some(secret.clone()), None),
        ),
        (
            "create stringData",
            event(
                "secrets",
                "create",
                Some(json!({"kind": "Secret", "stringData": {"k": v}})),
                None,
            ),
        ),
        (
            "response",
            event("secrets", "get", None, Some(secret.clone())),
        ),
        (
            "list response",
            event(
                "secrets",
                "list",
                None,
                Some(
                    json!({"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": v}}]}),
                ),
            ),
        ),
        (
            "list of another resource name",
            event(
                "configmaps",
                "list",
                None,
                Some(json!({"kind": "SecretList", "items": [{"data": {"k": v}}]})),
            ),
        ),
        (
            "last-applied on create",
            event(
                "secrets",
                "create",
                Some(json!({"kind": "Secret", "metadata": {"annotations": {APPLIED: applied}}})),
                None,
            ),
        ),
        (
            "last-applied stringData",
            event(
                "secrets",
                "update",
                Some(json!({"metadata": {"annotations": {APPLIED: applied_string_data}}})),
                None,
            ),
        ),
        (
            "last-applied not JSON",
            event(
                "secrets",
                "update",
                Some(json!({"metadata": {"annotations": {APPLIED: format!("garbage {v}")}}})),
                None,
            ),
        ),
        (
            "json patch at \"\"",
            event("secrets", "patch", Some(patch("", secret.clone())), None),
        ),
        (
            "json patch at /",
            event(
                "secrets",
                "patch",
                Some(patch("/", json!({"data": {"k": v}}))),
                None,
            ),
        ),
        (
            "json patch at /data",
            event(
                "secrets",
                "patch",
                Some(patch("/data", json!({"k": v}))),
                None,
            ),
        ),
        (
            "json patch at /data/k",
            event("secrets", "patch", Some(patch("/data/k", json!(v))), None),
        ),
        (
            "json patch at /stringData/k",
            event(
                "secrets",
                "patch",
                Some(patch("/stringData/k", json!(v))),
                None,
            ),
        ),
        (
            "json patch at /metadata",
            event(
                "secrets",
                "patch",
                Some(patch(
                    "/metadata",
                    json!({"annotations": {APPLIED: applied}}),
                )),
                None,
            ),
        ),
        (
            "json patch of last-applied",
            event(
                "secrets",
                "patch",
                Some(patch(
                    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
                    json!(applied),
                )),
                None,
            ),
        ),
        (
            "json patch replace",
            event(
                "secrets",
                "patch",
                Some(json!([{"op": "replace", "path": "/data/k", "value": v}])),
                None,
            ),
        ),
        (
            "merge patch",
            event("secrets", "patch", Some(json!({"data": {"k": v}})), None),
        ),
        (
            "strategic merge patch stringData",
            event(
                "secrets",
                "patch",
                Some(json!({"stringData": {"k": v}, "$patch": "merge"})),
                None,
            ),
        ),
        (
            "token request",
            event(
                "serviceaccounts",
                "create",
                None,
                Some(json!({"kind": "TokenRequest", "status": {"token": v}})),
            ),
        ),
        (
            "token review",
            event(
                "tokenreviews",
                "create",
                Some(json!({"kind": "TokenReview", "spec": {"token": v}})),
                None,
            ),
        ),
    ]
}

/// The values seeded: plain, base64, and with characters JSON escapes.
fn values() -> Vec<String> {
    let plain = "seeded-secret-value-9c41";
    vec![
        plain.to_string(),
        STANDARD.encode(plain),
        "seeded/secret\"with\\escapes-77".to_string(),
    ]
}

fn normalised_text(event: Value) -> String {
    let record = k8saudit::to_record(
        event,
        TenantId(uuid::Uuid::nil()),
        "c",
        Utc::now(),
        Map::new(),
    )
    .expect("a valid event");
    format!(
        "{} {} {}",
        record.body,
        serde_json::to_string(&record.attributes).unwrap(),
        serde_json::to_string(&record.resource).unwrap()
    )
}

fn assert_clean(text: &str, value: &str, what: &str) {
    let escaped = serde_json::to_string(value).unwrap();
    let escaped = &escaped[1..escaped.len() - 1];
    assert!(
        !text.contains(value) && !text.contains(escaped),
        "{what}: seeded value {value:?} survived in {text}"
    );
}

#[test]
fn no_seeded_secret_survives_any_shape_or_transport() {
    let mut cases = 0;
    for value in values() {
        for (shape, event) in shapes(&value) {
            // 1. As a webhook item (the list's type applies to a kindless item).
            let mut item = event.clone();
            item.as_object_mut().unwrap().remove("kind");
            item.as_object_mut().unwrap().remove("apiVersion");
            let (items, version) = k8saudit::event_list_items(
                json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [item]}),
            )
            .unwrap();
            let mut item = items.into_iter().next().unwrap();
            item["kind"] = json!("Event");
            item["apiVersion"] = json!(version.unwrap());
            assert_clean(&normalised_text(item), &value, shape);

            // 2. As an OTLP body: plain JSON text, and with `/` escaped so the raw
            // text holds no "audit.k8s.io/" marker.
            let body = event.to_string();
            let escaped = body.replace('/', "\\/");
            for (how, text) in [("body", body), ("escaped body", escaped)] {
                let found = k8saudit::detect(&text, false, &Map::new())
                    .unwrap_or_else(|| panic!("{shape}: {how} not recognised as an audit event"));
                assert_clean(&normalised_text(found), &value, &format!("{shape} ({how})"));
            }

            // 3. Spread over the OTLP attributes (the Collector's json_parser default).
            let attributes = event.as_object().unwrap().clone();
            let found = k8saudit::detect("", false, &attributes).expect("spread event");
            assert_clean(
                &normalised_text(found),
                &value,
                &format!("{shape} (attributes)"),
            );
            cases += 4;
        }
    }
    assert_eq!(cases, 3 * 20 * 4);
}
