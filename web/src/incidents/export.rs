//! Incident exports for the post-incident review, sealed by a SHA-256 chain, and
//! their verification (`palisade incident verify FILE`).
//!
//! The chain: link 0 seals the header (the incident, the rule definitions as they
//! were when they fired, the entry count), link *n* seals entry *n* on top of link
//! *n-1* (`model::incident::chain_link`). Editing, removing, reordering or adding
//! anything changes a link, and the entry count catches a cut tail. The last link
//! (the head) is also written to Palisade's own audit trail (`incident.export`), so
//! an export whose every link was recomputed still differs from the recorded head.
//!
//! JSON: `{"format", "header", "header_hash", "entries": [{time, kind, actor,
//! payload, hash}], "head"}`; the canonical text of a part is its compact JSON.
//! Markdown: sections each closed by a `<!-- sha256:<link> -->` line, the canonical
//! text of a section being its exact lines; every user- or log-controlled value is in
//! an indented (code) line or escaped, so no content can forge a marker or markup.

use model::incident::{CHAIN_START, chain_link};
use serde_json::{Value, json};

use crate::wire::TimelineEntry;

pub const FORMAT: &str = "palisade.incident-export.v1";
const MARKER_START: &str = "<!-- sha256:";
const MARKER_END: &str = " -->";

/// An entry's canonical JSON (built the same way on export and on verification).
fn canonical(time: &Value, kind: &Value, actor: &Value, payload: &Value) -> String {
    json!({"time": time, "kind": kind, "actor": actor, "payload": payload}).to_string()
}

fn entry_value(e: &TimelineEntry) -> (Value, Value, Value, Value) {
    (
        serde_json::to_value(e.time).unwrap_or_default(),
        json!(e.kind),
        json!(e.actor),
        e.payload.clone(),
    )
}

/// The JSON export and its head link.
pub fn to_json(header: &Value, entries: &[TimelineEntry]) -> (String, String) {
    let header_hash = chain_link(CHAIN_START, &header.to_string());
    let mut link = header_hash.clone();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (time, kind, actor, payload) = entry_value(e);
        link = chain_link(&link, &canonical(&time, &kind, &actor, &payload));
        out.push(
            json!({"time": time, "kind": kind, "actor": actor, "payload": payload, "hash": link}),
        );
    }
    let doc = json!({
        "format": FORMAT,
        "header": header,
        "header_hash": header_hash,
        "entries": out,
        "head": link,
    });
    (serde_json::to_string_pretty(&doc).unwrap_or_default(), link)
}

/// Text safe on one Markdown line: control characters become spaces and Markdown
/// punctuation is backslash-escaped.
pub fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push(' ');
        } else {
            if "\\`*_{}[]()#+-.!<>|~&".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Text as an indented code block (every line indented four spaces).
fn md_code(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {}\n", l.replace(|c: char| c.is_control(), " ")))
        .collect()
}

fn seal(out: &mut String, section: &str, link: &mut String) {
    *link = chain_link(link, section);
    out.push_str(section);
    out.push_str(MARKER_START);
    out.push_str(link);
    out.push_str(MARKER_END);
    out.push('\n');
}

/// One line saying what an entry is, for people.
fn headline(e: &TimelineEntry) -> String {
    let p = &e.payload;
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    match e.kind.as_str() {
        "alert_fired" | "alert_resolved" | "alert_state" => format!(
            "{} {} → {}: {}",
            s("rule_id"),
            p["from"].as_str().unwrap_or("-"),
            s("to"),
            s("summary")
        ),
        "notification" => format!(
            "{} to {} ({}): {}",
            s("event"),
            s("channel"),
            s("channel_type"),
            p["status"]
                .as_i64()
                .map_or_else(|| s("error"), |c| format!("HTTP {c}"))
        ),
        "note" => format!("note: {}", s("markdown")),
        "pin" => format!("pinned event {}: {}", s("event_id"), s("comment")),
        "assignment" => format!("assigned to {}", p["to"].as_str().unwrap_or("nobody")),
        "state_change" => match p["action"].as_str() {
            Some(action) => action.to_string(),
            None => format!("{} → {}: {}", s("from"), s("to"), s("reason")),
        },
        _ => s("body"),
    }
}

/// The Markdown export and its head link.
pub fn to_markdown(header: &Value, entries: &[TimelineEntry]) -> (String, String) {
    let mut out = String::new();
    let mut link = CHAIN_START.to_string();
    let i = &header["incident"];
    let mut head = String::new();
    head.push_str(&format!(
        "# Incident: {}\n\n",
        md_escape(i["title"].as_str().unwrap_or_default())
    ));
    head.push_str(&format!("<!-- {FORMAT} -->\n\n"));
    for field in [
        "id",
        "state",
        "severity",
        "assignee",
        "opened_at",
        "acknowledged_at",
        "resolved_at",
    ] {
        let v = match &i[field] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        head.push_str(&format!("- **{field}**: {}\n", md_escape(&v)));
    }
    head.push_str(&format!(
        "- **exported_at**: {}\n",
        md_escape(header["exported_at"].as_str().unwrap_or_default())
    ));
    head.push_str(&format!("- **entries**: {}\n\n", entries.len()));
    head.push_str("## Incident\n\n");
    head.push_str(&md_code(&i.to_string()));
    head.push_str("\n## Rules\n\n");
    for rule in header["rules"].as_array().into_iter().flatten() {
        head.push_str(&format!(
            "### {} ({})\n\n",
            md_escape(rule["id"].as_str().unwrap_or_default()),
            md_escape(rule["source"].as_str().unwrap_or_default())
        ));
        head.push_str(&md_code(rule["definition"].as_str().unwrap_or_default()));
        head.push('\n');
    }
    head.push_str("## Timeline\n\n");
    seal(&mut out, &head, &mut link);
    for (n, e) in entries.iter().enumerate() {
        let (time, kind, actor, payload) = entry_value(e);
        let mut section = format!(
            "\n### {}. {} · {} · {}\n\n{}\n\n",
            n + 1,
            md_escape(time.as_str().unwrap_or_default()),
            md_escape(&e.kind),
            md_escape(&e.actor),
            md_escape(&headline(e)),
        );
        section.push_str(&md_code(&canonical(&time, &kind, &actor, &payload)));
        section.push('\n');
        seal(&mut out, &section, &mut link);
    }
    (out, link)
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub format: &'static str,
    pub entries: usize,
    pub head: String,
}

/// Check an export's chain (JSON or Markdown, by its first character).
pub fn verify(text: &str) -> Result<Verified, String> {
    if text.trim_start().starts_with('{') {
        verify_json(text)
    } else {
        verify_markdown(text)
    }
}

fn verify_json(text: &str) -> Result<Verified, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if doc["format"] != FORMAT {
        return Err(format!("format: expected {FORMAT}"));
    }
    let mut link = chain_link(CHAIN_START, &doc["header"].to_string());
    if doc["header_hash"].as_str() != Some(link.as_str()) {
        return Err("header: its hash does not match (the header was edited)".into());
    }
    let entries = doc["entries"].as_array().ok_or("entries: missing")?;
    if doc["header"]["entry_count"].as_u64() != Some(entries.len() as u64) {
        return Err(format!(
            "entries: the header says {}, the file has {}",
            doc["header"]["entry_count"],
            entries.len()
        ));
    }
    for (n, e) in entries.iter().enumerate() {
        link = chain_link(
            &link,
            &canonical(&e["time"], &e["kind"], &e["actor"], &e["payload"]),
        );
        if e["hash"].as_str() != Some(link.as_str()) {
            return Err(format!(
                "entry {}: its hash does not match (this entry or one before it was edited)",
                n + 1
            ));
        }
    }
    if doc["head"].as_str() != Some(link.as_str()) {
        return Err("head: does not match the last entry".into());
    }
    Ok(Verified {
        format: "json",
        entries: entries.len(),
        head: link,
    })
}

fn verify_markdown(text: &str) -> Result<Verified, String> {
    let mut link = CHAIN_START.to_string();
    let mut section = String::new();
    let mut sections = 0usize;
    let mut declared: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if let Some(hash) = bare
            .strip_prefix(MARKER_START)
            .and_then(|r| r.strip_suffix(MARKER_END))
        {
            link = chain_link(&link, &section);
            if hash != link {
                return Err(if sections == 0 {
                    "header: its hash does not match (the header was edited)".to_string()
                } else {
                    format!(
                        "entry {sections}: its hash does not match (this entry or one before it was edited)"
                    )
                });
            }
            if sections == 0 {
                declared = section
                    .lines()
                    .find_map(|l| l.strip_prefix("- **entries**: "))
                    .and_then(|n| n.trim().parse().ok());
            }
            sections += 1;
            section.clear();
        } else {
            section.push_str(line);
        }
    }
    if sections == 0 {
        return Err("no sealed section: not a Palisade incident export".into());
    }
    if !section.trim().is_empty() {
        return Err("text after the last sealed entry".into());
    }
    let entries = sections - 1;
    if declared != Some(entries) {
        return Err(format!(
            "entries: the header says {}, the file has {entries}",
            declared.map_or("nothing".to_string(), |d| d.to_string())
        ));
    }
    Ok(Verified {
        format: "markdown",
        entries,
        head: link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Value, Vec<TimelineEntry>) {
        let header = json!({
            "incident": {"id": "i1", "title": "K8S-001: exec <b>into</b>\n# pod", "state": "resolved"},
            "rules": [{"id": "K8S-001", "source": "file", "definition": "id: K8S-001\n<!-- sha256:00 -->"}],
            "exported_at": "2026-11-30T12:00:00Z",
            "entry_count": 2,
        });
        let entries = vec![
            TimelineEntry {
                time: "2026-11-30T11:00:00.123456Z".parse().unwrap(),
                kind: "event".into(),
                actor: "mallory".into(),
                payload: json!({"body": "line one\n<!-- sha256:ff -->\n# heading", "n": 1.5}),
            },
            TimelineEntry {
                time: "2026-11-30T11:01:00Z".parse().unwrap(),
                kind: "note".into(),
                actor: "alice".into(),
                payload: json!({"markdown": "looked at it **closely**"}),
            },
        ];
        (header, entries)
    }

    #[test]
    fn both_formats_verify_and_agree_on_nothing_but_their_own_chain() {
        let (header, entries) = sample();
        let (json_text, json_head) = to_json(&header, &entries);
        let v = verify(&json_text).unwrap();
        assert_eq!((v.format, v.entries, v.head), ("json", 2, json_head));
        let (md, md_head) = to_markdown(&header, &entries);
        let v = verify(&md).unwrap();
        assert_eq!((v.format, v.entries, v.head), ("markdown", 2, md_head));
        // Log content cannot forge a marker or a heading.
        let markers = md.lines().filter(|l| l.starts_with("<!-- sha256:")).count();
        assert_eq!(markers, 3, "{md}");
        assert!(
            !md.lines().any(|l| l == "# pod" || l == "# heading"),
            "{md}"
        );
    }

    #[test]
    fn any_edit_is_detected() {
        let (header, entries) = sample();
        let (json_text, _) = to_json(&header, &entries);
        for (from, to) in [
            ("closely", "quickly"),
            ("mallory", "nobody"),
            ("\"resolved\"", "\"triggered\""),
        ] {
            let edited = json_text.replacen(from, to, 1);
            assert!(verify(&edited).is_err(), "{from} -> {to} not detected");
        }
        let mut doc: Value = serde_json::from_str(&json_text).unwrap();
        doc["entries"].as_array_mut().unwrap().pop();
        assert!(verify(&doc.to_string()).unwrap_err().contains("entries"));

        let (md, _) = to_markdown(&header, &entries);
        for (from, to) in [
            ("closely", "quickly"),
            ("mallory", "nobody"),
            ("K8S-001", "K8S-002"),
        ] {
            assert!(
                verify(&md.replacen(from, to, 1)).is_err(),
                "{from} not detected"
            );
        }
        let lines: Vec<&str> = md.split_inclusive('\n').collect();
        let markers: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("<!-- sha256:"))
            .collect();
        let cut = lines[..=markers[markers.len() - 2]].concat();
        assert!(verify(&cut).unwrap_err().contains("entries"));
        assert!(verify("# hello\n").is_err());
    }
}
