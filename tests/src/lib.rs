//! Test harness: spawn the real `palisade` binary against a real Postgres.
//!
//! * [`TestServer::spawn`] creates a fresh database on the shared test cluster
//!   (`PALISADE_TEST_DATABASE_URL`, started by `scripts/test.sh`), a fresh data dir,
//!   starts `palisade serve` on port 0 and parses the bound addresses from its
//!   stdout. One helper per endpoint.
//! * [`PrivateCluster`] is a throwaway PostgreSQL cluster a test can stop and start
//!   (outage tests).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::Value;

pub mod otlp;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

static BIN_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Use another `palisade` binary (the benchmark measures the release build).
pub fn set_palisade_bin(path: PathBuf) {
    let _ = BIN_OVERRIDE.set(path);
}

/// The `palisade` binary under test: [`set_palisade_bin`], `PALISADE_BIN`, or
/// `target/debug/palisade`.
pub fn palisade_bin() -> PathBuf {
    if let Some(path) = BIN_OVERRIDE.get() {
        return path.clone();
    }
    if let Ok(path) = std::env::var("PALISADE_BIN") {
        return PathBuf::from(path);
    }
    let path = workspace_root().join("target/debug/palisade");
    assert!(
        path.exists(),
        "{} is missing: run the suite with scripts/test.sh (it builds the binary first)",
        path.display()
    );
    path
}

/// Admin URL of the shared test cluster.
pub fn admin_url() -> String {
    std::env::var("PALISADE_TEST_DATABASE_URL").expect(
        "PALISADE_TEST_DATABASE_URL is not set: run the suite with scripts/test.sh, which starts a throwaway PostgreSQL",
    )
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = &base[..base.rfind('/').expect("url has a path")];
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// Create a fresh, empty database on the shared cluster and return its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = format!("palisade_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(with_database(&admin_url(), &name))
}

/// A fresh temporary directory (removed on drop) that the `postgres` user can reach.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A logged-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    /// `name=value`, for a Cookie header.
    pub cookie: String,
    /// The whole Set-Cookie header as received.
    pub set_cookie: String,
    pub csrf: String,
}

/// How a test request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Token(String),
    Session(Session),
    SessionWithoutCsrf(Session),
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub admin_username: String,
    pub admin_password: String,
    pub ingest_token: String,
    pub api_token: String,
}

#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Use this database URL; `None` = a fresh database on the shared cluster;
    /// `Some("")` = the embedded default (no URL).
    pub database_url: Option<String>,
    pub extra_args: Vec<String>,
}

pub struct TestServer {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub api: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
    pub creds: Credentials,
    pub http: reqwest::Client,
    stdout_lines: mpsc::Receiver<String>,
    _owned_dir: Option<TempDir>,
}

impl TestServer {
    /// Spawn a server with a fresh database and data dir.
    pub async fn spawn() -> anyhow::Result<TestServer> {
        Self::spawn_with(&[]).await
    }

    /// Spawn a server with a fresh database and data dir, and extra `serve` flags.
    pub async fn spawn_with(extra: &[&str]) -> anyhow::Result<TestServer> {
        let dir = TempDir::new("palisade-test");
        let data_dir = dir.0.clone();
        let url = fresh_database().await?;
        let mut server = Self::start(&data_dir, Some(url), extra).await?;
        server._owned_dir = Some(dir);
        Ok(server)
    }

    /// Start a server on an existing data dir. `database_url = None` = embedded.
    pub async fn start(
        data_dir: &Path,
        database_url: Option<String>,
        extra: &[&str],
    ) -> anyhow::Result<TestServer> {
        let mut cmd = Command::new(palisade_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("PALISADE_DATABASE_URL")
            .env("RUST_LOG", "info,tantivy=warn,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = &database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd.spawn().context("spawn palisade")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let tx_err = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[palisade stdout] {line}");
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[palisade stderr] {line}");
                let _ = tx_err.send(format!("stderr: {line}"));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let ready = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) if line.starts_with("palisade: ready to serve") => break line,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "palisade did not report ready within 90 s (status {:?})",
                        child.try_wait()
                    );
                }
            }
        };
        let field = |name: &str| -> anyhow::Result<String> {
            ready
                .split([' ', '(', ')'])
                .find_map(|part| part.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
                .with_context(|| format!("no {name} in {ready:?}"))
        };
        let creds_path = data_dir.join("initial-credentials.json");
        let creds: Value = serde_json::from_str(&std::fs::read_to_string(&creds_path)?)?;
        let get = |k: &str| creds[k].as_str().unwrap_or_default().to_string();
        let server = TestServer {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            database_url,
            api: format!("http://{}", field("api")?),
            otlp_http: format!("http://{}", field("otlp_http")?),
            otlp_grpc: format!("http://{}", field("otlp_grpc")?),
            creds: Credentials {
                admin_username: get("admin_username"),
                admin_password: get("admin_password"),
                ingest_token: get("ingest_token"),
                api_token: get("api_token"),
            },
            http: http_client(),
            stdout_lines: rx,
            _owned_dir: None,
        };
        // A TLS server is probed by its test with a client that trusts the test CA.
        if !extra.contains(&"--tls-cert") {
            server.wait_ready().await?;
        }
        Ok(server)
    }

    /// Poll `/readyz` until it answers 200, as an orchestrator would.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get_api("/readyz", &[], None).await;
            if status == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("palisade not ready after 60 s: {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Lines printed so far that have not been read yet.
    pub fn drain_output(&self) -> Vec<String> {
        self.stdout_lines.try_iter().collect()
    }

    /// SIGTERM and wait for a clean exit. Returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("palisade did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Peak and current resident memory of the server, in KiB (VmHWM, VmRSS).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let read = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (read("VmHWM:"), read("VmRSS:"))
    }

    pub fn run_cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(palisade_bin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("PALISADE_DATABASE_URL");
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        Ok(cmd.output()?)
    }

    /// POST an OTLP/HTTP logs body.
    pub async fn post_logs(
        &self,
        body: Vec<u8>,
        content_type: &str,
        encoding: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/v1/logs", self.otlp_http))
            .header("content-type", content_type)
            .body(body);
        if let Some(enc) = encoding {
            req = req.header("content-encoding", enc);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request reaches the server")
    }

    pub async fn post_json(&self, request: &ExportLogsServiceRequest) -> reqwest::Response {
        let body = serde_json::to_vec(request).expect("serialise");
        self.post_logs(
            body,
            "application/json",
            None,
            Some(&self.creds.ingest_token),
        )
        .await
    }

    pub async fn post_protobuf(&self, request: &ExportLogsServiceRequest) -> reqwest::Response {
        use prost::Message;
        self.post_logs(
            request.encode_to_vec(),
            "application/x-protobuf",
            None,
            Some(&self.creds.ingest_token),
        )
        .await
    }

    /// GET /api/v1/search with the API token. Returns (status, JSON body).
    pub async fn search(&self, params: &[(&str, &str)]) -> (u16, Value) {
        self.get_api("/api/v1/search", params, Some(&self.creds.api_token))
            .await
    }

    pub async fn get_api(
        &self,
        path: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.api)).query(params);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Poll search until `q` has `expected` hits in total (or 10 s pass).
    pub async fn wait_for_total(&self, q: &str, expected: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self
                .search(&[("q", q), ("from", "now-30d"), ("limit", "1000")])
                .await;
            if status == 200 && body["total"].as_u64() == Some(expected) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("search {q:?} never reached {expected} hits; last answer {status}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Log in through the API. Returns the session or the failing status and body.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, (u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/api/v1/auth/login", self.api))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("request reaches the server");
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match (status, set_cookie) {
            (200, Some(set_cookie)) => {
                let pair = set_cookie.split(';').next().unwrap_or_default().to_string();
                Ok(Session {
                    cookie: pair,
                    set_cookie,
                    csrf: body["csrf_token"].as_str().unwrap_or_default().to_string(),
                })
            }
            _ => Err((status, body)),
        }
    }

    /// Any API call with a credential. Returns (status, JSON or text body, headers).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        match auth {
            Auth::None => {}
            Auth::Token(token) => req = req.bearer_auth(token),
            Auth::Session(session) => {
                req = req
                    .header("cookie", &session.cookie)
                    .header("x-csrf-token", &session.csrf)
            }
            Auth::SessionWithoutCsrf(session) => req = req.header("cookie", &session.cookie),
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Create a user through the CLI with a known password.
    pub fn add_user(
        &self,
        username: &str,
        tenant: &str,
        role: &str,
        instance_admin: bool,
        password: &str,
    ) {
        let mut cmd = Command::new(palisade_bin());
        cmd.args([
            "user",
            "add",
            username,
            "--tenant",
            tenant,
            "--role",
            role,
            "--password-stdin",
        ])
        .arg("--data-dir")
        .arg(&self.data_dir)
        .env_remove("PALISADE_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if instance_admin {
            cmd.arg("--instance-admin");
        }
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd.spawn().expect("palisade user add");
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Mint a token through the CLI.
    pub fn token(&self, tenant: &str, scope: &str) -> String {
        let out = self
            .run_cli(&["token", "create", "--tenant", tenant, "--scope", scope])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Run SQL against the server's database (tests that tamper or age rows).
    pub async fn sql(&self, statement: &str) {
        use sqlx::Connection;
        let url = self.database_url.as_ref().expect("test database url");
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to test db");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .expect("sql");
    }

    /// Count stored rows directly in Postgres (the system of record).
    pub async fn stored_count(&self) -> i64 {
        use sqlx::Connection;
        let url = self.database_url.as_ref().expect("test database url");
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to test db");
        sqlx::query_scalar("SELECT count(*) FROM log_records")
            .fetch_one(&mut conn)
            .await
            .expect("count")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// A PostgreSQL cluster of the test's own, which it can stop and start.
pub struct PrivateCluster {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
    settings: String,
}

/// Settings for throwaway test clusters: durability off, it is never needed there.
pub const TEST_CLUSTER_SETTINGS: &str = "-c fsync=off -c max_connections=50";

/// The newest PostgreSQL server binaries' directory (initdb, pg_dump...).
pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server installation")
}

fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    cmd
}

impl PrivateCluster {
    pub fn start() -> anyhow::Result<PrivateCluster> {
        Self::start_with(TEST_CLUSTER_SETTINGS)
    }

    /// Start with explicit server settings (`-c name=value ...`), e.g. durable ones
    /// for benchmarks.
    pub fn start_with(settings: &str) -> anyhow::Result<PrivateCluster> {
        let dir = TempDir::new("palisade-pgtest");
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir.0)
            .status()?;
        let bin = pg_bin();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.0.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let cluster = PrivateCluster {
            dir,
            port,
            bin,
            settings: settings.to_string(),
        };
        cluster.pg_ctl("start")?;
        Ok(cluster)
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.dir.0.display(),
            self.settings
        );
        let mut cmd = as_postgres(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.dir.0.join("data"))
            .arg("-l")
            .arg(self.dir.0.join("log"))
            .arg("-w");
        match action {
            "start" => cmd.args(["-o", &options, "start"]),
            _ => cmd.args(["-m", "fast", "stop"]),
        };
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl {action} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl("stop")
    }

    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl("start")
    }

    /// Bytes used by the cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(self.url(name))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A local stand-in for a paging receiver (PagerDuty, Slack, a webhook endpoint):
/// records every request and answers from a script (default 202).
pub mod receiver {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;

    #[derive(Debug, Clone)]
    pub struct Received {
        pub path: String,
        pub headers: HeaderMap,
        pub body: Bytes,
        pub at: std::time::Instant,
    }

    impl Received {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("a JSON body")
        }
    }

    #[derive(Default)]
    struct Inner {
        received: Vec<Received>,
        /// (path prefix, status, Retry-After) answers, used once each in order.
        script: VecDeque<(String, u16, Option<u64>)>,
    }

    #[derive(Clone)]
    pub struct Receiver {
        pub url: String,
        inner: Arc<Mutex<Inner>>,
    }

    impl Receiver {
        pub async fn start() -> Receiver {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Self::serve(listener).await
        }

        /// Serve on an existing listener (to come back on a port that was down).
        pub async fn serve(listener: tokio::net::TcpListener) -> Receiver {
            let url = format!("http://{}", listener.local_addr().unwrap());
            let inner = Arc::new(Mutex::new(Inner::default()));
            let state = inner.clone();
            let app =
                axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                    let state = state.clone();
                    async move {
                        let path = uri.path().to_string();
                        let mut inner = state.lock().unwrap();
                        inner.received.push(Received {
                            path: path.clone(),
                            headers,
                            body,
                            at: std::time::Instant::now(),
                        });
                        let scripted = inner
                            .script
                            .iter()
                            .position(|(prefix, _, _)| path.starts_with(prefix.as_str()));
                        match scripted.and_then(|i| inner.script.remove(i)) {
                            Some((_, status, retry)) => {
                                let mut resp = (StatusCode::from_u16(status).unwrap(), "scripted")
                                    .into_response();
                                if let Some(secs) = retry {
                                    resp.headers_mut().insert("retry-after", secs.into());
                                }
                                resp
                            }
                            None => {
                                (StatusCode::ACCEPTED, r#"{"status":"success"}"#).into_response()
                            }
                        }
                    }
                });
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Receiver { url, inner }
        }

        /// Answer the next request under `prefix` with `status` (and `Retry-After`).
        pub fn script(&self, prefix: &str, status: u16, retry_after: Option<u64>) {
            self.inner
                .lock()
                .unwrap()
                .script
                .push_back((prefix.to_string(), status, retry_after));
        }

        pub fn received(&self, prefix: &str) -> Vec<Received> {
            self.inner
                .lock()
                .unwrap()
                .received
                .iter()
                .filter(|r| r.path.starts_with(prefix))
                .cloned()
                .collect()
        }

        /// Wait until `n` requests under `prefix` arrived; return them.
        pub async fn wait(&self, prefix: &str, n: usize, secs: u64) -> Vec<Received> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            loop {
                let got = self.received(prefix);
                if got.len() >= n {
                    return got;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{prefix}: {} of {n} requests within {secs} s: {:?}",
                    got.len(),
                    got.iter()
                        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                        .collect::<Vec<_>>()
                );
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    }
}

/// A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on loopback,
/// with its own storage directory, stopped when dropped.
pub mod alertmanager {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::TempDir;

    pub struct Alertmanager {
        pub url: String,
        child: Child,
        _dir: TempDir,
    }

    const CONFIG: &str =
        "route:\n  receiver: blackhole\n  group_wait: 0s\nreceivers:\n  - name: blackhole\n";

    impl Alertmanager {
        /// Start one; `None` when the binary is not installed.
        pub fn start() -> Option<Alertmanager> {
            let binary = [
                "/usr/bin/prometheus-alertmanager",
                "/usr/local/bin/alertmanager",
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
            let dir = TempDir::new("palisade-alertmanager");
            std::fs::write(dir.0.join("alertmanager.yml"), CONFIG).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(binary)
                .arg(format!(
                    "--config.file={}",
                    dir.0.join("alertmanager.yml").display()
                ))
                .arg(format!("--storage.path={}", dir.0.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start alertmanager");
            let am = Alertmanager {
                url: format!("http://127.0.0.1:{port}"),
                child,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "alertmanager did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(am)
        }
    }

    impl Drop for Alertmanager {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client for tests and the benchmark. reqwest is built without a TLS
/// provider of its own (the workspace uses ring, as the server does), so one is
/// installed first.
pub fn http_client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Run a Python script (from stdin, so the SDK records no file path) with the test
/// interpreter (`PALISADE_TEST_PYTHON`, set by scripts/test.sh with the OpenTelemetry
/// SDK installed) and `env`. Fails the test when Python fails or the SDK reports an
/// export failure; returns stdout.
pub fn run_python(script: &str, env: &[(&str, &str)]) -> String {
    use std::io::Write;
    let python = std::env::var("PALISADE_TEST_PYTHON")
        .expect("PALISADE_TEST_PYTHON is not set: scripts/test.sh installs the OpenTelemetry SDK and sets it");
    let mut cmd = Command::new(python);
    cmd.arg("-")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    let out = child.wait_with_output().expect("python finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed: {stderr}");
    assert!(
        !stderr.contains("Failed to export"),
        "SDK reported an export failure: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
