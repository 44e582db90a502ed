//! Search API: query language, pagination, histogram, errors, auth and operations.

use std::time::{Duration, Instant};

use palisade_tests::TestServer;
use palisade_tests::otlp::{int, kv, record, request, string};

async fn seed(server: &TestServer) {
    let users = ["alice", "bob", "carol", "root"];
    let mut records = Vec::new();
    for i in 0..40 {
        let user = users[i % users.len()];
        let body = if i % 5 == 0 {
            format!("failed login for {user}")
        } else {
            format!("login ok for {user} request {i}")
        };
        records.push(record(
            &body,
            if i % 5 == 0 { 13 } else { 9 },
            vec![
                kv("user.name", string(user)),
                kv("http.status_code", int(if i % 5 == 0 { 401 } else { 200 })),
            ],
        ));
    }
    assert_eq!(
        server
            .post_protobuf(&request("auth", records))
            .await
            .status(),
        200
    );
    server.wait_for_total("", 40).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn query_language_terms_phrases_booleans_fields_and_ranges() {
    let server = TestServer::spawn().await.unwrap();
    seed(&server).await;
    let count = |q: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server.search(&[("q", q), ("from", "now-1h")]).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["total"].as_u64().unwrap()
        }
    };
    assert_eq!(count("login").await, 40);
    assert_eq!(count("body:\"failed login\"").await, 8);
    assert_eq!(
        count("\"login failed\"").await,
        0,
        "phrases keep word order"
    );
    assert_eq!(count("attributes.user.name:root").await, 10);
    assert_eq!(count("attributes.user.name:root AND body:failed").await, 2);
    assert_eq!(count("attributes.user.name:(alice OR bob)").await, 20);
    assert_eq!(count("NOT attributes.user.name:alice").await, 30);
    assert_eq!(
        count("-attributes.user.name:alice -attributes.user.name:bob").await,
        20
    );
    assert_eq!(count("severity_number:>=13").await, 8);
    assert_eq!(count("severity_number:[1 TO 12]").await, 32);
    assert_eq!(count("severity_text:warn").await, 8);
    assert_eq!(count("attributes.http.status_code:401").await, 8);
    assert_eq!(count("attributes.http.status_code:>=400").await, 8);
    assert_eq!(count("attributes.http.status_code:[200 TO 299]").await, 32);
    assert_eq!(count("resource.service.name:auth").await, 40);
    assert_eq!(count("resource.service.name:nope").await, 0);
    assert_eq!(count("attributes.user.name:ca*").await, 10);
    assert_eq!(count("requ*").await, 32);
}

#[tokio::test(flavor = "multi_thread")]
async fn newest_first_cursor_pagination_with_exact_total() {
    let server = TestServer::spawn().await.unwrap();
    seed(&server).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last_time = String::from("9999");
    loop {
        let mut params = vec![("q", "login"), ("from", "now-1h"), ("limit", "7")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let (status, page) = server.search(&params).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 40, "total is exact on every page");
        assert!(page["took_ms"].is_u64());
        for hit in page["hits"].as_array().unwrap() {
            let time = hit["time"].as_str().unwrap().to_string();
            assert!(time <= last_time, "newest first: {time} after {last_time}");
            last_time = time;
            seen.push(hit["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 40, "every hit once");
    assert_eq!(unique.len(), 40, "no duplicates across pages");
}

/// `sort=oldest` pages through the same hits in the other direction, with its own
/// cursors; a cursor of one order is refused by the other.
#[tokio::test(flavor = "multi_thread")]
async fn oldest_first_pagination_mirrors_newest_first() {
    let server = TestServer::spawn().await.unwrap();
    seed(&server).await;
    let mut orders = Vec::new();
    for sort in ["newest", "oldest"] {
        let mut seen: Vec<(chrono::DateTime<chrono::Utc>, i64)> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![
                ("q", "login"),
                ("from", "now-1h"),
                ("limit", "6"),
                ("sort", sort),
            ];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let (status, page) = server.search(&params).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["total"], 40);
            for hit in page["hits"].as_array().unwrap() {
                let time = chrono::DateTime::parse_from_rfc3339(hit["time"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&chrono::Utc);
                seen.push((time, hit["id"].as_str().unwrap().parse().unwrap()));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 40, "{sort}: every hit once");
        let mut sorted = seen.clone();
        sorted.sort();
        if sort == "newest" {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "{sort}: pages in order, ties by id");
        orders.push(seen);
    }
    let mut reversed = orders[0].clone();
    reversed.reverse();
    assert_eq!(orders[1], reversed, "oldest first is newest first reversed");
    // A newest-first cursor does not continue an oldest-first search.
    let (_, page) = server
        .search(&[("q", "login"), ("from", "now-1h"), ("limit", "2")])
        .await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (status, body) = server
        .search(&[
            ("q", "login"),
            ("from", "now-1h"),
            ("sort", "oldest"),
            ("cursor", &cursor),
        ])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cursor"),
        "{body}"
    );
    let (status, body) = server.search(&[("q", "login"), ("sort", "sideways")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("sort"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn histogram_counts_match_search() {
    let server = TestServer::spawn().await.unwrap();
    seed(&server).await;
    let (status, body) = server
        .get_api(
            "/api/v1/search/histogram",
            &[
                ("q", "body:failed"),
                ("from", "now-1h"),
                ("to", "now+1m"),
                ("buckets", "6"),
            ],
            Some(&server.creds.api_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 6);
    let sum: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(sum, 8);
    assert_eq!(body["total"], 8);
    // All records were just written: they fall in the last bucket.
    assert_eq!(buckets[5]["count"], 8);
    assert!(buckets[0]["start"].as_str().unwrap() < buckets[5]["start"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_and_parameters_are_400_naming_the_problem() {
    let server = TestServer::spawn().await.unwrap();
    let cases = [
        (vec![("q", "(alice OR bob")], "position 0"),
        (vec![("q", "alice AND")], "position 9"),
        (vec![("q", "nosuchfield:x")], "unknown field"),
        (vec![("q", "severity_number:abc")], "severity_number"),
        (vec![("from", "yesterday")], "from"),
        (vec![("to", "now-5x")], "to"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "many")], "limit"),
        (vec![("cursor", "bogus!")], "cursor"),
        (vec![("from", "now"), ("to", "now-1h")], "from"),
    ];
    for (params, fragment) in cases {
        let (status, body) = server.search(&params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{params:?}: {message}");
    }
    let (status, body) = server
        .get_api(
            "/api/v1/search/histogram",
            &[("buckets", "100000")],
            Some(&server.creds.api_token),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("buckets")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn search_needs_a_read_token() {
    let server = TestServer::spawn().await.unwrap();
    let (status, body) = server.get_api("/api/v1/search", &[], None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = server
        .get_api("/api/v1/search", &[], Some(&server.creds.ingest_token))
        .await;
    assert_eq!(status, 403, "an ingest token cannot read");
    let out = server
        .run_cli(&["token", "create", "--scope", "read"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, _) = server.get_api("/api/v1/search", &[], Some(&read)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_searchable_within_a_second_of_the_ack() {
    let server = TestServer::spawn().await.unwrap();
    for round in 0..5 {
        let marker = format!("freshness{round}marker");
        let resp = server
            .post_json(&request("fresh", vec![record(&marker, 9, vec![])]))
            .await;
        assert_eq!(resp.status(), 200);
        let acked = Instant::now();
        loop {
            let (_, body) = server.search(&[("q", marker.as_str())]).await;
            if body["total"] == 1 {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(1),
                "not searchable 1 s after its 200"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_security_headers() {
    let server = TestServer::spawn().await.unwrap();
    let (status, body) = server.get_api("/healthz", &[], None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = server.get_api("/readyz", &[], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], true);
    assert_eq!(body["checks"]["migrations"], true);
    assert_eq!(body["checks"]["index_caught_up"], true);

    let req = request(
        "m",
        vec![
            record("metric one", 9, vec![]),
            record("metric two", 9, vec![]),
        ],
    );
    assert_eq!(server.post_protobuf(&req).await.status(), 200);
    let mut bad = record("bad", 99, vec![]);
    bad.severity_text = "X".into();
    assert_eq!(
        server
            .post_protobuf(&request("m", vec![bad]))
            .await
            .status(),
        200
    );
    server.wait_for_total("metric", 2).await;

    let resp = server
        .http
        .get(format!("{}/metrics", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    for needle in [
        "palisade_ingest_records_total{outcome=\"accepted\",transport=\"http\"} 2",
        "palisade_ingest_rejected_records_total{reason=\"invalid_severity_number\"} 1",
        "palisade_ingest_received_bytes_total{transport=\"http\"}",
        "palisade_ingest_request_duration_seconds_bucket",
        "palisade_index_lag_records",
        "palisade_db_pool_connections",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle} in /metrics:\n{text}"
        );
    }
    assert!(
        !text.contains(&server.creds.ingest_token),
        "tokens never appear in metrics"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("referrer-policy"));
    assert!(!headers.contains_key("access-control-allow-origin"));
}

/// `GET /api/v1/openapi.json` is a valid OpenAPI 3.1 document by a standard validator
/// (the PyPI package openapi-spec-validator), served without credentials, and lists
/// the routes clients use.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let server = TestServer::spawn().await.unwrap();
    let resp = server
        .http
        .get(format!("{}/api/v1/openapi.json", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/search",
        "/api/v1/alerts/{id}",
        "/api/v1/rules/backtests",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["SearchResponse"].is_object());
    let dir = palisade_tests::TempDir::new("palisade-openapi");
    let file = dir.0.join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let python = std::env::var("PALISADE_TEST_PYTHON")
        .expect("PALISADE_TEST_PYTHON: run the suite with scripts/test.sh");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sys; from openapi_spec_validator import validate; \
             from openapi_spec_validator.readers import read_from_filename; \
             from openapi_spec_validator import OpenAPIV31SpecValidator; \
             spec, _ = read_from_filename(sys.argv[1]); \
             validate(spec, cls=OpenAPIV31SpecValidator); print('valid')",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator is not a rubber stamp: a broken copy fails.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/search"]["get"]["responses"] = serde_json::json!("nope");
    std::fs::write(&file, broken.to_string()).unwrap();
    let out = std::process::Command::new(std::env::var("PALISADE_TEST_PYTHON").unwrap())
        .args([
            "-c",
            "import sys; from openapi_spec_validator import validate; \
             from openapi_spec_validator.readers import read_from_filename; \
             spec, _ = read_from_filename(sys.argv[1]); validate(spec)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken document must not validate");
}

/// Records read back by sequence id (search results, an incident alert's evidence) use
/// the `seq` index even where the partition has no statistics yet (every new day's):
/// the tenant is filtered after the ids are found. With both in one scan, the planner
/// once ANDed the `(tenant_id, time)` index and read every row of the tenant per call
/// (the rules benchmark's evaluator fell from 21,100 to 3,898 records/s).
#[tokio::test(flavor = "multi_thread")]
async fn reads_by_sequence_id_use_the_seq_index_on_unanalysed_partitions() {
    use sqlx::{Connection, Row};
    let server = TestServer::spawn().await.unwrap();
    seed(&server).await;
    let url = server.database_url.clone().expect("database url");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Today's partition exists (the seed created it): keep autovacuum off it and grow
    // it to a size where a full read of the tenant would cost, with no ANALYZE.
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'log_records'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!partitions.is_empty());
    for p in &partitions {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {p} SET (autovacuum_enabled = false); \
             SELECT pg_stat_reset_single_table_counters('{p}'::regclass)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT tenant_id FROM log_records LIMIT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO log_records (tenant_id, time, observed_time, severity_number, severity_text, body, \
         attributes, resource, scope_name, scope_version, flags) \
         SELECT $1, now() - make_interval(secs => g / 1000.0), now(), 9, 'INFO', 'filler ' || g, \
                '{}'::jsonb, '{}'::jsonb, 'filler', '', 0 FROM generate_series(1, 60000) g",
    )
    .bind(tenant)
    .execute(&mut conn)
    .await
    .unwrap();
    let analysed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT max(greatest(last_analyze, last_autoanalyze)) FROM pg_stat_user_tables WHERE relname LIKE 'log_records_p%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        analysed.is_none(),
        "the partition must be unanalysed for this test"
    );

    let plan = |sql: String, params: &str| {
        format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE q AS {sql}; \
             EXPLAIN EXECUTE q({params}); DEALLOCATE q"
        )
    };
    let t = format!("'{tenant}'::uuid");
    let ids = "ARRAY[1, 2, 3]::bigint[]";
    for (what, sql, params) in [
        (
            "fetch_by_seqs",
            storage::logs::by_seqs_sql(false),
            format!("{t}, {ids}"),
        ),
        (
            "fetch_by_seqs with a time range",
            storage::logs::by_seqs_sql(true),
            format!("{t}, {ids}, now() - interval '1 day', now()"),
        ),
        (
            "incident evidence",
            storage::incidents::EVIDENCE_SQL.to_string(),
            format!("{t}, {ids}"),
        ),
    ] {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(plan(sql, &params)))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let lines: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        let text = lines.join("\n");
        assert!(
            text.contains("seq_idx"),
            "{what}: not through the seq index:\n{text}"
        );
        assert!(
            !text.contains("tenant_id_time"),
            "{what}: reads the tenant's (tenant_id, time) index:\n{text}"
        );
    }

    // And the API still returns only the tenant's own records through these reads.
    let (status, body) = server.search(&[("q", "body:login"), ("limit", "5")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"].as_array().map(Vec::len), Some(5), "{body}");
}
