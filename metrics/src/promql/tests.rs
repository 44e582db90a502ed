//! Evaluator unit tests over in-memory series (the differential test against a real
//! Prometheus is `tests/tests/api/metrics.rs`).

use super::*;
use crate::{Labels, eval_instant, eval_range};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(query: &Query, series: &[Series], start: i64, end: i64) -> Data {
    let mut data = Data::default();
    for f in query.fetches(start, end) {
        let matched = series
            .iter()
            .filter(|s| f.matches(&s.labels))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|p| p.0 >= f.from && p.0 <= f.to)
                    .collect(),
            })
            .collect();
        data.series.insert(f.key, matched);
    }
    data
}

fn counter(name: &str, job: &str, step_ms: i64, values: &[f64]) -> Series {
    Series {
        labels: std::sync::Arc::new(labels(&[("__name__", name), ("job", job)])),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * step_ms, *v))
            .collect(),
    }
}

fn instant(text: &str, series: &[Series], t: i64) -> Result<Value, PromError> {
    let q = Query::parse(text)?;
    let data = load(&q, series, t, t);
    eval_instant(&q, &data, t)
}

fn one(v: Value) -> f64 {
    match v {
        Value::Vector(v) if v.len() == 1 => v[0].v,
        Value::Scalar(s) => s,
        other => panic!("expected one value, got {other:?}"),
    }
}

#[test]
fn rate_extrapolates_and_handles_resets() {
    // 0, 10, 20, ... every 15 s: 10 per 15 s = 0.6667/s.
    let c = counter(
        "x_total",
        "a",
        15_000,
        &(0..=40).map(|i| (i * 10) as f64).collect::<Vec<_>>(),
    );
    let r = one(instant("rate(x_total[5m])", std::slice::from_ref(&c), 600_000).unwrap());
    assert!((r - 10.0 / 15.0).abs() < 1e-9, "{r}");
    // A reset: 0..100 then 5: the increase counts the drop as a reset.
    let reset = counter("y_total", "a", 15_000, &[0.0, 50.0, 100.0, 5.0, 55.0]);
    let inc = one(instant("increase(y_total[1m])", &[reset], 60_000).unwrap());
    assert!(inc > 150.0, "{inc}");
}

#[test]
fn lookback_and_staleness() {
    let mut s = counter("g", "a", 60_000, &[1.0, 2.0]);
    assert_eq!(
        one(instant("g", std::slice::from_ref(&s), 60_000 + 299_000).unwrap()),
        2.0
    );
    // Beyond five minutes: gone.
    assert_eq!(
        instant("g", std::slice::from_ref(&s), 60_000 + 301_000).unwrap(),
        Value::Vector(vec![])
    );
    // A staleness marker ends it at once.
    s.samples
        .push((120_000, f64::from_bits(crate::chunk::STALE_NAN)));
    assert_eq!(instant("g", &[s], 130_000).unwrap(), Value::Vector(vec![]));
}

#[test]
fn aggregation_matching_and_errors() {
    let a = counter("m", "a", 15_000, &[1.0, 2.0]);
    let b = counter("m", "b", 15_000, &[3.0, 4.0]);
    let sum = one(instant("sum(m)", &[a.clone(), b.clone()], 15_000).unwrap());
    assert_eq!(sum, 6.0);
    let Value::Vector(top) = instant("topk(1, m)", &[a.clone(), b.clone()], 15_000).unwrap() else {
        panic!()
    };
    assert_eq!(top[0].labels.get("job").unwrap(), "b");
    // many-to-many is an execution error.
    let err = instant("m + on() m", &[a.clone(), b.clone()], 15_000).unwrap_err();
    assert!(matches!(err, PromError::Execution(_)), "{err:?}");
    // Unsupported is a clear error.
    let err = Query::parse("holt_winters(m[5m], 0.5, 0.5)").unwrap_err();
    assert!(matches!(err, PromError::Unsupported(_)) || matches!(err, PromError::Parse(_)));
    let err = Query::parse("rate(m[5m:1m])").unwrap_err();
    assert!(matches!(err, PromError::Unsupported(_)), "{err:?}");
    // Comparison with bool drops the name and gives 0/1.
    let Value::Vector(v) = instant("m > bool 2", &[a, b], 15_000).unwrap() else {
        panic!()
    };
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|s| !s.labels.contains_key("__name__")));
}

#[test]
fn histogram_quantile_interpolates() {
    let bucket = |le: &str, v: f64| Series {
        labels: std::sync::Arc::new(labels(&[("__name__", "h_bucket"), ("le", le)])),
        samples: vec![(0, v)],
    };
    let series = [
        bucket("0.1", 10.0),
        bucket("0.5", 60.0),
        bucket("1", 90.0),
        bucket("+Inf", 100.0),
    ];
    let q = one(instant("histogram_quantile(0.5, h_bucket)", &series, 0).unwrap());
    // rank 50 falls in (0.1, 0.5]: 0.1 + 0.4 * (40/50).
    assert!((q - 0.42).abs() < 1e-9, "{q}");
}

#[test]
fn range_query_steps() {
    let c = counter(
        "x",
        "a",
        15_000,
        &(0..=20).map(|i| i as f64).collect::<Vec<_>>(),
    );
    let q = Query::parse("x * 2").unwrap();
    let data = load(&q, &[c], 0, 300_000);
    let out = eval_range(&q, &data, 0, 300_000, 60_000, || false).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].samples,
        vec![
            (0, 0.0),
            (60_000, 8.0),
            (120_000, 16.0),
            (180_000, 24.0),
            (240_000, 32.0),
            (300_000, 40.0)
        ]
    );
}
