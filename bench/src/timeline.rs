//! `--mode timeline`: the timeline of an incident whose entity has 1,000 events in
//! the window, with `--records` other records stored.
//!
//! `--records` background records (1,000 users, so each user has about records/1000
//! events) go in first, then 1,000 records of one intruder, then the record that makes
//! the probe rule fire for the intruder: its incident's timeline holds the alert, its
//! transitions and the intruder's 1,000 correlated events. Measured: `--queries`
//! timeline requests, first page (200 entries) and the whole window in one page
//! (1,000 entries). Baseline in the same run: the search API answering the same
//! entity query (`attributes.user.name:"intruder"`, oldest first, same page size),
//! i.e. the search core alone.

use std::time::{Duration, Instant};

use palisade_tests::otlp::{kv, record, request, string};
use palisade_tests::{Auth, PrivateCluster, TempDir, TestServer};
use prost::Message;

use crate::{
    Args, DURABLE_CLUSTER, TestServerView, UNLIMITED, Workload, ingest_all, summary, total,
};

const RULE: &str = "apiVersion: palisade/v1\nid: shell\ntitle: Shell\nseverity: high\nkind: match\nquery: 'body:\"shell opened\"'\ngroup_by: [attributes.user.name]\n";

pub(crate) async fn timeline_bench(args: Args) -> anyhow::Result<()> {
    let palisade = std::fs::canonicalize(&args.palisade)?;
    palisade_tests::set_palisade_bin(palisade);
    let cluster = PrivateCluster::start_with(DURABLE_CLUSTER)?;
    let url = cluster.create_database("timeline").await?;
    let dir = TempDir::new("palisade-bench-timeline");
    let rules = TempDir::new("palisade-bench-timeline-rules");
    std::fs::write(rules.0.join("shell.yaml"), RULE)?;
    let mut extra: Vec<&str> = UNLIMITED.to_vec();
    extra.extend(["--rules-dir", rules.0.to_str().expect("utf-8 path")]);
    let server = TestServer::start(&dir.0, Some(url), &extra).await?;
    let view = TestServerView::of(&server);
    let client = palisade_tests::http_client();

    eprintln!("bench: ingesting {} background records", args.records);
    let workload = Workload {
        records: args.records,
        batch: args.batch,
    };
    ingest_all(&server, workload, args.clients).await?;
    eprintln!("bench: 1,000 intruder records and the alert");
    for chunk in 0..10 {
        let records = (0..100)
            .map(|i| {
                record(
                    &format!("intruder step {}", chunk * 100 + i),
                    9,
                    vec![kv("user.name", string("intruder"))],
                )
            })
            .collect();
        view.send(&client, request("intruder", records).encode_to_vec())
            .await?;
    }
    view.send(
        &client,
        request(
            "intruder",
            vec![record(
                "shell opened",
                13,
                vec![kv("user.name", string("intruder"))],
            )],
        )
        .encode_to_vec(),
    )
    .await?;
    let want = args.records as u64 + 1001;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while total(&server, "").await? < want {
        anyhow::ensure!(Instant::now() < deadline, "records never all searchable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin = Auth::Token(server.creds.api_token.clone());
    let incident = loop {
        let (status, body, _) = server
            .call(
                "GET",
                "/api/v1/incidents?entity=user.name:intruder",
                &admin,
                None,
            )
            .await;
        anyhow::ensure!(status == 200, "incidents: {body}");
        if let Some(id) = body["incidents"][0]["id"].as_str() {
            break id.to_string();
        }
        anyhow::ensure!(Instant::now() < deadline, "no incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every event of the intruder is on the timeline.
    let (status, full, _) = server
        .call(
            "GET",
            &format!("/api/v1/incidents/{incident}/timeline?kinds=event&limit=1000&from=now-1d"),
            &admin,
            None,
        )
        .await;
    anyhow::ensure!(status == 200, "timeline: {full}");
    let events = full["entries"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(events >= 1000, "only {events} correlated events");

    let measure = |path: String| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let mut samples = Vec::new();
            for _ in 0..args.queries {
                let t = Instant::now();
                let (status, body, _) = server.call("GET", &path, &admin, None).await;
                anyhow::ensure!(status == 200, "{path}: {body}");
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(summary(samples))
        }
    };
    eprintln!("bench: timeline latency");
    let page_api = measure(format!(
        "/api/v1/incidents/{incident}/timeline?from=now-1d&limit=200"
    ))
    .await?;
    let whole = measure(format!(
        "/api/v1/incidents/{incident}/timeline?from=now-1d&limit=1000"
    ))
    .await?;
    let search = |limit: &str| {
        format!(
            "/api/v1/search?q=attributes.user.name:%22intruder%22&from=now-1d&sort=oldest&limit={limit}"
        )
    };
    let search_page = measure(search("200")).await?;
    let search_whole = measure(search("1000")).await?;

    eprintln!("bench: UI page render");
    let session = server
        .login(&server.creds.admin_username, &server.creds.admin_password)
        .await
        .map_err(|(s, b)| anyhow::anyhow!("login {s}: {b}"))?;
    let page = |path: String| {
        let server = &server;
        let cookie = session.cookie.clone();
        async move {
            let mut samples = Vec::new();
            for _ in 0..args.queries {
                let t = Instant::now();
                let resp = server
                    .http
                    .get(format!("{}{path}", server.api))
                    .header("cookie", &cookie)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "{path}: {}", resp.status());
                let html = resp.text().await?;
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(html.contains("</html>"));
            }
            anyhow::Ok(summary(samples))
        }
    };
    let ui_incident = page(format!("/incidents/{incident}")).await?;
    let ui_search =
        page("/search?q=attributes.user.name:%22intruder%22&from=now-1d&to=now".to_string())
            .await?;
    let ui_broad = page("/search?q=session&from=now-1d&to=now".to_string()).await?;
    let api_broad = measure("/api/v1/search?q=session&from=now-1d&limit=100".to_string()).await?;
    let api_hist =
        measure("/api/v1/search/histogram?q=session&from=now-1d&buckets=60".to_string()).await?;

    println!(
        "## palisade-bench --mode timeline: {} records stored, 1,000 in the incident's window, {} requests each",
        args.records + 1001,
        args.queries
    );
    println!();
    println!(
        "| measure | Palisade timeline p50 / p99 | baseline: search API, same entity query, p50 / p99 |"
    );
    println!("|---|---|---|");
    println!(
        "| first page (200 entries) | {:.1} ms / {:.1} ms | {:.1} ms / {:.1} ms |",
        page_api.0, page_api.1, search_page.0, search_page.1
    );
    println!(
        "| whole window in one page (1,000 events + alert entries) | {:.1} ms / **{:.1} ms** (target ≤ 250 ms) | {:.1} ms / {:.1} ms |",
        whole.0, whole.1, search_whole.0, search_whole.1
    );
    println!();
    println!("| UI page (server-side, whole HTML) | p50 / p99 | baseline (same run) p50 / p99 |");
    println!("|---|---|---|");
    println!(
        "| `/incidents/{{id}}` (200 timeline entries, entities, alerts) | {:.1} ms / **{:.1} ms** (target ≤ 200 ms) | timeline API, same page: {:.1} ms / {:.1} ms |",
        ui_incident.0, ui_incident.1, page_api.0, page_api.1
    );
    println!(
        "| `/search`, the intruder (100 results + 60-bucket histogram) | {:.1} ms / **{:.1} ms** | search API 200 results: {:.1} ms / {:.1} ms |",
        ui_search.0, ui_search.1, search_page.0, search_page.1
    );
    println!(
        "| `/search?q=session` (matches about half of all records) | {:.1} ms / **{:.1} ms** | search API: {:.1} ms / {:.1} ms; histogram API: {:.1} ms / {:.1} ms |",
        ui_broad.0, ui_broad.1, api_broad.0, api_broad.1, api_hist.0, api_hist.1
    );
    Ok(())
}
