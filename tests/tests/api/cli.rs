//! Administrative commands against a running server's database.

use palisade_tests::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn token_create_prints_only_a_token_that_works() {
    let server = TestServer::spawn().await.unwrap();
    let out = server
        .run_cli(&["token", "create", "--scope", "ingest"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is only the token: {stdout:?}");
    assert!(model::token::is_well_formed(lines[0]), "{stdout:?}");
    let resp = server
        .post_logs(
            serde_json::to_vec(&palisade_tests::otlp::request(
                "cli",
                vec![palisade_tests::otlp::record("minted", 9, vec![])],
            ))
            .unwrap(),
            "application/json",
            None,
            Some(lines[0]),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // Secrets never appear on the server's output.
    let printed = server.drain_output().join("\n");
    assert!(
        !printed.contains(&server.creds.api_token)
            && !printed.contains(&server.creds.admin_password)
    );
    // Only hashes are stored.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server.database_url.as_ref().unwrap())
        .await
        .unwrap();
    let hashes: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes
            .iter()
            .all(|h| h.len() == 64 && !h.starts_with("pal_"))
    );
    let bad = server
        .run_cli(&["token", "create", "--scope", "superuser"])
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("superuser"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_created_listed_and_scope_tokens() {
    let server = TestServer::spawn().await.unwrap();
    let out = server.run_cli(&["tenant", "create", "acme"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dup = server.run_cli(&["tenant", "create", "acme"]).unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = server.run_cli(&["tenant", "create", "Not Valid"]).unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tenant name"));
    let list = String::from_utf8(server.run_cli(&["tenant", "list"]).unwrap().stdout).unwrap();
    assert!(list.contains("acme") && list.contains("default"), "{list}");

    // A token of tenant acme writes to acme only; the default tenant never sees it.
    let acme_ingest = String::from_utf8(
        server
            .run_cli(&["token", "create", "--tenant", "acme", "--scope", "ingest"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    let acme_read = String::from_utf8(
        server
            .run_cli(&["token", "create", "--tenant", "acme", "--scope", "read"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    let body = serde_json::to_vec(&palisade_tests::otlp::request(
        "acme",
        vec![palisade_tests::otlp::record("acmecanary", 9, vec![])],
    ))
    .unwrap();
    assert_eq!(
        server
            .post_logs(body, "application/json", None, Some(acme_ingest.trim()))
            .await
            .status(),
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, b) = server
            .get_api(
                "/api/v1/search",
                &[("q", "acmecanary")],
                Some(acme_read.trim()),
            )
            .await;
        if b["total"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acme never saw its record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, other) = server.search(&[("q", "acmecanary")]).await;
    assert_eq!(
        other["total"], 0,
        "the default tenant must not see acme's records"
    );
    let migrate = server.run_cli(&["migrate"]).unwrap();
    assert!(migrate.status.success());
}

/// A port already in use stops start-up at once with one line naming the address and
/// the flag, exit code 1 — before a database is opened or any task starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_is_one_clear_line_and_exit_1() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let url = palisade_tests::fresh_database().await.unwrap();
    for flag in ["--http-addr", "--otlp-http-addr", "--otlp-grpc-addr"] {
        let dir = palisade_tests::TempDir::new("palisade-port");
        let mut cmd = std::process::Command::new(palisade_tests::palisade_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&dir.0)
            .args(["--database-url", &url])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for other in ["--http-addr", "--otlp-http-addr", "--otlp-grpc-addr"] {
            cmd.args([other, if other == flag { &addr } else { "127.0.0.1:0" }]);
        }
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(5) {
                let _ = child.kill();
                panic!("{flag}: still running after 5 s with its port in use");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(1), "{flag}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() <= 5, "{flag}: {} lines: {stderr}", lines.len());
        assert!(
            stderr.contains(&format!(
                "cannot listen on {addr} ({flag}): the address is already in use"
            )),
            "{flag}: {stderr}"
        );
        assert!(
            !stderr.contains('\u{1b}'),
            "{flag}: escape codes in {stderr:?}"
        );
        // Nothing was created in the database it never opened.
        assert!(!dir.0.join("initial-credentials.json").exists(), "{flag}");
    }
    drop(busy);
}

/// Logs written to a pipe or file carry no terminal escape codes.
#[tokio::test(flavor = "multi_thread")]
async fn output_to_a_pipe_has_no_escape_codes() {
    let mut server = palisade_tests::TestServer::spawn().await.unwrap();
    let (status, _) = server
        .get_api("/api/v1/search", &[("q", "x")], Some("wrong-token"))
        .await;
    assert_eq!(status, 401);
    // Shutting down logs (tracing, on stderr) after everything start-up printed.
    assert!(server.stop().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines = server.drain_output();
    let logged: Vec<&String> = lines.iter().filter(|l| l.starts_with("stderr: ")).collect();
    assert!(
        logged.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "escape code in {line:?}");
    }
}
