//! The Prometheus HTTP API under `/prometheus` (Grafana's Prometheus data source
//! works with the base URL `http://<host>:8080/prometheus` and a bearer token):
//! `api/v1/query`, `query_range`, `series`, `labels`, `label/<name>/values`,
//! `query_exemplars`, `metadata`, `status/buildinfo`, GET and POST (form bodies), with
//! Prometheus's response and error formats (`{"status":"error","errorType":...}`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::convert::format_float;
use metrics::promql::{Data, Fetch, PromError, Query, Value};
use metrics::{Labels, eval_instant, eval_range};
use model::Principal;
use serde_json::{Value as Json, json};
use storage::StorageError;
use storage::metrics::LoadLimits;

use crate::AppState;

/// Longest evaluation (the `timeout` parameter may shorten it).
pub const MAX_EVAL: Duration = Duration::from_secs(30);
/// Most series `series`, `labels` and label values look at.
pub const MAX_LIST_SERIES: usize = 50_000;

pub struct PromErr {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

fn bad(message: impl Into<String>) -> PromErr {
    PromErr {
        status: StatusCode::BAD_REQUEST,
        kind: "bad_data",
        message: message.into(),
    }
}

impl From<PromError> for PromErr {
    fn from(e: PromError) -> PromErr {
        match e {
            PromError::Parse(m) | PromError::Unsupported(m) => bad(m),
            PromError::Execution(m) => PromErr {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "execution",
                message: m,
            },
        }
    }
}

impl From<StorageError> for PromErr {
    fn from(e: StorageError) -> PromErr {
        match e {
            StorageError::Invalid(m) => PromErr {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "execution",
                message: m,
            },
            other => {
                let public = model::Public::of(&other);
                PromErr {
                    status: StatusCode::from_u16(public.kind.http_status())
                        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    kind: "unavailable",
                    message: public.message,
                }
            }
        }
    }
}

impl IntoResponse for PromErr {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"status": "error", "errorType": self.kind, "error": self.message})),
        )
            .into_response()
    }
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Parameters from the query string and, for POST, a form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Result<Params, PromErr> {
        let mut out: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        if !body.is_empty() {
            let form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return Err(bad(
                    "body: use Content-Type application/x-www-form-urlencoded",
                ));
            }
            out.extend(form_urlencoded::parse(body).into_owned());
        }
        if out.len() > 1000 {
            return Err(bad("too many parameters (at most 1000)"));
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, PromErr> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(text) => parse_time(text).ok_or_else(|| {
                bad(format!(
                    "invalid parameter {name:?}: cannot parse {text:?} to a valid timestamp"
                ))
            }),
        }
    }
}

/// Unix seconds (with fraction) or RFC 3339, in milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e13 {
            return Some((secs * 1000.0).round() as i64);
        }
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Seconds (with fraction) or a Prometheus duration (`15s`, `1m30s`), in ms.
fn parse_step(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e12).then(|| (secs * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn seconds(t: i64) -> Json {
    serde_json::Number::from_f64(t as f64 / 1000.0).map_or(Json::Null, Json::Number)
}

fn point(t: i64, v: f64) -> Json {
    json!([seconds(t), format_float(v)])
}

fn metric(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

async fn load(state: &AppState, p: &Principal, fetches: Vec<Fetch>) -> Result<Data, PromErr> {
    let mut data = Data::default();
    let limits = LoadLimits::default();
    for f in fetches {
        let series = state.metrics.load(p.tenant_id, &f, limits).await?;
        data.series.insert(f.key, series);
        if data.samples() > limits.max_samples {
            return Err(PromErr {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "execution",
                message: format!(
                    "the query would load more than {} samples; narrow it",
                    limits.max_samples
                ),
            });
        }
    }
    Ok(data)
}

fn timeout(params: &Params) -> Result<Duration, PromErr> {
    match params.get("timeout") {
        None | Some("") => Ok(MAX_EVAL),
        Some(t) => parse_step(t)
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64).min(MAX_EVAL))
            .ok_or_else(|| bad(format!("invalid parameter \"timeout\": {t:?}"))),
    }
}

fn query_text(params: &Params) -> Result<Query, PromErr> {
    let text = params
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": missing"))?;
    Ok(Query::parse(text)?)
}

/// `GET|POST /prometheus/api/v1/query`
#[utoipa::path(get, path = "/prometheus/api/v1/query", tag = "prometheus", operation_id = "prometheus_query_get",
    responses((status = 200, description = "Instant query (`query`, `time`, `timeout`); Prometheus response format"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn query(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_query(&state, &p, q, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run_query(
    state: &AppState,
    p: &Principal,
    q: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, PromErr> {
    let params = Params::new(q, headers, body)?;
    let query = query_text(&params)?;
    let t = params.time("time", now_ms())?;
    timeout(&params)?;
    let data = load(state, p, query.fetches(t, t)).await?;
    let value = tokio::task::spawn_blocking(move || eval_instant(&query, &data, t))
        .await
        .map_err(|e| PromErr {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: e.to_string(),
        })??;
    let data = match value {
        Value::Scalar(v) => json!({"resultType": "scalar", "result": point(t, v)}),
        Value::String(s) => json!({"resultType": "string", "result": [seconds(t), s]}),
        Value::Vector(v) => {
            json!({"resultType": "vector", "result": v.iter().map(|s| json!({"metric": metric(&s.labels), "value": point(t, s.v)})).collect::<Vec<_>>()})
        }
        Value::Matrix(m) => {
            json!({"resultType": "matrix", "result": m.iter().map(|s| json!({"metric": metric(&s.labels), "values": s.samples.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>()})).collect::<Vec<_>>()})
        }
    };
    Ok(success(data))
}

/// `GET|POST /prometheus/api/v1/query_range`
#[utoipa::path(get, path = "/prometheus/api/v1/query_range", tag = "prometheus", operation_id = "prometheus_query_range_get",
    responses((status = 200, description = "Range query (`query`, `start`, `end`, `step`, `timeout`)"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn query_range(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_range(&state, &p, q, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run_range(
    state: &AppState,
    p: &Principal,
    q: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, PromErr> {
    let params = Params::new(q, headers, body)?;
    let query = query_text(&params)?;
    let start = params
        .get("start")
        .and_then(parse_time)
        .ok_or_else(|| bad("invalid parameter \"start\": missing or not a timestamp"))?;
    let end = params
        .get("end")
        .and_then(parse_time)
        .ok_or_else(|| bad("invalid parameter \"end\": missing or not a timestamp"))?;
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = params
        .get("step")
        .and_then(parse_step)
        .ok_or_else(|| bad("invalid parameter \"step\": missing or not a duration"))?;
    if step <= 0 {
        return Err(bad(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > metrics::promql::MAX_STEPS {
        return Err(bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let limit = timeout(&params)?;
    let began = Instant::now();
    let data = load(state, p, query.fetches(start, end)).await?;
    let loaded = began.elapsed();
    let deadline = Instant::now() + limit;
    let series = tokio::task::spawn_blocking(move || {
        eval_range(&query, &data, start, end, step, || {
            Instant::now() > deadline
        })
    })
    .await
    .map_err(|e| PromErr {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal",
        message: e.to_string(),
    })?
    .map_err(|e| match e {
        PromError::Execution(m) if m.contains("timed out") => PromErr {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "timeout",
            message: m,
        },
        other => other.into(),
    })?;
    let evaluated = began.elapsed() - loaded;
    let mut response = success(json!({
        "resultType": "matrix",
        "result": series.iter().map(|s| json!({"metric": metric(&s.labels), "values": s.samples.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
    }));
    // Where the time went, for operators and the benchmark (Server-Timing).
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "load;dur={:.1}, eval;dur={:.1}",
        loaded.as_secs_f64() * 1000.0,
        evaluated.as_secs_f64() * 1000.0
    )) {
        response.headers_mut().insert("server-timing", v);
    }
    Ok(response)
}

/// `match[]` selectors as fetches over `[start, end]`.
fn selectors(params: &Params, required: bool) -> Result<(Vec<Fetch>, i64, i64), PromErr> {
    let start = params.time("start", i64::MIN / 4)?;
    let end = params.time("end", now_ms() + 3_600_000)?;
    let matches = params.all("match[]");
    if required && matches.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let mut fetches = Vec::new();
    for m in matches.iter().take(100) {
        let query = Query::parse(m)?;
        let Some(f) = query
            .is_selector()
            .then(|| query.fetches(start, end).into_iter().next())
            .flatten()
        else {
            return Err(bad(format!(
                "invalid parameter \"match[]\": {m:?} is not a series selector"
            )));
        };
        fetches.push(Fetch {
            from: start,
            to: end,
            ..f
        });
    }
    Ok((fetches, start, end))
}

async fn listed(
    state: &AppState,
    p: &Principal,
    params: &Params,
    required: bool,
) -> Result<Vec<Labels>, PromErr> {
    let (fetches, start, end) = selectors(params, required)?;
    Ok(state
        .metrics
        .series(p.tenant_id, &fetches, start, end, MAX_LIST_SERIES)
        .await?)
}

/// `GET|POST /prometheus/api/v1/series`
#[utoipa::path(get, path = "/prometheus/api/v1/series", tag = "prometheus", operation_id = "prometheus_series_get",
    responses((status = 200, description = "Series matching `match[]` in `[start, end]`"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn series(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    async {
        let params = Params::new(q, &headers, &body)?;
        let list = listed(&state, &p, &params, true).await?;
        Ok::<_, PromErr>(success(Json::Array(list.iter().map(metric).collect())))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST /prometheus/api/v1/labels`
#[utoipa::path(get, path = "/prometheus/api/v1/labels", tag = "prometheus", operation_id = "prometheus_labels_get",
    responses((status = 200, description = "Label names"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn labels(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    async {
        let params = Params::new(q, &headers, &body)?;
        let list = listed(&state, &p, &params, false).await?;
        let names: BTreeSet<&String> = list.iter().flat_map(|l| l.keys()).collect();
        Ok::<_, PromErr>(success(json!(names)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /prometheus/api/v1/label/{name}/values`
#[utoipa::path(get, path = "/prometheus/api/v1/label/{name}/values", tag = "prometheus", operation_id = "prometheus_label_values", params(("name" = String, Path, description = "label name")),
    responses((status = 200, description = "Values of one label"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn label_values(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    async {
        if !metrics::valid_label_name(&name) {
            return Err(bad(format!("invalid label name: {name:?}")));
        }
        let params = Params::new(q, &headers, &Bytes::new())?;
        let list = listed(&state, &p, &params, false).await?;
        let values: BTreeSet<&String> = list.iter().filter_map(|l| l.get(&name)).collect();
        Ok::<_, PromErr>(success(json!(values)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST /prometheus/api/v1/query_exemplars`
#[utoipa::path(get, path = "/prometheus/api/v1/query_exemplars", tag = "prometheus", operation_id = "prometheus_query_exemplars_get",
    responses((status = 200, description = "Exemplars of the series a query selects"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn query_exemplars(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    async {
        let params = Params::new(q, &headers, &body)?;
        let query = query_text(&params)?;
        let end = params.time("end", now_ms())?;
        let start = params.time("start", end - 3_600_000)?;
        let mut out = Vec::new();
        for f in query.fetches(start, end) {
            let f = Fetch { from: start, to: end, ..f };
            for (labels, list) in state.metrics.exemplars(p.tenant_id, &f, 10_000).await? {
                out.push(json!({
                    "seriesLabels": metric(&labels),
                    "exemplars": list.iter().map(|e| {
                        let mut l = e.attributes.clone();
                        l.insert("trace_id".into(), e.trace_id.clone());
                        l.insert("span_id".into(), e.span_id.clone());
                        json!({"labels": metric(&l), "value": format_float(e.value), "timestamp": seconds(e.time_ms)})
                    }).collect::<Vec<_>>(),
                }));
            }
        }
        Ok::<_, PromErr>(success(Json::Array(out)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /prometheus/api/v1/metadata`: no metric metadata is kept yet (an empty map,
/// which Grafana accepts).
#[utoipa::path(get, path = "/prometheus/api/v1/metadata", tag = "prometheus", operation_id = "prometheus_metadata",
    responses((status = 200, description = "Metric metadata (empty)"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn metadata() -> Response {
    success(json!({}))
}

/// `GET /prometheus/api/v1/status/buildinfo`: the Prometheus API level served.
#[utoipa::path(get, path = "/prometheus/api/v1/status/buildinfo", tag = "prometheus", operation_id = "prometheus_buildinfo",
    responses((status = 200, description = "The Prometheus API level served"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
pub async fn buildinfo() -> Response {
    success(json!({
        "version": "2.42.0",
        "revision": concat!("palisade-", env!("CARGO_PKG_VERSION")),
        "branch": "palisade",
        "buildUser": "palisade",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// The POST form of a GET handler (what Grafana sends by default), as its own
/// OpenAPI operation.
macro_rules! post_form {
    ($post:ident, $get:ident, $path:literal) => {
        #[doc = concat!("POST form of [`", stringify!($get), "`].")]
        #[utoipa::path(post, path = $path, tag = "prometheus",
            request_body(content = String, content_type = "application/x-www-form-urlencoded"),
            responses((status = 200, description = "as GET"), (status = 400, description = "bad_data"), (status = 422, description = "execution")))]
        pub async fn $post(
            state: State<AppState>,
            principal: Extension<Principal>,
            raw: RawQuery,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            $get(state, principal, raw, headers, body).await
        }
    };
}

post_form!(query_post, query, "/prometheus/api/v1/query");
post_form!(
    query_range_post,
    query_range,
    "/prometheus/api/v1/query_range"
);
post_form!(series_post, series, "/prometheus/api/v1/series");
post_form!(labels_post, labels, "/prometheus/api/v1/labels");
post_form!(
    query_exemplars_post,
    query_exemplars,
    "/prometheus/api/v1/query_exemplars"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("nope"), None);
        assert_eq!(parse_step("15"), Some(15_000));
        assert_eq!(parse_step("1m30s"), Some(90_000));
        assert_eq!(parse_step("5x"), None);
        assert_eq!(parse_step(""), Some(0));
    }
}
