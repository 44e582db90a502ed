//! PromQL functions (Prometheus 2.x semantics).

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::eval::{Evaluator, Sample, Value, drop_name, equality_labels};
use super::{PromError, at_ms, ms, offset_ms};
use crate::Labels;
use crate::chunk::is_stale;

fn exec(msg: impl Into<String>) -> PromError {
    PromError::Execution(msg.into())
}

/// Kahan-compensated sum.
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = s + v;
        if s.abs() >= v.abs() {
            c += (s - t) + v;
        } else {
            c += (v - t) + s;
        }
        s = t;
    }
    if s.is_infinite() { s } else { s + c }
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    sum(values.iter().copied()) / values.len() as f64
}

/// Population variance (Welford).
pub(crate) fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    if count == 0.0 { f64::NAN } else { m2 / count }
}

/// Prometheus's φ-quantile with linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

fn matrix_arg(c: &Call, i: usize) -> Result<&promql_parser::parser::MatrixSelector, PromError> {
    match c.args.args.get(i).map(|b| b.as_ref()) {
        Some(Expr::MatrixSelector(m)) => Ok(m),
        Some(Expr::Paren(p)) => match p.expr.as_ref() {
            Expr::MatrixSelector(m) => Ok(m),
            _ => Err(exec(format!(
                "{}: expected a range vector selector",
                c.func.name
            ))),
        },
        _ => Err(exec(format!(
            "{}: expected a range vector selector as argument {}",
            c.func.name,
            i + 1
        ))),
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr, PromError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| exec(format!("{}: missing argument {}", c.func.name, i + 1)))
}

fn string_arg(ev: &Evaluator, c: &Call, i: usize, t: i64) -> Result<String, PromError> {
    match ev.eval(arg(c, i)?, t)? {
        Value::String(s) => Ok(s),
        _ => Err(exec(format!(
            "{}: argument {} must be a string",
            c.func.name,
            i + 1
        ))),
    }
}

/// Prometheus's `extrapolatedRate` (2.x): the increase between the first and last
/// sample in the window (counter resets added back), extrapolated towards the window
/// edges by at most half an average sample interval (and never below zero for a
/// counter), per second for `rate`.
fn extrapolated_rate(
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = 0.0;
        for &(_, v) in samples {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if per_second {
        result /= range_secs;
    }
    Some(result)
}

fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let n = samples.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0);
    let init = samples[0].1;
    let mut constant = true;
    for &(t, v) in samples {
        if v != init {
            constant = false;
        }
        let x = (t - intercept_time) as f64 / 1000.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sx2 += x * x;
    }
    if constant {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn keeps_name(name: &str) -> bool {
    matches!(
        name,
        "last_over_time" | "sort" | "sort_desc" | "label_replace" | "label_join"
    )
}

pub(crate) fn call(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, PromError> {
    let name = c.func.name;
    let node = c as *const Call as usize;
    let label = |l: &Arc<Labels>| {
        if keeps_name(name) || !l.contains_key("__name__") {
            l.clone()
        } else {
            ev.derived(node, l, |l| {
                let mut m = l.clone();
                m.remove("__name__");
                m
            })
        }
    };
    match name {
        "rate" | "increase" | "delta" | "irate" | "idelta" | "deriv" | "changes" | "resets"
        | "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time"
        | "count_over_time" | "last_over_time" | "stddev_over_time" | "stdvar_over_time"
        | "present_over_time" => {
            let m = matrix_arg(c, 0)?;
            let range = ms(&m.range);
            let end = at_ms(&m.vs.at, ev.start, ev.end).unwrap_or(t) - offset_ms(&m.vs.offset);
            let start = end - range;
            let mut out = Vec::new();
            for (labels, samples) in ev.windows(m, t) {
                let values = || samples.iter().map(|s| s.1);
                let v = match name {
                    "rate" => {
                        extrapolated_rate(&samples, start, end, range as f64 / 1000.0, true, true)
                    }
                    "increase" => {
                        extrapolated_rate(&samples, start, end, range as f64 / 1000.0, true, false)
                    }
                    "delta" => {
                        extrapolated_rate(&samples, start, end, range as f64 / 1000.0, false, false)
                    }
                    "irate" | "idelta" => {
                        if samples.len() < 2 {
                            None
                        } else {
                            let (pt, pv) = samples[samples.len() - 2];
                            let (lt, lv) = samples[samples.len() - 1];
                            let dt = (lt - pt) as f64 / 1000.0;
                            if name == "idelta" {
                                Some(lv - pv)
                            } else if dt == 0.0 {
                                None
                            } else if lv < pv {
                                Some(lv / dt)
                            } else {
                                Some((lv - pv) / dt)
                            }
                        }
                    }
                    "deriv" => {
                        if samples.len() < 2 {
                            None
                        } else {
                            Some(linear_regression(&samples, samples[0].0).0)
                        }
                    }
                    "changes" => Some(
                        samples
                            .windows(2)
                            .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                            .count() as f64,
                    ),
                    "resets" => Some(samples.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
                    "avg_over_time" => Some(mean(&values().collect::<Vec<_>>())),
                    "min_over_time" => Some(
                        values().fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m }),
                    ),
                    "max_over_time" => Some(
                        values().fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m }),
                    ),
                    "sum_over_time" => Some(sum(values())),
                    "count_over_time" => Some(samples.len() as f64),
                    "last_over_time" => samples.last().map(|s| s.1),
                    "stddev_over_time" => Some(variance(&values().collect::<Vec<_>>()).sqrt()),
                    "stdvar_over_time" => Some(variance(&values().collect::<Vec<_>>())),
                    "present_over_time" => Some(1.0),
                    _ => None,
                };
                if let Some(v) = v {
                    out.push(Sample {
                        labels: label(labels),
                        v,
                    });
                }
            }
            Ok(Value::Vector(out))
        }
        "quantile_over_time" => {
            let q = ev.scalar(arg(c, 0)?, t)?;
            let m = matrix_arg(c, 1)?;
            Ok(Value::Vector(
                ev.range(m, t)
                    .into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: quantile(q, s.samples.iter().map(|p| p.1).collect()),
                    })
                    .collect(),
            ))
        }
        "absent_over_time" => {
            let m = matrix_arg(c, 0)?;
            let present = !ev.range(m, t).is_empty();
            Ok(Value::Vector(if present {
                Vec::new()
            } else {
                vec![Sample {
                    labels: Arc::new(equality_labels(arg(c, 0)?)),
                    v: 1.0,
                }]
            }))
        }
        "absent" => {
            let e = arg(c, 0)?;
            let present = !ev.vector(e, t)?.is_empty();
            Ok(Value::Vector(if present {
                Vec::new()
            } else {
                vec![Sample {
                    labels: Arc::new(equality_labels(e)),
                    v: 1.0,
                }]
            }))
        }
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Arc::new(Labels::new()),
            v: ev.scalar(arg(c, 0)?, t)?,
        }])),
        "scalar" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "timestamp" => {
            let e = arg(c, 0)?;
            if let Expr::VectorSelector(vs) = e {
                // The sample's own time, as Prometheus reports it.
                let rt = at_ms(&vs.at, ev.start, ev.end).unwrap_or(t) - offset_ms(&vs.offset);
                let key = super::selector_key(vs);
                let mut out = Vec::new();
                for s in ev.data.series.get(&key).map_or(&[][..], Vec::as_slice) {
                    let idx = s.samples.partition_point(|p| p.0 <= rt);
                    if idx == 0 {
                        continue;
                    }
                    let (st, v) = s.samples[idx - 1];
                    if st < rt - super::LOOKBACK_MS || is_stale(v) {
                        continue;
                    }
                    out.push(Sample {
                        labels: drop_name(s.labels.clone()),
                        v: st as f64 / 1000.0,
                    });
                }
                return Ok(Value::Vector(out));
            }
            Ok(Value::Vector(
                ev.vector(e, t)?
                    .into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: t as f64 / 1000.0,
                    })
                    .collect(),
            ))
        }
        "abs" | "ceil" | "floor" | "exp" | "ln" | "log2" | "log10" | "sqrt" | "sgn" => {
            let f = |v: f64| match name {
                "abs" => v.abs(),
                "ceil" => v.ceil(),
                "floor" => v.floor(),
                "exp" => v.exp(),
                "ln" => v.ln(),
                "log2" => v.log2(),
                "log10" => v.log10(),
                "sqrt" => v.sqrt(),
                _ => {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                }
            };
            Ok(Value::Vector(
                ev.vector(arg(c, 0)?, t)?
                    .into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: f(s.v),
                    })
                    .collect(),
            ))
        }
        "round" => {
            let to = match c.args.args.get(1) {
                Some(e) => ev.scalar(e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            Ok(Value::Vector(
                ev.vector(arg(c, 0)?, t)?
                    .into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: (s.v * inv + 0.5).floor() / inv,
                    })
                    .collect(),
            ))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let (lo, hi) = match name {
                "clamp" => (ev.scalar(arg(c, 1)?, t)?, ev.scalar(arg(c, 2)?, t)?),
                "clamp_min" => (ev.scalar(arg(c, 1)?, t)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, ev.scalar(arg(c, 1)?, t)?),
            };
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: s.v.max(lo).min(hi),
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(arg(c, 0)?, t)?;
            v.sort_by(|a, b| {
                let o = a.v.total_cmp(&b.v);
                if name == "sort" { o } else { o.reverse() }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let dst = string_arg(ev, c, 1, t)?;
            let replacement = string_arg(ev, c, 2, t)?;
            let src = string_arg(ev, c, 3, t)?;
            let pattern = string_arg(ev, c, 4, t)?;
            let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                PromError::Parse(format!(
                    "invalid regular expression in label_replace(): {e}"
                ))
            })?;
            if !crate::valid_label_name(&dst) {
                return Err(PromError::Parse(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let value = s.labels.get(&src).cloned().unwrap_or_default();
                if let Some(caps) = re.captures(&value) {
                    let mut result = String::new();
                    caps.expand(&replacement, &mut result);
                    let mut l = (*s.labels).clone();
                    if result.is_empty() {
                        l.remove(&dst);
                    } else {
                        l.insert(dst.clone(), result);
                    }
                    s.labels = Arc::new(l);
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let dst = string_arg(ev, c, 1, t)?;
            let sep = string_arg(ev, c, 2, t)?;
            let mut srcs = Vec::new();
            for i in 3..c.args.args.len() {
                srcs.push(string_arg(ev, c, i, t)?);
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|mut s| {
                        let joined = srcs
                            .iter()
                            .map(|k| s.labels.get(k).cloned().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(&sep);
                        let mut l = (*s.labels).clone();
                        if joined.is_empty() {
                            l.remove(&dst);
                        } else {
                            l.insert(dst.clone(), joined);
                        }
                        s.labels = Arc::new(l);
                        s
                    })
                    .collect(),
            ))
        }
        "histogram_quantile" => {
            let q = ev.scalar(arg(c, 0)?, t)?;
            let v = ev.vector(arg(c, 1)?, t)?;
            let mut groups: std::collections::BTreeMap<Labels, Vec<(f64, f64)>> =
                std::collections::BTreeMap::new();
            for s in v {
                let Some(le) = s.labels.get("le").and_then(|x| parse_le(x)) else {
                    continue;
                };
                let mut key = (*s.labels).clone();
                key.remove("__name__");
                key.remove("le");
                groups.entry(key).or_default().push((le, s.v));
            }
            Ok(Value::Vector(
                groups
                    .into_iter()
                    .map(|(labels, buckets)| Sample {
                        labels: Arc::new(labels),
                        v: bucket_quantile(q, buckets),
                    })
                    .collect(),
            ))
        }
        other => Err(PromError::Unsupported(format!(
            "function {other} is not supported"
        ))),
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Prometheus's `bucketQuantile` (2.x): linear interpolation inside the bucket the
/// rank falls in; the highest finite bound when it falls in the +Inf bucket.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then force monotonic counts.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last = merged.len() - 1;
    let b = merged[..last].partition_point(|x| x.1 < rank);
    if b == last {
        return merged[last - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
