//! Kubernetes API-server audit events: recognising them in OTLP log records, turning
//! them into one normalised record with typed fields and entities, and redacting
//! secrets **before the first write**.
//!
//! Shapes accepted (see the reference in `shared/docs/k8s-audit.md` §1.9):
//! * OTLP body a JSON string of an `audit.k8s.io/v1` `Event` (filelog, no parser);
//! * OTLP body a kvlist holding the event (`json_parser` with `parse_to: body`);
//! * the event spread over the log attributes (`json_parser` defaults);
//! * `EventList` items posted by kube-apiserver's audit webhook.

pub mod attr;
pub mod csr;
pub mod derive;
pub mod inventory;

use chrono::{DateTime, Utc};
use model::{LogRecord, TenantId};
use serde_json::{Map, Value, json};

/// Cluster name used when neither the resource (`k8s.cluster.name`) nor the webhook
/// URL (`?cluster=`) names one.
pub const DEFAULT_CLUSTER: &str = "default";

/// Request/response objects larger than this (serialised) are truncated, not dropped.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;
const REDACTED: &str = "[REDACTED by palisade]";

/// Whether a JSON value is an audit `Event`.
pub fn is_audit_event(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Event")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("audit.k8s.io/"))
}

/// Find an audit event in a normalised log record's body or attributes.
pub fn detect(
    body: &str,
    body_is_json_object: bool,
    attributes: &Map<String, Value>,
) -> Option<Value> {
    let trimmed = body.trim_start();
    // The raw-text pre-filter must not be fooled: the marker can only be hidden by a
    // JSON escape (`\/`, `\u002e`...), so a body with any escape is parsed too.
    if trimmed.starts_with('{')
        && (trimmed.contains("audit.k8s.io/") || body_is_json_object || trimmed.contains('\\'))
        && let Ok(v) = serde_json::from_str::<Value>(trimmed)
        && is_audit_event(&v)
    {
        return Some(v);
    }
    let spread = Value::Object(attributes.clone());
    if is_audit_event(&spread)
        || (attributes.contains_key("auditID") && attributes.contains_key("stage"))
    {
        let mut v = spread;
        v["kind"] = json!("Event");
        if v.get("apiVersion").is_none() {
            v["apiVersion"] = json!("audit.k8s.io/v1");
        }
        return Some(v);
    }
    None
}

/// The items of a webhook body and the `apiVersion` that applies to items that carry
/// none: kube-apiserver's webhook backend posts an `EventList` (`kind` and
/// `apiVersion` on the list only); a single `Event` is accepted too.
pub fn event_list_items(list: Value) -> Result<(Vec<Value>, Option<String>), String> {
    if is_audit_event(&list) {
        return Ok((vec![list], None));
    }
    let Value::Object(mut map) = list else {
        return Err("expected an audit.k8s.io EventList object".into());
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    // A list without apiVersion is accepted when its items carry their own type.
    let version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if kind != "EventList"
        || version
            .as_deref()
            .is_some_and(|v| !v.starts_with("audit.k8s.io/"))
    {
        return Err(format!(
            "expected kind EventList of apiVersion audit.k8s.io/v1, got kind {kind:?} apiVersion {:?}",
            version.as_deref().unwrap_or("")
        ));
    }
    match map.remove("items") {
        Some(Value::Array(items)) => Ok((items, version)),
        Some(Value::Null) | None => Ok((Vec::new(), version)),
        Some(_) => Err("items: expected an array of audit events".into()),
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |cur, key| cur.get(key))?.as_str()
}

/// Replace every value of a Secret's `data` / `stringData` with a marker, keeping keys.
fn redact_secret_object(obj: &mut Value, what: &mut Vec<String>, path: &str) {
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = obj.get_mut(field) {
            for value in map.values_mut() {
                *value = json!(REDACTED);
            }
            what.push(format!("{path}.{field}"));
        } else if obj.get(field).is_some_and(|v| !v.is_null()) {
            obj[field] = json!(REDACTED);
            what.push(format!("{path}.{field}"));
        }
    }
}

/// Walk an object (or list) and redact every Secret in it, including secrets
/// embedded in `kubectl.kubernetes.io/last-applied-configuration`.
fn redact_tree(value: &mut Value, what: &mut Vec<String>, path: &str, secret_context: bool) {
    match value {
        Value::Object(_) => {
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
            let is_secret = kind == "Secret"
                || (secret_context
                    && (value.get("data").is_some() || value.get("stringData").is_some()));
            // A SecretList's items carry no kind of their own.
            let items_are_secrets = secret_context || kind == "SecretList";
            if is_secret {
                redact_secret_object(value, what, path);
            }
            if let Some(Value::String(applied)) = value
                .get_mut("metadata")
                .and_then(|m| m.get_mut("annotations"))
                .and_then(|a| a.get_mut("kubectl.kubernetes.io/last-applied-configuration"))
            {
                match serde_json::from_str::<Value>(applied) {
                    Ok(mut inner) => {
                        let mut inner_what = Vec::new();
                        redact_tree(
                            &mut inner,
                            &mut inner_what,
                            "last-applied-configuration",
                            is_secret || secret_context,
                        );
                        if !inner_what.is_empty() {
                            *applied = inner.to_string();
                            what.push(format!(
                                "{path}.metadata.annotations.last-applied-configuration"
                            ));
                        }
                    }
                    Err(_) if is_secret || secret_context => {
                        *applied = REDACTED.to_string();
                        what.push(format!(
                            "{path}.metadata.annotations.last-applied-configuration"
                        ));
                    }
                    Err(_) => {}
                }
            }
            if let Some(Value::Array(items)) = value.get_mut("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    redact_tree(item, what, &format!("{path}.items[{i}]"), items_are_secrets);
                }
            }
        }
        Value::Array(items) => {
            // JSON Patch documents on a Secret: every written value is removed except
            // where the path is known to hold no secret material. A patch at "" or "/"
            // replaces the whole object, one at /metadata or /metadata/annotations
            // may carry last-applied-configuration: all of those are redacted.
            for (i, op) in items.iter_mut().enumerate() {
                let target = op.get("path").and_then(Value::as_str).unwrap_or("");
                if secret_context && op.get("value").is_some() && !harmless_secret_path(target) {
                    op["value"] = json!(REDACTED);
                    what.push(format!("{path}[{i}].value"));
                }
            }
        }
        _ => {}
    }
}

/// JSON-Patch paths of a Secret whose values are never secret material.
fn harmless_secret_path(path: &str) -> bool {
    [
        "/metadata/labels/",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/finalizers",
        "/type",
        "/immutable",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        && !path.contains("last-applied")
}

/// Replace ConfigMap values that hold credentials (`derive::credential_kind`) with a
/// marker naming the kind, in the object, in JSON-Patch operations on `/data/<key>`
/// and in a `last-applied-configuration` copy.
fn redact_configmap_credentials(obj: &mut Value, what: &mut Vec<String>, path: &str) {
    let mark = |kind: &str| json!(format!("{}{kind}]", derive::CREDENTIAL_MARK));
    match obj {
        Value::Object(_) => {
            if let Some(Value::Object(data)) = obj.get_mut("data") {
                for (key, value) in data.iter_mut() {
                    if let Some(kind) = value.as_str().and_then(|v| derive::credential_kind(key, v))
                    {
                        *value = mark(kind);
                        what.push(format!("{path}.data.{key}"));
                    }
                }
            }
            if let Some(Value::String(applied)) = obj
                .get_mut("metadata")
                .and_then(|m| m.get_mut("annotations"))
                .and_then(|a| a.get_mut("kubectl.kubernetes.io/last-applied-configuration"))
                && let Ok(mut inner) = serde_json::from_str::<Value>(applied)
            {
                let mut inner_what = Vec::new();
                redact_configmap_credentials(
                    &mut inner,
                    &mut inner_what,
                    "last-applied-configuration",
                );
                if !inner_what.is_empty() {
                    *applied = inner.to_string();
                    what.push(format!(
                        "{path}.metadata.annotations.last-applied-configuration"
                    ));
                }
            }
        }
        Value::Array(ops) => {
            for (i, op) in ops.iter_mut().enumerate() {
                let target = op
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let Some(key) = target.strip_prefix("/data/") else {
                    if target == "/data"
                        && let Some(Value::Object(data)) = op.get_mut("value")
                    {
                        for (key, value) in data.iter_mut() {
                            if let Some(kind) =
                                value.as_str().and_then(|v| derive::credential_kind(key, v))
                            {
                                *value = mark(kind);
                                what.push(format!("{path}[{i}].value.{key}"));
                            }
                        }
                    }
                    continue;
                };
                let key = key.replace("~1", "/").replace("~0", "~");
                if let Some(value) = op.get_mut("value")
                    && let Some(kind) = value
                        .as_str()
                        .and_then(|v| derive::credential_kind(&key, v))
                {
                    *value = mark(kind);
                    what.push(format!("{path}[{i}].value"));
                }
            }
        }
        _ => {}
    }
}

/// Redact bearer tokens passed as query parameters in a request URI.
fn redact_uri(uri: &str, what: &mut Vec<String>) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let mut changed = false;
    let params: Vec<String> = query
        .split('&')
        .map(|p| {
            let key = p.split('=').next().unwrap_or("");
            if matches!(
                key.to_ascii_lowercase().as_str(),
                "access_token" | "token" | "bearer" | "id_token"
            ) {
                changed = true;
                format!("{key}={REDACTED}")
            } else {
                p.to_string()
            }
        })
        .collect();
    if changed {
        what.push("requestURI".into());
    }
    format!("{path}?{}", params.join("&"))
}

/// Apply every redaction to an event in place; returns what was removed.
pub fn redact(event: &mut Value) -> Vec<String> {
    let mut what = Vec::new();
    let resource = str_at(event, &["objectRef", "resource"])
        .unwrap_or("")
        .to_string();
    let subresource = str_at(event, &["objectRef", "subresource"])
        .unwrap_or("")
        .to_string();
    let secret_context = resource == "secrets";
    for field in ["requestObject", "responseObject"] {
        if let Some(obj) = event.get_mut(field) {
            redact_tree(obj, &mut what, field, secret_context);
            if resource == "configmaps" {
                redact_configmap_credentials(obj, &mut what, field);
            }
            // TokenRequest (serviceaccounts/token): the issued token.
            let token_request = obj.get("kind").and_then(Value::as_str) == Some("TokenRequest")
                || (resource == "serviceaccounts" && subresource == "token");
            if token_request
                && let Some(token) = obj.get_mut("status").and_then(|s| s.get_mut("token"))
                && !token.is_null()
            {
                *token = json!(REDACTED);
                what.push(format!("{field}.status.token"));
            }
            // TokenReview: the token under review.
            let token_review = obj.get("kind").and_then(Value::as_str) == Some("TokenReview")
                || resource == "tokenreviews";
            if token_review
                && let Some(token) = obj.get_mut("spec").and_then(|s| s.get_mut("token"))
                && !token.is_null()
            {
                *token = json!(REDACTED);
                what.push(format!("{field}.spec.token"));
            }
        }
    }
    if let Some(uri) = event
        .get("requestURI")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        let clean = redact_uri(&uri, &mut what);
        event["requestURI"] = json!(clean);
    }
    what
}

fn truncate_object(obj: &mut Value) -> bool {
    let size = obj.to_string().len();
    if size <= MAX_OBJECT_BYTES {
        return false;
    }
    let kind = obj.get("kind").cloned().unwrap_or(Value::Null);
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .cloned()
        .unwrap_or(Value::Null);
    let namespace = obj
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .cloned()
        .unwrap_or(Value::Null);
    *obj = json!({"_truncated": true, "_original_bytes": size, "kind": kind, "metadata": {"name": name, "namespace": namespace}});
    true
}

/// Why an event cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// The real caller (`user.username`); an impersonated identity is an attribute
/// (`k8s.impersonated_user.name`, `k8s.user.effective`), never the actor.
fn actor(event: &Value) -> String {
    str_at(event, &["user", "username"])
        .unwrap_or("")
        .to_string()
}

/// Normalise one (already redacted or not) audit event into a log record.
pub fn to_record(
    mut event: Value,
    tenant: TenantId,
    cluster: &str,
    observed: DateTime<Utc>,
    mut resource: Map<String, Value>,
) -> Result<LogRecord, Malformed> {
    if !event.is_object() {
        return Err(Malformed("an audit event must be a JSON object".into()));
    }
    let audit_id = str_at(&event, &["auditID"]).unwrap_or("").to_string();
    if audit_id.is_empty() {
        return Err(Malformed("auditID is missing".into()));
    }
    let stage = str_at(&event, &["stage"]).unwrap_or("").to_string();
    if stage.is_empty() {
        return Err(Malformed(format!("event {audit_id}: stage is missing")));
    }
    let time = str_at(&event, &["stageTimestamp"])
        .or_else(|| str_at(&event, &["requestReceivedTimestamp"]))
        .or_else(|| str_at(&event, &["timestamp"]))
        .ok_or_else(|| Malformed(format!("event {audit_id}: stageTimestamp is missing")))
        .and_then(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Malformed(format!("event {audit_id}: stageTimestamp {t:?}: {e}")))
        })?;
    let redacted = redact(&mut event);
    let code = event
        .get("responseStatus")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64);
    // Derive before truncating: a bloated pod spec must not hide its privileges.
    let derived = derive::derive(&event, code);
    let mut truncated = false;
    for field in ["requestObject", "responseObject"] {
        if let Some(obj) = event.get_mut(field) {
            truncated |= truncate_object(obj);
        }
    }
    let get = |path: &[&str]| {
        str_at(&event, path)
            .map(|s| json!(s))
            .unwrap_or(Value::Null)
    };
    let source_ips: Vec<Value> = event
        .get("sourceIPs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let client_ip = source_ips.last().cloned().unwrap_or(Value::Null);
    let annotations = event.get("annotations").cloned().unwrap_or(json!({}));
    let annotation = |key: &str| annotations.get(key).cloned().unwrap_or(Value::Null);
    let actor = actor(&event);
    let namespace = str_at(&event, &["objectRef", "namespace"])
        .unwrap_or("")
        .to_string();
    let obj_resource = str_at(&event, &["objectRef", "resource"])
        .unwrap_or("")
        .to_string();
    let name = derive::object_name(&event);
    let verb = str_at(&event, &["verb"]).unwrap_or("").to_string();
    let node = str_at(
        &event,
        &["user", "extra", "authentication.kubernetes.io/node-name"],
    )
    .map(str::to_string)
    .or_else(|| {
        event
            .pointer("/user/extra/authentication.kubernetes.io~1node-name/0")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
    .or_else(|| actor.strip_prefix("system:node:").map(str::to_string))
    .unwrap_or_default();
    let mut a = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() && v != json!("") {
            a.insert(k.to_string(), v);
        }
    };
    put(attr::CLUSTER_NAME, json!(cluster));
    put(attr::AUDIT_ID, json!(audit_id));
    put(attr::AUDIT_STAGE, json!(stage));
    put(attr::AUDIT_LEVEL, get(&["level"]));
    put(attr::AUDIT_VERB, json!(verb));
    put(attr::AUDIT_REQUEST_URI, get(&["requestURI"]));
    put(attr::USER_NAME, get(&["user", "username"]));
    put(attr::USER_UID, get(&["user", "uid"]));
    put(
        attr::USER_GROUPS,
        event
            .get("user")
            .and_then(|u| u.get("groups"))
            .cloned()
            .unwrap_or(Value::Null),
    );
    put(
        attr::IMPERSONATED_USER_NAME,
        get(&["impersonatedUser", "username"]),
    );
    put(
        attr::IMPERSONATED_USER_GROUPS,
        event
            .get("impersonatedUser")
            .and_then(|u| u.get("groups"))
            .cloned()
            .unwrap_or(Value::Null),
    );
    put(attr::CLIENT_IP, client_ip.clone());
    put(
        attr::SOURCE_IPS,
        if source_ips.is_empty() {
            Value::Null
        } else {
            Value::Array(source_ips)
        },
    );
    put(attr::USER_AGENT, get(&["userAgent"]));
    put(attr::OBJECT_API_GROUP, get(&["objectRef", "apiGroup"]));
    put(attr::OBJECT_API_VERSION, get(&["objectRef", "apiVersion"]));
    put(attr::OBJECT_RESOURCE, json!(obj_resource));
    put(attr::OBJECT_SUBRESOURCE, get(&["objectRef", "subresource"]));
    put(attr::OBJECT_NAMESPACE, json!(namespace));
    put(attr::OBJECT_NAME, json!(name));
    put(
        attr::RESPONSE_CODE,
        code.map(|c| json!(c)).unwrap_or(Value::Null),
    );
    put(attr::RESPONSE_REASON, get(&["responseStatus", "reason"]));
    put(
        attr::AUTHORIZATION_DECISION,
        annotation("authorization.k8s.io/decision"),
    );
    put(
        attr::AUTHORIZATION_REASON,
        annotation("authorization.k8s.io/reason"),
    );
    put(
        attr::POD_SECURITY_ENFORCE_POLICY,
        annotation("pod-security.kubernetes.io/enforce-policy"),
    );
    put(
        attr::POD_SECURITY_AUDIT_VIOLATIONS,
        annotation("pod-security.kubernetes.io/audit-violations"),
    );
    put(
        attr::POD_SECURITY_WARN_VIOLATIONS,
        annotation("pod-security.kubernetes.io/warn-violations"),
    );
    put(
        attr::POD_SECURITY_EXEMPT,
        annotation("pod-security.kubernetes.io/exempt"),
    );
    put(attr::AUDIT_ANNOTATIONS, annotations.clone());
    put(
        attr::REQUEST_OBJECT,
        event.get("requestObject").cloned().unwrap_or(Value::Null),
    );
    put(
        attr::RESPONSE_OBJECT,
        event.get("responseObject").cloned().unwrap_or(Value::Null),
    );
    let actor_kind = derived
        .get(attr::ACTOR_KIND)
        .and_then(Value::as_str)
        .unwrap_or("");
    // Entities for incidents and timelines. Anonymous and unauthenticated callers
    // are keyed by client IP: their user name says nothing about who they are.
    let entity_actor = match (actor_kind, client_ip.as_str()) {
        ("anonymous" | "unauthenticated", Some(ip)) => ip.to_string(),
        _ => actor.clone(),
    };
    put("entity.actor", json!(entity_actor));
    put("entity.namespace", json!(namespace));
    if obj_resource == "pods" {
        put("entity.pod", json!(name));
    } else if matches!(
        obj_resource.as_str(),
        "deployments" | "daemonsets" | "statefulsets" | "replicasets" | "jobs" | "cronjobs"
    ) {
        put("entity.workload", json!(format!("{obj_resource}/{name}")));
    }
    if let (Some(kind), Some(owner)) = (
        derived.get(attr::OWNER_KIND).and_then(Value::as_str),
        derived.get(attr::OWNER_NAME).and_then(Value::as_str),
    ) {
        put(
            "entity.workload",
            json!(format!("{}s/{owner}", kind.to_ascii_lowercase())),
        );
    }
    for (k, v) in &derived {
        put(k, v.clone());
    }
    put("entity.node", json!(node));
    put("entity.client_ip", client_ip);
    if !redacted.is_empty() {
        put(attr::AUDIT_REDACTED, json!(redacted));
    }
    if truncated {
        put(attr::AUDIT_TRUNCATED, json!(true));
    }
    resource
        .entry(attr::CLUSTER_NAME)
        .or_insert_with(|| json!(cluster));
    let target = match (namespace.is_empty(), name.is_empty()) {
        (false, false) => format!("{obj_resource}/{name} in {namespace}"),
        (true, false) => format!("{obj_resource}/{name}"),
        (false, true) => format!("{obj_resource} in {namespace}"),
        (true, true) => str_at(&event, &["requestURI"]).unwrap_or("").to_string(),
    };
    let who = if actor.is_empty() {
        "unauthenticated".to_string()
    } else {
        actor.clone()
    };
    let body = format!(
        "{verb} {target} by {who} -> {}",
        code.map_or("?".to_string(), |c| c.to_string())
    );
    let failed = code.is_some_and(|c| c >= 400);
    Ok(LogRecord {
        tenant_id: tenant,
        time,
        observed_time: observed,
        severity_number: if failed { 13 } else { 9 },
        severity_text: if failed { "WARN" } else { "INFO" }.into(),
        body,
        attributes: a,
        resource: resource.into(),
        scope_name: attr::AUDIT_SCOPE.into(),
        scope_version: str_at(&event, &["apiVersion"]).unwrap_or("").to_string(),
        trace_id: None,
        span_id: None,
        flags: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_event() -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": "a-1", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/prod/secrets?access_token=sekret-uri-token&limit=5",
            "verb": "create",
            "user": {"username": "alice@example.com", "groups": ["devs", "system:authenticated"]},
            "sourceIPs": ["203.0.113.9", "10.0.0.7"],
            "userAgent": "kubectl/v1.31.0",
            "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
            "responseStatus": {"code": 201},
            "requestObject": {"kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                    "{\"kind\":\"Secret\",\"data\":{\"password\":\"c2VrcmV0LWxhc3QtYXBwbGllZA==\"}}"}},
                "data": {"password": "c2VrcmV0LWRhdGE="}, "stringData": {"token": "sekret-string-data"}},
            "responseObject": {"kind": "Secret", "data": {"password": "c2VrcmV0LWRhdGE="}},
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed"},
            "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
            "stageTimestamp": "2026-11-26T10:00:00.120000Z"
        })
    }

    #[test]
    fn normalises_typed_fields_and_entities() {
        let r = to_record(
            secret_event(),
            TenantId(uuid::Uuid::nil()),
            "prod-eu-1",
            Utc::now(),
            Map::new(),
        )
        .unwrap();
        let a = &r.attributes;
        assert_eq!(a["k8s.audit.id"], "a-1");
        assert_eq!(a["k8s.audit.verb"], "create");
        assert_eq!(a["k8s.client.ip"], "10.0.0.7", "the last source IP");
        assert_eq!(a["k8s.source_ips"], json!(["203.0.113.9", "10.0.0.7"]));
        assert_eq!(a["k8s.object.resource"], "secrets");
        assert_eq!(a["k8s.response.code"], 201);
        assert_eq!(a["k8s.authorization.decision"], "allow");
        assert_eq!(a["entity.actor"], "alice@example.com");
        assert_eq!(a["entity.namespace"], "prod");
        assert_eq!(r.resource["k8s.cluster.name"], "prod-eu-1");
        assert_eq!(r.time.to_rfc3339(), "2026-11-26T10:00:00.120+00:00");
        assert_eq!(
            r.body,
            "create secrets/db in prod by alice@example.com -> 201"
        );
    }

    #[test]
    fn secrets_never_survive_normalisation() {
        let r = to_record(
            secret_event(),
            TenantId(uuid::Uuid::nil()),
            "c",
            Utc::now(),
            Map::new(),
        )
        .unwrap();
        let stored = serde_json::to_string(&r.attributes).unwrap() + &r.body;
        for secret in [
            "c2VrcmV0LWRhdGE=",
            "sekret-string-data",
            "c2VrcmV0LWxhc3QtYXBwbGllZA==",
            "sekret-uri-token",
        ] {
            assert!(!stored.contains(secret), "{secret} leaked: {stored}");
        }
        let redacted: Vec<String> =
            serde_json::from_value(r.attributes["k8s.audit.redacted"].clone()).unwrap();
        assert!(
            redacted.iter().any(|w| w.ends_with("requestObject.data")),
            "{redacted:?}"
        );
        assert!(
            redacted
                .iter()
                .any(|w| w.contains("last-applied-configuration")),
            "{redacted:?}"
        );
        assert!(redacted.contains(&"requestURI".to_string()));
        // Key names stay, so the UI can say what was removed.
        assert_eq!(
            r.attributes["k8s.request_object"]["data"]["password"],
            REDACTED
        );
    }

    #[test]
    fn token_request_and_token_review() {
        let mut tr = json!({"objectRef": {"resource": "serviceaccounts", "subresource": "token"},
            "responseObject": {"kind": "TokenRequest", "status": {"token": "eyJ-issued-token", "expirationTimestamp": "x"}}});
        redact(&mut tr);
        assert_eq!(tr["responseObject"]["status"]["token"], REDACTED);
        assert_eq!(tr["responseObject"]["status"]["expirationTimestamp"], "x");
        let mut review = json!({"objectRef": {"resource": "tokenreviews"},
            "requestObject": {"kind": "TokenReview", "spec": {"token": "eyJ-reviewed"}}});
        redact(&mut review);
        assert_eq!(review["requestObject"]["spec"]["token"], REDACTED);
        // A JSON Patch to a secret.
        let mut patch = json!({"objectRef": {"resource": "secrets"},
            "requestObject": [{"op": "replace", "path": "/data/password", "value": "cGF0Y2hlZA=="}]});
        redact(&mut patch);
        assert_eq!(patch["requestObject"][0]["value"], REDACTED);
    }

    #[test]
    fn big_objects_are_truncated_and_marked_not_dropped() {
        let mut e = secret_event();
        e["objectRef"] = json!({"resource": "configmaps", "namespace": "prod", "name": "big"});
        e["requestObject"] = json!({"kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"blob": "x".repeat(200_000)}});
        let r = to_record(e, TenantId(uuid::Uuid::nil()), "c", Utc::now(), Map::new()).unwrap();
        assert_eq!(r.attributes["k8s.audit.truncated"], true);
        assert_eq!(r.attributes["k8s.request_object"]["_truncated"], true);
        assert_eq!(
            r.attributes["k8s.request_object"]["metadata"]["name"],
            "big"
        );
    }

    #[test]
    fn malformed_events_name_the_problem_and_401s_have_no_user() {
        let err = to_record(
            json!({"kind": "Event", "stage": "ResponseComplete"}),
            TenantId(uuid::Uuid::nil()),
            "c",
            Utc::now(),
            Map::new(),
        )
        .unwrap_err();
        assert!(err.0.contains("auditID"));
        let unauth = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "x", "stage": "ResponseStarted",
            "user": {}, "verb": "get", "requestURI": "/api", "responseStatus": {"code": 401},
            "stageTimestamp": "2026-11-26T10:00:00Z"});
        let r = to_record(
            unauth,
            TenantId(uuid::Uuid::nil()),
            "c",
            Utc::now(),
            Map::new(),
        )
        .unwrap();
        assert_eq!(r.body, "get /api by unauthenticated -> 401");
        assert_eq!(r.severity_text, "WARN");
    }

    #[test]
    fn detects_the_three_otlp_shapes() {
        let line = secret_event().to_string();
        assert!(detect(&line, false, &Map::new()).is_some(), "string body");
        assert!(
            detect(&line, true, &Map::new()).is_some(),
            "kvlist body serialised to JSON"
        );
        let spread: Map<String, Value> = secret_event().as_object().unwrap().clone();
        assert!(
            detect("raw line that is not json", false, &spread).is_some(),
            "attributes"
        );
        assert!(detect("{\"kind\":\"Event\"}", false, &Map::new()).is_none());
        assert!(detect("hello", false, &Map::new()).is_none());
    }
}
