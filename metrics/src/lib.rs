//! Metrics: OTLP metrics as Prometheus series ([`convert`]), the compact sample chunk
//! stored in Postgres ([`chunk`]), and PromQL evaluated over loaded series
//! ([`promql`]). Pure code: no I/O. `storage::metrics` stores and loads; `web` serves
//! the Prometheus HTTP API; `alerting` runs `metric` rules.

pub mod chunk;
pub mod convert;
pub mod promql;

use std::collections::BTreeMap;

/// A series' labels, `__name__` included, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Result of a range query: one series per label set, points at each step. Steps are
/// evaluated on up to four threads (each with its own evaluator), then merged in time
/// order.
pub fn eval_range(
    query: &promql::Query,
    data: &promql::Data,
    start: i64,
    end: i64,
    step: i64,
    deadline: impl Fn() -> bool + Sync,
) -> Result<Vec<promql::Series>, promql::PromError> {
    let steps = ((end - start) / step + 1).max(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(steps.max(1) as usize / 8 + 1) as i64;
    let per = (steps + threads - 1) / threads.max(1);
    let parts: Vec<Result<Vec<promql::Series>, promql::PromError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let from = start + i * per * step;
                let to = (start + ((i + 1) * per - 1) * step).min(end);
                let deadline = &deadline;
                scope.spawn(move || eval_steps(query, data, start, end, from, to, step, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(promql::PromError::Execution("evaluation panicked".into()))
                })
            })
            .collect()
    });
    let mut index: std::collections::HashMap<std::sync::Arc<Labels>, usize> =
        std::collections::HashMap::new();
    let mut out: Vec<promql::Series> = Vec::new();
    for part in parts {
        for s in part? {
            match index.get(&s.labels) {
                Some(&i) => out[i].samples.extend(s.samples),
                None => {
                    index.insert(s.labels.clone(), out.len());
                    out.push(s);
                }
            }
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Steps `from..=to` of a range query over `[start, end]`.
#[allow(clippy::too_many_arguments)]
fn eval_steps(
    query: &promql::Query,
    data: &promql::Data,
    start: i64,
    end: i64,
    from: i64,
    to: i64,
    step: i64,
    deadline: &(impl Fn() -> bool + Sync),
) -> Result<Vec<promql::Series>, promql::PromError> {
    use promql::{PromError, Value};
    let ev = promql::Evaluator::new(data, start, end);
    let mut index: std::collections::HashMap<std::sync::Arc<Labels>, usize> =
        std::collections::HashMap::new();
    let mut out: Vec<promql::Series> = Vec::new();
    let mut t = from;
    while t <= to {
        if deadline() {
            return Err(PromError::Execution(
                "query timed out in expression evaluation".into(),
            ));
        }
        let points: Vec<(std::sync::Arc<Labels>, f64)> = match ev.eval(&query.expr, t)? {
            Value::Scalar(v) => vec![(Default::default(), v)],
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Value::String(_) | Value::Matrix(_) => {
                return Err(PromError::Parse(
                    "invalid expression type for range query, must be Scalar or instant Vector"
                        .into(),
                ));
            }
        };
        for (labels, v) in points {
            let i = *index.entry(labels.clone()).or_insert_with(|| {
                out.push(promql::Series {
                    labels,
                    samples: Vec::new(),
                });
                out.len() - 1
            });
            out[i].samples.push((t, v));
        }
        t += step;
    }
    Ok(out)
}

/// Result of an instant query at `t`.
pub fn eval_instant(
    query: &promql::Query,
    data: &promql::Data,
    t: i64,
) -> Result<promql::Value, promql::PromError> {
    let ev = promql::Evaluator::new(data, t, t);
    ev.eval(&query.expr, t)
}
