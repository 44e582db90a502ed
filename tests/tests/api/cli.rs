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
