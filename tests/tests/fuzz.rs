//! Mutation fuzzing on stable Rust, no extra dependency: each target starts from its
//! checked-in corpus (`fuzz/corpus/<target>/`, which holds the crashers that once
//! aborted the process) and runs seeded mutations of it. A panic or a stack overflow
//! fails the test (an overflow aborts the test binary, which fails CI just as well).
//!
//! CI runs `PALISADE_FUZZ_ITERS` (default 300) mutations per target; run longer with
//! `PALISADE_FUZZ_ITERS=200000 PALISADE_FUZZ_SEED=$RANDOM cargo test -p palisade-tests
//! --test fuzz --release -- --nocapture`. A failure prints the seed and iteration, and
//! the input that failed is written to `target/fuzz-failure-<target>.bin`: add it to
//! the corpus once fixed.

use std::path::PathBuf;

use chrono::Utc;
use model::TenantId;
use serde_json::{Value, json};

/// SplitMix64: small, seeded, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that matter to the parsers under test, spliced in by the mutator.
const DICTIONARY: &[&[u8]] = &[
    b"(",
    b")",
    b"\"",
    b"\\",
    b"*",
    b":",
    b"NOT ",
    b" AND ",
    b" OR ",
    b"[",
    b"]",
    b"{",
    b"}",
    b" TO ",
    b">=",
    b"<",
    b"/",
    b"~",
    b"^",
    b"?",
    b"\0",
    b"now-",
    b"h",
    b"w",
    b"99999999999999999999",
    b"-",
    b"attributes.",
    b"resource.",
    b"\xff",
    b"\xc3\xa9",
    b"{\"op\":\"add\",\"path\":\"/spec/",
    b"\"kind\":\"Secret\"",
    b"\"data\":",
    b"\"items\":[",
    b"\n",
    b"- ",
    b"  ",
    b"&a ",
    b"*a",
    b"!!",
    b"---\n",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                out.splice(at..at, word.iter().copied());
            }
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                // Repeat a slice: how nesting and size bombs are made.
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(16)).min(out.len());
                let piece = out[start..end].to_vec();
                let times = 1 + rng.below(256);
                for _ in 0..times {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 => out.truncate(at),
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out.truncate(1 << 20);
    out
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let inputs: Vec<Vec<u8>> = entries.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

fn iterations() -> usize {
    std::env::var("PALISADE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Run `check` on every corpus entry, then on `iterations()` mutations of them.
fn fuzz(target: &str, check: impl Fn(&[u8])) {
    let seed: u64 = std::env::var("PALISADE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let inputs = corpus(target);
    for input in &inputs {
        check(input);
    }
    let mut rng = Rng(seed);
    for i in 0..iterations() {
        let base = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, base);
        let failure = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/fuzz-failure-{target}.bin"));
        let _ = std::fs::write(&failure, &input);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            panic!(
                "{target}: seed {seed} iteration {i} panicked; input in {}",
                failure.display()
            );
        }
        let _ = std::fs::remove_file(&failure);
    }
}

fn record() -> model::LogRecord {
    model::LogRecord {
        severity_number: 13,
        severity_text: "WARN".into(),
        attributes: json!({"user.name": "root", "k8s.client.ip": "10.1.2.3", "n": 5})
            .as_object()
            .cloned()
            .unwrap(),
        ..model::LogRecord::new(
            TenantId(uuid::Uuid::nil()),
            Utc::now(),
            "failed login for root",
        )
    }
}

#[test]
fn query_parser_and_evaluator() {
    let r = record();
    fuzz("query", |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(expr) = query::parse::parse(&text) {
            let _ = alerting::eval::matches(&expr, &r);
        }
    });
}

#[test]
fn time_expressions() {
    fuzz("time", |input| {
        let text = String::from_utf8_lossy(input);
        let _ = query::time::parse_time(&text, Utc::now(), "from");
    });
}

fn normalize(request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest) {
    let _ = ingest::normalize::normalize(
        TenantId(uuid::Uuid::nil()),
        request,
        Utc::now(),
        ingest::normalize::TimePolicy::default(),
    );
}

#[test]
fn otlp_protobuf_decoding_and_normalisation() {
    fuzz("otlp_protobuf", |input| {
        if let Ok(request) = ingest::decode::decode_logs(ingest::decode::Format::Protobuf, input) {
            normalize(&request);
        }
    });
}

#[test]
fn otlp_json_decoding_and_normalisation() {
    fuzz("otlp_json", |input| {
        if let Ok(request) = ingest::decode::decode_logs(ingest::decode::Format::Json, input) {
            normalize(&request);
        }
    });
}

#[test]
fn audit_event_normalisation() {
    fuzz("audit", |input| {
        let Ok(event) = serde_json::from_slice::<Value>(input) else {
            return;
        };
        let _ = k8saudit::event_list_items(
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [event.clone()]}),
        );
        let _ = k8saudit::to_record(
            event,
            TenantId(uuid::Uuid::nil()),
            "fuzz",
            Utc::now(),
            Default::default(),
        );
    });
}

#[test]
fn rule_yaml_loader() {
    fuzz("rules", |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(rules) = alerting::rule::parse_rules(&text) {
            for rule in rules {
                let _ = alerting::template::render(
                    rule.doc
                        .annotations
                        .values()
                        .next()
                        .map_or("", String::as_str),
                    &json!({}),
                );
            }
        }
    });
}
