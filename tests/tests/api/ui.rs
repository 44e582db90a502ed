//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven with Selenium from the suite's Python venv: `tests/browser/ui_check.py`),
//! plus server-side checks of what every page sends.
//!
//! The XSS corpus (`tests/fixtures/xss-corpus.txt`, 66 payloads: script tags, event
//! handlers, SVG, `javascript:` URLs, mutation XSS, template syntax, control and bidi
//! characters) goes into log bodies, attribute keys and values, Kubernetes audit
//! fields, alert labels and annotations (through a rule's template), incident titles
//! and notes; every view is then loaded in the browser and must contain no injected
//! element and run nothing.

use std::time::{Duration, Instant};

use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::{Auth, TempDir, TestServer};
use serde_json::{Value, json};

const RULE: &str = r#"apiVersion: palisade/v1
id: ui-shell
title: Shell opened
severity: high
kind: match
query: 'body:"shell opened"'
group_by: [attributes.user.name]
annotations:
  summary: 'shell for {{ group["attributes.user.name"] }} <b>bold?</b>'
"#;

fn corpus() -> Vec<String> {
    let text = std::fs::read_to_string(
        palisade_tests::workspace_root().join("tests/fixtures/xss-corpus.txt"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.replace("\\r", "\r")
                .replace("\\n", "\n")
                .replace("\\u0000", "\u{0}")
                .replace("\\u202e", "\u{202e}")
                .replace("\\u202c", "\u{202c}")
                .replace("\\u2028", "\u{2028}")
        })
        .collect()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn get(server: &TestServer, path: &str) -> Value {
    let (status, body, _) = server
        .call(
            "GET",
            path,
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn wait_for<F: Fn(&Value) -> bool>(server: &TestServer, path: &str, ok: F) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = get(server, path).await;
        if ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_works_in_a_real_browser_and_renders_hostile_content_inert() {
    let rules = TempDir::new("palisade-ui-rules");
    std::fs::write(rules.0.join("rule.yaml"), RULE).unwrap();
    let data = TempDir::new("palisade-ui");
    let url = palisade_tests::fresh_database().await.unwrap();
    let server = TestServer::start(
        &data.0,
        Some(url),
        &[
            "--rules-dir",
            rules.0.to_str().unwrap(),
            "--api-rate-limit",
            "1000",
            "--allow-private-destinations",
            "127.0.0.0/8",
        ],
    )
    .await
    .unwrap();
    let payloads = corpus();
    assert!(payloads.len() >= 50);
    let rx = palisade_tests::receiver::Receiver::start().await;

    // The responder's story: a shell for mallory.
    let resp = server
        .post_protobuf(&request(
            "auth",
            vec![record(
                "shell opened",
                13,
                vec![kv("user.name", string("mallory"))],
            )],
        ))
        .await;
    assert_eq!(resp.status(), 200);
    // Hostile content: bodies, attribute keys and values, and user names that become
    // alert labels, annotations, incident titles and entities.
    let mut records = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        records.push(record(
            p,
            9,
            vec![kv(p, string(p)), kv("n", string(&i.to_string()))],
        ));
        records.push(record(
            "shell opened",
            13,
            vec![kv("user.name", string(&format!("x{i}{p}")))],
        ));
    }
    let resp = server.post_protobuf(&request("hostile", records)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // Kubernetes audit fields through the webhook.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let items: Vec<Value> = payloads
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, p)| {
            json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("0000000{i:x}-ui-xss"), "stage": "ResponseComplete", "verb": "get",
                "requestURI": format!("/api/v1/namespaces/default/pods/{i}"), "user": {"username": p},
                "sourceIPs": ["192.0.2.9"], "userAgent": p,
                "objectRef": {"resource": "pods", "namespace": "default", "name": p, "apiVersion": "v1"},
                "responseStatus": {"code": 200}, "requestReceivedTimestamp": now, "stageTimestamp": now})
        })
        .collect();
    let resp = server
        .http
        .post(format!("{}/v1/k8s/audit?cluster=ui", server.otlp_http))
        .bearer_auth(&server.creds.ingest_token)
        // The shape kube-apiserver's webhook backend posts (k8s.io/apiserver
        // plugin/pkg/audit/webhook: an audit.k8s.io/v1 EventList).
        .json(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let mallory = wait_for(&server, "/api/v1/incidents?entity=user.name:mallory", |b| {
        b["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await["incidents"][0]
        .clone();
    let incident = mallory["id"].as_str().unwrap().to_string();
    let alert = mallory["alert_ids"][0].as_str().unwrap().to_string();
    let all = wait_for(&server, "/api/v1/incidents?limit=1000", |b| {
        b["incidents"].as_array().map_or(0, Vec::len) > payloads.len()
    })
    .await;
    let hostile_incident = all["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"].as_str().unwrap().contains("data-xss"))
        .expect("an incident titled with a payload")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for p in &payloads {
        let (status, body, _) = server
            .call(
                "POST",
                &format!("/api/v1/incidents/{hostile_incident}/notes"),
                &Auth::Token(server.creds.api_token.clone()),
                Some(json!({"text": p})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let hostile_alerts = get(&server, "/api/v1/alerts?limit=5").await;
    let hostile_alert = hostile_alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["labels"]["attributes.user.name"]
                .as_str()
                .is_some_and(|u| u.contains("data-xss"))
        })
        .expect("an alert labelled with a payload")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the payload records are searchable.
    let search = get(&server, "/api/v1/search?q=data&from=now-1h&limit=1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut search = search;
    while search["total"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
        search = get(&server, "/api/v1/search?q=data&from=now-1h&limit=1").await;
    }
    let hostile_event = search["hits"][0]["id"].as_str().unwrap().to_string();
    // The event page's API: one stored event, exactly as search shows it.
    let event = get(&server, &format!("/api/v1/events/{hostile_event}")).await;
    assert_eq!(event, search["hits"][0]);
    for (path, status) in [
        ("/api/v1/events/0", 400),
        ("/api/v1/events/x", 400),
        ("/api/v1/events/999999999", 404),
    ] {
        let (got, body, _) = server
            .call(
                "GET",
                path,
                &Auth::Token(server.creds.api_token.clone()),
                None,
            )
            .await;
        assert_eq!(got, status, "{path}: {body}");
    }

    // Server side: every page carries the CSP, and hostile text never arrives as markup.
    let session = server
        .login(&server.creds.admin_username, &server.creds.admin_password)
        .await
        .unwrap();
    let xss_paths: Vec<String> = [
        "/search?q=data&from=now-1h&to=now&facets=attributes.n,attributes.user.name,severity_text"
            .to_string(),
        "/search?q=shell&from=now-1h&to=now&facets=attributes.user.name".to_string(),
        "/search?q=%3Cscript%3E&from=now-1h&to=now".to_string(),
        format!("/events/{hostile_event}"),
        "/incidents".to_string(),
        format!("/incidents/{hostile_incident}"),
        "/alerts".to_string(),
        format!("/alerts/{hostile_alert}"),
        "/rules".to_string(),
        "/silences".to_string(),
        "/channels".to_string(),
        "/kubernetes".to_string(),
        "/admin".to_string(),
        "/search?q=attributes.k8s.object.resource:pods&from=now-1h&to=now".to_string(),
    ]
    .into();
    for path in &xss_paths {
        let resp = server
            .http
            .get(format!("{}{path}", server.api))
            .header("cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        // A query that does not parse is a 400 page naming the problem (and showing
        // the query, escaped).
        assert!(
            resp.status() == 200 || (path.contains("%3Cscript") && resp.status() == 400),
            "{path}: {}",
            resp.status()
        );
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let html = resp.text().await.unwrap();
        assert!(
            !html.contains("<script data-xss"),
            "{path} sent a payload as markup"
        );
        assert!(
            !html.contains("<img data-xss"),
            "{path} sent a payload as markup"
        );
    }
    // Anonymous pages redirect to the login form; a form without the CSRF token is refused.
    let _ = palisade_tests::http_client();
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let anonymous = raw
        .get(format!("{}/incidents", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    assert!(
        anonymous.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );
    let forged = raw
        .post(format!("{}/incidents/{incident}/act", server.api))
        .header("cookie", &session.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "forged"), ("action", "resolve")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(
        get(&server, &format!("/api/v1/incidents/{incident}")).await["state"],
        "triggered"
    );
    let evil_next = raw
        .post(format!("{}/login", server.api))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("username", server.creds.admin_username.as_str()),
            ("password", server.creds.admin_password.as_str()),
            ("next", "//evil.example/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(evil_next.status(), 303);
    assert_eq!(
        evil_next.headers()["location"],
        "/incidents",
        "no open redirect"
    );

    // The browser.
    let python = std::env::var("PALISADE_TEST_PYTHON")
        .expect("PALISADE_TEST_PYTHON is not set: scripts/test.sh installs Selenium and sets it");
    let screenshots = std::env::var("PALISADE_SCREENSHOTS").ok();
    let config = json!({
        "base": server.api, "username": server.creds.admin_username,
        "password": server.creds.admin_password, "api_token": server.creds.api_token,
        "incident": incident, "alert": alert, "query": "shell opened", "rule": "ui-shell",
        "receiver": format!("{}/hook", rx.url),
        "otlp": server.otlp_http, "ingest_token": server.creds.ingest_token,
        "xss_paths": xss_paths, "screenshots": screenshots,
    });
    let out = std::process::Command::new(python)
        .arg(palisade_tests::workspace_root().join("tests/browser/ui_check.py"))
        .arg(config.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["xss_pages"], xss_paths.len(), "{checked}");
    assert_eq!(checked["live_note"], true);
    assert_eq!(checked["tail"], true);
    assert!(
        checked["backtest"]
            .as_str()
            .unwrap()
            .contains("would have fired"),
        "{checked}"
    );
    assert!(
        checked["validation"].as_str().unwrap().contains("severity"),
        "{checked}"
    );
    // The toggle stored a tuning and left the rule enabled.
    let rule = get(&server, "/api/v1/rules/ui-shell").await;
    assert!(
        rule["yaml"].as_str().unwrap().contains("enabled: true"),
        "{rule}"
    );
    // What the browser did is real: the incident is acknowledged, with both notes.
    let after = get(&server, &format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(after["state"], "acknowledged");
    let notes = get(
        &server,
        &format!("/api/v1/incidents/{incident}/timeline?kinds=note"),
    )
    .await;
    let texts: Vec<&str> = notes["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["markdown"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"checked the **node** from the UI"),
        "{texts:?}"
    );
    // The channel test reached the receiver, signed; the token works.
    let tests: Vec<_> = rx
        .received("/hook")
        .into_iter()
        .filter(|r| r.json()["type"] == "alert.test")
        .collect();
    assert_eq!(tests.len(), 1, "one test notification");
    assert!(tests[0].headers.contains_key("webhook-signature"));
    let token = checked["token"].as_str().unwrap();
    let (status, _, _) = server
        .call(
            "GET",
            "/api/v1/alerts",
            &Auth::Token(token.to_string()),
            None,
        )
        .await;
    assert_eq!(status, 200, "the token minted in the UI reads");
    let silences = get(&server, "/api/v1/silences").await;
    assert!(silences.to_string().contains("deploy window"));
    assert!(
        checked["facet"]
            .as_str()
            .unwrap()
            .contains("attributes.user.name:\""),
        "{checked}"
    );
    let users = get(&server, "/api/v1/users").await;
    assert!(users.to_string().contains("ui-viewer"), "{users}");
    assert!(silences.to_string().contains("maintenance, from the UI"));
}
