//! The `palisade` binary: configuration, telemetry, wiring and administrative commands.

mod bootstrap;
mod commands;
mod config;
mod conn;
mod database;
mod paging;
mod progress;
mod rules;
mod serve;
mod tls;

use clap::{Parser, Subcommand};

use crate::config::{GlobalArgs, LogFormat, ServeArgs, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Security observability backend for Kubernetes"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: API, OTLP/HTTP and OTLP/gRPC listeners, indexer, retention.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild the search index from Postgres (the server must be stopped).
    Reindex,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(commands::TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(commands::UserCommand),
    /// Palisade's own audit trail.
    #[command(subcommand)]
    Audit(commands::AuditCommand),
    /// Validate and test rule files (offline: no server, no database).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// The key-encryption key of channel secrets.
    #[command(subcommand)]
    Keys(commands::KeysCommand),
    /// Incident exports (offline: no server, no database).
    #[command(subcommand)]
    Incident(IncidentCommand),
}

#[derive(Debug, clap::Subcommand)]
enum IncidentCommand {
    /// Check the SHA-256 chain of an incident export (JSON or Markdown, from
    /// `GET /api/v1/incidents/{id}/export`); exits 1 naming the first entry that does
    /// not match. Compare the printed head with the `incident.export` record of the
    /// audit trail to detect an export whose every link was recomputed.
    Verify {
        /// The export file.
        file: std::path::PathBuf,
    },
}

fn incident(cmd: IncidentCommand) -> std::process::ExitCode {
    let IncidentCommand::Verify { file } = cmd;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("palisade: error: {}: {err}", file.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    match web::incidents::export::verify(&text) {
        Ok(v) => {
            println!(
                "{}: intact ({} export, {} entries, head sha256:{})",
                file.display(),
                v.format,
                v.entries,
                v.head
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("palisade: error: {}: not intact: {err}", file.display());
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn,sqlx=warn,h2=warn,tower=warn"));
    // Colour only for a person at a terminal (and never under NO_COLOR): escape codes
    // in files, journald or CI logs are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    // Every file and directory Palisade creates (data dir, index segments, secrets,
    // logs) is private to its user, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let serve_args = match &cli.command {
        Command::Serve(args) => (**args).clone(),
        _ => ServeArgs::default(),
    };
    let settings = match Settings::resolve(&cli.global, &serve_args) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("palisade: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(settings.log_format);
    if let Command::Incident(cmd) = cli.command {
        return incident(cmd);
    }
    if let Command::Rules(cmd) = cli.command {
        return match rules::run(cmd) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("palisade: error: {err:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) => serve::run(settings).await,
            Command::Migrate => commands::migrate(&settings).await,
            Command::Reindex => commands::reindex(&settings).await,
            Command::Token(cmd) => commands::token(&settings, cmd).await,
            Command::Tenant(cmd) => commands::tenant(&settings, cmd).await,
            Command::User(cmd) => commands::user(&settings, cmd).await,
            Command::Audit(cmd) => commands::audit(&settings, cmd).await,
            Command::Keys(cmd) => commands::keys(&settings, cmd).await,
            Command::Rules(_) | Command::Incident(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("palisade: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` explains every flag and argument of every command.
    #[test]
    fn every_flag_of_every_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "palisade", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
