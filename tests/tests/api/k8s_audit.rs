//! Kubernetes audit events through the webhook and OTLP: one normalised record,
//! typed fields, and secrets redacted before the first write.

use palisade_tests::otlp::{kv, now_nanos, request, string};
use palisade_tests::{Auth, TestServer};
use serde_json::{Value, json};

const SECRETS: [&str; 6] = [
    "plain-secret-value-7f3a",
    "cGxhaW4tc2VjcmV0LXZhbHVlLTdmM2E=", // base64 of the above
    "string-data-secret-91b2",
    "last-applied-secret-c0de",
    "eyJ-issued-serviceaccount-token",
    "uri-bearer-token-5e5e",
];

fn stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn event(id: &str, extra: Value) -> Value {
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": id, "stage": "ResponseComplete", "verb": "get",
        "requestURI": "/api/v1/namespaces/prod/pods", "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["198.51.100.4", "10.1.2.3"], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "pods", "namespace": "prod", "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": stamp(), "stageTimestamp": stamp()
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn secret_events() -> Vec<Value> {
    let applied = json!({"kind": "Secret", "data": {"k": SECRETS[3]}}).to_string();
    vec![
        event(
            "secret-create",
            json!({
                "verb": "create", "requestURI": format!("/api/v1/namespaces/prod/secrets?access_token={}", SECRETS[5]),
                "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
                "responseStatus": {"code": 201},
                "requestObject": {"kind": "Secret", "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
                    "data": {"password": SECRETS[1], "plain": SECRETS[0]}, "stringData": {"token": SECRETS[2]}},
                "responseObject": {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": SECRETS[1]}}
            }),
        ),
        event(
            "token-request",
            json!({
                "verb": "create", "objectRef": {"resource": "serviceaccounts", "subresource": "token", "namespace": "prod", "name": "builder"},
                "responseObject": {"kind": "TokenRequest", "status": {"token": SECRETS[4]}}
            }),
        ),
    ]
}

async fn assert_no_secret_anywhere(server: &TestServer) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server.database_url.as_ref().unwrap())
        .await
        .unwrap();
    let dump: String = sqlx::query_scalar("SELECT coalesce(string_agg(body || attributes::text || resource::text, ' '), '') FROM log_records")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        dump.contains("secret-create"),
        "the events themselves are stored"
    );
    // A full data dump of the database: every table, alerts and request state included.
    let pg_dump = std::process::Command::new(palisade_tests::pg_bin().join("pg_dump"))
        .args([
            "--data-only",
            "--dbname",
            server.database_url.as_ref().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        pg_dump.status.success(),
        "{}",
        String::from_utf8_lossy(&pg_dump.stderr)
    );
    let full_dump = String::from_utf8_lossy(&pg_dump.stdout).to_string();
    assert!(full_dump.contains("secret-create"));
    for secret in SECRETS {
        assert!(!full_dump.contains(secret), "{secret} is in pg_dump");
    }
    let (_, everything) = server
        .search(&[("q", "*"), ("from", "now-1h"), ("limit", "1000")])
        .await;
    let api = everything.to_string();
    for secret in SECRETS {
        assert!(!dump.contains(secret), "{secret} reached Postgres");
        assert!(!api.contains(secret), "{secret} reached the API");
        let (_, found) = server.search(&[("q", secret), ("from", "now-1h")]).await;
        assert_eq!(found["total"], 0, "{secret} reached the index");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_accepts_event_lists_redacts_and_rejects_per_item() {
    let server = TestServer::spawn().await.unwrap();
    let mut items = secret_events();
    items.push(json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete", "stageTimestamp": stamp()}));
    items.push(event("unauthenticated", json!({"user": {}, "stage": "ResponseStarted", "responseStatus": {"code": 401}, "objectRef": null, "requestURI": "/api"})));
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items});
    let post = |body: Vec<u8>, ct: &str, token: Option<&str>| {
        let server = &server;
        let ct = ct.to_string();
        let token = token.map(str::to_owned);
        async move {
            let mut req = server
                .http
                .post(format!(
                    "{}/v1/k8s/audit?cluster=prod-eu-1",
                    server.otlp_http
                ))
                .header("content-type", ct)
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let token = server.creds.ingest_token.clone();
    let (status, answer) = post(
        serde_json::to_vec(&list).unwrap(),
        "application/json",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 3);
    assert_eq!(answer["rejected"], 1);
    assert!(
        answer["errors"][0].as_str().unwrap().contains("auditID"),
        "{answer}"
    );

    let found = server
        .wait_for_total(
            "attributes.k8s.audit.verb:create AND attributes.k8s.object.resource:secrets",
            1,
        )
        .await;
    let hit = &found["hits"][0];
    assert_eq!(hit["attributes"]["k8s.cluster.name"], "prod-eu-1");
    assert_eq!(hit["attributes"]["k8s.client.ip"], "10.1.2.3");
    assert_eq!(hit["attributes"]["entity.actor"], "alice@example.com");
    assert_eq!(hit["attributes"]["k8s.response.code"], 201);
    assert!(
        hit["attributes"]["k8s.audit.redacted"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    server
        .wait_for_total("attributes.k8s.response.code:401", 1)
        .await;
    assert_no_secret_anywhere(&server).await;

    assert_eq!(post(b"{}".to_vec(), "application/json", None).await.0, 401);
    assert_eq!(post(b"x".to_vec(), "text/plain", Some(&token)).await.0, 415);
    let (status, err) = post(b"{not json".to_vec(), "application/json", Some(&token)).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EventList"),
        "{err}"
    );
    // A cluster name that could not key requests is refused, naming the parameter.
    let resp = server
        .http
        .post(format!(
            "{}/v1/k8s/audit?cluster=prod%0Aeu",
            server.otlp_http
        ))
        .bearer_auth(&token)
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cluster:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_string_kvlist_and_attribute_shapes_become_audit_records() {
    let server = TestServer::spawn().await.unwrap();
    let resource_cluster = |records| {
        let mut req = request("kube-apiserver", records);
        if let Some(r) = req.resource_logs[0].resource.as_mut() {
            r.attributes.push(kv("k8s.cluster.name", string("staging")));
        }
        req
    };
    let mut records = Vec::new();
    // Variant A: the JSON line as a string body; and the secret events the same way.
    for e in secret_events()
        .into_iter()
        .chain([event("shape-string", json!({}))])
    {
        let mut r = palisade_tests::otlp::record(&e.to_string(), 0, vec![]);
        r.time_unix_nano = 0;
        r.observed_time_unix_nano = now_nanos();
        records.push(r);
    }
    // Variant C: the event spread over attributes, body kept as the original line.
    let spread = event("shape-attributes", json!({}));
    let attrs = spread
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_string())
        .map(|(k, v)| kv(k, string(v.as_str().unwrap())))
        .collect();
    records.push(palisade_tests::otlp::record("not parsed here", 0, attrs));
    assert_eq!(
        server
            .post_protobuf(&resource_cluster(records))
            .await
            .status(),
        200
    );
    // Variant B: the event as a kvlist body, sent as OTLP/JSON.
    let kvlist = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "k8s.cluster.name", "value": {"stringValue": "staging"}}]},
    "scopeLogs": [{"logRecords": [{"observedTimeUnixNano": now_nanos().to_string(), "body": {"kvlistValue": {"values": [
        {"key": "kind", "value": {"stringValue": "Event"}}, {"key": "apiVersion", "value": {"stringValue": "audit.k8s.io/v1"}},
        {"key": "auditID", "value": {"stringValue": "shape-kvlist"}}, {"key": "stage", "value": {"stringValue": "ResponseComplete"}},
        {"key": "verb", "value": {"stringValue": "delete"}}, {"key": "stageTimestamp", "value": {"stringValue": stamp()}},
        {"key": "user", "value": {"kvlistValue": {"values": [{"key": "username", "value": {"stringValue": "bob"}}]}}},
        {"key": "responseStatus", "value": {"kvlistValue": {"values": [{"key": "code", "value": {"intValue": "200"}}]}}}
    ]}}}]}]}]});
    let resp = server
        .post_logs(
            serde_json::to_vec(&kvlist).unwrap(),
            "application/json",
            None,
            Some(&server.creds.ingest_token),
        )
        .await;
    assert_eq!(resp.status(), 200);
    for id in ["shape-string", "shape-attributes", "shape-kvlist"] {
        let found = server
            .wait_for_total(&format!("attributes.k8s.audit.id:{id}"), 1)
            .await;
        assert_eq!(
            found["hits"][0]["attributes"]["k8s.cluster.name"], "staging",
            "{id}"
        );
        assert_eq!(found["hits"][0]["scope"]["name"], "k8s.audit");
    }
    let bob = server
        .wait_for_total(
            "attributes.entity.actor:bob AND attributes.k8s.audit.verb:delete",
            1,
        )
        .await;
    assert_eq!(bob["hits"][0]["attributes"]["k8s.response.code"], 200);
    assert_no_secret_anywhere(&server).await;
    let _ = Auth::None;
}

/// POST an EventList of `items` to the webhook as kube-apiserver does.
async fn post_list(server: &TestServer, items: Vec<Value>) -> reqwest::Response {
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items});
    server
        .http
        .post(format!("{}/v1/k8s/audit?cluster=prod", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        .json(&list)
        .send()
        .await
        .unwrap()
}

async fn post_events(server: &TestServer, items: Vec<Value>) {
    assert_eq!(post_list(server, items).await.status(), 200);
}

async fn alerts_of(server: &TestServer, rule: &str) -> Vec<Value> {
    let (status, body, _) = server
        .call(
            "GET",
            &format!("/api/v1/alerts?rule={rule}"),
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

async fn wait_alert(server: &TestServer, rule: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(a) = alerts_of(server, rule).await.into_iter().next() {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "{rule} never fired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn exec_event(id: &str, actor: &str, subresource: &str) -> Value {
    event(
        id,
        json!({
            "verb": "get", "stage": "ResponseStarted", "user": {"username": actor},
            "requestURI": format!("/api/v1/namespaces/prod/pods/web-1/{subresource}?command=sh&stdin=true&tty=true"),
            "objectRef": {"resource": "pods", "namespace": "prod", "name": "web-1", "subresource": subresource, "apiVersion": "v1"},
            "responseStatus": {"code": 101}
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_detections_fire_with_audit_ids_and_can_be_disabled_per_tenant() {
    let server = TestServer::spawn().await.unwrap();
    let admin = Auth::Token(server.creds.api_token.clone());
    let (_, rules, _) = server.call("GET", "/api/v1/rules", &admin, None).await;
    let ids: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for id in ["K8S-001", "K8S-010", "K8S-013", "K8S-016", "K8S-017"] {
        assert!(
            ids.contains(&id),
            "built-in {id} is loaded by default: {ids:?}"
        );
    }

    post_events(&server, vec![exec_event("exec-audit-1", "mallory", "exec")]).await;
    let alert = wait_alert(&server, "K8S-001").await;
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["labels"]["attributes.entity.actor"], "mallory");
    assert_eq!(alert["labels"]["attack"], "T1609");
    assert_eq!(alert["evidence"]["audit_ids"], json!(["exec-audit-1"]));

    // The tenant disables K8S-001 without touching the shipped files.
    let disabled = "apiVersion: palisade/v1\nid: K8S-001\ntitle: Exec/attach (disabled here)\nseverity: medium\nkind: match\nquery: 'attributes.k8s.object.subresource:exec'\nenabled: false\n";
    let resp = server
        .http
        .post(format!("{}/api/v1/rules", server.api))
        .bearer_auth(&server.creds.api_token)
        .body(disabled)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    post_events(
        &server,
        vec![
            exec_event("exec-audit-2", "eve", "exec"),
            exec_event("pf-audit-1", "eve", "portforward"),
        ],
    )
    .await;
    // Positive control: the port-forward rule fires for the same batch ...
    let pf = wait_alert(&server, "K8S-026").await;
    assert_eq!(pf["evidence"]["audit_ids"], json!(["pf-audit-1"]));
    // ... while the disabled rule raised nothing new.
    let exec_alerts = alerts_of(&server, "K8S-001").await;
    assert_eq!(exec_alerts.len(), 1, "{exec_alerts:?}");

    // Tuning: exceptions added to a shipped rule for this tenant, without copying it.
    let tune = |body: &'static str| {
        server
            .http
            .post(format!("{}/api/v1/rules", server.api))
            .bearer_auth(&server.creds.api_token)
            .body(body)
            .send()
    };
    let resp = tune("apiVersion: palisade/v1\ntunes: K8S-999\nexceptions: ['attributes.x:y']\n")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("tunes"));
    let resp = tune(
        "apiVersion: palisade/v1\ntunes: K8S-026\nexceptions:\n  - 'attributes.entity.actor:\"ops-bot\"'\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let (_, listed, _) = server.call("GET", "/api/v1/rules", &admin, None).await;
    let tuned = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "K8S-026")
        .unwrap()
        .clone();
    assert_eq!(tuned["source"], "tuned", "{tuned}");
    post_events(
        &server,
        vec![
            exec_event("pf-bot", "ops-bot", "portforward"),
            exec_event("pf-dev", "dev2", "portforward"),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alerts = alerts_of(&server, "K8S-026").await;
        if alerts
            .iter()
            .any(|a| a["labels"]["attributes.entity.actor"] == "dev2")
        {
            assert!(
                !alerts
                    .iter()
                    .any(|a| a["labels"]["attributes.entity.actor"] == "ops-bot"),
                "{alerts:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{alerts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Escalation: hostNetwork alone is medium; a later patch of the same DaemonSet to
    // hostPID raises the open alert to high (and nothing lowers it again).
    let ds = |id: &str, spec: Value| {
        event(
            id,
            json!({"verb": "patch", "user": {"username": "ops@corp.example"},
                "objectRef": {"resource": "daemonsets", "apiGroup": "apps", "namespace": "edge", "name": "agent"},
                "responseObject": {"kind": "DaemonSet", "spec": {"template": {"spec": spec}}}}),
        )
    };
    post_events(
        &server,
        vec![ds(
            "ds-1",
            json!({"hostNetwork": true, "containers": [{"image": "agent:1"}]}),
        )],
    )
    .await;
    let first = wait_alert(&server, "K8S-005").await;
    assert_eq!(first["severity"], "medium", "{first}");
    post_events(
        &server,
        vec![
            ds(
                "ds-2",
                json!({"hostNetwork": true, "hostPID": true, "containers": [{"image": "agent:2"}]}),
            ),
            ds(
                "ds-3",
                json!({"hostNetwork": true, "containers": [{"image": "agent:3"}]}),
            ),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let raised = loop {
        let a = alerts_of(&server, "K8S-005").await.remove(0);
        if a["evidence"]["count"] == 3 {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "{a}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(raised["id"], first["id"], "the same alert");
    assert_eq!(raised["severity"], "high", "{raised}");
    assert_eq!(raised["labels"]["severity"], "high");
}

#[tokio::test(flavor = "multi_thread")]
async fn correlations_join_detections_across_tactics_and_enumeration_then_success() {
    let server = TestServer::spawn().await.unwrap();
    let intruder = |id: &str, verb: &str, resource: &str, extra: Value| {
        let mut e = event(
            id,
            json!({"verb": verb, "user": {"username": "intruder@corp.example"},
                "userAgent": "kubectl/v1.30.0", "sourceIPs": ["203.0.113.77"],
                "requestURI": format!("/api/v1/{resource}"), "objectRef": {"resource": resource}}),
        );
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let forbid = json!({"responseStatus": {"code": 403}, "annotations": {"authorization.k8s.io/decision": "forbid"}});
    // Discovery: forbidden on four distinct resources (K8S-018, threshold).
    let probes: Vec<Value> = ["nodes", "secrets", "clusterroles", "daemonsets"]
        .iter()
        .enumerate()
        .map(|(i, r)| intruder(&format!("probe-{i}"), "list", r, forbid.clone()))
        .collect();
    post_events(&server, probes).await;
    // Wait for the burst to be known before the success, as in a live cluster.
    wait_alert_within(&server, "K8S-018", 45).await;
    // Credential access (K8S-013) and, from the same address, a secret read after the
    // burst (C-04); then execution: a privileged pod (K8S-003).
    post_events(
        &server,
        vec![
            intruder("list-secrets", "list", "secrets", json!({})),
            intruder(
                "priv-pod",
                "create",
                "pods",
                json!({"objectRef": {"resource": "pods", "namespace": "default", "name": "x"},
                    "responseStatus": {"code": 201},
                    "requestObject": {"kind": "Pod", "spec": {"containers": [{"image": "alpine", "securityContext": {"privileged": true}}]}}}),
            ),
        ],
    )
    .await;
    let c04 = wait_alert_within(&server, "C-04", 15).await;
    assert_eq!(c04["labels"]["attributes.k8s.client.ip"], "203.0.113.77");
    let c01 = wait_alert_within(&server, "C-01", 45).await;
    assert_eq!(c01["severity"], "critical");
    assert_eq!(
        c01["labels"]["attributes.entity.actor"],
        "intruder@corp.example"
    );
    // Three tactic groups; the single forbidden probes on secrets and clusterroles
    // (K8S-043, low) are signals of their own, so more than three records join.
    assert!(c01["evidence"]["count"].as_u64().unwrap() >= 3, "{c01}");
    // Its audit ids are the requests that raised each joined detection.
    let mut joined: Vec<&str> = c01["evidence"]["audit_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    joined.sort();
    assert!(joined.len() >= 3, "{c01}");
    assert!(
        joined.contains(&"list-secrets") && joined.contains(&"priv-pod"),
        "{c01}"
    );
    assert!(joined.iter().any(|id| id.starts_with("probe-")), "{c01}");
    // The signals are searchable records of their own...
    let signals = server
        .wait_for_total(
            "scope_name:\"palisade.alert\" AND attributes.entity.actor:\"intruder@corp.example\" AND attributes.alert.tactic:*",
            5,
        )
        .await;
    let rules: std::collections::BTreeSet<&str> = signals["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["attributes"]["alert.rule"].as_str().unwrap())
        .collect();
    // K8S-043 (low): the forbidden probes on secrets and clusterroles, one signal each.
    assert_eq!(rules, ["K8S-003", "K8S-013", "K8S-018", "K8S-043"].into());
    // ... which a client cannot forge.
    let mut forged = request(
        "attacker",
        vec![palisade_tests::otlp::record(
            "forged",
            9,
            vec![kv("alert.tactic", string("execution"))],
        )],
    );
    forged.resource_logs[0].scope_logs[0].scope = Some(
        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: "palisade.alert".into(),
            ..Default::default()
        },
    );
    let resp = server.post_json(&forged).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("reserved"),
        "{body}"
    );
}

async fn wait_alert_within(server: &TestServer, rule: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(a) = alerts_of(server, rule).await.into_iter().next() {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rule} did not fire within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_bound_token_used_off_its_pod_is_caught_from_the_pod_ip_inventory() {
    let server = TestServer::spawn().await.unwrap();
    // An application log enriched by the Collector's k8sattributes processor tells
    // Palisade which address pod shop/web-1 of cluster prod has.
    let mut app = request(
        "web",
        vec![palisade_tests::otlp::record("GET /healthz 200", 9, vec![])],
    );
    let resource = app.resource_logs[0].resource.as_mut().unwrap();
    for (k, v) in [
        ("k8s.cluster.name", "prod"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-1"),
        ("k8s.pod.ip", "10.244.1.5"),
    ] {
        resource.attributes.push(kv(k, string(v)));
    }
    assert_eq!(server.post_json(&app).await.status(), 200);
    let token_use = |id: &str, ip: &str| {
        event(
            id,
            json!({"user": {"username": "system:serviceaccount:shop:web",
                    "extra": {"authentication.kubernetes.io/pod-name": ["web-1"]}},
                "userAgent": "curl/8.5.0", "sourceIPs": [ip],
                "requestURI": "/api/v1/namespaces/shop/secrets/db",
                "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db"}}),
        )
    };
    post_events(
        &server,
        vec![
            token_use("from-the-pod", "10.244.1.5"),
            token_use("stolen", "203.0.113.50"),
        ],
    )
    .await;
    let c05 = wait_alert(&server, "C-05").await;
    assert_eq!(c05["labels"]["attributes.k8s.client.ip"], "203.0.113.50");
    assert_eq!(c05["evidence"]["audit_ids"], json!(["stolen"]));
    // K8S-015 (scripted client) fires for both uses, escalated to high only off the pod.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let k8s_015 = loop {
        let alerts = alerts_of(&server, "K8S-015").await;
        if alerts.len() == 2 {
            break alerts;
        }
        assert!(std::time::Instant::now() < deadline, "{alerts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for alert in k8s_015 {
        let expected = match alert["labels"]["attributes.k8s.client.ip"].as_str() {
            Some("203.0.113.50") => "high",
            _ => "medium",
        };
        assert_eq!(alert["severity"], expected, "{alert}");
    }
    // The marks are searchable facts of the record.
    let found = server
        .wait_for_total("attributes.k8s.user.off_pod:true", 1)
        .await;
    assert_eq!(found["hits"][0]["attributes"]["k8s.audit.id"], "stolen");
    assert_eq!(
        found["hits"][0]["attributes"]["k8s.user.pod_ips"],
        json!(["10.244.1.5"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minted_token_first_used_from_elsewhere_is_joined_to_its_issuer() {
    let server = TestServer::spawn().await.unwrap();
    let mint = event(
        "mint-1",
        json!({"verb": "create", "user": {"username": "alice@example.com"}, "sourceIPs": ["192.0.2.10"],
            "requestURI": "/api/v1/namespaces/ci/serviceaccounts/deployer/token",
            "objectRef": {"resource": "serviceaccounts", "subresource": "token", "namespace": "ci", "name": "deployer"},
            "responseStatus": {"code": 201}}),
    );
    let use_from = |id: &str, ip: &str| {
        event(
            id,
            json!({"user": {"username": "system:serviceaccount:ci:deployer"}, "sourceIPs": [ip],
                "verb": "list", "requestURI": "/api/v1/namespaces/ci/secrets",
                "objectRef": {"resource": "secrets", "namespace": "ci"}}),
        )
    };
    // Separate batches: the issued credential is remembered in Postgres between them.
    post_events(&server, vec![mint]).await;
    post_events(&server, vec![use_from("use-same-ip", "192.0.2.10")]).await;
    post_events(&server, vec![use_from("use-elsewhere", "203.0.113.70")]).await;
    post_events(&server, vec![use_from("use-again", "203.0.113.71")]).await;
    let c03 = wait_alert(&server, "C-03").await;
    assert_eq!(
        c03["labels"]["attributes.k8s.credential.minted_by"],
        "alice@example.com"
    );
    assert_eq!(c03["evidence"]["audit_ids"], json!(["use-elsewhere"]));
    // K8S-020 fired for the mint itself.
    let k8s_020 = wait_alert(&server, "K8S-020").await;
    assert_eq!(k8s_020["evidence"]["audit_ids"], json!(["mint-1"]));
    // Only the first use from elsewhere is marked: once the last line is searchable,
    // exactly one record carries the mark.
    let last = server
        .wait_for_total("attributes.k8s.audit.id:\"use-again\"", 1)
        .await;
    assert!(
        last["hits"][0]["attributes"]
            .get("k8s.credential.minted_use")
            .is_none()
    );
    let found = server
        .wait_for_total("attributes.k8s.credential.minted_use:true", 1)
        .await;
    assert_eq!(
        found["hits"][0]["attributes"]["k8s.credential.mint_audit_id"],
        "mint-1"
    );
}

/// The webhook and OTLP accept the same time window: the server's `--retention-days`
/// policy. An event 45 days old is kept by both under 60 days and refused by both
/// under 30 (the webhook with a 400 naming the window, OTLP with a partial success).
#[tokio::test(flavor = "multi_thread")]
async fn webhook_and_otlp_share_the_retention_window() {
    let old = (chrono::Utc::now() - chrono::Duration::days(45))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for (days, kept) in [("60", true), ("30", false)] {
        let dir = palisade_tests::TempDir::new("palisade-window");
        let url = palisade_tests::fresh_database().await.unwrap();
        let server = TestServer::start(&dir.0, Some(url), &["--retention-days", days])
            .await
            .unwrap();
        let aged = |id: &str| {
            event(
                id,
                json!({"requestReceivedTimestamp": old, "stageTimestamp": old}),
            )
        };
        // The webhook.
        let resp = post_list(&server, vec![aged("aged-webhook")]).await;
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        // OTLP: the same event as a Collector's filelog receiver ships it.
        let mut record = palisade_tests::otlp::record(&aged("aged-otlp").to_string(), 0, vec![]);
        record.time_unix_nano = 0;
        record.observed_time_unix_nano = now_nanos();
        let resp = server
            .post_protobuf(&request("kube-apiserver", vec![record]))
            .await;
        assert_eq!(resp.status(), 200, "retention {days}");
        let otlp = palisade_tests::otlp::decode_response(&resp.bytes().await.unwrap());
        let otlp_rejected = otlp.partial_success.map_or(0, |p| p.rejected_log_records);
        if kept {
            assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
            assert_eq!(otlp_rejected, 0, "retention {days}");
            for id in ["aged-webhook", "aged-otlp"] {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    let (_, found) = server
                        .search(&[
                            ("q", &format!("attributes.k8s.audit.id:{id}")),
                            ("from", "now-50d"),
                        ])
                        .await;
                    if found["total"] == 1 {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{id} not found: {found}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        } else {
            assert_eq!(status, 400, "{answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("outside the accepted window"),
                "{answer}"
            );
            assert_eq!(otlp_rejected, 1, "retention {days}");
        }
    }
}
