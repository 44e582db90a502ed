//! Rule files: loading a directory, and the `palisade rules` commands.

use std::path::{Path, PathBuf};

use alerting::rule::{Rule, parse_rules};
use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files and directories (every *.yaml, *.yml in them). Every bad file
    /// is reported (file, rule, field, line); exits 1 on any error or when no rule file
    /// is found.
    Validate {
        /// Rule files, or directories of them.
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        paths: Vec<PathBuf>,
    },
    /// Run the test cases the rule files carry, offline; exits 1 on any failure.
    Test {
        /// Rule files, or directories of them.
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        paths: Vec<PathBuf>,
    },
    /// Backtest a rule file (one rule) over stored events through a running server's
    /// API: the alerts it would have raised and how many per hour.
    Backtest {
        /// The rule file (one rule).
        file: PathBuf,
        /// Start of the range: RFC 3339 or relative (now-7d).
        #[arg(long)]
        from: String,
        /// End of the range [default: now].
        #[arg(long)]
        to: Option<String>,
        /// The server's API address.
        #[arg(long, env = "PALISADE_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// An API token with the admin scope (rules are administered).
        #[arg(long, env = "PALISADE_API_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// The rule files named: files as given, directories expanded to their *.yaml/*.yml.
/// No rule file at all is an error (a typo'd directory must not validate).
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(rule_files(path)?);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    if files.is_empty() {
        bail!(
            "no rule files (*.yaml, *.yml) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(files)
}

/// Load every named file, reporting every bad one (not only the first) and ids
/// defined twice.
fn load_all(files: &[PathBuf]) -> anyhow::Result<Vec<Rule>> {
    let mut rules: Vec<(PathBuf, Rule)> = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|text| parse_rules(&text).map_err(|e| format!("{}: {e}", file.display())));
        match parsed {
            Ok(parsed) => {
                for rule in parsed {
                    if let Some((first, _)) = rules.iter().find(|(_, r)| r.id() == rule.id()) {
                        errors.push(format!(
                            "{}: rule id {:?} is already defined in {}",
                            file.display(),
                            rule.id(),
                            first.display()
                        ));
                    } else {
                        rules.push((file.clone(), rule));
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        bail!(
            "{}\n{} of {} rule file(s) have errors",
            errors.join("\n"),
            errors.len(),
            files.len()
        );
    }
    Ok(rules.into_iter().map(|(_, r)| r).collect())
}

fn rule_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read rules dir {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The built-in detection pack, compiled into the binary: every `rules/<pack>/*.yaml`,
/// one rule per file named by its id, found by `build.rs`.
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// Parse the built-in pack. It is tested at build time (`rules test rules/k8s`), so a
/// failure here is a packaging bug.
pub fn builtin() -> anyhow::Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (name, text) in BUILTIN {
        rules.extend(parse_rules(text).map_err(|e| anyhow::anyhow!("built-in {name}: {e}"))?);
    }
    Ok(rules)
}

/// The rules every tenant gets: the built-in pack (unless disabled), then the rules
/// directory, whose rules replace built-in rules with the same id.
pub fn file_rules(dir: Option<&Path>, with_builtin: bool) -> anyhow::Result<Vec<Rule>> {
    let mut rules = if with_builtin { builtin()? } else { Vec::new() };
    if let Some(dir) = dir {
        for rule in load_dir(dir)? {
            rules.retain(|r| r.id() != rule.id());
            rules.push(rule);
        }
    }
    Ok(rules)
}

/// Load and validate every rule of a directory (it may be empty).
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Rule>> {
    load_all(&rule_files(dir)?)
}

async fn backtest(
    file: &Path,
    from: &str,
    to: Option<&str>,
    api: &str,
    token: &str,
) -> anyhow::Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rules = parse_rules(&yaml).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if rules.len() != 1 {
        bail!(
            "{}: backtest one rule at a time ({} found)",
            file.display(),
            rules.len()
        );
    }
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut body = serde_json::json!({"yaml": yaml, "from": from});
    if let Some(to) = to {
        body["to"] = serde_json::Value::String(to.to_string());
    }
    let base = api.trim_end_matches('/');
    let started: serde_json::Value = client
        .post(format!("{base}/api/v1/rules/backtests"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?
        .error_for_status()?
        .json()
        .await?;
    let id = started["id"]
        .as_str()
        .context("no job id in the answer")?
        .to_string();
    let mut progress = crate::progress::Progress::new("backtest", "%", 100);
    let status = loop {
        let status: serde_json::Value = client
            .get(format!("{base}/api/v1/rules/backtests/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match status["state"].as_str() {
            Some("running") => {
                let percent = (status["progress"].as_f64().unwrap_or(0.0) * 100.0) as u64;
                progress.set(percent.min(100), 100);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Some("done") => break status,
            other => bail!("backtest ended {other:?}: {}", status["error"]),
        }
    };
    progress.set(100, 100);
    progress.finish();
    let result = &status["result"];
    let alerts = result["alerts"].as_array().cloned().unwrap_or_default();
    println!(
        "rule {}: {} event(s) scanned{}, {} alert(s) would have been raised",
        result["rule_id"].as_str().unwrap_or("?"),
        result["events_scanned"],
        if result["truncated"] == true {
            " (truncated)"
        } else {
            ""
        },
        alerts.len()
    );
    for a in &alerts {
        println!(
            "  {}  count={}  first={}  labels={}",
            a["fingerprint"].as_str().unwrap_or(""),
            a["count"],
            a["first_at"].as_str().unwrap_or(""),
            a["labels"]
        );
    }
    for h in result["per_hour"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {}  {} alert(s)",
            h["hour"].as_str().unwrap_or(""),
            h["alerts"]
        );
    }
    Ok(())
}

pub fn run(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Backtest {
            file,
            from,
            to,
            api,
            token,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(backtest(&file, &from, to.as_deref(), &api, &token)),
        RulesCommand::Validate { paths } => {
            let files = expand(&paths)?;
            let rules = load_all(&files)?;
            println!("ok: {} rule(s) in {} file(s)", rules.len(), files.len());
            Ok(())
        }
        RulesCommand::Test { paths } => {
            let rules = load_all(&expand(&paths)?)?;
            let (mut passed, mut failed) = (0, 0);
            for rule in &rules {
                for result in alerting::testing::run_rule_tests(rule) {
                    if result.passed {
                        passed += 1;
                        println!("PASS {} / {}", result.rule, result.case);
                    } else {
                        failed += 1;
                        println!("FAIL {} / {}: {}", result.rule, result.case, result.detail);
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                bail!("{failed} rule test(s) failed");
            }
            Ok(())
        }
    }
}
