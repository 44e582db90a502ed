//! OTLP metrics to Prometheus series, following the OpenTelemetry-to-Prometheus
//! compatibility specification (the Collector's `pkg/translator/prometheus`, read with
//! `search` — not copied): metric names get their unit and `_total` suffixes,
//! attributes become labels, `job`/`instance` come from `service.namespace`/
//! `service.name` and `service.instance.id`, and the other resource attributes are
//! one `target_info` series per resource.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, metric, number_data_point,
};

use crate::Labels;
use crate::chunk::STALE_NAN;

/// Resource attributes copied onto every series as labels (like Prometheus's
/// `promote_resource_attributes`): what Kubernetes queries group by. They stay in
/// `target_info` too.
pub const PROMOTED_RESOURCE_ATTRIBUTES: &[&str] = &[
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.name",
    "k8s.container.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.replicaset.name",
    "k8s.job.name",
    "k8s.cronjob.name",
];

/// Most labels one series may carry (the name included); a data point over it is
/// rejected and counted in `partial_success`.
pub const MAX_LABELS: usize = 64;
/// Longest label value kept (bytes); longer values are cut at a character boundary.
pub const MAX_LABEL_VALUE_BYTES: usize = 2048;
/// Most exponential-histogram buckets turned into `le` buckets per data point.
pub const MAX_EXPONENTIAL_BUCKETS: usize = 320;

/// Samples of one series from one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    pub labels: Labels,
    /// Delta temporality: each value is an increment, stored as a running total so
    /// that `rate` and `increase` see a counter.
    pub delta: bool,
    /// (milliseconds, value), in request order.
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The labels of the series the exemplar belongs to.
    pub series: Labels,
    pub time_ms: i64,
    pub value: f64,
    pub trace_id: String,
    pub span_id: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Converted {
    pub series: Vec<SeriesPoints>,
    pub exemplars: Vec<Exemplar>,
    /// Data points that could not be stored, and why (the first reason).
    pub rejected: u64,
    pub reason: Option<String>,
}

impl Converted {
    fn reject(&mut self, n: u64, why: impl FnOnce() -> String) {
        self.rejected += n;
        if self.reason.is_none() {
            self.reason = Some(why());
        }
    }
}

/// Make a metric or label name valid: `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names
/// (labels without `:`), invalid characters become `_`, runs of `_` collapse.
pub fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name: sanitised; one starting with a digit gets `key_`, and a name that
/// would start with the reserved `__` keeps a single `_`... as the specification says.
pub fn label_name(key: &str) -> String {
    if key.is_empty() {
        return "_".into();
    }
    let mut name = sanitize(key, false);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        name = format!("key{name}");
    }
    name
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The Prometheus name of an OTLP metric: sanitised name, unit suffix (`By` →
/// `_bytes`, `s` → `_seconds`, `1` on a gauge → `_ratio`, `{things}` dropped,
/// `x/s` → `_x_per_second`), `_total` for monotonic sums.
pub fn metric_name(name: &str, unit: &str, monotonic_counter: bool, gauge: bool) -> String {
    let mut parts: Vec<String> = sanitize(name, true)
        .split('_')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if monotonic_counter {
        parts.retain(|p| p != "total");
    }
    let unit = unit.trim();
    // Annotations in braces carry no unit.
    let unit: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.as_str(), None),
    };
    let mut suffix = |word: String| {
        let word = sanitize(&word, false);
        let word = word.trim_matches('_');
        if !word.is_empty() && !parts.iter().any(|p| p == word) {
            parts.extend(word.split('_').map(str::to_string));
        }
    };
    if main == "1" && gauge && per.is_none() {
        suffix("ratio".into());
    } else if !main.is_empty() && main != "1" {
        suffix(unit_word(main).map_or_else(|| main.to_string(), str::to_string));
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        let word = per_word(per).map_or_else(|| per.to_string(), str::to_string);
        let word = sanitize(&word, false);
        if !parts.iter().any(|p| p == "per") {
            parts.push("per".into());
            parts.extend(word.trim_matches('_').split('_').map(str::to_string));
        }
    }
    if monotonic_counter {
        parts.push("total".into());
    }
    let joined = parts.join("_");
    if joined.is_empty() {
        "_".into()
    } else if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// An attribute value as a label value (arrays and maps as JSON, as the spec says).
pub fn value_text(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        // A reference into a profiles string table: meaningless without it.
        Some(Value::StringValueStrindex(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_float(*d),
        Some(Value::BytesValue(b)) => {
            use std::fmt::Write;
            b.iter().fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
        }
        Some(Value::ArrayValue(a)) => serde_json::to_string(
            &a.values
                .iter()
                .map(|v| value_text(Some(v)))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
        Some(Value::KvlistValue(kv)) => serde_json::to_string(
            &kv.values
                .iter()
                .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap_or_default(),
    }
}

/// A float as Prometheus prints it (Go's `strconv.FormatFloat(v, 'f', -1, 64)` for
/// finite values; `+Inf`, `-Inf`, `NaN`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn cut(mut value: String) -> String {
    if value.len() > MAX_LABEL_VALUE_BYTES {
        let mut end = MAX_LABEL_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

/// Attributes as labels; colliding sanitised names join their values with `;` in
/// the order of the original keys.
fn attribute_labels(attrs: &[KeyValue], into: &mut Labels) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        let name = label_name(&kv.key);
        if name == "__name__" {
            continue;
        }
        let value = cut(value_text(kv.value.as_ref()));
        into.entry(name)
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert(value);
    }
}

fn nanos_to_ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Data point flag: no recorded value (the producer says the series went away).
const FLAG_NO_RECORDED_VALUE: u32 = 1;

struct Builder {
    out: Converted,
    index: HashMap<(Labels, bool), usize>,
}

impl Builder {
    fn push(&mut self, labels: Labels, delta: bool, t: i64, v: f64) {
        if labels.len() > MAX_LABELS {
            let name = labels.get("__name__").cloned().unwrap_or_default();
            self.out.reject(1, || {
                format!("{name}: more than {MAX_LABELS} labels on one series")
            });
            return;
        }
        let key = (labels, delta);
        let idx = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.out.series.push(SeriesPoints {
                    labels: key.0.clone(),
                    delta,
                    points: Vec::new(),
                });
                let i = self.out.series.len() - 1;
                self.index.insert(key, i);
                i
            }
        };
        self.out.series[idx].points.push((t, v));
    }

    fn exemplars(&mut self, series: &Labels, list: &[OtlpExemplar]) {
        use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
        for e in list.iter().take(16) {
            let value = match e.value {
                Some(Value::AsDouble(d)) => d,
                Some(Value::AsInt(i)) => i as f64,
                None => continue,
            };
            let mut attributes = Labels::new();
            attribute_labels(&e.filtered_attributes, &mut attributes);
            self.out.exemplars.push(Exemplar {
                series: series.clone(),
                time_ms: nanos_to_ms(e.time_unix_nano),
                value,
                trace_id: hex(&e.trace_id),
                span_id: hex(&e.span_id),
                attributes,
            });
        }
    }
}

fn with(base: &Labels, name: &str, extra: &[(&str, String)]) -> Labels {
    let mut l = base.clone();
    l.insert("__name__".into(), name.to_string());
    for (k, v) in extra {
        l.insert((*k).to_string(), v.clone());
    }
    l
}

/// Convert one export request. Never fails: points that cannot be stored are counted
/// in `rejected` with the first reason.
pub fn convert(request: &ExportMetricsServiceRequest) -> Converted {
    let mut b = Builder {
        out: Converted::default(),
        index: HashMap::new(),
    };
    for rm in &request.resource_metrics {
        let attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| value_text(kv.value.as_ref()))
        };
        let mut resource = Labels::new();
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(name)) if !ns.is_empty() => Some(format!("{ns}/{name}")),
            (_, name) => name,
        };
        if let Some(job) = job {
            resource.insert("job".into(), cut(job));
        }
        if let Some(instance) = get("service.instance.id") {
            resource.insert("instance".into(), cut(instance));
        }
        let promoted: Vec<KeyValue> = attrs
            .iter()
            .filter(|kv| PROMOTED_RESOURCE_ATTRIBUTES.contains(&kv.key.as_str()))
            .cloned()
            .collect();
        attribute_labels(&promoted, &mut resource);
        // target_info: the other resource attributes, one series per resource.
        let others: Vec<KeyValue> = attrs
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .cloned()
            .collect();
        let mut newest = 0u64;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let Some(data) = &m.data else {
                    continue;
                };
                convert_metric(&mut b, &resource, m, data, &mut newest);
            }
        }
        if !others.is_empty() && newest > 0 {
            let mut info = resource.clone();
            attribute_labels(&others, &mut info);
            info.insert("__name__".into(), "target_info".into());
            b.push(info, false, nanos_to_ms(newest), 1.0);
        }
    }
    b.out
}

fn convert_metric(
    b: &mut Builder,
    resource: &Labels,
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    data: &metric::Data,
    newest: &mut u64,
) {
    let delta_of = |t: i32| t == AggregationTemporality::Delta as i32;
    let point_labels = |attrs: &[KeyValue]| {
        let mut l = resource.clone();
        attribute_labels(attrs, &mut l);
        l
    };
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    };
    let stale = f64::from_bits(STALE_NAN);
    match data {
        metric::Data::Gauge(g) => {
            let name = metric_name(&m.name, &m.unit, false, true);
            for p in &g.data_points {
                *newest = (*newest).max(p.time_unix_nano);
                let labels = with(&point_labels(&p.attributes), &name, &[]);
                let v = if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
                    stale
                } else {
                    match number(&p.value) {
                        Some(v) => v,
                        None => {
                            b.out
                                .reject(1, || format!("{name}: data point without a value"));
                            continue;
                        }
                    }
                };
                b.exemplars(&labels, &p.exemplars);
                b.push(labels, false, nanos_to_ms(p.time_unix_nano), v);
            }
        }
        metric::Data::Sum(s) => {
            // A non-monotonic sum is a gauge in Prometheus (no `_total`).
            let name = metric_name(&m.name, &m.unit, s.is_monotonic, !s.is_monotonic);
            let delta = delta_of(s.aggregation_temporality);
            for p in &s.data_points {
                *newest = (*newest).max(p.time_unix_nano);
                let labels = with(&point_labels(&p.attributes), &name, &[]);
                let v = if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
                    stale
                } else {
                    match number(&p.value) {
                        Some(v) => v,
                        None => {
                            b.out
                                .reject(1, || format!("{name}: data point without a value"));
                            continue;
                        }
                    }
                };
                b.exemplars(&labels, &p.exemplars);
                b.push(labels, delta, nanos_to_ms(p.time_unix_nano), v);
            }
        }
        metric::Data::Histogram(h) => {
            let name = metric_name(&m.name, &m.unit, false, false);
            let delta = delta_of(h.aggregation_temporality);
            for p in &h.data_points {
                *newest = (*newest).max(p.time_unix_nano);
                let base = point_labels(&p.attributes);
                let t = nanos_to_ms(p.time_unix_nano);
                let no_value = p.flags & FLAG_NO_RECORDED_VALUE != 0;
                if !no_value
                    && !p.bucket_counts.is_empty()
                    && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    b.out.reject(1, || {
                        format!(
                            "{name}: {} bucket counts for {} explicit bounds (want bounds + 1)",
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        )
                    });
                    continue;
                }
                let mut cumulative = 0u64;
                let bounds = p.explicit_bounds.iter().copied().chain([f64::INFINITY]);
                for (i, le) in bounds.enumerate() {
                    cumulative += p.bucket_counts.get(i).copied().unwrap_or(0);
                    if p.bucket_counts.is_empty() && le.is_finite() {
                        continue;
                    }
                    let labels = with(
                        &base,
                        &format!("{name}_bucket"),
                        &[("le", format_float(le))],
                    );
                    let v = if no_value {
                        stale
                    } else if le.is_infinite() {
                        p.count as f64
                    } else {
                        cumulative as f64
                    };
                    b.push(labels, delta, t, v);
                }
                // Exemplars belong to the bucket their value falls in, as Prometheus
                // keeps them.
                for e in p.exemplars.iter().take(16) {
                    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
                    let v = match e.value {
                        Some(Value::AsDouble(d)) => d,
                        Some(Value::AsInt(i)) => i as f64,
                        None => continue,
                    };
                    let le = p
                        .explicit_bounds
                        .iter()
                        .copied()
                        .find(|b| v <= *b)
                        .unwrap_or(f64::INFINITY);
                    let labels = with(
                        &base,
                        &format!("{name}_bucket"),
                        &[("le", format_float(le))],
                    );
                    b.exemplars(&labels, std::slice::from_ref(e));
                }
                let count_labels = with(&base, &format!("{name}_count"), &[]);
                b.push(
                    count_labels,
                    delta,
                    t,
                    if no_value { stale } else { p.count as f64 },
                );
                if let Some(sum) = p.sum {
                    b.push(
                        with(&base, &format!("{name}_sum"), &[]),
                        delta,
                        t,
                        if no_value { stale } else { sum },
                    );
                }
            }
        }
        metric::Data::ExponentialHistogram(h) => {
            let name = metric_name(&m.name, &m.unit, false, false);
            let delta = delta_of(h.aggregation_temporality);
            for p in &h.data_points {
                *newest = (*newest).max(p.time_unix_nano);
                let base = point_labels(&p.attributes);
                let t = nanos_to_ms(p.time_unix_nano);
                let no_value = p.flags & FLAG_NO_RECORDED_VALUE != 0;
                if !(-10..=20).contains(&p.scale) {
                    b.out
                        .reject(1, || format!("{name}: scale {} outside -10..20", p.scale));
                    continue;
                }
                let positive = p.positive.as_ref();
                let n = positive.map_or(0, |x| x.bucket_counts.len());
                if n > MAX_EXPONENTIAL_BUCKETS {
                    b.out.reject(1, || {
                        format!("{name}: more than {MAX_EXPONENTIAL_BUCKETS} exponential buckets")
                    });
                    continue;
                }
                // Classic buckets: values at or below the zero threshold (the zero
                // bucket and every negative bucket), then each positive bucket's upper
                // bound base^(index+1), base = 2^(2^-scale), then +Inf.
                let negative: u64 = p
                    .negative
                    .as_ref()
                    .map_or(0, |x| x.bucket_counts.iter().sum());
                let mut cumulative = p.zero_count + negative;
                let value = |c: u64| if no_value { stale } else { c as f64 };
                b.push(
                    with(
                        &base,
                        &format!("{name}_bucket"),
                        &[("le", format_float(p.zero_threshold))],
                    ),
                    delta,
                    t,
                    value(cumulative),
                );
                if let Some(pos) = positive {
                    let base_exp = 2f64.powf(2f64.powi(-p.scale));
                    for (i, c) in pos.bucket_counts.iter().enumerate() {
                        cumulative += c;
                        let index = pos.offset as i64 + i as i64;
                        let upper = base_exp.powf((index + 1) as f64);
                        if upper <= p.zero_threshold {
                            continue;
                        }
                        b.push(
                            with(
                                &base,
                                &format!("{name}_bucket"),
                                &[("le", format_float(upper))],
                            ),
                            delta,
                            t,
                            value(cumulative),
                        );
                    }
                }
                b.push(
                    with(&base, &format!("{name}_bucket"), &[("le", "+Inf".into())]),
                    delta,
                    t,
                    value(p.count),
                );
                let count_labels = with(&base, &format!("{name}_count"), &[]);
                b.exemplars(&count_labels, &p.exemplars);
                b.push(count_labels, delta, t, value(p.count));
                if let Some(sum) = p.sum {
                    b.push(
                        with(&base, &format!("{name}_sum"), &[]),
                        delta,
                        t,
                        if no_value { stale } else { sum },
                    );
                }
            }
        }
        metric::Data::Summary(s) => {
            let name = metric_name(&m.name, &m.unit, false, false);
            for p in &s.data_points {
                *newest = (*newest).max(p.time_unix_nano);
                let base = point_labels(&p.attributes);
                let t = nanos_to_ms(p.time_unix_nano);
                let no_value = p.flags & FLAG_NO_RECORDED_VALUE != 0;
                let v = |x: f64| if no_value { stale } else { x };
                for q in &p.quantile_values {
                    b.push(
                        with(&base, &name, &[("quantile", format_float(q.quantile))]),
                        false,
                        t,
                        v(q.value),
                    );
                }
                b.push(
                    with(&base, &format!("{name}_count"), &[]),
                    false,
                    t,
                    v(p.count as f64),
                );
                b.push(with(&base, &format!("{name}_sum"), &[]), false, t, v(p.sum));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_specification() {
        assert_eq!(
            metric_name("http.server.duration", "s", false, false),
            "http_server_duration_seconds"
        );
        assert_eq!(
            metric_name("k8s.container.restarts", "{restart}", true, false),
            "k8s_container_restarts_total"
        );
        assert_eq!(
            metric_name("requests.total", "", true, false),
            "requests_total"
        );
        assert_eq!(
            metric_name("container.memory.usage", "By", false, true),
            "container_memory_usage_bytes"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", false, true),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("throughput", "By/s", false, true),
            "throughput_bytes_per_second"
        );
        assert_eq!(
            metric_name("latency_seconds", "s", false, false),
            "latency_seconds"
        );
        assert_eq!(
            metric_name("2xx.count", "", true, false),
            "_2xx_count_total"
        );
        assert_eq!(label_name("k8s.namespace.name"), "k8s_namespace_name");
        assert_eq!(label_name("0key"), "key_0key");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(1000.0), "1000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
