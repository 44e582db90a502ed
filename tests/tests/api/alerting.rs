//! Alert rules end to end: rules from a directory and the API, match / threshold /
//! sequence alerts with evidence, silences, restarts, backtests and the CLI.

use std::time::{Duration, Instant};

use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::{Auth, TempDir, TestServer};
use serde_json::{Value, json};

const RULES: &str = r#"apiVersion: palisade/v1
id: root-login
title: Root login
severity: critical
kind: match
query: 'attributes.user.name:root AND body:login'
annotations:
  summary: 'root logged in: {{ event.body }}'
---
apiVersion: palisade/v1
id: failed-login-burst
title: Repeated failed logins for one user
severity: high
kind: threshold
query: 'body:"failed login"'
group_by: [attributes.user.name]
window: 5m
interval: 5s
threshold: 5        # fires when count >= 5
---
apiVersion: palisade/v1
id: escalate-then-exec
title: Binding to cluster-admin, then exec, by the same identity
severity: critical
kind: sequence
group_by: [attributes.user.name]
within: 10m
steps:
  - query: 'body:clusterrolebinding AND attributes.role:cluster-admin'
  - conditions:
      - {field: attributes.subresource, equals: exec}
"#;

fn rules_dir() -> TempDir {
    let dir = TempDir::new("palisade-rules");
    std::fs::write(dir.0.join("examples.yaml"), RULES).unwrap();
    dir
}

async fn spawn_with_rules(rules: &TempDir) -> (TestServer, TempDir) {
    let data = TempDir::new("palisade-alerting");
    let url = palisade_tests::fresh_database().await.unwrap();
    let server = TestServer::start(
        &data.0,
        Some(url),
        &["--rules-dir", rules.0.to_str().unwrap()],
    )
    .await
    .unwrap();
    (server, data)
}

async fn alerts(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, body, _) = server
        .call(
            "GET",
            &format!("/api/v1/alerts?{query}"),
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

async fn wait_alerts(
    server: &TestServer,
    query: &str,
    pred: impl Fn(&[Value]) -> bool,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let list = alerts(server, query).await;
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never satisfied the condition: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn login(user: &str, body: &str) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    record(body, 9, vec![kv("user.name", string(user))])
}

#[tokio::test(flavor = "multi_thread")]
async fn match_rule_fires_once_per_fingerprint_with_evidence() {
    let rules = rules_dir();
    let (server, _data) = spawn_with_rules(&rules).await;
    let resp = server
        .post_protobuf(&request(
            "sshd",
            vec![
                login("alice", "login ok"),
                login("root", "login ok <b>x</b>"),
            ],
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let acked = Instant::now();
    let firing = wait_alerts(
        &server,
        "state=firing&rule=root-login",
        |a| a.len() == 1,
        Duration::from_secs(5),
    )
    .await;
    let fired_after = acked.elapsed();
    assert!(
        fired_after < Duration::from_secs(2),
        "alert firing {fired_after:?} after the 200"
    );
    let alert = &firing[0];
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["labels"]["rule"], "root-login");
    assert_eq!(alert["evidence"]["count"], 1);
    assert_eq!(
        alert["annotations"]["summary"], "root logged in: login ok &lt;b&gt;x&lt;&#x2f;b&gt;",
        "templates escape event content"
    );
    // The evidence points at the stored event.
    let found = server.wait_for_total("attributes.user.name:root", 1).await;
    assert_eq!(alert["evidence"]["event_ids"][0], found["hits"][0]["id"]);

    // More matches: the same alert, never a duplicate.
    let more = (0..3).map(|_| login("root", "login ok")).collect();
    assert_eq!(
        server.post_protobuf(&request("sshd", more)).await.status(),
        200
    );
    let list = wait_alerts(
        &server,
        "rule=root-login",
        |a| a.len() == 1 && a[0]["evidence"]["count"] == 4,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(list[0]["id"], alert["id"]);
    let (status, detail, _) = server
        .call(
            "GET",
            &format!("/api/v1/alerts/{}", alert["id"].as_str().unwrap()),
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["transitions"][0]["to"], "firing");
    assert_eq!(detail["transitions"].as_array().unwrap().len(), 1);
    let (status, _, _) = server
        .call(
            "GET",
            "/api/v1/alerts?state=burning",
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn threshold_rule_fires_per_group_at_the_threshold() {
    let rules = rules_dir();
    let (server, _data) = spawn_with_rules(&rules).await;
    let failures = |user: &str, n: usize| {
        request(
            "auth",
            (0..n).map(|_| login(user, "failed login")).collect(),
        )
    };
    assert_eq!(
        server.post_protobuf(&failures("alice", 5)).await.status(),
        200
    );
    assert_eq!(
        server.post_protobuf(&failures("bob", 4)).await.status(),
        200
    );
    let firing = wait_alerts(
        &server,
        "rule=failed-login-burst",
        |a| !a.is_empty(),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        firing.len(),
        1,
        "only alice crossed the threshold: {firing:?}"
    );
    assert_eq!(firing[0]["labels"]["attributes.user.name"], "alice");
    assert_eq!(firing[0]["evidence"]["count"], 5);
    assert_eq!(firing[0]["state"], "firing");
    // A late fifth failure for bob is counted at the next evaluation.
    assert_eq!(
        server.post_protobuf(&failures("bob", 1)).await.status(),
        200
    );
    wait_alerts(
        &server,
        "rule=failed-login-burst&state=firing",
        |a| a.len() == 2,
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silences_sequences_and_restart_keep_state_without_duplicates() {
    let rules = rules_dir();
    let (mut server, data) = spawn_with_rules(&rules).await;
    let admin = Auth::Token(server.creds.api_token.clone());
    // A responder may silence; the comment is required.
    let (status, err, _) = server
        .call("POST", "/api/v1/silences", &admin, Some(json!({"matchers": [{"label": "rule", "op": "=", "value": "root-login"}], "ends_at": "now+1h", "comment": " "})))
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, silence, _) = server
        .call("POST", "/api/v1/silences", &admin, Some(json!({"matchers": [{"label": "rule", "op": "=", "value": "root-login"}, {"label": "attributes.source", "op": "!~", "value": "trusted.*"}], "ends_at": "now+1h", "comment": "maintenance window"})))
        .await;
    assert_eq!(status, 201, "{silence}");

    assert_eq!(
        server
            .post_protobuf(&request("sshd", vec![login("root", "login ok")]))
            .await
            .status(),
        200
    );
    let silenced = wait_alerts(
        &server,
        "rule=root-login",
        |a| a.len() == 1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(silenced[0]["silenced"], true, "recorded but silenced");
    assert_eq!(silenced[0]["state"], "firing");
    // Half a sequence before the restart.
    let binding = record(
        "create clusterrolebinding",
        9,
        vec![
            kv("user.name", string("mallory")),
            kv("role", string("cluster-admin")),
        ],
    );
    assert_eq!(
        server
            .post_protobuf(&request("k8s", vec![binding]))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transitions_before = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(server.database_url.as_ref().unwrap())
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM alert_transitions")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    let url = server.database_url.clone();
    assert!(server.stop().unwrap().success());

    let again = TestServer::start(&data.0, url, &["--rules-dir", rules.0.to_str().unwrap()])
        .await
        .unwrap();
    let after = alerts(&again, "rule=root-login").await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0]["id"], silenced[0]["id"],
        "same alert after the restart"
    );
    assert_eq!(after[0]["state"], "firing");
    assert_eq!(after[0]["silenced"], true);
    // The second step completes the sequence started before the restart.
    let exec = record(
        "exec into pod",
        9,
        vec![
            kv("user.name", string("mallory")),
            kv("subresource", string("exec")),
        ],
    );
    assert_eq!(
        again
            .post_protobuf(&request("k8s", vec![exec, login("root", "login ok")]))
            .await
            .status(),
        200
    );
    let seq = wait_alerts(
        &again,
        "rule=escalate-then-exec",
        |a| a.len() == 1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(seq[0]["labels"]["attributes.user.name"], "mallory");
    assert_eq!(seq[0]["evidence"]["count"], 2);
    let list = wait_alerts(
        &again,
        "rule=root-login",
        |a| a[0]["evidence"]["count"] == 2,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(list.len(), 1, "no duplicate alert after the restart");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(again.database_url.as_ref().unwrap())
        .await
        .unwrap();
    let transitions_after: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_transitions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        transitions_after,
        transitions_before + 1,
        "the restart re-notified nothing; only the new sequence alert transitioned"
    );
    // Expiring the silence unsilences the alert at the next tick.
    let id = silence["silence"]["id"].as_str().unwrap();
    let (status, _, _) = again
        .call(
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            &Auth::Token(again.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_alerts(
        &again,
        "rule=root-login",
        |a| a[0]["silenced"] == false,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_api_versions_audits_and_reports_errors_with_lines() {
    let server = TestServer::spawn().await.unwrap();
    let admin = Auth::Token(server.creds.api_token.clone());
    let yaml = "apiVersion: palisade/v1\nid: sudo-use\ntitle: sudo\nseverity: medium\nkind: match\nquery: body:sudo\n";
    let post = |body: &str| {
        let server = &server;
        let body = body.to_string();
        async move {
            let resp = server
                .http
                .post(format!("{}/api/v1/rules", server.api))
                .bearer_auth(&server.creds.api_token)
                .header("content-type", "application/yaml")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, created) = post(yaml).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(post(yaml).await.0, 409);
    let (status, err) = post("apiVersion: palisade/v1\nid: bad\ntitle: Bad\nseverity: high\nkind: threshold\nquery: x\nwindow: 5m\ninterval: 1s\nthreshold: 3\n").await;
    assert_eq!(status, 400);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 8") && message.contains("interval"),
        "{message}"
    );
    // A body that is not text gets the same JSON error shape, naming the body.
    let resp = server
        .http
        .post(format!("{}/api/v1/rules", server.api))
        .bearer_auth(&server.creds.api_token)
        .body(vec![b'i', b'd', b':', 0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("body: the rule document is not UTF-8"),
        "{err}"
    );

    let updated = yaml.replace("severity: medium", "severity: high");
    let resp = server
        .http
        .put(format!("{}/api/v1/rules/sudo-use", server.api))
        .bearer_auth(&server.creds.api_token)
        .body(updated)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, versions, _) = server
        .call("GET", "/api/v1/rules/sudo-use/versions", &admin, None)
        .await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let (_, list, _) = server.call("GET", "/api/v1/rules", &admin, None).await;
    let rule = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "sudo-use")
        .unwrap()
        .clone();
    assert_eq!(
        (
            rule["severity"].as_str(),
            rule["version"].as_i64(),
            rule["source"].as_str()
        ),
        (Some("high"), Some(2), Some("api"))
    );

    // The new rule is live.
    assert_eq!(
        server
            .post_protobuf(&request("shell", vec![record("sudo su", 9, vec![])]))
            .await
            .status(),
        200
    );
    wait_alerts(
        &server,
        "rule=sudo-use",
        |a| a.len() == 1,
        Duration::from_secs(5),
    )
    .await;

    assert_eq!(
        server
            .call("DELETE", "/api/v1/rules/sudo-use", &admin, None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("GET", "/api/v1/rules/sudo-use", &admin, None)
            .await
            .0,
        404
    );
    let (_, audit, _) = server
        .call("GET", "/api/v1/audit?limit=1000", &admin, None)
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for needed in ["rule.create", "rule.update", "rule.delete"] {
        assert!(actions.contains(&needed), "{actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backtest_shows_the_noise_per_hour() {
    let server = TestServer::spawn().await.unwrap();
    let now = chrono::Utc::now();
    let mut records = Vec::new();
    for hours_ago in [5i64, 5, 3, 1] {
        let mut r = login("root", "login ok");
        r.time_unix_nano = (now - chrono::Duration::hours(hours_ago))
            .timestamp_nanos_opt()
            .unwrap() as u64;
        records.push(r);
    }
    let mut other = login("alice", "login ok");
    other.time_unix_nano = (now - chrono::Duration::hours(2))
        .timestamp_nanos_opt()
        .unwrap() as u64;
    records.push(other);
    assert_eq!(
        server
            .post_protobuf(&request("sshd", records))
            .await
            .status(),
        200
    );
    server.wait_for_total("login", 5).await;
    let draft = "apiVersion: palisade/v1\nid: draft\ntitle: Draft\nseverity: low\nkind: match\nquery: body:login\ngroup_by: [attributes.user.name]\n";
    let (status, result, _) = server
        .call(
            "POST",
            "/api/v1/rules/backtest",
            &Auth::Token(server.creds.api_token.clone()),
            Some(json!({"yaml": draft, "from": "now-6h"})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["events_scanned"], 5);
    let alerts = result["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "one per user: {result}");
    let root = alerts
        .iter()
        .find(|a| a["labels"]["attributes.user.name"] == "root")
        .unwrap();
    assert_eq!(root["count"], 4);
    let per_hour: u64 = result["per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["alerts"].as_u64().unwrap())
        .sum();
    assert_eq!(per_hour, 2);
    let (status, _, _) = server
        .call(
            "POST",
            "/api/v1/rules/backtest",
            &Auth::Token(server.creds.api_token.clone()),
            Some(json!({"from": "now-6h"})),
        )
        .await;
    assert_eq!(status, 400);
    // Long ranges run as background jobs with progress, and can be cancelled.
    let admin = Auth::Token(server.creds.api_token.clone());
    let (status, job, _) = server
        .call(
            "POST",
            "/api/v1/rules/backtests",
            &admin,
            Some(json!({"yaml": draft, "from": "now-6h"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let (status, job, _) = server
            .call(
                "GET",
                &format!("/api/v1/rules/backtests/{id}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let progress = job["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&progress), "{job}");
        if job["state"] == "done" {
            break job;
        }
        assert_eq!(job["state"], "running");
        assert!(Instant::now() < deadline, "backtest job never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["events_scanned"], 5);
    assert_eq!(done["result"]["alerts"].as_array().unwrap().len(), 2);
    let (_, job, _) = server
        .call(
            "POST",
            "/api/v1/rules/backtests",
            &admin,
            Some(json!({"yaml": draft, "from": "now-29d"})),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (status, cancelled, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/rules/backtests/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let final_state = cancelled["state"].as_str().unwrap().to_string();
    assert!(
        ["cancelled", "done"].contains(&final_state.as_str()),
        "{cancelled}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, later, _) = server
        .call(
            "GET",
            &format!("/api/v1/rules/backtests/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        later["state"],
        final_state.as_str(),
        "a cancelled job stays cancelled"
    );
    if final_state == "cancelled" {
        assert!(later["result"].is_null());
    }
    let (status, _, _) = server
        .call(
            "GET",
            "/api/v1/rules/backtests/00000000-0000-0000-0000-000000000000",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // The same through `palisade rules backtest`.
    let file = TempDir::new("palisade-backtest");
    std::fs::write(file.0.join("draft.yaml"), draft).unwrap();
    let out = std::process::Command::new(palisade_tests::palisade_bin())
        .args([
            "rules",
            "backtest",
            file.0.join("draft.yaml").to_str().unwrap(),
            "--from",
            "now-6h",
            "--api",
            &server.api,
        ])
        .env("PALISADE_API_TOKEN", &server.creds.api_token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 event(s) scanned, 2 alert(s) would have been raised"),
        "{stdout}"
    );
    // Nothing was actually alerted.
    assert!(super::alerting::alerts(&server, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_windows_are_recurring_silences() {
    let server = TestServer::spawn().await.unwrap();
    let admin = Auth::Token(server.creds.api_token.clone());
    let base = json!({"matchers": [{"label": "rule", "op": "=", "value": "x"}], "ends_at": "now+30d", "comment": "weekly patching"});
    let with = |extra: Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (status, err, _) = server
        .call(
            "POST",
            "/api/v1/silences",
            &admin,
            Some(with(
                json!({"schedule": "every saturday", "duration": "2h"}),
            )),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("schedule"),
        "{err}"
    );
    let (status, err, _) = server
        .call(
            "POST",
            "/api/v1/silences",
            &admin,
            Some(with(json!({"schedule": "0 2 * * 6"}))),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duration"),
        "{err}"
    );
    let (status, created, _) = server
        .call(
            "POST",
            "/api/v1/silences",
            &admin,
            Some(with(json!({"schedule": "0 2 * * 6", "duration": "2h"}))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["silence"]["schedule"], "0 2 * * 6");
    assert_eq!(created["silence"]["duration_secs"], 7200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_validate_and_test_commands() {
    let dir = rules_dir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(palisade_tests::palisade_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = run(&["rules", "validate", dir.0.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("3 rule(s) in 1 file(s)"), "{text}");
    // The shipped detection pack passes its own test cases.
    let shipped = palisade_tests::workspace_root().join("rules/k8s");
    let (ok, text) = run(&["rules", "test", shipped.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains(" passed, 0 failed") && !text.contains("FAIL"),
        "{text}"
    );
    let tested = TempDir::new("palisade-rule-tests");
    std::fs::write(
        tested.0.join("t.yml"),
        "apiVersion: palisade/v1\nid: root-login\ntitle: Root login\nseverity: critical\nkind: match\nquery: 'attributes.user.name:root AND body:login'\ntests:\n  - name: fires\n    events: [{body: login, attributes: {user.name: root}}]\n    expect: [{labels: {rule: root-login}}]\n  - name: near miss\n    events: [{body: login, attributes: {user.name: rooted}}]\n    expect: []\n",
    )
    .unwrap();
    let (ok, text) = run(&["rules", "test", tested.0.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
    std::fs::write(tested.0.join("u.yml"), "apiVersion: palisade/v1\nid: other\ntitle: O\nseverity: low\nkind: match\nquery: x\ntests:\n  - name: wrong\n    events: [{body: x}]\n    expect: []\n").unwrap();
    let (ok, text) = run(&["rules", "test", tested.0.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("1 failed") && text.contains("FAIL other / wrong"),
        "{text}"
    );
    std::fs::write(dir.0.join("broken.yaml"), "apiVersion: palisade/v1\nid: b\ntitle: B\nseverity: high\nkind: sequence\nwithin: 10m\nsteps: []\n").unwrap();
    let (ok, text) = run(&["rules", "validate", dir.0.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("broken.yaml") && text.contains("line 7") && text.contains("steps"),
        "{text}"
    );
    // Every bad file is reported, not only the first; files and directories mix.
    std::fs::write(
        dir.0.join("severe.yaml"),
        "apiVersion: palisade/v1\nid: s\ntitle: S\nseverity: extreme\nkind: match\nquery: a\n",
    )
    .unwrap();
    let single = tested.0.join("t.yml");
    let (ok, text) = run(&[
        "rules",
        "validate",
        dir.0.to_str().unwrap(),
        single.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("broken.yaml")
            && text.contains("severe.yaml: line 4: severity: unknown value \"extreme\", expected one of info, low, medium, high, critical")
            && text.contains("t.yml: rule id \"root-login\" is already defined in")
            && text.contains("3 of 4 rule file(s) have errors"),
        "{text}"
    );
    let (ok, text) = run(&["rules", "validate", single.to_str().unwrap()]);
    assert!(ok && text.contains("1 rule(s) in 1 file(s)"), "{text}");
    // An empty directory is not a valid pack.
    let empty = TempDir::new("palisade-no-rules");
    let (ok, text) = run(&["rules", "validate", empty.0.to_str().unwrap()]);
    assert!(!ok && text.contains("no rule files"), "{text}");
}

/// Threshold rules fire at the crossing: with an `interval` of one hour the schedule
/// cannot be what fires this rule, so the alert opening within seconds of the event
/// that completes the burst is the incremental evaluation on the committed stream.
#[tokio::test(flavor = "multi_thread")]
async fn threshold_rule_fires_at_the_crossing_not_at_the_next_interval() {
    let rules = TempDir::new("palisade-rules");
    std::fs::write(
        rules.0.join("slow.yaml"),
        "apiVersion: palisade/v1\nid: burst-hourly\ntitle: Burst (evaluated hourly)\nseverity: high\nkind: threshold\nquery: 'body:\"failed login\"'\ngroup_by: [attributes.user.name]\nwindow: 10m\ninterval: 1h\nthreshold: 3\n",
    )
    .unwrap();
    let (server, _data) = spawn_with_rules(&rules).await;
    // Let the first scheduled run (at start) pass, so the next one is an hour away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = |n: usize| {
        request(
            "auth",
            (0..n).map(|_| login("carol", "failed login")).collect(),
        )
    };
    assert_eq!(server.post_protobuf(&failures(2)).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, body, _) = server
        .call(
            "GET",
            "/api/v1/alerts?rule=burst-hourly",
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    assert_eq!(
        body["alerts"].as_array().unwrap().len(),
        0,
        "two is below the threshold: {body}"
    );
    // The third event crosses it.
    let sent = Instant::now();
    assert_eq!(server.post_protobuf(&failures(1)).await.status(), 200);
    let firing = wait_alerts(
        &server,
        "rule=burst-hourly",
        |a| !a.is_empty(),
        Duration::from_secs(10),
    )
    .await;
    let latency = sent.elapsed();
    assert_eq!(firing[0]["evidence"]["count"], 3, "{firing:?}");
    assert_eq!(firing[0]["state"], "firing");
    assert!(
        latency < Duration::from_secs(3),
        "fired {latency:?} after the crossing"
    );
}

/// `new_terms`: a combination of values fires the first time it is seen, not again;
/// nothing fires during the learning period; what was learned survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn new_terms_fire_once_per_new_combination_after_learning_and_across_restarts() {
    let rules = TempDir::new("palisade-rules");
    std::fs::write(
        rules.0.join("new.yaml"),
        "apiVersion: palisade/v1\nid: new-address\ntitle: Login from an address this user has not used\nseverity: medium\nkind: new_terms\nquery: 'body:login'\ngroup_by: [attributes.user.name, attributes.client.ip]\nhistory: 14d\nlearning: 4s\n",
    )
    .unwrap();
    let (mut server, data) = spawn_with_rules(&rules).await;
    let login_from = |ip: &str| {
        request(
            "auth",
            vec![record(
                "login ok",
                9,
                vec![kv("user.name", string("dave")), kv("client.ip", string(ip))],
            )],
        )
    };
    // Learning: the first address is learned, not reported.
    assert_eq!(
        server.post_protobuf(&login_from("10.0.0.1")).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        alerts(&server, "rule=new-address").await.is_empty(),
        "silent while learning"
    );
    // After learning: the known address is quiet, a new one fires once.
    assert_eq!(
        server.post_protobuf(&login_from("10.0.0.1")).await.status(),
        200
    );
    assert_eq!(
        server.post_protobuf(&login_from("10.0.0.2")).await.status(),
        200
    );
    assert_eq!(
        server.post_protobuf(&login_from("10.0.0.2")).await.status(),
        200
    );
    let fired = wait_alerts(
        &server,
        "rule=new-address",
        |a| !a.is_empty(),
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired_now = alerts(&server, "rule=new-address").await;
    assert_eq!(fired_now.len(), 1, "{fired_now:?}");
    assert_eq!(fired[0]["labels"]["attributes.client.ip"], "10.0.0.2");
    assert_eq!(
        fired_now[0]["evidence"]["count"], 1,
        "the second login from it is not new"
    );
    // State is in Postgres: after a restart the learned and the reported addresses
    // stay known, and a third one is new.
    let url = server.database_url.clone();
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url.as_ref().unwrap())
            .await
            .unwrap();
        let terms: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rule_terms WHERE rule_id = 'new-address'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(terms, 2);
    }
    assert!(server.stop().unwrap().success());
    let again = TestServer::start(&data.0, url, &["--rules-dir", rules.0.to_str().unwrap()])
        .await
        .unwrap();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        assert_eq!(again.post_protobuf(&login_from(ip)).await.status(), 200);
    }
    let after = wait_alerts(
        &again,
        "rule=new-address",
        |a| a.len() >= 2,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_now = alerts(&again, "rule=new-address").await;
    assert_eq!(after_now.len(), 2, "{after_now:?}");
    let ips: Vec<&str> = after
        .iter()
        .map(|a| a["labels"]["attributes.client.ip"].as_str().unwrap())
        .collect();
    assert!(
        ips.contains(&"10.0.0.3") && ips.contains(&"10.0.0.2"),
        "{ips:?}"
    );
    for a in &after_now {
        assert_eq!(a["evidence"]["count"], 1, "{a}");
    }
    // A backtest replays the stored logins: the first address is learned (within
    // `learning` of the first event), the two others are new once each.
    let (status, result, _) = again
        .call(
            "POST",
            "/api/v1/rules/backtest",
            &Auth::Token(again.creds.api_token.clone()),
            Some(json!({"rule_id": "new-address", "from": "now-1h"})),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    let mut replayed: Vec<&str> = result["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["attributes.client.ip"].as_str().unwrap())
        .collect();
    replayed.sort();
    assert_eq!(replayed, ["10.0.0.2", "10.0.0.3"], "{result}");
}

/// The crossing under ingest load: a background client sends 200-record batches
/// while probes of three records cross a threshold rule evaluated hourly.
#[tokio::test(flavor = "multi_thread")]
async fn threshold_rule_fires_at_the_crossing_under_background_load() {
    let rules = TempDir::new("palisade-rules");
    std::fs::write(
        rules.0.join("slow.yaml"),
        "apiVersion: palisade/v1\nid: probe-burst\ntitle: Probe burst\nseverity: info\nkind: threshold\nquery: 'body:probeburst'\ngroup_by: [attributes.probe.id]\nwindow: 5m\ninterval: 1h\nthreshold: 3\n",
    )
    .unwrap();
    let (server, _data) = spawn_with_rules(&rules).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let stop = stop.clone();
        let http = server.http.clone();
        let url = format!("{}/v1/logs", server.otlp_http);
        let token = server.creds.ingest_token.clone();
        tokio::spawn(async move {
            use prost::Message;
            let body = request(
                "load",
                (0..200)
                    .map(|i| record(&format!("background {i}"), 9, vec![]))
                    .collect(),
            )
            .encode_to_vec();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for p in 0..5 {
        let id = format!("probe-{p}");
        let one = || {
            request(
                "probe",
                vec![record("probeburst", 9, vec![kv("probe.id", string(&id))])],
            )
        };
        for _ in 0..3 {
            assert_eq!(server.post_protobuf(&one()).await.status(), 200);
        }
        let sent = Instant::now();
        let firing = wait_alerts(
            &server,
            "rule=probe-burst&state=firing&limit=1000",
            |a| {
                a.iter()
                    .any(|x| x["labels"]["attributes.probe.id"] == id.as_str())
            },
            Duration::from_secs(10),
        )
        .await;
        assert!(!firing.is_empty());
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "probe {p}: {:?}",
            sent.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    background.await.unwrap();
}
