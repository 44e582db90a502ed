//! The detection catalogue, generated from rule files: the index of a pack
//! (`rules/<pack>/README.md`) and the full catalogue (`docs/detections.md`). A test
//! regenerates both from the files and fails when the checked-in text differs.

use std::fmt::Write as _;

use crate::rule::{Rule, Spec};

/// Start and end markers of the generated part of a pack's README.
pub const INDEX_START: &str = "<!-- index: generated from the rule files; do not edit -->";
pub const INDEX_END: &str = "<!-- end of index -->";

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn label<'a>(rule: &'a Rule, key: &str) -> &'a str {
    rule.doc.labels.get(key).map_or("", String::as_str)
}

fn kind(rule: &Rule) -> &'static str {
    match rule.spec {
        Spec::Match => "match",
        Spec::Threshold { .. } => "threshold",
        Spec::Sequence { .. } => "sequence",
        Spec::Metric { .. } => "metric",
        Spec::NewTerms { .. } => "new_terms",
    }
}

/// The index table: one row per rule (`file` is the file name beside the README).
pub fn index(rules: &[(String, Rule)]) -> String {
    let mut out = String::from(
        "| id | title | severity | ATT&CK | tactic | kind | outside equivalents |\n|---|---|---|---|---|---|---|\n",
    );
    for (file, rule) in rules {
        writeln!(
            out,
            "| [{id}]({file}) | {title} | {severity} | {attack} | {tactic} | {kind} | {outside} |",
            id = rule.id(),
            title = cell(&rule.doc.title),
            severity = rule.doc.severity.as_str(),
            attack = label(rule, "attack"),
            tactic = label(rule, "tactic"),
            kind = kind(rule),
            outside = cell(&rule.doc.outside.join("; ")),
        )
        .expect("write to string");
    }
    out
}

/// Replace the generated part of a README with the index of `rules`.
pub fn with_index(readme: &str, rules: &[(String, Rule)]) -> String {
    let head = readme.split(INDEX_START).next().unwrap_or(readme);
    let tail = readme.split_once(INDEX_END).map_or("\n", |(_, tail)| tail);
    format!("{head}{INDEX_START}\n\n{}\n{INDEX_END}{tail}", index(rules))
}

/// The full catalogue: per rule its id, ATT&CK, severity (and escalations),
/// rationale, exceptions and known gaps. `base` is the link prefix of the files.
pub fn catalogue(title: &str, base: &str, rules: &[(String, Rule)]) -> String {
    let mut out = format!(
        "# {title}\n\n<!-- Generated from the rule files by `PALISADE_BLESS=1 cargo test -p alerting --test shipped_rules`; edit the rules, not this file. -->\n\n{} rules. Each file carries test cases written as real audit events; `cargo test -p alerting --test shipped_rules` runs them.\n\n",
        rules.len()
    );
    out.push_str(&index(
        &rules
            .iter()
            .map(|(_, r)| (format!("#{}", r.id().to_lowercase()), r.clone()))
            .collect::<Vec<_>>(),
    ));
    for (file, rule) in rules {
        let doc = &rule.doc;
        write!(
            out,
            "\n## {}\n\n**{}** — [{base}{file}]({base}{file})\n\n",
            rule.id(),
            doc.title.trim()
        )
        .expect("write to string");
        let mut severity = doc.severity.as_str().to_string();
        for e in &doc.escalate {
            write!(
                severity,
                "; {} when `{}`",
                e.severity.as_str(),
                one_line(&e.query)
            )
            .expect("write to string");
        }
        writeln!(out, "- severity: {severity}").expect("write to string");
        let attack = label(rule, "attack");
        if !attack.is_empty() {
            writeln!(
                out,
                "- ATT&CK: [{attack}](https://attack.mitre.org/techniques/{}/), tactic `{}`",
                attack.replace('.', "/"),
                label(rule, "tactic")
            )
            .expect("write to string");
        }
        writeln!(out, "- kind: {}", kind(rule)).expect("write to string");
        writeln!(out, "- tests: {} case(s)", doc.tests.len()).expect("write to string");
        if !doc.description.trim().is_empty() {
            writeln!(out, "\n{}", doc.description.trim()).expect("write to string");
        }
        if !doc.exceptions.is_empty() {
            out.push_str("\nExceptions (events matching any are not alerts):\n\n");
            for e in &doc.exceptions {
                writeln!(out, "- `{}`", one_line(e).replace('`', "'")).expect("write to string");
            }
        }
        if !doc.outside.is_empty() {
            out.push_str("\nOutside equivalents (rules of other projects this one covers):\n\n");
            for o in &doc.outside {
                writeln!(out, "- {}", o.trim()).expect("write to string");
            }
        }
        if !doc.known_gaps.is_empty() {
            out.push_str("\nKnown gaps:\n\n");
            for g in &doc.known_gaps {
                writeln!(out, "- {}", g.trim()).expect("write to string");
            }
        }
    }
    out
}
