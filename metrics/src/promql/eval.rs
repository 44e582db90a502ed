//! The evaluator: one expression at one time over loaded series.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality,
    VectorSelector,
};

use super::functions;
use super::{Data, LOOKBACK_MS, PromError, Series, at_ms, ms, offset_ms, selector_key};
use crate::Labels;
use crate::chunk::is_stale;

/// An instant-vector element.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Arc<Labels>,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

pub struct Evaluator<'a> {
    pub data: &'a Data,
    /// The query's start and end (for `@ start()` / `@ end()`).
    pub start: i64,
    pub end: i64,
    /// Derived label sets per (node, input label set), so a range query does not
    /// rebuild the same labels at every step. Each entry holds its input, so the
    /// pointer it is keyed by stays valid for the evaluation.
    derived: RefCell<HashMap<(usize, usize), Derived, BuildPtrHasher>>,
    /// One shared label set per content and node, so equal derived sets are the same
    /// pointer (aggregation groups compare pointers, not maps).
    interned: RefCell<HashMap<Interned, Arc<Labels>>>,
}

/// A hasher for pointer pairs (already well spread; SipHash is the cost it saves).
#[derive(Default)]
pub(crate) struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type BuildPtrHasher = std::hash::BuildHasherDefault<PtrHasher>;

/// (node, content) of an interned label set.
type Interned = (usize, Arc<Labels>);

/// A derived label set and the input it came from (kept alive with it).
type Derived = (Arc<Labels>, Arc<Labels>);

/// A label set without `__name__` (the same set when it has none).
pub(crate) fn drop_name(l: Arc<Labels>) -> Arc<Labels> {
    if l.contains_key("__name__") {
        let mut m = (*l).clone();
        m.remove("__name__");
        Arc::new(m)
    } else {
        l
    }
}

/// Samples of one series inside a window: borrowed unless staleness markers had to
/// be taken out.
pub(crate) type Window<'a> = (&'a Arc<Labels>, Cow<'a, [(i64, f64)]>);

fn exec(msg: impl Into<String>) -> PromError {
    PromError::Execution(msg.into())
}

fn labels_text(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

impl<'a> Evaluator<'a> {
    pub fn new(data: &'a Data, start: i64, end: i64) -> Evaluator<'a> {
        Evaluator {
            data,
            start,
            end,
            derived: RefCell::new(HashMap::default()),
            interned: RefCell::new(HashMap::new()),
        }
    }

    /// `derive(labels)` for the node at `node`, computed once per input set.
    pub(crate) fn derived(
        &self,
        node: usize,
        labels: &Arc<Labels>,
        derive: impl FnOnce(&Labels) -> Labels,
    ) -> Arc<Labels> {
        let key = (node, Arc::as_ptr(labels) as usize);
        if let Some((_, out)) = self.derived.borrow().get(&key) {
            return out.clone();
        }
        let made = Arc::new(derive(labels));
        let out = self
            .interned
            .borrow_mut()
            .entry((node, made.clone()))
            .or_insert(made)
            .clone();
        self.derived
            .borrow_mut()
            .insert(key, (labels.clone(), out.clone()));
        out
    }

    /// Evaluate at `t` (milliseconds).
    pub fn eval(&self, expr: &Expr, t: i64) -> Result<Value, PromError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: drop_name(s.labels),
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(exec(format!("unary minus on a {}", other.kind()))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs, t))),
            Expr::MatrixSelector(m) => Ok(Value::Matrix(self.range(m, t))),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Subquery(_) | Expr::Extension(_) => Err(PromError::Unsupported(
                "subqueries are not supported".into(),
            )),
        }
    }

    fn ref_time(&self, vs: &VectorSelector, t: i64) -> i64 {
        at_ms(&vs.at, self.start, self.end).unwrap_or(t) - offset_ms(&vs.offset)
    }

    /// The newest sample in `[t - 5m, t]` of each series; a staleness marker there
    /// means the series is gone.
    pub(crate) fn instant(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let rt = self.ref_time(vs, t);
        let mut out = Vec::new();
        for s in self.loaded_all(vs) {
            let idx = s.samples.partition_point(|p| p.0 <= rt);
            if idx == 0 {
                continue;
            }
            let (st, v) = s.samples[idx - 1];
            if st < rt - LOOKBACK_MS || is_stale(v) {
                continue;
            }
            out.push(Sample {
                labels: s.labels.clone(),
                v,
            });
        }
        out
    }

    /// Samples in `[t - range, t]` (Prometheus 2.x closes both ends), without
    /// staleness markers.
    pub(crate) fn range(&self, m: &MatrixSelector, t: i64) -> Vec<Series> {
        self.windows(m, t)
            .into_iter()
            .map(|(labels, samples)| Series {
                labels: labels.clone(),
                samples: samples.into_owned(),
            })
            .collect()
    }

    /// [`Self::range`] without copying: each series' window as a slice.
    pub(crate) fn windows(&self, m: &MatrixSelector, t: i64) -> Vec<Window<'a>> {
        let rt = self.ref_time(&m.vs, t);
        let from = rt - ms(&m.range);
        let mut out = Vec::new();
        for s in self.loaded_all(&m.vs) {
            let lo = s.samples.partition_point(|p| p.0 < from);
            let hi = s.samples.partition_point(|p| p.0 <= rt);
            let slice = &s.samples[lo..hi];
            if slice.is_empty() {
                continue;
            }
            let samples = if slice.iter().any(|p| is_stale(p.1)) {
                let kept: Vec<(i64, f64)> =
                    slice.iter().copied().filter(|p| !is_stale(p.1)).collect();
                if kept.is_empty() {
                    continue;
                }
                Cow::Owned(kept)
            } else {
                Cow::Borrowed(slice)
            };
            out.push((&s.labels, samples));
        }
        out
    }

    fn loaded_all(&self, vs: &VectorSelector) -> &'a [Series] {
        self.data
            .series
            .get(&selector_key(vs))
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn vector(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>, PromError> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(exec(format!(
                "expected an instant vector, got a {}",
                other.kind()
            ))),
        }
    }

    pub(crate) fn scalar(&self, expr: &Expr, t: i64) -> Result<f64, PromError> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(exec(format!("expected a scalar, got a {}", other.kind()))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value, PromError> {
        let op = a.op.to_string();
        let input = self.vector(&a.expr, t)?;
        let param = match &a.param {
            Some(p) => Some(self.eval(p, t)?),
            None => None,
        };
        let node = a as *const AggregateExpr as usize;
        let group_key = |l: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::new(),
                Some(LabelModifier::Include(ls)) => ls
                    .labels
                    .iter()
                    .filter_map(|n| l.get(n).map(|v| (n.clone(), v.clone())))
                    .collect(),
                Some(LabelModifier::Exclude(ls)) => l
                    .iter()
                    .filter(|(k, _)| *k != "__name__" && !ls.labels.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        };
        // Groups in first-seen order.
        // Group keys are interned: one pointer per key content.
        let mut order: Vec<Arc<Labels>> = Vec::new();
        let mut slot: HashMap<usize, usize, BuildPtrHasher> = HashMap::default();
        let mut members_of: Vec<Vec<Sample>> = Vec::new();
        for s in input {
            let key = self.derived(node, &s.labels, group_key);
            let i = *slot.entry(Arc::as_ptr(&key) as usize).or_insert_with(|| {
                order.push(key);
                members_of.push(Vec::new());
                members_of.len() - 1
            });
            members_of[i].push(s);
        }
        let mut groups: HashMap<Arc<Labels>, Vec<Sample>> =
            order.iter().cloned().zip(members_of).collect();
        let scalar_param = || match &param {
            Some(Value::Scalar(v)) => Ok(*v),
            _ => Err(exec(format!("{op}: expected a scalar parameter"))),
        };
        let mut out = Vec::new();
        match op.as_str() {
            "topk" | "bottomk" => {
                let k = scalar_param()?;
                if k.is_nan() {
                    return Err(exec(format!("{op}: parameter is NaN")));
                }
                let k = if k < 1.0 { 0 } else { k.min(1e9) as usize };
                for key in &order {
                    let mut members = groups.remove(key).unwrap_or_default();
                    // NaN sorts last for both.
                    members.sort_by(|x, y| {
                        let (x, y) = (x.v, y.v);
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if op == "topk" => y.total_cmp(&x),
                            _ => x.total_cmp(&y),
                        }
                    });
                    out.extend(members.into_iter().take(k));
                }
                return Ok(Value::Vector(out));
            }
            "count_values" => {
                let Some(Value::String(label)) = &param else {
                    return Err(exec("count_values: expected a string parameter"));
                };
                let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
                for key in &order {
                    for s in groups.remove(key).unwrap_or_default() {
                        let mut l = (**key).clone();
                        l.insert(label.clone(), crate::convert::format_float(s.v));
                        *counts.entry(l).or_insert(0.0) += 1.0;
                    }
                }
                return Ok(Value::Vector(
                    counts
                        .into_iter()
                        .map(|(labels, v)| Sample {
                            labels: Arc::new(labels),
                            v,
                        })
                        .collect(),
                ));
            }
            _ => {}
        }
        let q = if op == "quantile" {
            Some(scalar_param()?)
        } else {
            None
        };
        for key in order {
            let members = groups.remove(&key).unwrap_or_default();
            let values: Vec<f64> = members.iter().map(|s| s.v).collect();
            let v = match op.as_str() {
                "sum" => values.iter().sum(),
                "avg" => functions::mean(&values),
                "min" => values
                    .iter()
                    .copied()
                    .fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m }),
                "max" => values
                    .iter()
                    .copied()
                    .fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m }),
                "count" => values.len() as f64,
                "group" => 1.0,
                "stddev" => functions::variance(&values).sqrt(),
                "stdvar" => functions::variance(&values),
                "quantile" => functions::quantile(q.unwrap_or(f64::NAN), values),
                other => return Err(PromError::Unsupported(format!("aggregation {other}"))),
            };
            out.push(Sample { labels: key, v });
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, PromError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = elem(&op, l, r)?;
                Ok(Value::Scalar(if comparison {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                }))
            }
            (Value::Vector(l), Value::Scalar(r)) => Ok(Value::Vector(vector_scalar(
                &op,
                l,
                r,
                false,
                return_bool,
                comparison,
            )?)),
            (Value::Scalar(l), Value::Vector(r)) => Ok(Value::Vector(vector_scalar(
                &op,
                r,
                l,
                true,
                return_bool,
                comparison,
            )?)),
            (Value::Vector(l), Value::Vector(r)) => {
                if b.op.is_set_operator() {
                    return Ok(Value::Vector(set_op(&op, b, l, r)));
                }
                Ok(Value::Vector(vector_vector(
                    &op,
                    b,
                    l,
                    r,
                    return_bool,
                    comparison,
                )?))
            }
            (l, r) => Err(exec(format!(
                "binary {op} between a {} and a {}",
                l.kind(),
                r.kind()
            ))),
        }
    }
}

/// One element operation: (value, keep). Comparisons keep the left value.
pub(crate) fn elem(op: &str, l: f64, r: f64) -> Result<(f64, bool), PromError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return Err(PromError::Unsupported(format!("operator {other}"))),
    })
}

fn vector_scalar(
    op: &str,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
    comparison: bool,
) -> Result<Vec<Sample>, PromError> {
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_left {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, mut keep) = elem(op, l, r)?;
        // A comparison keeps the vector's value, whichever side it is on.
        if comparison && scalar_left {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if !keep {
            continue;
        }
        let labels = if !comparison || return_bool {
            drop_name(s.labels)
        } else {
            s.labels
        };
        out.push(Sample { labels, v });
    }
    Ok(out)
}

/// The matching signature of a series: the `on` labels, or every label but the
/// `ignoring` ones and the name.
fn signature(l: &Labels, b: &BinaryExpr) -> Vec<(String, String)> {
    match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(on)) => on
            .labels
            .iter()
            .map(|n| (n.clone(), l.get(n).cloned().unwrap_or_default()))
            .collect(),
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|(k, _)| *k != "__name__" && !ign.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => l
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn set_op(op: &str, b: &BinaryExpr, l: Vec<Sample>, r: Vec<Sample>) -> Vec<Sample> {
    let right: std::collections::HashSet<Vec<(String, String)>> =
        r.iter().map(|s| signature(&s.labels, b)).collect();
    match op {
        "and" => l
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, b)))
            .collect(),
        "unless" => l
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, b)))
            .collect(),
        _ => {
            let left: std::collections::HashSet<Vec<(String, String)>> =
                l.iter().map(|s| signature(&s.labels, b)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, b))),
            );
            out
        }
    }
}

fn vector_vector(
    op: &str,
    b: &BinaryExpr,
    l: Vec<Sample>,
    r: Vec<Sample>,
    return_bool: bool,
    comparison: bool,
) -> Result<Vec<Sample>, PromError> {
    let card = b
        .modifier
        .as_ref()
        .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
    let include: Vec<String> = card
        .labels()
        .map(|ls| ls.labels.clone())
        .unwrap_or_default();
    // The "one" side is indexed; for group_right the sides swap roles.
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let mut index: HashMap<Vec<(String, String)>, Sample> = HashMap::new();
    for s in one {
        let sig = signature(&s.labels, b);
        if let Some(prev) = index.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_text(&sig.iter().cloned().collect()),
                labels_text(&prev.labels),
                labels_text(&s.labels)
            )));
        }
        index.insert(sig, s);
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let on = matches!(
        b.modifier.as_ref().and_then(|m| m.matching.as_ref()),
        Some(LabelModifier::Include(_))
    );
    let matching: Vec<String> = b
        .modifier
        .as_ref()
        .and_then(|m| m.matching.as_ref())
        .map(|m| m.labels().labels.clone())
        .unwrap_or_default();
    let mut matched: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, b);
        let Some(o) = index.get(&sig) else {
            continue;
        };
        if one_to_one {
            let n = matched.entry(sig.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                return Err(exec(format!(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right) for {}",
                    labels_text(&sig.iter().cloned().collect())
                )));
            }
        }
        let (lv, rv) = if swapped { (o.v, s.v) } else { (s.v, o.v) };
        let (mut v, mut keep) = elem(op, lv, rv)?;
        if comparison && swapped {
            // The result's value is the "many" side's (the output series').
            v = s.v;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if !keep {
            continue;
        }
        // Result labels: the many side's, name dropped for arithmetic and bool; for
        // one-to-one, `on` keeps only the matching labels and `ignoring` drops them;
        // group_x copies the listed labels from the one side.
        let mut labels = (*s.labels).clone();
        if !comparison || return_bool {
            labels.remove("__name__");
        }
        if one_to_one {
            if on {
                labels.retain(|k, _| matching.contains(k));
            } else {
                for m in &matching {
                    labels.remove(m);
                }
            }
        }
        for name in &include {
            match o.labels.get(name) {
                Some(v) if !v.is_empty() => {
                    labels.insert(name.clone(), v.clone());
                }
                _ => {
                    labels.remove(name);
                }
            }
        }
        if !one_to_one && seen.insert(labels.clone(), ()).is_some() {
            return Err(exec(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Sample {
            labels: Arc::new(labels),
            v,
        });
    }
    Ok(out)
}

/// For `absent`: the labels a selector pins with `=` (the name excluded).
pub(crate) fn equality_labels(expr: &Expr) -> Labels {
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut dup = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        if out.insert(m.name.clone(), m.value.clone()).is_some() {
            dup.push(m.name.clone());
        }
    }
    for d in dup {
        out.remove(&d);
    }
    out
}
