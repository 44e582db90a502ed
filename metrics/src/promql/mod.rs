//! PromQL over stored series: parsing with `promql-parser`, a plan of what to load
//! ([`Query::fetches`]), and evaluation over the loaded series with Prometheus 2.x
//! semantics (5-minute lookback, staleness markers, extrapolated `rate`, vector
//! matching). Evaluation is synchronous and pure: the caller loads the series the plan
//! names (from Postgres) and evaluates; tests load them from memory.

mod eval;
mod functions;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

pub use eval::{Evaluator, Sample, Value};

use crate::Labels;

/// Default lookback of an instant selector (Prometheus's `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points per series of a range query (Prometheus's limit).
pub const MAX_STEPS: i64 = 11_000;
/// Longest query text accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PromError {
    /// The query does not parse (Prometheus `bad_data`, 400).
    #[error("{0}")]
    Parse(String),
    /// Valid PromQL that Palisade does not evaluate (400, listed in docs/metrics.md).
    #[error("{0}")]
    Unsupported(String),
    /// Evaluation failed (Prometheus `execution`, 422), e.g. many-to-many matching.
    #[error("{0}")]
    Execution(String),
}

/// A stored series as loaded for a query: labels (with `__name__`) and samples sorted
/// by time (staleness markers included).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: std::sync::Arc<Labels>,
    pub samples: Vec<(i64, f64)>,
}

/// One selector's data to load: series matching all `matchers` (any one of the groups
/// when there are several: `{a="x" or b="y"}`), samples in `[from, to]` milliseconds.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub key: String,
    pub groups: Vec<Vec<Matcher>>,
    pub from: i64,
    pub to: i64,
}

impl Fetch {
    /// The metric name, when every group pins it with `=` (what storage indexes).
    pub fn names(&self) -> Option<Vec<String>> {
        self.groups
            .iter()
            .map(|g| {
                g.iter()
                    .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                    .map(|m| m.value.clone())
            })
            .collect()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.groups.iter().any(|g| matches_all(g, labels))
    }
}

pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| {
        let value = labels.get(&m.name).map_or("", String::as_str);
        m.is_match(value)
    })
}

/// Loaded data, keyed by [`Fetch::key`].
#[derive(Debug, Default)]
pub struct Data {
    pub series: HashMap<String, Vec<Series>>,
}

impl Data {
    pub fn samples(&self) -> usize {
        self.series
            .values()
            .flat_map(|s| s.iter())
            .map(|s| s.samples.len())
            .sum()
    }
}

/// A parsed, checked query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub expr: Expr,
}

/// Functions evaluated here; any other is a 400 naming it.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
];

/// Aggregations evaluated here.
pub const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

impl Query {
    pub fn parse(text: &str) -> Result<Query, PromError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(PromError::Parse(format!(
                "query: longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if text.trim().is_empty() {
            return Err(PromError::Parse("query: empty".into()));
        }
        let expr = parser::parse(text).map_err(PromError::Parse)?;
        check(&expr, 0)?;
        Ok(Query { expr })
    }

    /// A bare series selector (what `match[]` accepts).
    pub fn is_selector(&self) -> bool {
        matches!(self.expr, Expr::VectorSelector(_))
    }

    /// What to load to evaluate at every time in `[start, end]`.
    pub fn fetches(&self, start: i64, end: i64) -> Vec<Fetch> {
        let mut out: HashMap<String, Fetch> = HashMap::new();
        collect(&self.expr, start, end, 0, &mut out);
        out.into_values().collect()
    }
}

/// Reject what is not evaluated (clear 400s) and bound nesting.
fn check(expr: &Expr, depth: usize) -> Result<(), PromError> {
    if depth > 64 {
        return Err(PromError::Parse("query: nested deeper than 64".into()));
    }
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(PromError::Unsupported(format!(
                    "aggregation {op} is not supported (see docs/metrics.md)"
                )));
            }
            if let Some(p) = &a.param {
                check(p, depth + 1)?;
            }
            check(&a.expr, depth + 1)
        }
        Expr::Unary(u) => check(&u.expr, depth + 1),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(PromError::Unsupported(
                    "fill modifiers are not supported".into(),
                ));
            }
            check(&b.lhs, depth + 1)?;
            check(&b.rhs, depth + 1)
        }
        Expr::Paren(p) => check(&p.expr, depth + 1),
        Expr::Subquery(_) => Err(PromError::Unsupported(
            "subqueries are not supported (see docs/metrics.md)".into(),
        )),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Ok(()),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(PromError::Unsupported(format!(
                    "function {} is not supported (see docs/metrics.md)",
                    c.func.name
                )));
            }
            for a in &c.args.args {
                check(a, depth + 1)?;
            }
            Ok(())
        }
        Expr::Extension(_) => Err(PromError::Unsupported("extension expressions".into())),
    }
}

pub(crate) fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

pub(crate) fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_ms(*t)),
    }
}

fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn selector_key(vs: &VectorSelector) -> String {
    vs.to_string()
}

fn groups(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut base: Vec<Matcher> = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    if vs.matchers.or_matchers.is_empty() {
        vec![base]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|g| {
                let mut g = g.clone();
                if let Some(name) = &vs.name {
                    g.push(Matcher::new(MatchOp::Equal, "__name__", name));
                }
                g
            })
            .collect()
    }
}

fn collect(expr: &Expr, start: i64, end: i64, range: i64, out: &mut HashMap<String, Fetch>) {
    let mut add = |vs: &VectorSelector, range: i64| {
        let off = offset_ms(&vs.offset);
        let (from, to) = match at_ms(&vs.at, start, end) {
            Some(t) => (t - off - range, t - off),
            None => (start - off - range, end - off),
        };
        let key = selector_key(vs);
        out.entry(key.clone())
            .and_modify(|f| {
                f.from = f.from.min(from);
                f.to = f.to.max(to);
            })
            .or_insert(Fetch {
                key,
                groups: groups(vs),
                from,
                to,
            });
    };
    match expr {
        Expr::VectorSelector(vs) => add(vs, LOOKBACK_MS.max(range)),
        Expr::MatrixSelector(m) => add(&m.vs, ms(&m.range)),
        Expr::Aggregate(a) => {
            collect(&a.expr, start, end, range, out);
            if let Some(p) = &a.param {
                collect(p, start, end, range, out);
            }
        }
        Expr::Unary(u) => collect(&u.expr, start, end, range, out),
        Expr::Binary(b) => {
            collect(&b.lhs, start, end, range, out);
            collect(&b.rhs, start, end, range, out);
        }
        Expr::Paren(p) => collect(&p.expr, start, end, range, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                collect(a, start, end, range, out);
            }
        }
        Expr::Subquery(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

#[cfg(test)]
mod tests;
