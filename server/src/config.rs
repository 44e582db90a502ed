//! Layered configuration: command-line flag > environment variable > config file >
//! default. Read only here; each crate receives its own typed settings.
//!
//! Every setting is declared once, as a field of [`GlobalArgs`] or [`ServeArgs`]: the
//! field is the flag (`--retention-days`), its `env` the variable
//! (`PALISADE_RETENTION_DAYS`) and its name the config file key (`retention_days`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalArgs {
    /// TOML configuration file (see deploy/palisade.example.toml).
    #[arg(long, env = "PALISADE_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the index, the embedded database and generated secrets [default: ./data]
    #[arg(long, env = "PALISADE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without one, an embedded cluster in the data dir is used.
    #[arg(
        long,
        env = "PALISADE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Log output format [default: text]
    #[arg(long, env = "PALISADE_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// File holding the key-encryption key of channel secrets (64 hex digits)
    /// [default: <data-dir>/secrets.key, created on first start]
    #[arg(long, env = "PALISADE_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The key-encryption key itself (64 hex digits), instead of --key-file
    #[arg(
        long,
        env = "PALISADE_KEY_ENCRYPTION_KEY",
        global = true,
        hide_env_values = true
    )]
    pub key_encryption_key: Option<String>,
}

/// Options of `serve`.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// API and UI listener [default: 127.0.0.1:8080]
    #[arg(long, env = "PALISADE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// OTLP/HTTP listener [default: 127.0.0.1:4318]
    #[arg(long, env = "PALISADE_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// OTLP/gRPC listener [default: 127.0.0.1:4317]
    #[arg(long, env = "PALISADE_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Days of log records to keep; older daily partitions are dropped [default: 30]
    #[arg(long, env = "PALISADE_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// PEM certificate chain: serve every listener over TLS (needs --tls-key)
    #[arg(long, env = "PALISADE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "PALISADE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Requests per second one token may make to the API [default: 50]
    #[arg(long, env = "PALISADE_API_RATE_LIMIT")]
    pub api_rate_limit: Option<u32>,
    /// Export requests per second one ingest token may make [default: 1000]
    #[arg(long, env = "PALISADE_INGEST_RATE_LIMIT")]
    pub ingest_rate_limit: Option<u32>,
    /// Directory of rule files (*.yaml, *.yml) loaded at start for every tenant
    #[arg(long, env = "PALISADE_RULES_DIR")]
    pub rules_dir: Option<PathBuf>,
    /// Do not load the built-in detection pack
    #[arg(long, env = "PALISADE_NO_BUILTIN_RULES")]
    pub no_builtin_rules: bool,
    /// Seconds a connection may take to send a complete request head, new or idle
    /// between requests, before it is closed [default: 10]
    #[arg(long, env = "PALISADE_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Open connections per listener; more are closed at once [default: 1024]
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Days a token created without an expiry lasts, 1-3650 [default: 90]
    #[arg(long, env = "PALISADE_TOKEN_EXPIRY_DAYS")]
    pub token_expiry_days: Option<i64>,
    /// Minutes of inactivity after which a UI session ends [default: 30]
    #[arg(long, env = "PALISADE_SESSION_IDLE_MINUTES")]
    pub session_idle_minutes: Option<u64>,
    /// Hours after sign-in at which a UI session ends, active or not [default: 12]
    #[arg(long, env = "PALISADE_SESSION_ABSOLUTE_HOURS")]
    pub session_absolute_hours: Option<u64>,
    /// Base URL people reach the UI at, for links in notifications
    /// (e.g. https://palisade.example.com)
    #[arg(long, env = "PALISADE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Networks notifications may be sent to although they are not public, e.g.
    /// 10.1.0.0/16,127.0.0.0/8 [default: none]
    #[arg(long, env = "PALISADE_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: Option<String>,
    /// YAML file of paging channels and routing per tenant, applied at start
    /// (docs/paging.md#configuration-file)
    #[arg(long, env = "PALISADE_CHANNELS_FILE")]
    pub channels_file: Option<PathBuf>,
}

/// `flag` with every setting it leaves unset taken from `file`: both are the same
/// declaration, so a new setting needs no merge code.
fn overlay<T: Serialize + serde::de::DeserializeOwned>(flag: &T, file: &T) -> anyhow::Result<T> {
    let mut merged = serde_json::to_value(file)?;
    let serde_json::Value::Object(flags) = serde_json::to_value(flag)? else {
        bail!("settings are a struct");
    };
    let target = merged.as_object_mut().context("settings are a struct")?;
    for (key, value) in flags {
        // Unset: an absent option, or a switch not given.
        if !(value.is_null() || value == serde_json::Value::Bool(false)) {
            target.insert(key, value);
        }
    }
    Ok(serde_json::from_value(merged)?)
}

/// The config file: the keys of [`GlobalArgs`] and [`ServeArgs`] (except `config`).
#[derive(Debug, Default)]
pub struct FileConfig {
    pub global: GlobalArgs,
    pub serve: ServeArgs,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub log_format: LogFormat,
    pub http_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub retention_days: u32,
    /// (certificate, key) when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub api_rate_limit: u32,
    pub ingest_rate_limit: u32,
    /// Lifetime of tokens created without an explicit expiry.
    pub token_expiry_days: i64,
    pub session_idle: std::time::Duration,
    pub session_absolute: std::time::Duration,
    pub rules_dir: Option<PathBuf>,
    pub no_builtin_rules: bool,
    /// Time to a complete request head (new or idle connection).
    pub header_timeout: std::time::Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Where the key-encryption key comes from.
    pub key_source: KeySource,
    /// Base URL of the UI, for deep links in notifications.
    pub public_url: Option<String>,
    /// Non-public networks notifications may reach.
    pub allow_private_destinations: Vec<notify::guard::Net>,
    /// Channels and routing applied at start.
    pub channels_file: Option<PathBuf>,
}

/// Where the key-encryption key of channel secrets comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A file (created with a new key on first use when it is the default one).
    File { path: PathBuf, create: bool },
    /// The key itself (environment or config).
    Inline(String),
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let invalid = || format!("invalid config file {}", path.display());
    let table: toml::Table = toml::from_str(&text).with_context(invalid)?;
    let (mut global, mut serve) = (toml::Table::new(), toml::Table::new());
    for (key, value) in table {
        if GLOBAL_KEYS.contains(&key.as_str()) {
            global.insert(key, value);
        } else {
            serve.insert(key, value);
        }
    }
    Ok(FileConfig {
        global: global.try_into().with_context(invalid)?,
        serve: serve.try_into().with_context(invalid)?,
    })
}

/// The file keys of [`GlobalArgs`].
const GLOBAL_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "log_format",
    "key_file",
    "key_encryption_key",
];

impl Settings {
    pub fn resolve(global: &GlobalArgs, serve: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = global.config.clone();
        let global = GlobalArgs {
            config,
            ..overlay(global, &file.global)?
        };
        let serve = overlay(serve, &file.serve)?;
        let retention_days = serve.retention_days.unwrap_or(30);
        if retention_days == 0 {
            bail!("retention-days must be at least 1");
        }
        let tls = match (serve.tls_cert.clone(), serve.tls_key.clone()) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key must be given together"),
        };
        let token_expiry_days = serve.token_expiry_days.unwrap_or(90);
        if !(1..=3650).contains(&token_expiry_days) {
            bail!("token_expiry_days must be between 1 and 3650");
        }
        let data_dir = global
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"));
        let key_source = match (&global.key_encryption_key, &global.key_file) {
            (Some(_), Some(_)) => bail!("key_encryption_key and key_file exclude each other"),
            (Some(key), None) => KeySource::Inline(key.clone()),
            (None, Some(path)) => KeySource::File {
                path: path.clone(),
                create: false,
            },
            (None, None) => KeySource::File {
                path: data_dir.join("secrets.key"),
                create: true,
            },
        };
        let public_url = serve
            .public_url
            .clone()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty());
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("public_url: expected an http or https URL, got {url:?}");
        }
        let allow_private_destinations = notify::guard::Destinations::parse_allow(
            serve.allow_private_destinations.as_deref().unwrap_or(""),
        )
        .map_err(|e| anyhow::anyhow!("allow_private_destinations: {e}"))?;
        Ok(Settings {
            key_source,
            channels_file: serve.channels_file.clone(),
            public_url,
            allow_private_destinations,
            data_dir,
            database_url: global.database_url.clone().filter(|u| !u.is_empty()),
            log_format: global.log_format.unwrap_or(LogFormat::Text),
            http_addr: serve
                .http_addr
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            otlp_http_addr: serve
                .otlp_http_addr
                .unwrap_or_else(|| "127.0.0.1:4318".parse().expect("valid default")),
            otlp_grpc_addr: serve
                .otlp_grpc_addr
                .unwrap_or_else(|| "127.0.0.1:4317".parse().expect("valid default")),
            retention_days,
            tls,
            api_rate_limit: serve.api_rate_limit.unwrap_or(50).max(1),
            ingest_rate_limit: serve.ingest_rate_limit.unwrap_or(1000).max(1),
            token_expiry_days,
            session_idle: std::time::Duration::from_secs(
                60 * serve
                    .session_idle_minutes
                    .unwrap_or(30)
                    .clamp(1, 7 * 24 * 60),
            ),
            session_absolute: std::time::Duration::from_secs(
                3600 * serve.session_absolute_hours.unwrap_or(12).clamp(1, 30 * 24),
            ),
            rules_dir: serve.rules_dir.clone(),
            no_builtin_rules: serve.no_builtin_rules,
            header_timeout: std::time::Duration::from_secs(
                serve.header_timeout_secs.unwrap_or(10).clamp(1, 3600),
            ),
            max_connections: serve.max_connections.unwrap_or(1024).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("palisade-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "http_addr = \"127.0.0.1:9000\"\nretention_days = 7\ndata_dir = \"/x\"\n",
        )
        .unwrap();
        let global = GlobalArgs {
            config: Some(path.clone()),
            data_dir: Some("/flag".into()),
            database_url: None,
            log_format: None,
            key_file: None,
            key_encryption_key: None,
        };
        let serve = ServeArgs {
            otlp_http_addr: Some("127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::resolve(&global, &serve).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/flag"));
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.otlp_http_addr.port(), 1);
        assert_eq!(s.otlp_grpc_addr.port(), 4317);
        assert_eq!(s.retention_days, 7);
        // Settings that were file-only are flags too, and file keys still.
        std::fs::write(
            &path,
            "token_expiry_days = 7\nsession_idle_minutes = 5\nsession_absolute_hours = 2\nno_builtin_rules = true\nlog_format = \"json\"\n",
        )
        .unwrap();
        let s = Settings::resolve(&global, &serve).unwrap();
        assert_eq!(s.token_expiry_days, 7);
        assert_eq!(s.session_idle.as_secs(), 300);
        assert_eq!(s.session_absolute.as_secs(), 7200);
        assert!(s.no_builtin_rules);
        assert_eq!(s.log_format, LogFormat::Json);
        let flagged = ServeArgs {
            token_expiry_days: Some(30),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(&global, &flagged)
                .unwrap()
                .token_expiry_days,
            30
        );
        std::fs::write(&path, "token_expiry_days = 0\n").unwrap();
        let err = format!("{:#}", Settings::resolve(&global, &serve).unwrap_err());
        assert!(err.contains("token_expiry_days"), "{err}");
        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let err = format!("{:#}", Settings::resolve(&global, &serve).unwrap_err());
        assert!(err.contains("bogus_key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One declaration: every option of `serve` and every global option is a flag with
    /// an environment variable and help text, and its id is a config file key.
    #[test]
    fn every_setting_is_a_flag_a_variable_and_a_file_key() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            global: GlobalArgs,
            #[command(flatten)]
            serve: ServeArgs,
        }
        let command = Probe::command();
        let mut keys = Vec::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_long().is_some(), "{id}: no flag");
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("{id}: no environment variable"));
            assert_eq!(
                env.to_string_lossy(),
                format!("PALISADE_{}", id.to_uppercase()),
                "{id}: variable named after the setting"
            );
            assert!(
                arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
                "{id}: no help text"
            );
            if id != "config" {
                keys.push(id.to_string());
            }
        }
        assert!(keys.len() >= 18, "{keys:?}");
        // Each id is accepted as a file key (with a value of the right type).
        let dir = std::env::temp_dir().join(format!("palisade-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        for key in &keys {
            std::fs::write(&path, format!("{key} = []\n")).unwrap();
            let err = format!("{:#}", read_file(&path).unwrap_err());
            assert!(
                !err.contains("unknown field"),
                "{key} is not a file key: {err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
