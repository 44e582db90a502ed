//! Incidents: firing alerts grouped by their entities, responders' actions (which
//! reach paging channels), the timeline, its live stream and sealed exports.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::receiver::Receiver;
use palisade_tests::{Auth, TempDir, TestServer};
use serde_json::{Value, json};

use crate::k8s_generator::{generate, send_sentinel_and_wait, ship};

const MALLORY: &str = "temp-contractor@corp.example";

fn admin(server: &TestServer) -> Auth {
    Auth::Token(server.creds.api_token.clone())
}

async fn get(server: &TestServer, path: &str) -> Value {
    let (status, body, _) = server.call("GET", path, &admin(server), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = server.call("POST", path, &admin(server), Some(body)).await;
    (status, body)
}

async fn start(rules: Option<&str>) -> (TestServer, TempDir, Option<TempDir>) {
    let data = TempDir::new("palisade-incidents");
    let url = palisade_tests::fresh_database().await.unwrap();
    let mut args = vec![
        "--allow-private-destinations",
        "127.0.0.0/8",
        "--api-rate-limit",
        "1000",
    ];
    let dir = rules.map(|rule| {
        let dir = TempDir::new("palisade-incident-rules");
        std::fs::write(dir.0.join("rule.yaml"), rule).unwrap();
        dir
    });
    let path = dir.as_ref().map(|d| d.0.to_str().unwrap().to_string());
    if let Some(p) = &path {
        args.extend(["--rules-dir", p.as_str(), "--no-builtin-rules"]);
    }
    let server = TestServer::start(&data.0, Some(url), &args).await.unwrap();
    (server, data, dir)
}

/// Every entry of a timeline, paging with `limit` (exercises the cursor).
async fn timeline(server: &TestServer, id: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/incidents/{id}/timeline?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(server, &path).await;
        let got = page["entries"].as_array().unwrap();
        assert!(got.len() <= limit);
        entries.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return entries,
        }
    }
    panic!("the timeline never ended");
}

/// The generator's attack mix through real ingest (OTLP/HTTP and the audit webhook):
/// the contractor's discovery, escalation and persistence become one incident; every
/// firing alert is in exactly one incident and there are fewer incidents than alerts;
/// the incident's timeline holds the contractor's earlier request (before the first
/// alert), the alerts, the PagerDuty deliveries, and a responder's acknowledgement
/// (which reaches PagerDuty for each alert) and note, in order.
#[tokio::test(flavor = "multi_thread")]
async fn an_attack_becomes_one_incident_with_its_whole_story() {
    let rx = Receiver::start().await;
    let (server, _data, _) = start(None).await;
    let (status, created) = post(
        &server,
        "/api/v1/channels",
        json!({"name": "pd", "type": "pagerduty", "url": format!("{}/pd", rx.url), "routing_key": "RK"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    // Group on the actor only: the generator draws each attack burst's outside address
    // at random from 248 values, so an anonymous scanner's single forbidden requests
    // (K8S-043, low) may share the contractor's address and, grouped on client_ip,
    // pull one of the contractor's alerts into the scanner's incident.
    let (status, body, _) = server
        .call(
            "PUT",
            "/api/v1/incident-settings",
            &admin(&server),
            Some(json!({"group_on": ["actor"], "window": "30m", "auto_resolve": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The contractor looks around a few minutes before the attack bursts start.
    let recon_at = (chrono::Utc::now() - chrono::Duration::seconds(280))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let recon = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "0d5c7a1e-recon-4b7e-9c1a-000000000001", "stage": "ResponseComplete", "verb": "list",
        "requestURI": "/api/v1/namespaces/default/pods?limit=500", "user": {"username": MALLORY, "groups": ["oidc:contractors", "system:authenticated"]},
        "sourceIPs": ["203.0.113.77"], "userAgent": "kubectl/v1.28.2 (linux/amd64) kubernetes/89a4ea3",
        "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": recon_at, "stageTimestamp": recon_at,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}});
    let mut lines = vec![recon.to_string()];
    lines.extend(generate(3_000, 3, true));
    ship(&server, &lines).await;
    send_sentinel_and_wait(&server).await;

    // The contractor's incident: wait until its alerts stop arriving.
    let path = format!("/api/v1/incidents?entity=actor:{MALLORY}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    let incident = loop {
        let list = get(&server, &path).await;
        let incidents = list["incidents"].as_array().unwrap().clone();
        let n = incidents
            .iter()
            .map(|i| i["alert_ids"].as_array().unwrap().len())
            .sum::<usize>();
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= 2 && last.1.elapsed() > Duration::from_secs(5) {
            assert_eq!(incidents.len(), 1, "one intruder, one incident: {list:#}");
            break incidents[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no incident for {MALLORY}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = incident["id"].as_str().unwrap().to_string();
    assert_eq!(incident["state"], "triggered");
    assert!(
        incident["entities"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "actor", "value": MALLORY})),
        "{incident:#}"
    );
    let incident_alerts: BTreeSet<String> = incident["alert_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // The incident's severity is the highest of its alerts'.
    let rank = |s: &str| {
        ["info", "low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
    };
    let mut rules = BTreeSet::new();
    let mut top = 0;
    for a in &incident_alerts {
        let alert = get(&server, &format!("/api/v1/alerts/{a}")).await;
        rules.insert(alert["rule_id"].as_str().unwrap().to_string());
        top = top.max(rank(alert["severity"].as_str().unwrap()).unwrap());
    }
    assert!(
        rules.len() >= 2,
        "several detections in one incident: {rules:?}"
    );
    assert_eq!(rank(incident["severity"].as_str().unwrap()), Some(top));

    // Grouping: every firing alert is in exactly one incident, and there are fewer
    // incidents than alerts.
    let all = get(&server, "/api/v1/incidents?limit=1000").await;
    let incidents = all["incidents"].as_array().unwrap();
    let mut grouped = HashSet::new();
    for i in incidents {
        for a in i["alert_ids"].as_array().unwrap() {
            assert!(
                grouped.insert(a.as_str().unwrap().to_string()),
                "{a} in two incidents"
            );
        }
    }
    let alerts = crate::k8s_generator::all_alerts(&server).await;
    let firing: HashSet<String> = alerts
        .iter()
        .filter(|a| a["firing_at"].is_string() && !a["silenced"].as_bool().unwrap())
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    eprintln!(
        "{} incidents for {} firing alerts; the contractor's holds {rules:?}",
        incidents.len(),
        firing.len()
    );
    assert_eq!(grouped, firing, "every firing alert is in an incident");
    assert!(
        incidents.len() < firing.len(),
        "{} incidents for {} alerts",
        incidents.len(),
        firing.len()
    );
    // Filters answer with their field named when wrong.
    let (status, err, _) = server
        .call("GET", "/api/v1/incidents?state=open", &admin(&server), None)
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("state"));

    // A responder acknowledges: PagerDuty hears `acknowledge` for each alert.
    let (status, acked) = post(
        &server,
        &format!("/api/v1/incidents/{id}/acknowledge"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    let fingerprints: BTreeSet<String> = {
        let mut f = BTreeSet::new();
        for a in &incident_alerts {
            let alert = get(&server, &format!("/api/v1/alerts/{a}")).await;
            f.insert(alert["fingerprint"].as_str().unwrap().to_string());
        }
        f
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let acks: BTreeSet<String> = rx
            .received("/pd")
            .iter()
            .map(|r| r.json())
            .filter(|b| b["event_action"] == "acknowledge")
            .map(|b| b["dedup_key"].as_str().unwrap().to_string())
            .collect();
        if acks == fingerprints {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledgements reached PagerDuty for {acks:?}, expected {fingerprints:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, note) = post(
        &server,
        &format!("/api/v1/incidents/{id}/notes"),
        json!({"text": "Contractor account **disabled**; <script>alert(1)</script>"}),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert!(
        note["payload"]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>disabled</strong>")
    );
    assert!(
        !note["payload"]["html"]
            .as_str()
            .unwrap()
            .contains("<script")
    );

    // The timeline, paged 25 at a time.
    let entries = timeline(&server, &id, "", 25).await;
    for pair in entries.windows(2) {
        assert!(
            pair[0]["time"].as_str() <= pair[1]["time"].as_str() || {
                let t = |e: &Value| {
                    chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap()
                };
                t(&pair[0]) <= t(&pair[1])
            },
            "out of order: {pair:?}"
        );
    }
    let position = |pred: &dyn Fn(&Value) -> bool| entries.iter().position(pred);
    let recon_at = position(&|e| {
        e["kind"] == "event" && e["payload"]["attributes"]["k8s.audit.id"] == recon["auditID"]
    })
    .expect("the contractor's earlier request is in the timeline");
    assert_eq!(entries[recon_at]["payload"]["correlated"], true);
    assert_eq!(entries[recon_at]["actor"], MALLORY);
    let first_alert = position(&|e| e["kind"] == "alert_fired").expect("alerts fired");
    assert!(
        recon_at < first_alert,
        "the earlier request comes before the first alert"
    );
    let fired: BTreeSet<String> = entries
        .iter()
        .filter(|e| e["kind"] == "alert_fired")
        .map(|e| e["payload"]["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fired, incident_alerts,
        "every alert's firing is on the timeline"
    );
    let pages = entries
        .iter()
        .filter(|e| e["kind"] == "notification" && e["payload"]["channel"] == "pd")
        .count();
    assert!(
        pages >= 2 * incident_alerts.len(),
        "a trigger and an acknowledge per alert: {pages}"
    );
    let acked_at =
        position(&|e| e["kind"] == "state_change" && e["payload"]["to"] == "acknowledged")
            .expect("the acknowledgement is on the timeline");
    let noted_at = position(&|e| e["kind"] == "note").expect("the note is on the timeline");
    assert!(first_alert < acked_at && acked_at < noted_at);
    assert_eq!(entries[noted_at]["actor"], entries[acked_at]["actor"]);
    // Kinds and entities filter.
    let notes = timeline(&server, &id, "kinds=note", 100).await;
    assert_eq!(notes.len(), 1);
    let only = timeline(
        &server,
        &id,
        &format!("kinds=event&entity=actor:{MALLORY}"),
        200,
    )
    .await;
    assert!(!only.is_empty());
    assert!(only.iter().all(|e| e["actor"] == MALLORY), "entity filter");
    let (status, err, _) = server
        .call(
            "GET",
            &format!("/api/v1/incidents/{id}/timeline?kinds=gossip"),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("kinds"));
}

const RULE: &str = r#"apiVersion: palisade/v1
id: root-shell
title: Root shell
severity: high
kind: match
query: 'body:"shell opened"'
group_by: [attributes.user.name]
resolve_after: 2s
annotations:
  summary: 'shell for {{ group["attributes.user.name"] }}'
"#;

async fn shell(server: &TestServer, user: &str) {
    let resp = server
        .post_protobuf(&request(
            "auth",
            vec![record(
                "shell opened",
                9,
                vec![kv("user.name", string(user))],
            )],
        ))
        .await;
    assert_eq!(resp.status(), 200);
}

async fn incidents_of(server: &TestServer, user: &str) -> Vec<Value> {
    let list = get(
        server,
        &format!("/api/v1/incidents?entity=user.name:{user}"),
    )
    .await;
    list["incidents"].as_array().unwrap().clone()
}

async fn wait_incident(server: &TestServer, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(i) = incidents_of(server, user).await.first() {
            return i.clone();
        }
        assert!(Instant::now() < deadline, "no incident for {user}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alerts about different users open different incidents; merging moves alerts and
/// activity and resolves the merged one; splitting moves alerts back out; when every
/// alert resolves, the incident resolves itself (and a setting turns that off).
#[tokio::test(flavor = "multi_thread")]
async fn incidents_merge_split_and_resolve_themselves() {
    let (server, _data, _rules) = start(Some(RULE)).await;
    shell(&server, "alice").await;
    shell(&server, "bob").await;
    let a = wait_incident(&server, "alice").await;
    let b = wait_incident(&server, "bob").await;
    assert_ne!(a["id"], b["id"], "no shared entity, two incidents");
    assert_eq!(a["title"], "root-shell: shell for alice");
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (status, _) = post(
        &server,
        &format!("/api/v1/incidents/{b_id}/notes"),
        json!({"text": "bob's note"}),
    )
    .await;
    assert_eq!(status, 201);

    let (status, merged) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/merge"),
        json!({"incidents": [b_id]}),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["alert_ids"].as_array().unwrap().len(), 2);
    let gone = get(&server, &format!("/api/v1/incidents/{b_id}")).await;
    assert_eq!(gone["state"], "resolved");
    assert_eq!(gone["merged_into"], a_id);
    let entries = timeline(&server, a_id, "", 100).await;
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "note" && e["payload"]["markdown"] == "bob's note"),
        "activity moved"
    );
    assert!(entries.iter().any(|e| e["payload"]["action"] == "merge"));
    // Bad merges name the field.
    let (status, err) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/merge"),
        json!({"incidents": [a_id]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, _) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/merge"),
        json!({"incidents": [uuid::Uuid::now_v7()]}),
    )
    .await;
    assert_eq!(status, 404);

    let bob_alert = b["alert_ids"][0].as_str().unwrap();
    let (status, split) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/split"),
        json!({"alert_ids": [bob_alert]}),
    )
    .await;
    assert_eq!(status, 201, "{split}");
    assert_eq!(split["alert_ids"], json!([bob_alert]));
    assert!(
        split["entities"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "user.name", "value": "bob"}))
    );
    let after = get(&server, &format!("/api/v1/incidents/{a_id}")).await;
    assert_eq!(after["alert_ids"].as_array().unwrap().len(), 1);
    assert!(
        !after["entities"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "user.name", "value": "bob"}))
    );
    let (status, err) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/split"),
        json!({"alert_ids": after["alert_ids"]}),
    )
    .await;
    assert_eq!(status, 400, "an incident keeps one alert: {err}");

    // resolve_after 2s: both alerts resolve, and so do their incidents.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(&server, &format!("/api/v1/incidents/{a_id}")).await;
        let s = get(
            &server,
            &format!("/api/v1/incidents/{}", split["id"].as_str().unwrap()),
        )
        .await;
        if a["state"] == "resolved" && s["state"] == "resolved" {
            assert!(a["resolved_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "not auto-resolved: {a} {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let entries = timeline(&server, a_id, "kinds=state_change,alert_resolved", 100).await;
    assert!(entries.iter().any(|e| e["kind"] == "alert_resolved"));
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "palisade" && e["payload"]["to"] == "resolved")
    );

    // Another alert for alice joins nothing resolved: a new incident. With
    // auto_resolve off, resolved alerts leave it open; reopen and assign work.
    let (status, body, _) = server
        .call(
            "PUT",
            "/api/v1/incident-settings",
            &admin(&server),
            Some(json!({"group_on": ["labels"], "window": "10m", "auto_resolve": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, err, _) = server
        .call(
            "PUT",
            "/api/v1/incident-settings",
            &admin(&server),
            Some(json!({"group_on": ["labels"], "window": "soon", "auto_resolve": false})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("window"));
    shell(&server, "alice").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        let open: Vec<Value> = incidents_of(&server, "alice")
            .await
            .into_iter()
            .filter(|i| i["state"] != "resolved")
            .collect();
        if let Some(i) = open.first() {
            break i.clone();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(fresh["id"], a_id);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = get(
        &server,
        &format!("/api/v1/incidents/{}", fresh["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(still["state"], "triggered", "auto_resolve off");
    let (status, reopened) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reopened["state"], "triggered");
    let (status, err) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/assign"),
        json!({"assignee": "nobody-here"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("assignee")
    );
    let me = server.creds.admin_username.clone();
    let (status, assigned) = post(
        &server,
        &format!("/api/v1/incidents/{a_id}/assign"),
        json!({"assignee": me}),
    )
    .await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["assignee"], me.as_str());
    let mine = get(&server, &format!("/api/v1/incidents?assignee={me}")).await;
    assert_eq!(mine["incidents"].as_array().unwrap().len(), 1);
}

/// Exports (JSON and Markdown) verify with `palisade incident verify`; an edited
/// export does not, and names the entry; the audit trail records the head.
#[tokio::test(flavor = "multi_thread")]
async fn exports_verify_and_an_edited_export_does_not() {
    let (server, _data, _rules) = start(Some(RULE)).await;
    shell(&server, "carol").await;
    let incident = wait_incident(&server, "carol").await;
    let id = incident["id"].as_str().unwrap();
    let (status, _) = post(
        &server,
        &format!("/api/v1/incidents/{id}/notes"),
        json!({"text": "first look"}),
    )
    .await;
    assert_eq!(status, 201);
    let dir = TempDir::new("palisade-exports");
    for format in ["json", "markdown"] {
        let resp = server
            .http
            .get(format!(
                "{}/api/v1/incidents/{id}/export?format={format}",
                server.api
            ))
            .bearer_auth(&server.creds.api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("first look"));
        assert!(
            text.contains("root-shell"),
            "the rule definition is exported"
        );
        let file = dir.0.join(format!("export.{format}"));
        std::fs::write(&file, &text).unwrap();
        let out = server
            .run_cli(&["incident", "verify", file.to_str().unwrap()])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(said.contains("intact"), "{said}");
        let head: String = said
            .split("sha256:")
            .nth(1)
            .unwrap()
            .chars()
            .take(64)
            .collect();
        // The audit trail has the same head.
        let audit = get(&server, "/api/v1/audit?limit=1000").await;
        assert!(audit.to_string().contains(&head), "{audit}");
        // Edit the note.
        std::fs::write(&file, text.replacen("first look", "first lock", 1)).unwrap();
        let out = server
            .run_cli(&["incident", "verify", file.to_str().unwrap()])
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not intact") && err.contains("entry"), "{err}");
    }
    // Another tenant sees none of it: every incident route is a 404.
    assert!(
        server
            .run_cli(&["tenant", "create", "beta"])
            .unwrap()
            .status
            .success()
    );
    let beta = Auth::Token(server.token("beta", "admin"));
    for (method, path) in [
        ("GET", format!("/api/v1/incidents/{id}")),
        ("GET", format!("/api/v1/incidents/{id}/timeline")),
        ("GET", format!("/api/v1/incidents/{id}/export")),
        ("GET", format!("/api/v1/incidents/{id}/events")),
        ("POST", format!("/api/v1/incidents/{id}/acknowledge")),
        ("POST", format!("/api/v1/incidents/{id}/notes")),
    ] {
        let body = (method == "POST").then(|| json!({"text": "x"}));
        let (status, answer, _) = server.call(method, &path, &beta, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, listed, _) = server.call("GET", "/api/v1/incidents", &beta, None).await;
    assert_eq!(listed["incidents"], json!([]));
    let (status, err, _) = server
        .call(
            "GET",
            &format!("/api/v1/incidents/{id}/export?format=pdf"),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("format"));
}

/// The live timeline delivers a note added after the stream opened.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_timeline_delivers_a_new_note() {
    let (server, _data, _rules) = start(Some(RULE)).await;
    shell(&server, "dave").await;
    let incident = wait_incident(&server, "dave").await;
    let id = incident["id"].as_str().unwrap().to_string();
    let mut resp = server
        .http
        .get(format!("{}/api/v1/incidents/{id}/events", server.api))
        .bearer_auth(&server.creds.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = post(
        &server,
        &format!("/api/v1/incidents/{id}/notes"),
        json!({"text": "live *note*"}),
    )
    .await;
    assert_eq!(status, 201);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no note on the stream: {seen}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, resp.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        if let Some(data) = seen
            .split("\n\n")
            .filter(|e| e.contains("event: entry"))
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .find(|d| d.contains("live *note*"))
        {
            let entry: Value = serde_json::from_str(data).unwrap();
            assert_eq!(entry["kind"], "note");
            assert!(
                entry["payload"]["html"]
                    .as_str()
                    .unwrap()
                    .contains("<em>note</em>")
            );
            break;
        }
    }
    // Another tenant's incident, or none: 404 before any stream.
    let (status, _, _) = server
        .call(
            "GET",
            &format!("/api/v1/incidents/{}/events", uuid::Uuid::now_v7()),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

/// Every input of the incident routes has a bound; past it the answer is a 400 naming
/// the field, and what was stored before is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn incident_inputs_past_their_bounds_are_refused_by_name() {
    let (server, _data, _rules) = start(Some(RULE)).await;
    shell(&server, "erin").await;
    let incident = wait_incident(&server, "erin").await;
    let id = incident["id"].as_str().unwrap();
    let (status, _) = post(
        &server,
        &format!("/api/v1/incidents/{id}/notes"),
        json!({"text": "kept"}),
    )
    .await;
    assert_eq!(status, 201);
    let long_title = "t".repeat(513);
    let many: Vec<String> = (0..51).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            format!("/api/v1/incidents/{id}/notes"),
            Some(json!({"text": "x".repeat(16 * 1024 + 1)})),
            "text",
        ),
        (
            "POST",
            format!("/api/v1/incidents/{id}/notes"),
            Some(json!({"text": "   "})),
            "text",
        ),
        (
            "PATCH",
            format!("/api/v1/incidents/{id}"),
            Some(json!({"title": long_title})),
            "title",
        ),
        (
            "PATCH",
            format!("/api/v1/incidents/{id}"),
            Some(json!({"title": "two\nlines"})),
            "title",
        ),
        (
            "POST",
            format!("/api/v1/incidents/{id}/pins"),
            Some(json!({"event_id": "1", "comment": "c".repeat(1025)})),
            "comment",
        ),
        (
            "POST",
            format!("/api/v1/incidents/{id}/pins"),
            Some(json!({"event_id": "-3"})),
            "event_id",
        ),
        (
            "POST",
            format!("/api/v1/incidents/{id}/merge"),
            Some(json!({"incidents": many})),
            "incidents",
        ),
        (
            "POST",
            format!("/api/v1/incidents/{id}/merge"),
            Some(json!({"incidents": []})),
            "incidents",
        ),
        (
            "GET",
            format!("/api/v1/incidents/{id}/timeline?limit=1001"),
            None,
            "limit",
        ),
        (
            "GET",
            format!("/api/v1/incidents/{id}/timeline?cursor=not-a-cursor"),
            None,
            "cursor",
        ),
        (
            "GET",
            format!("/api/v1/incidents/{id}/timeline?entity=actor"),
            None,
            "entity",
        ),
        (
            "GET",
            format!("/api/v1/incidents/{id}/timeline?from=now&to=now-1h"),
            None,
            "from",
        ),
        ("GET", "/api/v1/incidents?limit=0".into(), None, "limit"),
        (
            "GET",
            "/api/v1/incidents?severity=loud".into(),
            None,
            "severity",
        ),
        ("GET", "/api/v1/incidents?entity=:x".into(), None, "entity"),
        (
            "PUT",
            "/api/v1/incident-settings".into(),
            Some(json!({"group_on": ["actor"], "window": "8d", "auto_resolve": true})),
            "window",
        ),
        (
            "PUT",
            "/api/v1/incident-settings".into(),
            Some(json!({"group_on": vec!["actor"; 33], "window": "30m", "auto_resolve": true})),
            "group_on",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, err, _) = server.call(method, &path, &admin(&server), body).await;
        assert_eq!(status, 400, "{method} {path}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{method} {path}: {message}");
    }
    // Nothing changed: the note is still the only one and the title is the alert's.
    let notes = get(
        &server,
        &format!("/api/v1/incidents/{id}/timeline?kinds=note"),
    )
    .await;
    assert_eq!(notes["entries"].as_array().unwrap().len(), 1);
    assert_eq!(notes["entries"][0]["payload"]["markdown"], "kept");
    let after = get(&server, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(after["title"], incident["title"]);
}
