//! The shipped detection pack (`rules/k8s/`), checked without Postgres or a binary:
//! one rule per file named by its id, every test case the files carry, and the index
//! (`rules/k8s/README.md`) and catalogue (`docs/detections.md`) generated from them.
//!
//! `PALISADE_BLESS=1 cargo test -p alerting --test shipped_rules` rewrites the index
//! and the catalogue after a rule changed.

use std::path::{Path, PathBuf};

use alerting::catalogue;
use alerting::rule::{Rule, parse_rules};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (file name, rule) of every file of the pack, sorted by file name.
fn pack() -> Vec<(String, Rule)> {
    let dir = root().join("rules/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules/k8s exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 35, "the pack shrank: {} files", files.len());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut rules = parse_rules(&text).unwrap_or_else(|e| panic!("rules/k8s/{name}: {e}"));
            assert_eq!(rules.len(), 1, "rules/k8s/{name}: one rule per file");
            let rule = rules.remove(0);
            assert_eq!(
                name.rsplit_once('.').unwrap().0,
                rule.id(),
                "rules/k8s/{name}: the file is named by the rule's id"
            );
            (name, rule)
        })
        .collect()
}

#[test]
fn every_case_of_every_shipped_rule_passes() {
    let mut failures = Vec::new();
    let mut passed = 0;
    for (file, rule) in pack() {
        assert!(
            !rule.doc.tests.is_empty(),
            "rules/k8s/{file}: no test cases"
        );
        for case in alerting::testing::run_rule_tests(&rule) {
            if case.passed {
                passed += 1;
            } else {
                failures.push(format!(
                    "rules/k8s/{file}: case {:?}: {}",
                    case.case, case.detail
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 89, "only {passed} cases ran");
}

/// Every alert of the pack says what it is about: a rule without its own `summary`
/// template gets its title and the group values (pages, incident titles and the UI
/// show the summary; a bare rule id tells the person paged nothing).
#[test]
fn every_shipped_match_rule_summarises_its_alerts() {
    let mut checked = 0;
    for (file, rule) in pack() {
        if rule.spec != alerting::rule::Spec::Match {
            continue;
        }
        for case in &rule.doc.tests {
            let events = alerting::testing::case_events(case).expect("case events");
            for (seq, record) in &events {
                let Some(hit) = alerting::engine::match_event(&rule, record, *seq) else {
                    continue;
                };
                let summary = hit.annotations.get("summary").cloned().unwrap_or_default();
                assert!(
                    !summary.trim().is_empty() && summary != rule.id(),
                    "rules/k8s/{file}: case {:?}: summary {summary:?}",
                    case.name
                );
                if !rule.doc.annotations.contains_key("summary") {
                    // The title as written; group values HTML-escaped (event content is attacker's).
                    let escape = |v: &str| {
                        v.replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;")
                            .replace('"', "&quot;")
                            .replace('\'', "&#x27;")
                            .replace('/', "&#x2f;")
                    };
                    assert!(
                        summary.starts_with(&rule.doc.title),
                        "rules/k8s/{file}: {summary:?}"
                    );
                    let about: Vec<String> = hit
                        .labels
                        .iter()
                        .filter(|(k, v)| k.starts_with("attributes.") && !v.is_empty())
                        .map(|(_, v)| escape(v))
                        .collect();
                    assert!(
                        about.iter().all(|v| summary.contains(v.as_str())),
                        "rules/k8s/{file}: {summary:?} lacks the group values {about:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} hits checked");
}

/// Compare generated text with the checked-in file, or rewrite it under
/// `PALISADE_BLESS=1`.
fn check_generated(path: &Path, expected: &str) {
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os("PALISADE_BLESS").is_some() {
        std::fs::write(path, expected).unwrap();
        return;
    }
    let line = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .map_or(actual.lines().count().min(expected.lines().count()), |i| i)
        + 1;
    panic!(
        "{} is out of date with the rule files (first difference at line {line}); run \
         PALISADE_BLESS=1 cargo test -p alerting --test shipped_rules",
        path.display()
    );
}

#[test]
fn index_and_catalogue_match_the_rule_files() {
    let rules = pack();
    let readme_path = root().join("rules/k8s/README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("rules/k8s/README.md exists");
    assert!(
        readme.contains(catalogue::INDEX_START) && readme.contains(catalogue::INDEX_END),
        "rules/k8s/README.md keeps the index markers"
    );
    check_generated(&readme_path, &catalogue::with_index(&readme, &rules));
    check_generated(
        &root().join("docs/detections.md"),
        &catalogue::catalogue(
            "Detection catalogue: Kubernetes audit",
            "../rules/k8s/",
            &rules,
        ),
    );
    // Every id in the index links its file.
    let index = std::fs::read_to_string(&readme_path).unwrap();
    for (file, rule) in &rules {
        assert!(
            index.contains(&format!("| [{}]({file}) |", rule.id())),
            "{file} is missing from the index"
        );
    }
}

#[test]
fn a_failing_case_names_its_file_and_case() {
    // A copy of a shipped rule whose expectation is wrong reports file and case.
    let (_, mut rule) = pack().into_iter().next().unwrap();
    rule.doc.tests.truncate(1);
    rule.doc.tests[0].expect.clear();
    rule.doc.tests[0].name = "deliberately wrong".into();
    let results = alerting::testing::run_rule_tests(&rule);
    let wrong = results.iter().find(|r| !r.passed).expect("the case fails");
    assert_eq!(wrong.case, "deliberately wrong");
    assert!(!wrong.detail.is_empty());
}

/// One entry of `tests/fixtures/outside-rules.yaml`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutsideEntry {
    outside: String,
    /// What the outside rule selects, as read.
    read: String,
    expect: OutsideExpect,
    #[serde(default)]
    repeat: Option<usize>,
    events: Vec<alerting::rule::TestEvent>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutsideExpect {
    rule: String,
    severity: alerting::rule::Severity,
}

/// Measured against the rules others wrote: for every outside rule a pack rule says it
/// covers (`outside:`), a realistic event written from that outside rule's selection
/// (`tests/fixtures/outside-rules.yaml`) raises the pack rule at its expected severity
/// or above, through the whole pack as the follower runs it (gates included); and the
/// fixture and the rules' `outside:` fields name the same pairs. A severity below
/// medium must be one of the documented choices in docs/coverage.md.
#[test]
fn outside_rules_each_raise_their_detection() {
    use alerting::rule::Severity;
    use std::collections::{BTreeMap, BTreeSet};
    let text = std::fs::read_to_string(root().join("tests/fixtures/outside-rules.yaml"))
        .expect("tests/fixtures/outside-rules.yaml");
    let entries: Vec<OutsideEntry> =
        serde_saphyr::from_str(&text).expect("outside-rules.yaml parses");
    let pack = pack();
    let coverage = std::fs::read_to_string(root().join("docs/coverage.md")).unwrap();
    let severity_choices = coverage
        .split("## Severity choices")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/coverage.md has its severity table");

    let named: BTreeSet<(String, String)> = pack
        .iter()
        .flat_map(|(_, rule)| {
            rule.doc
                .outside
                .iter()
                .map(|o| (o.clone(), rule.id().to_string()))
        })
        .collect();
    let fixture: BTreeSet<(String, String)> = entries
        .iter()
        .map(|e| (e.outside.clone(), e.expect.rule.clone()))
        .collect();
    assert_eq!(
        fixture.len(),
        entries.len(),
        "an outside rule twice in the fixture"
    );
    let missing: Vec<_> = named.difference(&fixture).collect();
    let extra: Vec<_> = fixture.difference(&named).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rules' outside: fields without an event: {missing:?}; events for pairs no rule names: {extra:?}"
    );

    let mut failures = Vec::new();
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &entries {
        assert!(
            !entry.read.trim().is_empty(),
            "{}: say what it selects",
            entry.outside
        );
        let mut events = Vec::new();
        for _ in 0..entry.repeat.unwrap_or(1) {
            events.extend(entry.events.iter().cloned());
        }
        let case = alerting::rule::TestCase {
            name: entry.outside.clone(),
            events,
            expect: Vec::new(),
        };
        let events = alerting::testing::case_events(&case)
            .unwrap_or_else(|m| panic!("{}: {m}", entry.outside));
        let mut raised: BTreeMap<String, Severity> = BTreeMap::new();
        for (_, rule) in &pack {
            for fired in alerting::testing::fire(rule, &events).into_values() {
                let severity: Severity = serde_json::from_value(serde_json::json!(
                    fired.labels.get("severity").cloned().unwrap_or_default()
                ))
                .expect("a severity label");
                let e = raised.entry(rule.id().to_string()).or_insert(severity);
                *e = (*e).max(severity);
            }
        }
        match raised.get(&entry.expect.rule) {
            Some(s) if *s >= entry.expect.severity => {}
            other => failures.push(format!(
                "{}: expected {} at {:?} or above, got {other:?}; raised: {raised:?}",
                entry.outside, entry.expect.rule, entry.expect.severity
            )),
        }
        if entry.expect.severity < Severity::Medium {
            assert!(
                severity_choices.contains(entry.expect.rule.as_str()),
                "{}: {} at {:?} is not among docs/coverage.md's severity choices",
                entry.outside,
                entry.expect.rule,
                entry.expect.severity
            );
        }
        let source = entry.outside.split(':').next().unwrap_or_default();
        *by_source.entry(source).or_default() += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("outside rules, one event each, raised their detection: {by_source:?}");
    assert!(entries.len() >= 90, "only {} outside rules", entries.len());
}
