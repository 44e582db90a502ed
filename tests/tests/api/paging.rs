//! Paging: alerts reach PagerDuty-, Slack- and webhook-like receivers (local
//! stand-ins that record what they get) and a real Prometheus Alertmanager, exactly
//! once each, through the Postgres outbox; failures retry or dead-letter.
//!
//! Payload shapes follow the receivers' own documentation: PagerDuty Events API v2
//! (`routing_key`, `event_action`, `dedup_key`, `payload.summary/source/severity`),
//! Slack incoming webhooks (`text` with mrkdwn, `&`, `<`, `>` escaped), Standard
//! Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`).

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::receiver::Receiver;
use palisade_tests::{Auth, TempDir, TestServer};
use serde_json::{Value, json};

const RULE: &str = r#"apiVersion: palisade/v1
id: page-root
title: Root paged
severity: high
kind: match
query: 'body:"page me" AND attributes.user.name:root'
group_by: [attributes.user.name]
resolve_after: 3s
annotations:
  summary: 'root asked to be paged <@here> & <https://evil.example|click>'
"#;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn server_with(extra: &[&str]) -> (TestServer, TempDir, TempDir) {
    server_with_rule(RULE, extra).await
}

async fn server_with_rule(rule: &str, extra: &[&str]) -> (TestServer, TempDir, TempDir) {
    let rules = TempDir::new("palisade-paging-rules");
    std::fs::write(rules.0.join("page.yaml"), rule).unwrap();
    let data = TempDir::new("palisade-paging");
    let url = palisade_tests::fresh_database().await.unwrap();
    let mut args = vec![
        "--rules-dir",
        rules.0.to_str().unwrap(),
        "--no-builtin-rules",
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start(&data.0, Some(url), &args).await.unwrap();
    (server, data, rules)
}

fn admin(server: &TestServer) -> Auth {
    Auth::Token(server.creds.api_token.clone())
}

async fn channel(server: &TestServer, body: Value) -> Value {
    let (status, created, _) = server
        .call("POST", "/api/v1/channels", &admin(server), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created["channel"].clone()
}

async fn page_root(server: &TestServer) {
    let resp = server
        .post_protobuf(&request(
            "auth",
            vec![record(
                "please page me now",
                9,
                vec![kv("user.name", string("root"))],
            )],
        ))
        .await;
    assert_eq!(resp.status(), 200);
}

async fn page_root_alerts(server: &TestServer) -> Value {
    let path = "/api/v1/alerts?rule=page-root";
    let (status, alerts, _) = server.call("GET", path, &admin(server), None).await;
    assert_eq!(status, 200, "{alerts}");
    alerts
}

async fn put_routing(server: &TestServer, tree: &str) -> reqwest::Response {
    server
        .http
        .put(format!("{}/api/v1/routing", server.api))
        .bearer_auth(&server.creds.api_token)
        .body(tree.to_string())
        .send()
        .await
        .unwrap()
}

async fn notifications(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, body, _) = server
        .call(
            "GET",
            &format!("/api/v1/notifications?{query}"),
            &admin(server),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

async fn test_channel(server: &TestServer, channel: &Value) -> (u16, Value) {
    let path = format!("/api/v1/channels/{}/test", channel["id"].as_str().unwrap());
    let (status, answer, _) = server.call("POST", &path, &admin(server), None).await;
    (status, answer)
}

fn verify_signature(r: &palisade_tests::receiver::Received) {
    let header = |name: &str| r.headers[name].to_str().unwrap().to_string();
    let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(
        header("webhook-signature"),
        expected,
        "signature over id.timestamp.body"
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp is the send time");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_pages_each_channel_once_through_trigger_acknowledge_and_resolve() {
    let rx = Receiver::start().await;
    let (server, _data, _rules) = server_with(&[
        "--allow-private-destinations",
        "127.0.0.0/8",
        "--public-url",
        "https://palisade.example",
    ])
    .await;
    channel(&server, json!({"name": "pd", "type": "pagerduty", "url": format!("{}/pd/v2/enqueue", rx.url), "routing_key": "R0UTINGKEY123"})).await;
    channel(
        &server,
        json!({"name": "slack", "type": "slack", "url": format!("{}/slack/T000/B000", rx.url)}),
    )
    .await;
    let hook = channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("{}/hook", rx.url), "secret": SECRET})).await;
    // Secrets never come back, and are sealed in the database.
    let (_, listed, _) = server
        .call("GET", "/api/v1/channels", &admin(&server), None)
        .await;
    let text = listed.to_string();
    assert_eq!(listed["channels"].as_array().unwrap().len(), 3, "{listed}");
    for secret in ["R0UTINGKEY123", "whsec_", "/slack/T000", "/pd/v2"] {
        assert!(!text.contains(secret), "{secret} returned: {text}");
    }
    assert_eq!(hook["target"], rx.url.as_str());
    let pool = sqlx::PgPool::connect(server.database_url.as_deref().unwrap())
        .await
        .unwrap();
    let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM channels")
        .fetch_all(&pool)
        .await
        .unwrap();
    for bytes in &sealed {
        assert!(
            !bytes.windows(12).any(|w| w == b"R0UTINGKEY12"),
            "routing key in clear"
        );
        assert!(!bytes.windows(6).any(|w| w == b"whsec_"), "secret in clear");
    }

    let started = Instant::now();
    page_root(&server).await;
    let pd = rx.wait("/pd/", 1, 20).await;
    let to_pager = started.elapsed();
    let trigger = pd[0].json();
    let alerts = page_root_alerts(&server).await;
    let alert = &alerts["alerts"][0];
    let fingerprint = alert["fingerprint"].as_str().unwrap().to_string();
    let alert_id = alert["id"].as_str().unwrap().to_string();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UTINGKEY123");
    assert_eq!(trigger["dedup_key"], fingerprint.as_str());
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(trigger["payload"]["source"], "palisade");
    assert_eq!(
        trigger["payload"]["summary"],
        "root asked to be paged <@here> & <https://evil.example|click>"
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["evidence"][0]["body"],
        "please page me now"
    );
    let link = format!("https://palisade.example/alerts/{alert_id}");
    assert_eq!(trigger["links"][0]["href"], link.as_str());
    let slack = rx.wait("/slack/", 1, 10).await;
    let message = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        message.contains("&lt;@here&gt; &amp; &lt;https://evil.example|click&gt;"),
        "{message}"
    );
    assert!(!message.contains("<@here>"), "{message}");
    assert!(
        message.contains(&format!("<{link}|Open in Palisade>")),
        "{message}"
    );
    let hooks = rx.wait("/hook", 1, 10).await;
    verify_signature(&hooks[0]);
    let body = hooks[0].json();
    assert_eq!(body["type"], "alert.trigger");
    assert_eq!(body["alert"]["fingerprint"], fingerprint.as_str());
    assert_eq!(
        hooks[0].headers["webhook-id"].to_str().unwrap(),
        body["id"].as_str().unwrap()
    );

    // Acknowledged in Palisade: PagerDuty hears it under the same dedup_key.
    let (status, acked, _) = server
        .call(
            "POST",
            &format!("/api/v1/alerts/{alert_id}/acknowledge"),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    let pd = rx.wait("/pd/", 2, 10).await;
    assert_eq!(
        pd[1].json(),
        json!({"routing_key": "R0UTINGKEY123", "event_action": "acknowledge", "dedup_key": fingerprint})
    );
    // A second acknowledgement sends nothing more.
    server
        .call(
            "POST",
            &format!("/api/v1/alerts/{alert_id}/acknowledge"),
            &admin(&server),
            None,
        )
        .await;

    // Quiet for resolve_after: resolve, same dedup_key, in order after the trigger.
    let pd = rx.wait("/pd/", 3, 30).await;
    assert_eq!(
        pd[2].json(),
        json!({"routing_key": "R0UTINGKEY123", "event_action": "resolve", "dedup_key": fingerprint})
    );
    let hooks = rx.wait("/hook", 3, 10).await;
    let types: Vec<Value> = hooks.iter().map(|h| h.json()["type"].clone()).collect();
    assert_eq!(
        types,
        vec![
            json!("alert.trigger"),
            json!("alert.acknowledge"),
            json!("alert.resolve")
        ]
    );
    for h in &hooks {
        verify_signature(h);
    }
    // Exactly once each: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.received("/pd/").len(), 3);
    assert_eq!(rx.received("/slack/").len(), 3);
    assert_eq!(rx.received("/hook").len(), 3);
    let all = notifications(&server, &format!("alert={alert_id}")).await;
    assert_eq!(all.len(), 9, "{all:?}");
    assert!(
        all.iter()
            .all(|n| n["state"] == "delivered" && n["attempts"] == 1),
        "{all:?}"
    );
    let (_, detail, _) = server
        .call(
            "GET",
            &format!("/api/v1/notifications/{}", all[0]["id"].as_str().unwrap()),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(detail["attempt_log"][0]["status"], 202, "{detail}");
    eprintln!(
        "paging: trigger reached the PagerDuty stand-in {} ms after the OTLP 200",
        to_pager.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_retry_after_retry_after_and_permanent_errors_dead_letter() {
    let rx = Receiver::start().await;
    let (server, _data, _rules) =
        server_with(&["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(&server, json!({"name": "busy", "type": "webhook", "url": format!("{}/busy", rx.url), "secret": SECRET})).await;
    channel(&server, json!({"name": "broken", "type": "webhook", "url": format!("{}/broken", rx.url), "secret": SECRET})).await;
    // A receiver that is down at first: a port nothing listens on, yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = reserved.local_addr().unwrap();
    drop(reserved);
    channel(
        &server,
        json!({"name": "down", "type": "slack", "url": format!("http://{down_addr}/down")}),
    )
    .await;
    rx.script("/busy", 429, Some(2));
    rx.script("/broken", 400, None);
    page_root(&server).await;

    // 429 with Retry-After: 2 -> the second attempt waits at least that long.
    let busy = rx.wait("/busy", 2, 30).await;
    let gap = busy[1].at - busy[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    assert_eq!(
        busy[0].headers["webhook-id"], busy[1].headers["webhook-id"],
        "same idempotency key"
    );
    // 400: tried exactly once, then dead.
    let dead = loop {
        let dead = notifications(&server, "state=dead").await;
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 1);
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{dead:?}"
    );
    assert_eq!(rx.received("/broken").len(), 1);
    // The receiver comes back: what was waiting is delivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = Receiver::serve(tokio::net::TcpListener::bind(down_addr).await.unwrap()).await;
    let delivered = back.wait("/down", 1, 30).await;
    assert!(
        delivered[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("Firing")
    );
    let pending = notifications(&server, "state=pending").await;
    assert!(
        pending.iter().all(|n| n["event"] != "trigger"),
        "{pending:?}"
    );
    // Dead letters are counted in /metrics.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = server
            .http
            .get(format!("{}/metrics", server.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("palisade_notifications{state=\"dead\"} 1") {
            assert!(
                text.contains(
                    "palisade_notification_attempts_total{kind=\"webhook\",outcome=\"dead\"} 1"
                ),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "dead letters not in /metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn destinations_that_are_not_public_are_refused_at_save() {
    let server = TestServer::spawn().await.unwrap();
    let corpus = [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://localhost:9/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
    ];
    for url in corpus {
        let (status, body, _) = server
            .call(
                "POST",
                "/api/v1/channels",
                &admin(&server),
                Some(json!({"name": "x", "type": "slack", "url": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("url:"),
            "{url}: {body}"
        );
    }
    // Past the bounds: URL and secret length, routes in a tree.
    let long = format!("https://example.com/{}", "a".repeat(2100));
    for (body, field) in [
        (
            json!({"name": "l", "type": "slack", "url": long}),
            "url: at most",
        ),
        (
            json!({"name": "w", "type": "webhook", "url": "https://example.com/h", "secret": "s".repeat(1100)}),
            "secret: at most",
        ),
    ] {
        let (status, answer, _) = server
            .call("POST", "/api/v1/channels", &admin(&server), Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{answer}"
        );
    }
    let many = format!(
        "route: {{channels: [x], routes: [{}]}}",
        vec!["{}"; 300].join(",")
    );
    let resp = put_routing(&server, &many).await;
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 256 routes"),
        "{answer}"
    );
    // Missing per-type settings name the field.
    for (body, field) in [
        (json!({"name": "p", "type": "pagerduty"}), "routing_key"),
        (
            json!({"name": "w", "type": "webhook", "url": "https://example.com/h"}),
            "secret",
        ),
        (json!({"name": "s", "type": "slack"}), "url"),
        (
            json!({"name": "s", "type": "sms", "url": "https://example.com"}),
            "type",
        ),
    ] {
        let (status, answer, _) = server
            .call("POST", "/api/v1/channels", &admin(&server), Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{answer}"
        );
    }
}

/// Alertmanager (Debian's prometheus-alertmanager, started on loopback): alerts are
/// pushed to `POST /api/v2/alerts` and read back from its API.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_reach_a_real_alertmanager_and_resolve_there() {
    let Some(am) = palisade_tests::alertmanager::Alertmanager::start() else {
        panic!("prometheus-alertmanager is not installed: run the suite with scripts/test.sh");
    };
    let (server, _data, _rules) =
        server_with(&["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(
        &server,
        json!({"name": "am", "type": "alertmanager", "url": am.url}),
    )
    .await;
    page_root(&server).await;
    let client = palisade_tests::http_client();
    let fetch = || async {
        client
            .get(format!("{}/api/v2/alerts", am.url))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let alerts = fetch().await;
        if let Some(a) = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "page-root")
        {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager never got the alert: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["labels"]["attributes_user_name"], "root");
    assert_eq!(
        alert["annotations"]["summary"],
        "root asked to be paged <@here> & <https://evil.example|click>"
    );
    assert_eq!(alert["status"]["state"], "active");
    let starts = chrono::DateTime::parse_from_rfc3339(alert["startsAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - starts.with_timezone(&chrono::Utc)).num_seconds() < 60);
    // resolve_after 3 s: Alertmanager then holds it as ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = fetch().await;
        let ours = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "page-root");
        let ended = match ours {
            None => true,
            Some(a) => {
                let ends =
                    chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap();
                ends.with_timezone(&chrono::Utc) <= chrono::Utc::now()
            }
        };
        if ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never resolved in Alertmanager: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// kill -9 after the alert change committed and before its page was delivered: after
/// restart the page is delivered, with at most one duplicate, under the same id.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_committed_before_a_kill_9_is_delivered_after_restart() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let rules = TempDir::new("palisade-paging-rules");
    std::fs::write(rules.0.join("page.yaml"), RULE).unwrap();
    let data = TempDir::new("palisade-paging-crash");
    let url = palisade_tests::fresh_database().await.unwrap();
    let args = [
        "--rules-dir",
        rules.0.to_str().unwrap(),
        "--no-builtin-rules",
        "--allow-private-destinations",
        "127.0.0.0/8",
    ];
    let mut server = TestServer::start(&data.0, Some(url.clone()), &args)
        .await
        .unwrap();
    channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("http://{addr}/hook"), "secret": SECRET})).await;
    page_root(&server).await;
    // Committed and tried (the receiver is down), not delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = notifications(&server, "state=pending").await;
        if pending.iter().any(|n| n["attempts"].as_i64() >= Some(1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no attempt recorded: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    let rx = Receiver::serve(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let server = TestServer::start(&data.0, Some(url), &args).await.unwrap();
    let got = rx.wait("/hook", 1, 60).await;
    verify_signature(&got[0]);
    assert_eq!(got[0].json()["type"], "alert.trigger");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.received("/hook");
    assert!(got.len() <= 2, "{} deliveries", got.len());
    let ids: std::collections::BTreeSet<_> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one notification, one id");
    let delivered = notifications(&server, "state=delivered").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
}

/// `palisade keys rotate` re-wraps channel secrets under a new key; the server keeps
/// sending with the new key, and a server started with the old key cannot open them.
#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_rewraps_channel_secrets() {
    let rx = Receiver::start().await;
    let (mut server, data, _rules) =
        server_with(&["--allow-private-destinations", "127.0.0.0/8"]).await;
    let hook = channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("{}/hook", rx.url), "secret": SECRET})).await;
    let old_key = std::fs::read_to_string(data.0.join("secrets.key")).unwrap();
    assert!(server.stop().unwrap().success());
    let url = server.database_url.clone().unwrap();
    let out = std::process::Command::new(palisade_tests::palisade_bin())
        .args([
            "keys",
            "rotate",
            "--data-dir",
            data.0.to_str().unwrap(),
            "--database-url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("1 channel secret(s) re-wrapped"), "{said}");
    let new_key = std::fs::read_to_string(data.0.join("secrets.key")).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    let server = TestServer::start(
        &data.0,
        Some(url.clone()),
        &[
            "--allow-private-destinations",
            "127.0.0.0/8",
            "--no-builtin-rules",
        ],
    )
    .await
    .unwrap();
    let (status, answer) = test_channel(&server, &hook).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], true, "{answer}");
    verify_signature(&rx.wait("/hook", 1, 10).await[0]);
    drop(server);
    // The old key no longer opens them: the test endpoint fails, without detail.
    let old = TempDir::new("palisade-old-key");
    std::fs::write(old.0.join("k"), old_key).unwrap();
    std::process::Command::new("chmod")
        .args(["600", old.0.join("k").to_str().unwrap()])
        .status()
        .unwrap();
    let server = TestServer::start(
        &data.0,
        Some(url),
        &[
            "--allow-private-destinations",
            "127.0.0.0/8",
            "--no-builtin-rules",
            "--key-file",
            old.0.join("k").to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    let (status, answer) = test_channel(&server, &hook).await;
    assert_eq!(status, 500, "{answer}");
    assert!(answer["error"]["request_id"].is_string(), "{answer}");
}

/// A routing tree: high alerts to PagerDuty, repeated every 2 s until acknowledged, and
/// (`continue`) this rule's alerts to the webhook after a 3 s group wait; the root's
/// Slack channel gets nothing because a child route took the alert.
#[tokio::test(flavor = "multi_thread")]
async fn routing_sends_by_labels_waits_repeats_and_acknowledgement_stops_repeats() {
    let rx = Receiver::start().await;
    let rule = RULE.replace("resolve_after: 3s", "resolve_after: 1h");
    let (server, _data, _rules) =
        server_with_rule(&rule, &["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(&server, json!({"name": "pd", "type": "pagerduty", "url": format!("{}/pd", rx.url), "routing_key": "RK"})).await;
    channel(
        &server,
        json!({"name": "slack", "type": "slack", "url": format!("{}/slack", rx.url)}),
    )
    .await;
    channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("{}/hook", rx.url), "secret": SECRET})).await;
    let tree = r#"
route:
  channels: [slack]
  routes:
    - matchers: [{label: severity, op: "=~", value: "critical|high"}]
      channels: [pd]
      repeat_interval: 2s
      continue: true
    - matchers: [{label: rule, op: "=", value: page-root}]
      channels: [hook]
      group_wait: 3s
"#;
    let resp = put_routing(&server, tree).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // A tree naming an unknown channel is refused, naming the place.
    let resp = put_routing(&server, "route: {channels: [nope]}").await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("route.channels"),
        "{err}"
    );

    let paged = Instant::now();
    page_root(&server).await;
    let pd = rx.wait("/pd", 2, 20).await;
    assert_eq!(pd[0].json()["event_action"], "trigger");
    assert_eq!(pd[1].json()["event_action"], "trigger", "repeated");
    assert_eq!(pd[0].json()["dedup_key"], pd[1].json()["dedup_key"]);
    let gap = pd[1].at - pd[0].at;
    assert!(gap >= Duration::from_millis(1900), "repeat after {gap:?}");
    let hook = rx.wait("/hook", 1, 20).await;
    assert!(
        hook[0].at - paged >= Duration::from_secs(3),
        "group_wait: {:?}",
        hook[0].at - paged
    );
    assert!(
        rx.received("/slack").is_empty(),
        "the root's channel got a page"
    );
    let alerts = page_root_alerts(&server).await;
    let id = alerts["alerts"][0]["id"].as_str().unwrap().to_string();
    let (status, _, _) = server
        .call(
            "POST",
            &format!("/api/v1/alerts/{id}/acknowledge"),
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let acked_at = loop {
        if let Some(r) = rx
            .received("/pd")
            .iter()
            .find(|r| r.json()["event_action"] == "acknowledge")
        {
            break r.at;
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledge reached PagerDuty"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = rx
        .received("/pd")
        .iter()
        .filter(|r| {
            r.at > acked_at + Duration::from_millis(500) && r.json()["event_action"] == "trigger"
        })
        .count();
    assert_eq!(later, 0, "repeats continued after the acknowledgement");
    let skipped = notifications(&server, "state=skipped").await;
    assert!(
        skipped.iter().any(|n| n["event"] == "trigger"),
        "{skipped:?}"
    );
}

/// Channels and routing from `--channels-file`: created at start with secrets taken
/// from the environment, updated in place on the next start, and a bad file stops
/// start-up naming the place.
#[tokio::test(flavor = "multi_thread")]
async fn channels_and_routing_come_from_a_configuration_file() {
    let rx = Receiver::start().await;
    let config = TempDir::new("palisade-channels-file");
    let file = config.0.join("channels.yaml");
    std::fs::write(
        &file,
        format!(
            "tenants:\n  default:\n    channels:\n      - {{name: hook, type: webhook, url: \"{}/hook\", secret_env: PALISADE_TEST_HOOK_SECRET}}\n      - {{name: chat, type: slack, url: \"{}/slack\"}}\n    routing:\n      route: {{channels: [hook]}}\n",
            rx.url, rx.url
        ),
    )
    .unwrap();
    // The server inherits the test's environment; the secret is read from it.
    hook_secret_is_exported();
    let file_arg = file.to_str().unwrap().to_string();
    let (server, data, _rules) = server_with(&[
        "--allow-private-destinations",
        "127.0.0.0/8",
        "--channels-file",
        &file_arg,
    ])
    .await;
    let (_, listed, _) = server
        .call("GET", "/api/v1/channels", &admin(&server), None)
        .await;
    let names: Vec<&str> = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat", "hook"], "{listed}");
    let (_, routing, _) = server
        .call("GET", "/api/v1/routing", &admin(&server), None)
        .await;
    assert_eq!(routing["route"]["channels"], json!(["hook"]), "{routing}");
    page_root(&server).await;
    let hooks = rx.wait("/hook", 1, 20).await;
    verify_signature(&hooks[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.received("/slack").is_empty(),
        "routing sent the page to chat too"
    );
    let hook_id = listed["channels"][1]["id"].clone();
    let url = server.database_url.clone().unwrap();
    drop(server);
    // A broken file: start-up fails, naming file, tenant, entry and field.
    std::fs::write(&file, "tenants:\n  default:\n    channels:\n      - {name: x, type: slack, url: \"http://169.254.169.254/\"}\n").unwrap();
    let out = std::process::Command::new(palisade_tests::palisade_bin())
        .args([
            "serve",
            "--data-dir",
            data.0.to_str().unwrap(),
            "--database-url",
            &url,
            "--channels-file",
            &file_arg,
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tenants.default.channels[0].url:"),
        "{stderr}"
    );
    // The channel made from the file kept its id across the restart.
    assert!(hook_id.is_string());
}

/// The secret the channels-file test reads from the environment: exported for the
/// whole test run by scripts/test.sh (setting it from a multi-threaded test would be
/// unsafe).
fn hook_secret_is_exported() {
    assert_eq!(
        std::env::var("PALISADE_TEST_HOOK_SECRET").as_deref(),
        Ok(SECRET),
        "run the suite with scripts/test.sh (it exports PALISADE_TEST_HOOK_SECRET)"
    );
}

/// A destination allowed when the channel was saved but refused by the policy in force
/// when a page is sent (here: the operator withdrew `--allow-private-destinations`) is
/// never called; the page is dead at once, saying why. The named destination
/// (`localhost`) is refused by the resolver the HTTP client connects through — the
/// check a name that re-resolves to a private address (DNS rebinding) meets.
#[tokio::test(flavor = "multi_thread")]
async fn destinations_are_checked_again_at_send_time() {
    let rx = Receiver::start().await;
    let (mut server, data, rules) =
        server_with(&["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("{}/hook", rx.url), "secret": SECRET})).await;
    let named = rx.url.replace("127.0.0.1", "localhost");
    channel(&server, json!({"name": "named", "type": "webhook", "url": format!("{named}/named"), "secret": SECRET})).await;
    let url = server.database_url.clone().unwrap();
    assert!(server.stop().unwrap().success());
    let server = TestServer::start(
        &data.0,
        Some(url),
        &[
            "--rules-dir",
            rules.0.to_str().unwrap(),
            "--no-builtin-rules",
        ],
    )
    .await
    .unwrap();
    page_root(&server).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = notifications(&server, "state=dead").await;
        if dead.len() >= 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let errors: Vec<&str> = dead
        .iter()
        .map(|n| n["last_error"].as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("not a public address")),
        "{dead:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("localhost resolves to no allowed address")),
        "{dead:?}"
    );
    assert!(
        rx.received("/hook").is_empty() && rx.received("/named").is_empty(),
        "a refused destination was called"
    );
}

/// Slack is paced: three alerts at once reach one Slack channel about a second apart.
#[tokio::test(flavor = "multi_thread")]
async fn slack_messages_are_paced_per_channel() {
    let rx = Receiver::start().await;
    let rule = RULE
        .replace(
            "query: 'body:\"page me\" AND attributes.user.name:root'",
            "query: 'body:\"page me\"'",
        )
        .replace(
            "group_by: [attributes.user.name]",
            "group_by: [attributes.n]",
        );
    let (server, _data, _rules) =
        server_with_rule(&rule, &["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(
        &server,
        json!({"name": "chat", "type": "slack", "url": format!("{}/slack", rx.url)}),
    )
    .await;
    let records = (0..3)
        .map(|i| record("page me", 9, vec![kv("n", string(&i.to_string()))]))
        .collect();
    assert_eq!(
        server
            .post_protobuf(&request("auth", records))
            .await
            .status(),
        200
    );
    let got = rx.wait("/slack", 3, 30).await;
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "two messages {gap:?} apart"
        );
    }
}

/// `group_by`: alerts that share the group's labels make one page on a grouping
/// channel (webhook here, signed), later alerts of the group wait for
/// `group_interval`; PagerDuty still gets one event per alert. A tenant's 65th channel
/// is refused.
#[tokio::test(flavor = "multi_thread")]
async fn grouped_routes_page_once_per_group_and_wait_group_interval() {
    let rx = Receiver::start().await;
    let rule = RULE
        .replace(
            "query: 'body:\"page me\" AND attributes.user.name:root'",
            "query: 'body:\"page me\"'",
        )
        .replace(
            "group_by: [attributes.user.name]",
            "group_by: [attributes.n]",
        )
        .replace("resolve_after: 3s", "resolve_after: 1h");
    let (server, _data, _rules) =
        server_with_rule(&rule, &["--allow-private-destinations", "127.0.0.0/8"]).await;
    channel(&server, json!({"name": "pd", "type": "pagerduty", "url": format!("{}/pd", rx.url), "routing_key": "RK"})).await;
    channel(&server, json!({"name": "hook", "type": "webhook", "url": format!("{}/hook", rx.url), "secret": SECRET})).await;
    let tree = r#"
route:
  channels: [hook, pd]
  group_by: [rule]
  group_wait: 2s
  group_interval: 4s
"#;
    let resp = put_routing(&server, tree).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let batch = |from: usize, to: usize| {
        let records = (from..to)
            .map(|i| record("page me", 9, vec![kv("n", string(&i.to_string()))]))
            .collect();
        request("auth", records)
    };
    assert_eq!(server.post_protobuf(&batch(0, 3)).await.status(), 200);
    let first = rx.wait("/hook", 1, 30).await;
    let body = first[0].json();
    verify_signature(&first[0]);
    assert_eq!(body["type"], "alert.trigger");
    assert_eq!(body["group"]["labels"], json!({"rule": "page-root"}));
    let alerts = body["group"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3, "one page for the three alerts: {body}");
    let fingerprints: std::collections::HashSet<_> =
        alerts.iter().map(|a| a["fingerprint"].clone()).collect();
    assert_eq!(fingerprints.len(), 3);
    let pd = rx.wait("/pd", 3, 30).await;
    let keys: std::collections::HashSet<_> =
        pd.iter().map(|r| r.json()["dedup_key"].clone()).collect();
    assert_eq!(keys.len(), 3, "PagerDuty is never grouped");

    // A later alert of the group waits for group_interval after the group's page.
    assert_eq!(server.post_protobuf(&batch(3, 4)).await.status(), 200);
    let both = rx.wait("/hook", 2, 30).await;
    let gap = both[1].at - both[0].at;
    assert!(
        gap >= Duration::from_millis(3900),
        "group_interval: {gap:?}"
    );
    let second = both[1].json();
    assert_eq!(second["group"]["alerts"].as_array().unwrap().len(), 1);
    assert_ne!(
        second["id"], body["id"],
        "a new page, its own idempotency key"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received("/hook").len(), 2, "no page sent twice");

    // The carried notifications point at the page that carried them.
    let delivered = notifications(&server, "state=delivered").await;
    let carried: Vec<_> = delivered
        .iter()
        .filter(|n| n["grouped_into"].as_str() == body["id"].as_str())
        .collect();
    assert_eq!(carried.len(), 2, "{delivered:?}");
    let (status, err, _) = server
        .call(
            "GET",
            "/api/v1/notifications?state=bogus",
            &admin(&server),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("grouped")
    );

    // Channels per tenant are bounded: the 65th is refused.
    for i in 2..64 {
        channel(&server, json!({"name": format!("extra-{i}"), "type": "slack", "url": format!("{}/slack", rx.url)})).await;
    }
    let (status, err, _) = server
        .call(
            "POST",
            "/api/v1/channels",
            &admin(&server),
            Some(json!({"name": "one-too-many", "type": "slack", "url": format!("{}/slack", rx.url)})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("64"),
        "{err}"
    );
}
