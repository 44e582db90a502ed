//! Rule files: loading a directory, and the `palisade rules` commands.

use std::path::{Path, PathBuf};

use alerting::rule::{Rule, parse_rules};
use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate every rule file (*.yaml, *.yml) in DIR; errors name file, field and line.
    Validate { dir: PathBuf },
    /// Run the test cases the rule files carry, offline; exits 1 on any failure.
    Test { dir: PathBuf },
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

/// Load and validate every rule of a directory. The first error stops the load.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = Vec::new();
    for file in rule_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed = parse_rules(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for rule in parsed {
            if rules.iter().any(|r| r.id() == rule.id()) {
                bail!(
                    "{}: rule id {:?} is defined twice in {}",
                    file.display(),
                    rule.id(),
                    dir.display()
                );
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

pub fn run(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Validate { dir } => {
            let files = rule_files(&dir)?.len();
            let rules = load_dir(&dir)?;
            println!("ok: {} rule(s) in {files} file(s)", rules.len());
            Ok(())
        }
        RulesCommand::Test { dir } => {
            let rules = load_dir(&dir)?;
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
