//! The web UI: server-rendered pages (askama templates, escaped by default) on the
//! API listener, for on-call staff. Handlers call the same library functions as the
//! JSON API (the typed search core, the stores), never the JSON API itself. Forms work
//! without JavaScript; `assets/app.js` adds keyboard navigation, histogram zoom and the
//! live timeline. The Content-Security-Policy (`security::headers`) allows no inline
//! script, no inline style and no `eval`.
//!
//! Every view's state is in its URL (query, time range, filters), so a link opens the
//! same view.

pub mod auth;
pub mod chart;

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use model::Permission;
use model::incident::Entity;
use query::search::{HistogramParams, SearchParams};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use self::auth::{Viewer, check_form, local_path, url_encode};
use crate::incidents::timeline;
use crate::{ApiError, AppState};

/// What the page header shows about the signed-in user.
pub struct Nav {
    pub username: String,
    pub tenant: String,
    pub role: String,
    pub csrf: String,
    pub tenants: Vec<String>,
}

fn nav(v: &Viewer) -> Option<Nav> {
    Some(Nav {
        username: v.username.clone(),
        tenant: v.tenant.clone(),
        tenants: v.tenants.clone(),
        role: v.role.clone(),
        csrf: v.csrf.clone(),
    })
}

/// The UI's routes (merged into the API listener's router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/incidents") }))
        .route("/ui/app.css", get(css))
        .route("/ui/app.js", get(js))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/tenant", post(switch_tenant))
        .route("/search", get(search_page))
        .route("/events/{id}", get(event_page))
        .route("/events/{id}/pin", post(pin_event))
        .route("/incidents", get(incidents_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/act", post(incident_act))
        .route("/incidents/{id}/notes", post(incident_note))
        .route("/incidents/{id}/assign", post(incident_assign))
        .route("/incidents/{id}/merge", post(incident_merge))
        .route("/alerts", get(alerts_page))
        .route("/alerts/{id}", get(alert_page))
        .route("/alerts/{id}/silence", post(alert_silence))
        .route("/rules", get(rules_page))
        .route("/rules/{id}", get(rule_page).post(rule_submit))
        .route("/rules/{id}/toggle", post(rule_toggle))
        .route("/silences", get(silences_page).post(create_silence))
        .route("/channels", get(channels_page).post(create_channel))
        .route("/channels/{id}/test", post(test_channel))
        .route("/kubernetes", get(kubernetes_page))
        .route("/admin", get(admin_page))
        .route("/admin/tokens", post(create_token))
        .route("/admin/users", post(create_user))
        .route("/admin/users/{id}/disable", post(disable_user))
        .route("/admin/members", post(add_member))
        .route("/admin/members/{id}/remove", post(remove_member))
        // Same-origin form posts must carry their Origin (a `no-referrer` document sends
        // `Origin: null`, which the CSRF check refuses); other sites still get nothing.
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut().insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                );
                r
            },
        ))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    )
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
struct MessagePage {
    nav: Option<Nav>,
    heading: String,
    text: String,
}

/// A page saying what went wrong, with the status of its class.
fn message(v: Option<&Viewer>, status: StatusCode, heading: &str, text: String) -> Response {
    let mut response = MessagePage {
        nav: v.and_then(nav),
        heading: heading.to_string(),
        text,
    }
    .into_response();
    *response.status_mut() = status;
    response
}

fn failed(v: &Viewer, err: ApiError) -> Response {
    let status = StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let text = if status.is_server_error() {
        "Something went wrong on the server; the log has the details.".to_string()
    } else {
        err.message.clone()
    };
    message(Some(v), status, "Not possible", text)
}

fn forbidden(v: &Viewer) -> Response {
    message(
        Some(v),
        StatusCode::FORBIDDEN,
        "Not allowed",
        format!("Your role ({}) cannot do this.", v.role),
    )
}

fn bad_form(v: &Viewer) -> Response {
    message(
        Some(v),
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form did not come from this session; reload the page and try again.".into(),
    )
}

fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

// ------------------------------------------------------------------------- login

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    error: Option<String>,
    next: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(Query(q): Query<NextQuery>) -> Response {
    LoginPage {
        nav: None,
        error: None,
        next: local_path(q.next.as_deref()),
    }
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    match crate::session::sign_in(&state, source, &headers, &form.username, form.password).await {
        Ok(signed) => {
            let mut response = see(&next);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, signed.cookie);
            response
        }
        Err(err) => {
            let status =
                StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut response = LoginPage {
                nav: None,
                error: Some(if status.is_server_error() {
                    "Sign-in is unavailable right now; try again shortly.".into()
                } else {
                    err.message
                }),
                next,
            }
            .into_response();
            *response.status_mut() = status;
            response
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !check_form(&v, &headers, &form.csrf) {
        return bad_form(&v);
    }
    match crate::session::sign_out(&state, &v.principal, &v.session_id).await {
        Ok(cleared) => {
            let mut response = see("/login");
            response.headers_mut().insert(header::SET_COOKIE, cleared);
            response
        }
        Err(err) => failed(&v, err),
    }
}

#[derive(Deserialize)]
struct TenantForm {
    csrf: String,
    tenant: String,
}

/// The header's tenant switcher: act in another tenant of the user's.
async fn switch_tenant(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Form(form): Form<TenantForm>,
) -> Response {
    if !check_form(&v, &headers, &form.csrf) {
        return bad_form(&v);
    }
    match crate::session::switch(&state, &v.principal, &v.session_id, &form.tenant, source).await {
        Ok(()) => see("/incidents"),
        Err(err) => failed(&v, err),
    }
}

// ------------------------------------------------------------------------ search

/// A facet: (field, sample size, its top values as (value, count, narrowing link)).
type Facet = (String, usize, Vec<(String, usize, String)>);

struct HitRow {
    id: String,
    time: String,
    severity: String,
    body: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "search.html")]
struct SearchPage {
    nav: Option<Nav>,
    q: String,
    from: String,
    to: String,
    ranges: Vec<(String, String)>,
    fields: Vec<String>,
    error: Option<String>,
    chart: String,
    chart_left: u32,
    chart_right: u32,
    chart_width: u32,
    from_ms: i64,
    to_ms: i64,
    total: u64,
    took_ms: u128,
    hits: Vec<HitRow>,
    next: Option<String>,
    tail: bool,
    tail_on: String,
    tail_off: String,
    facet_fields: String,
    facets: Vec<Facet>,
    facet_hint: String,
}

#[derive(Deserialize, Default)]
struct SearchForm {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    tail: Option<String>,
    facets: Option<String>,
}

/// Fields suggested for facets (none are counted unless asked for: counting needs a
/// second, larger search).
const SUGGESTED_FACETS: &str =
    "attributes.entity.actor, attributes.entity.namespace, resource.service.name";
/// Facets are counted over the latest matches, up to this many.
const FACET_SAMPLE: usize = 1000;

/// A record's value of a facet field (`attributes.<key>`, `resource.<key>`,
/// `severity_text`, `scope_name`).
fn facet_value(r: &model::LogRecord, field: &str) -> Option<String> {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    if let Some(key) = field.strip_prefix("attributes.") {
        return r.attributes.get(key).map(text);
    }
    if let Some(key) = field.strip_prefix("resource.") {
        return r.resource.get(key).map(text);
    }
    match field {
        "severity_text" => Some(r.severity_text.clone()),
        "scope_name" => Some(r.scope_name.clone()),
        _ => None,
    }
}

const FIELDS: &[&str] = &[
    "body:",
    "severity_text:",
    "severity_number:>=13",
    "scope_name:",
    "trace_id:",
    "attributes.entity.actor:",
    "attributes.entity.namespace:",
    "attributes.entity.pod:",
    "attributes.entity.client_ip:",
    "attributes.k8s.audit.verb:",
    "attributes.k8s.object.resource:",
    "attributes.k8s.response.code:",
    "resource.service.name:",
];

fn search_url(q: &str, from: &str, to: &str) -> String {
    format!(
        "/search?q={}&from={}&to={}",
        url_encode(q),
        url_encode(from),
        url_encode(to)
    )
}

async fn search_page(
    State(state): State<AppState>,
    v: Viewer,
    Query(form): Query<SearchForm>,
) -> Response {
    let q = form.q.clone().unwrap_or_default();
    let from = form.from.clone().unwrap_or_else(|| "now-1h".into());
    let to = form.to.clone().unwrap_or_else(|| "now".into());
    let now = Utc::now();
    let ranges = ["15m", "1h", "24h", "7d"]
        .iter()
        .map(|r| {
            (
                format!("last {r}"),
                search_url(&q, &format!("now-{r}"), "now"),
            )
        })
        .collect();
    let mut page = SearchPage {
        nav: nav(&v),
        q: q.clone(),
        from: from.clone(),
        to: to.clone(),
        ranges,
        fields: FIELDS.iter().map(|s| s.to_string()).collect(),
        error: None,
        chart: String::new(),
        chart_left: chart::LEFT,
        chart_right: chart::RIGHT,
        chart_width: chart::WIDTH,
        from_ms: 0,
        to_ms: 0,
        total: 0,
        took_ms: 0,
        hits: Vec::new(),
        next: None,
        tail: form.tail.as_deref() == Some("1"),
        tail_on: format!("{}&tail=1", search_url(&q, &from, &to)),
        tail_off: search_url(&q, &from, &to),
        facet_fields: form.facets.clone().unwrap_or_default(),
        facets: Vec::new(),
        facet_hint: SUGGESTED_FACETS.to_string(),
    };
    let facet_fields: Vec<String> = page
        .facet_fields
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .take(8)
        .collect();
    let request = SearchParams {
        q: form.q.clone(),
        from: Some(from.clone()),
        to: Some(to.clone()),
        limit: Some("100".into()),
        cursor: form.cursor.clone(),
        sort: None,
    }
    .resolve(v.principal.tenant_id, now);
    let histogram = HistogramParams {
        q: form.q.clone(),
        from: Some(from.clone()),
        to: Some(to.clone()),
        buckets: Some("60".into()),
    }
    .resolve(v.principal.tenant_id, now);
    let (request, histogram) = match (request, histogram) {
        (Ok(r), Ok(h)) => (r, h),
        (Err(e), _) | (_, Err(e)) => {
            page.error = Some(ApiError::from(e).message);
            let mut response = page.into_response();
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let sample = query::search::SearchRequest {
        limit: FACET_SAMPLE,
        cursor: None,
        ..request.clone()
    };
    let sampling = async {
        if facet_fields.is_empty() {
            Ok(None)
        } else {
            state.search.run(&sample).await.map(Some)
        }
    };
    let (result, counts, sampled) = match tokio::join!(
        state.search.run(&request),
        state.search.histogram(&histogram),
        sampling
    ) {
        (Ok(r), Ok(h), Ok(s)) => (r, h, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(&v, ApiError::from(e)),
    };
    let sampled = sampled.map(|s| s.events).unwrap_or_default();
    for field in &facet_fields {
        let mut tally: HashMap<String, usize> = HashMap::new();
        for e in &sampled {
            if let Some(value) = facet_value(&e.record, field) {
                *tally.entry(value).or_default() += 1;
            }
        }
        let mut top: Vec<(String, usize)> = tally.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let values = top
            .into_iter()
            .take(5)
            .map(|(value, n)| {
                let clause = format!(
                    "{field}:\"{}\"",
                    value.replace('\\', "\\\\").replace('"', "\\\"")
                );
                let narrowed = if q.trim().is_empty() {
                    clause
                } else {
                    format!("({q}) AND {clause}")
                };
                let shown: String = value.chars().take(80).collect();
                (shown, n, search_url(&narrowed, &from, &to))
            })
            .collect();
        page.facets.push((field.clone(), sampled.len(), values));
    }
    page.from_ms = histogram.range.from.timestamp_millis();
    page.to_ms = histogram.range.to.timestamp_millis();
    page.chart = chart::histogram(
        histogram.range.from,
        histogram.range.to,
        &counts.buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
    );
    page.total = result.total;
    page.took_ms = result.took.as_millis();
    let mut seen_keys = std::collections::BTreeSet::new();
    for e in &result.events {
        for key in e.record.attributes.keys().take(50) {
            if seen_keys.len() < 200 {
                seen_keys.insert(format!("attributes.{key}:"));
            }
        }
    }
    page.fields.extend(seen_keys);
    page.next = result.next_cursor.map(|c| {
        format!(
            "{}&cursor={}",
            search_url(&q, &from, &to),
            url_encode(&c.encode())
        )
    });
    page.hits = result
        .events
        .into_iter()
        .map(|e| {
            let hit = crate::wire::Hit::from(e);
            HitRow {
                id: hit.id.clone(),
                time: hit.time.clone(),
                severity: hit.severity_text.clone(),
                body: hit.body.chars().take(400).collect(),
                detail: serde_json::to_string_pretty(&hit).unwrap_or_default(),
            }
        })
        .collect();
    page.into_response()
}

// ------------------------------------------------------------------------- event

#[derive(Template, WebTemplate)]
#[template(path = "event.html")]
struct EventPage {
    nav: Option<Nav>,
    id: String,
    time: String,
    observed: String,
    severity: String,
    scope: String,
    trace_id: Option<String>,
    body: String,
    attributes: String,
    resource: String,
    around: String,
    csrf: String,
    incidents: Vec<(String, String)>,
}

/// A body that is itself JSON (a Kubernetes audit event) is shown pretty-printed.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

async fn event_page(State(state): State<AppState>, v: Viewer, Path(id): Path<String>) -> Response {
    let seq = match crate::api::event_id(&id) {
        Ok(s) => s,
        Err(err) => return failed(&v, err),
    };
    let found = match state
        .engine
        .logs()
        .fetch_by_seqs(v.principal.tenant_id, &[seq], None)
        .await
    {
        Ok(f) => f,
        Err(err) => return failed(&v, err.into()),
    };
    let Some(event) = found.into_iter().next() else {
        return message(
            Some(&v),
            StatusCode::NOT_FOUND,
            "No such event",
            format!("There is no event {seq} in this tenant."),
        );
    };
    let r = &event.record;
    let around = search_url(
        "",
        &(r.time - chrono::Duration::minutes(5)).to_rfc3339(),
        &(r.time + chrono::Duration::minutes(5)).to_rfc3339(),
    );
    let open = state
        .incidents
        .list(
            v.principal.tenant_id,
            &storage::incidents::IncidentFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.state != "resolved")
        .map(|i| (i.id.to_string(), i.title))
        .collect();
    EventPage {
        nav: nav(&v),
        id: seq.to_string(),
        time: crate::wire::rfc3339(&r.time),
        observed: crate::wire::rfc3339(&r.observed_time),
        severity: format!("{} ({})", r.severity_text, r.severity_number),
        scope: format!("{} {}", r.scope_name, r.scope_version),
        trace_id: r.trace_id.clone(),
        body: pretty(&r.body),
        attributes: serde_json::to_string_pretty(&r.attributes).unwrap_or_default(),
        resource: serde_json::to_string_pretty(&*r.resource).unwrap_or_default(),
        around,
        csrf: v.csrf.clone(),
        incidents: if v.can(Permission::Respond) {
            open
        } else {
            Vec::new()
        },
    }
    .into_response()
}

#[derive(Deserialize)]
struct PinForm {
    csrf: String,
    incident: Uuid,
}

async fn pin_event(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<PinForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Respond) {
        return refused;
    }
    let seq = match crate::api::event_id(&id) {
        Ok(s) => s,
        Err(err) => return failed(&v, err),
    };
    let found = state
        .engine
        .logs()
        .fetch_by_seqs(v.principal.tenant_id, &[seq], None)
        .await
        .unwrap_or_default();
    let Some(event) = found.first() else {
        return message(
            Some(&v),
            StatusCode::NOT_FOUND,
            "No such event",
            String::new(),
        );
    };
    let payload = json!({"event_id": seq.to_string(), "comment": null,
        "event_time": event.record.time, "body": event.record.body});
    match state
        .incidents
        .add_activity(
            v.principal.tenant_id,
            form.incident,
            "pin",
            payload,
            &v.principal.actor(),
        )
        .await
    {
        Ok(_) => see(&format!("/incidents/{}", form.incident)),
        Err(err) => failed(&v, err.into()),
    }
}

// --------------------------------------------------------------------- incidents

struct IncidentRowView {
    id: String,
    opened: String,
    severity: String,
    state: String,
    title: String,
    alerts: usize,
    assignee: String,
    entities: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    nav: Option<Nav>,
    states: Vec<(String, bool)>,
    severities: Vec<(String, bool)>,
    assignee: String,
    entity: String,
    error: Option<String>,
    incidents: Vec<IncidentRowView>,
}

#[derive(Deserialize, Default)]
struct IncidentFilterForm {
    state: Option<String>,
    severity: Option<String>,
    assignee: Option<String>,
    entity: Option<String>,
}

fn options(all: &[&str], chosen: Option<&str>) -> Vec<(String, bool)> {
    std::iter::once("")
        .chain(all.iter().copied())
        .map(|o| (o.to_string(), chosen.unwrap_or("") == o))
        .collect()
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn entity_chips(entities: &[Entity]) -> Vec<(String, String)> {
    entities
        .iter()
        .map(|e| {
            let text = format!("{}:{}", e.kind, e.value);
            let link = url_encode(&text);
            (text, link)
        })
        .collect()
}

async fn incidents_page(
    State(state): State<AppState>,
    v: Viewer,
    Query(f): Query<IncidentFilterForm>,
) -> Response {
    let states = ["triggered", "acknowledged", "resolved"];
    let severities = ["critical", "high", "medium", "low", "info"];
    let state_f = non_empty(&f.state).filter(|s| states.contains(&s.as_str()));
    let severity_f = non_empty(&f.severity).filter(|s| severities.contains(&s.as_str()));
    let mut page = IncidentsPage {
        nav: nav(&v),
        states: options(&states, state_f.as_deref()),
        severities: options(&severities, severity_f.as_deref()),
        assignee: f.assignee.clone().unwrap_or_default(),
        entity: f.entity.clone().unwrap_or_default(),
        error: None,
        incidents: Vec::new(),
    };
    let entity = match non_empty(&f.entity).map(|e| Entity::parse(&e)).transpose() {
        Ok(e) => e,
        Err(err) => {
            page.error = Some(err);
            return page.into_response();
        }
    };
    let filter = storage::incidents::IncidentFilter {
        state: state_f,
        severity: severity_f,
        assignee: non_empty(&f.assignee),
        entity,
        from: None,
        to: None,
        limit: 200,
    };
    let rows = match state.incidents.list(v.principal.tenant_id, &filter).await {
        Ok(r) => r,
        Err(err) => return failed(&v, err.into()),
    };
    page.incidents = rows
        .into_iter()
        .map(|i| IncidentRowView {
            id: i.id.to_string(),
            opened: time(&i.opened_at),
            severity: i.severity,
            state: i.state,
            title: i.title,
            alerts: i.alert_ids.len(),
            assignee: i.assignee.unwrap_or_default(),
            entities: entity_chips(&i.entities),
        })
        .collect();
    page.into_response()
}

struct EntryView {
    time: String,
    kind: String,
    actor: String,
    text: String,
    event: Option<String>,
    note_html: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "incident.html")]
struct IncidentPage {
    nav: Option<Nav>,
    id: String,
    title: String,
    severity: String,
    state: String,
    opened: String,
    assignee: Option<String>,
    merged_into: Option<String>,
    can_act: bool,
    csrf: String,
    users: Vec<(String, bool)>,
    kinds: String,
    entity: String,
    entries: Vec<EntryView>,
    next: Option<String>,
    entities: Vec<(String, String)>,
    alerts: Vec<(String, String)>,
    window_from: String,
    window_to: String,
}

#[derive(Deserialize, Default)]
struct TimelineForm {
    kinds: Option<String>,
    entity: Option<String>,
    cursor: Option<String>,
}

fn entry_text(e: &crate::wire::TimelineEntry) -> String {
    let p = &e.payload;
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    match e.kind.as_str() {
        "event" => s("body").chars().take(300).collect(),
        "note" => String::new(),
        "notification" => format!(
            "{} to {} ({}): {}",
            s("event"),
            s("channel"),
            s("channel_type"),
            p["status"]
                .as_i64()
                .map_or_else(|| s("error"), |c| format!("HTTP {c}"))
        ),
        "state_change" => match p["action"].as_str() {
            Some(a) => a.to_string(),
            None => format!("{} → {} ({})", s("from"), s("to"), s("reason")),
        },
        "assignment" => format!("assigned to {}", p["to"].as_str().unwrap_or("nobody")),
        "pin" => format!("pinned event {} {}", s("event_id"), s("comment")),
        _ => format!(
            "{} {} → {}: {}",
            s("rule_id"),
            p["from"].as_str().unwrap_or("-"),
            s("to"),
            s("summary")
        ),
    }
}

async fn incident_page(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<Uuid>,
    Query(f): Query<TimelineForm>,
) -> Response {
    let tenant = v.principal.tenant_id;
    let incident = match state.incidents.get(tenant, id).await {
        Ok(i) => i,
        Err(err) => return failed(&v, err.into()),
    };
    let kinds = non_empty(&f.kinds).map(|k| {
        k.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| timeline::KINDS.contains(&s.as_str()))
            .collect()
    });
    let entity = match non_empty(&f.entity).map(|e| Entity::parse(&e)).transpose() {
        Ok(e) => e,
        Err(err) => return failed(&v, crate::rules::invalid(err)),
    };
    let after = match f.cursor.as_deref().map(timeline::Key::decode).transpose() {
        Ok(a) => a,
        Err(err) => return failed(&v, err),
    };
    let (from, to) = timeline::window(&incident);
    let query = timeline::Query {
        from,
        to,
        kinds,
        entity,
        after,
        limit: 200,
    };
    let (entries, next) = match timeline::read(&state, tenant, &incident, &query).await {
        Ok(r) => r,
        Err(err) => return failed(&v, err),
    };
    let users = state
        .access
        .list_tenant_users(tenant)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let chosen = incident.assignee.as_deref() == Some(u.username.as_str());
            (u.username, chosen)
        })
        .collect();
    let mut alerts = Vec::new();
    for a in incident.alert_ids.iter().take(100) {
        if let Ok((row, _)) = state.engine.store().get(tenant, *a).await {
            let summary = row.annotations["summary"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            alerts.push((
                a.to_string(),
                format!("{} {}: {}", row.severity, row.rule_id, summary),
            ));
        }
    }
    let base = format!(
        "/incidents/{id}?kinds={}&entity={}",
        url_encode(f.kinds.as_deref().unwrap_or("")),
        url_encode(f.entity.as_deref().unwrap_or(""))
    );
    IncidentPage {
        nav: nav(&v),
        id: id.to_string(),
        title: incident.title.clone(),
        severity: incident.severity.clone(),
        state: incident.state.clone(),
        opened: time(&incident.opened_at),
        assignee: incident.assignee.clone(),
        merged_into: incident.merged_into.map(|m| m.to_string()),
        can_act: v.can(Permission::Respond),
        csrf: v.csrf.clone(),
        users,
        kinds: f.kinds.clone().unwrap_or_default(),
        entity: f.entity.clone().unwrap_or_default(),
        entries: entries
            .into_iter()
            .map(|(_, e)| EntryView {
                time: crate::wire::rfc3339(&e.time),
                text: entry_text(&e),
                event: (e.kind == "event")
                    .then(|| e.payload["id"].as_str().map(str::to_string))
                    .flatten()
                    .or_else(|| e.payload["event_id"].as_str().map(str::to_string)),
                note_html: (e.kind == "note")
                    .then(|| e.payload["html"].as_str().map(str::to_string))
                    .flatten(),
                kind: e.kind,
                actor: e.actor,
            })
            .collect(),
        next: next.map(|k| format!("{base}&cursor={}", url_encode(&k.encode()))),
        entities: incident
            .entities
            .iter()
            .map(|e| {
                let field = if e.kind == "trace_id" {
                    "trace_id".to_string()
                } else {
                    format!("attributes.{}", e.attribute())
                };
                let q = format!(
                    "{field}:\"{}\"",
                    e.value.replace('\\', "\\\\").replace('"', "\\\"")
                );
                (format!("{}: {}", e.kind, e.value), url_encode(&q))
            })
            .collect(),
        alerts,
        window_from: url_encode(&from.to_rfc3339()),
        window_to: url_encode(&to.to_rfc3339()),
    }
    .into_response()
}

/// Check a form (CSRF token, origin) and the permission it needs: the page to show
/// instead when either fails.
fn may(v: &Viewer, headers: &HeaderMap, csrf: &str, needs: Permission) -> Option<Response> {
    if !check_form(v, headers, csrf) {
        return Some(bad_form(v));
    }
    if !v.can(needs) {
        return Some(forbidden(v));
    }
    None
}

/// [`may`] for a responder's action.
fn may_act(v: &Viewer, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    may(v, headers, csrf, Permission::Respond)
}

/// After an action on incident `id`: audit it and show the incident, or say why not.
async fn acted<T>(
    state: &AppState,
    v: &Viewer,
    action: &str,
    id: Uuid,
    result: Result<T, storage::StorageError>,
) -> Response {
    match result {
        Ok(_) => {
            crate::incidents::audit(state, &v.principal, None, action, id, None).await;
            see(&format!("/incidents/{id}"))
        }
        Err(err) => failed(v, err.into()),
    }
}

#[derive(Deserialize)]
struct ActForm {
    csrf: String,
    action: String,
}

async fn incident_act(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<ActForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    let (tenant, actor) = (v.principal.tenant_id, v.principal.actor());
    let done = match form.action.as_str() {
        "acknowledge" => state.incidents.acknowledge(tenant, id, &actor).await,
        "resolve" => state.incidents.resolve(tenant, id, &actor).await,
        "reopen" => state.incidents.reopen(tenant, id, &actor).await,
        other => {
            return failed(
                &v,
                crate::rules::invalid(format!("action: {other:?} is not an action")),
            );
        }
    };
    acted(&state, &v, &format!("incident.{}", form.action), id, done).await
}

#[derive(Deserialize)]
struct NoteForm {
    csrf: String,
    text: String,
}

async fn incident_note(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    if form.text.trim().is_empty() || form.text.len() > storage::incidents::MAX_NOTE_BYTES {
        return failed(
            &v,
            crate::rules::invalid("text: 1 to 16384 bytes of Markdown"),
        );
    }
    let payload = crate::incidents::note_payload(&form.text);
    let result = state
        .incidents
        .add_activity(
            v.principal.tenant_id,
            id,
            "note",
            payload,
            &v.principal.actor(),
        )
        .await;
    acted(&state, &v, "incident.note", id, result).await
}

#[derive(Deserialize)]
struct AssignForm {
    csrf: String,
    assignee: String,
}

async fn incident_assign(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<AssignForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    let assignee = Some(form.assignee.trim()).filter(|a| !a.is_empty());
    if let Some(name) = assignee {
        let users = state
            .access
            .list_tenant_users(v.principal.tenant_id)
            .await
            .unwrap_or_default();
        if !users.iter().any(|u| u.username == name) {
            return failed(
                &v,
                crate::rules::invalid("assignee: no such user in this tenant"),
            );
        }
    }
    let result = state
        .incidents
        .assign(v.principal.tenant_id, id, assignee, &v.principal.actor())
        .await;
    acted(&state, &v, "incident.assign", id, result).await
}

#[derive(Deserialize)]
struct MergeForm {
    csrf: String,
    other: String,
}

async fn incident_merge(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<MergeForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    let Ok(other) = form.other.trim().parse::<Uuid>() else {
        return failed(&v, crate::rules::invalid("other: not an incident id"));
    };
    let result = state
        .incidents
        .merge(v.principal.tenant_id, id, &[other], &v.principal.actor())
        .await;
    acted(&state, &v, "incident.merge", id, result).await
}

// ------------------------------------------------------------------------ alerts

struct AlertRowView {
    id: String,
    started: String,
    severity: String,
    state: String,
    rule: String,
    summary: String,
    events: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Option<Nav>,
    states: Vec<(String, bool)>,
    alerts: Vec<AlertRowView>,
}

#[derive(Deserialize, Default)]
struct AlertFilterForm {
    state: Option<String>,
    rule: Option<String>,
}

async fn alerts_page(
    State(state): State<AppState>,
    v: Viewer,
    Query(f): Query<AlertFilterForm>,
) -> Response {
    let states = ["pending", "firing", "resolved"];
    let chosen = non_empty(&f.state).filter(|s| states.contains(&s.as_str()));
    let filter = storage::alerts::AlertFilter {
        state: chosen.clone(),
        rule: non_empty(&f.rule),
        limit: 300,
        ..Default::default()
    };
    let rows = match state
        .engine
        .store()
        .list(v.principal.tenant_id, &filter)
        .await
    {
        Ok(r) => r,
        Err(err) => return failed(&v, err.into()),
    };
    AlertsPage {
        nav: nav(&v),
        states: options(&states, chosen.as_deref()),
        alerts: rows
            .into_iter()
            .map(|a| AlertRowView {
                id: a.id.to_string(),
                started: time(&a.started_at),
                severity: a.severity.clone(),
                state: a.state.clone(),
                rule: a.rule_id.clone(),
                summary: a.annotations["summary"]
                    .as_str()
                    .unwrap_or(&a.rule_id)
                    .to_string(),
                events: a.event_count,
            })
            .collect(),
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "alert.html")]
struct AlertPage {
    nav: Option<Nav>,
    id: String,
    rule: String,
    summary: String,
    severity: String,
    state: String,
    started: String,
    incident: Option<String>,
    labels: String,
    count: i64,
    evidence: Vec<(String, String)>,
    can_act: bool,
    csrf: String,
    transitions: Vec<String>,
}

async fn alert_page(State(state): State<AppState>, v: Viewer, Path(id): Path<Uuid>) -> Response {
    let tenant = v.principal.tenant_id;
    let (row, transitions) = match state.engine.store().get(tenant, id).await {
        Ok(r) => r,
        Err(err) => return failed(&v, err.into()),
    };
    let events = state
        .engine
        .logs()
        .fetch_by_seqs(
            tenant,
            &row.event_ids.iter().copied().take(20).collect::<Vec<_>>(),
            None,
        )
        .await
        .unwrap_or_default();
    let bodies: HashMap<i64, String> = events
        .into_iter()
        .map(|e| (e.seq, e.record.body.chars().take(200).collect()))
        .collect();
    let incident = state
        .incidents
        .for_alert(tenant, id)
        .await
        .ok()
        .flatten()
        .map(|i| i.to_string());
    AlertPage {
        nav: nav(&v),
        id: id.to_string(),
        rule: row.rule_id.clone(),
        summary: row.annotations["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        severity: row.severity.clone(),
        state: row.state.clone(),
        started: time(&row.started_at),
        incident,
        labels: serde_json::to_string_pretty(&row.labels).unwrap_or_default(),
        count: row.event_count,
        evidence: row
            .event_ids
            .iter()
            .take(20)
            .map(|s| (s.to_string(), bodies.get(s).cloned().unwrap_or_default()))
            .collect(),
        can_act: v.can(Permission::Respond),
        csrf: v.csrf.clone(),
        transitions: transitions
            .iter()
            .map(|t| {
                format!(
                    "{} {} → {}{}",
                    time(&t.at),
                    t.from.as_deref().unwrap_or("-"),
                    t.to,
                    if t.silenced { " (silenced)" } else { "" }
                )
            })
            .collect(),
    }
    .into_response()
}

#[derive(Deserialize)]
struct SilenceForm {
    csrf: String,
    duration: String,
    comment: String,
}

async fn alert_silence(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Form(form): Form<SilenceForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    let hours = match form.duration.as_str() {
        "1h" => 1,
        "4h" => 4,
        "24h" => 24,
        _ => return failed(&v, crate::rules::invalid("duration: 1h, 4h or 24h")),
    };
    if form.comment.trim().is_empty() || form.comment.len() > 1024 {
        return failed(&v, crate::rules::invalid("comment: 1 to 1024 bytes"));
    }
    let tenant = v.principal.tenant_id;
    let (row, _) = match state.engine.store().get(tenant, id).await {
        Ok(r) => r,
        Err(err) => return failed(&v, err.into()),
    };
    // The alert's identity: its rule and group labels, matched exactly.
    let labels: BTreeMap<String, String> =
        serde_json::from_value(row.labels.clone()).unwrap_or_default();
    let matchers: Vec<Value> = labels
        .iter()
        .filter(|(k, _)| *k == "rule" || k.starts_with("attributes.") || k.starts_with("resource."))
        .map(|(k, val)| json!({"label": k, "op": "=", "value": val}))
        .collect();
    let matchers = Value::Array(matchers);
    let now = Utc::now();
    let actor = v.principal.actor();
    let comment = crate::incidents::no_nul(form.comment.trim());
    let spec = storage::alerts::NewSilence {
        matchers: &matchers,
        starts_at: now,
        ends_at: now + chrono::Duration::hours(hours),
        recurrence: None,
        created_by: &actor,
        comment: &comment,
    };
    match state.engine.store().create_silence(tenant, &spec).await {
        Ok(_) => {
            let _ = state.engine.refresh_silences().await;
            crate::audit::record(
                &state,
                model::audit::AuditEvent::new(
                    actor,
                    "silence.create",
                    format!("alert:{id}"),
                    model::audit::Outcome::Success,
                )
                .tenant(tenant),
            )
            .await;
            see("/silences")
        }
        Err(err) => failed(&v, err.into()),
    }
}

// ------------------------------------------------------------- table-shaped pages

struct Cell {
    text: String,
    href: Option<String>,
    /// A button posting the page's CSRF token to this path.
    post: Option<String>,
}

fn cell(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        href: None,
        post: None,
    }
}

fn link(text: impl Into<String>, href: String) -> Cell {
    Cell {
        text: text.into(),
        href: Some(href),
        post: None,
    }
}

fn button(text: impl Into<String>, action: String) -> Cell {
    Cell {
        text: text.into(),
        href: None,
        post: Some(action),
    }
}

struct Section {
    heading: String,
    chart: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

fn section(heading: &str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Section {
    Section {
        heading: heading.to_string(),
        chart: None,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "table.html")]
struct TablePage {
    nav: Option<Nav>,
    heading: String,
    sections: Vec<Section>,
    error: Option<String>,
    new_token: Option<String>,
    token_form: bool,
    csrf: String,
}

fn table(v: &Viewer, heading: &str, sections: Vec<Section>) -> Response {
    TablePage {
        nav: nav(v),
        heading: heading.to_string(),
        sections,
        error: None,
        new_token: None,
        token_form: false,
        csrf: v.csrf.clone(),
    }
    .into_response()
}

async fn rules_page(State(state): State<AppState>, v: Viewer) -> Response {
    let tenant = v.principal.tenant_id;
    let recent = state
        .engine
        .store()
        .list(
            tenant,
            &storage::alerts::AlertFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_default();
    let mut fired: HashMap<String, (usize, DateTime<Utc>)> = HashMap::new();
    for a in &recent {
        let e = fired.entry(a.rule_id.clone()).or_insert((0, a.started_at));
        e.0 += 1;
        e.1 = e.1.max(a.started_at);
    }
    let rules = state.engine.rules();
    let own = rules.tenants.get(&tenant).cloned().unwrap_or_default();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut all: Vec<(String, std::sync::Arc<alerting::rule::Rule>)> = rules
        .file
        .iter()
        .filter(|f| !own.iter().any(|o| o.id() == f.id()))
        .map(|r| ("file".to_string(), r.clone()))
        .collect();
    all.extend(own.iter().map(|r| ("api".to_string(), r.clone())));
    all.sort_by(|a, b| a.1.id().cmp(b.1.id()));
    for (source, r) in all {
        let (count, last) = fired
            .get(r.id())
            .map(|(n, t)| (n.to_string(), time(t)))
            .unwrap_or_else(|| ("0".into(), "-".into()));
        rows.push(vec![
            link(r.id().to_string(), format!("/rules/{}", url_encode(r.id()))),
            cell(r.doc.title.clone()),
            cell(r.doc.severity.as_str()),
            cell(format!("{:?}", r.doc.kind).to_lowercase()),
            cell(if r.doc.enabled { "enabled" } else { "disabled" }),
            cell(source),
            cell(last),
            link(count, format!("/alerts?rule={}", url_encode(r.id()))),
        ]);
    }
    let mut sections = Vec::new();
    if v.can(Permission::Admin) {
        sections.push(section(
            "New",
            &["rule"],
            vec![vec![link("Write a new rule", "/rules/new".to_string())]],
        ));
    }
    sections.push(section(
        "Rules",
        &[
            "id",
            "title",
            "severity",
            "kind",
            "state",
            "source",
            "last fired",
            "alerts (last 1000)",
        ],
        rows,
    ));
    table(&v, "Rules", sections)
}

#[derive(Template, WebTemplate)]
#[template(path = "silences.html")]
struct SilencesPage {
    nav: Option<Nav>,
    error: Option<String>,
    can_act: bool,
    csrf: String,
    silences: Vec<(String, String, String, String, String, String)>,
}

async fn silences_view(state: &AppState, v: &Viewer, error: Option<String>) -> Response {
    let rows = match state
        .engine
        .store()
        .silences(v.principal.tenant_id, true)
        .await
    {
        Ok(r) => r,
        Err(err) => return failed(v, err.into()),
    };
    let now = Utc::now();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = SilencesPage {
        nav: nav(v),
        error,
        can_act: v.can(Permission::Respond),
        csrf: v.csrf.clone(),
        silences: rows
            .into_iter()
            .map(|s| {
                let matchers: Vec<alerting::silence::Matcher> =
                    serde_json::from_value(s.matchers.clone()).unwrap_or_default();
                let text = matchers
                    .iter()
                    .map(|m| {
                        let op = serde_json::to_value(m.op)
                            .ok()
                            .and_then(|o| o.as_str().map(str::to_string))
                            .unwrap_or_default();
                        format!("{}{op}{}", m.label, m.value)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    text,
                    time(&s.starts_at),
                    time(&s.ends_at),
                    if s.ends_at > now { "active" } else { "expired" }.to_string(),
                    s.created_by,
                    s.comment,
                )
            })
            .collect(),
    }
    .into_response();
    *response.status_mut() = status;
    response
}

async fn silences_page(State(state): State<AppState>, v: Viewer) -> Response {
    silences_view(&state, &v, None).await
}

/// `label=value, label=~regex, ...` as matchers (the operator is the first of
/// `!~`, `=~`, `!=`, `=` in each).
fn parse_matchers(text: &str) -> Result<Vec<alerting::silence::Matcher>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (at, op) = ["!~", "=~", "!=", "="]
            .iter()
            .filter_map(|op| part.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| format!("matchers: {part:?} has no =, !=, =~ or !~"))?;
        let m: alerting::silence::Matcher = serde_json::from_value(json!({
            "label": part[..at].trim(), "op": op, "value": part[at + op.len()..].trim(),
        }))
        .map_err(|e| format!("matchers: {e}"))?;
        m.validate().map_err(|e| format!("matchers: {e}"))?;
        out.push(m);
    }
    if out.is_empty() {
        return Err("matchers: at least one matcher is required".into());
    }
    if out.len() > 32 {
        return Err("matchers: at most 32".into());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct NewSilenceForm {
    csrf: String,
    matchers: String,
    duration: String,
    comment: String,
}

async fn create_silence(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Form(form): Form<NewSilenceForm>,
) -> Response {
    if let Some(refused) = may_act(&v, &headers, &form.csrf) {
        return refused;
    }
    let matchers = match parse_matchers(&form.matchers) {
        Ok(m) => m,
        Err(e) => return silences_view(&state, &v, Some(e)).await,
    };
    let hours = match form.duration.as_str() {
        "1h" => 1,
        "4h" => 4,
        "24h" => 24,
        "7d" => 168,
        _ => return silences_view(&state, &v, Some("duration: 1h, 4h, 24h or 7d".into())).await,
    };
    let comment = crate::incidents::no_nul(form.comment.trim());
    if comment.is_empty() || comment.len() > 1024 {
        return silences_view(&state, &v, Some("comment: 1 to 1024 bytes".into())).await;
    }
    let matchers = serde_json::to_value(&matchers).unwrap_or_default();
    let now = Utc::now();
    let actor = v.principal.actor();
    let spec = storage::alerts::NewSilence {
        matchers: &matchers,
        starts_at: now,
        ends_at: now + chrono::Duration::hours(hours),
        recurrence: None,
        created_by: &actor,
        comment: &comment,
    };
    match state
        .engine
        .store()
        .create_silence(v.principal.tenant_id, &spec)
        .await
    {
        Ok(silence) => {
            let _ = state.engine.refresh_silences().await;
            crate::audit::record(
                &state,
                model::audit::AuditEvent::new(
                    actor,
                    "silence.create",
                    format!("silence:{}", silence.id),
                    model::audit::Outcome::Success,
                )
                .tenant(v.principal.tenant_id)
                .details(json!({"matchers": matchers})),
            )
            .await;
            see("/silences")
        }
        Err(err) => failed(&v, err.into()),
    }
}

struct ChannelView {
    id: String,
    name: String,
    kind: String,
    target: String,
    updated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "channels.html")]
struct ChannelsPage {
    nav: Option<Nav>,
    error: Option<String>,
    tested: Option<String>,
    csrf: String,
    channels: Vec<ChannelView>,
    dead: Vec<(String, String, i32, String)>,
}

async fn channels_view(
    state: &AppState,
    v: &Viewer,
    error: Option<String>,
    tested: Option<String>,
) -> Response {
    if !v.can(Permission::Admin) {
        return forbidden(v);
    }
    let rows = match state.notifications.channels(v.principal.tenant_id).await {
        Ok(r) => r,
        Err(err) => return failed(v, err.into()),
    };
    let dead = state
        .notifications
        .list(v.principal.tenant_id, Some("dead"), None, 50)
        .await
        .unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = ChannelsPage {
        nav: nav(v),
        error,
        tested,
        csrf: v.csrf.clone(),
        channels: rows
            .into_iter()
            .map(|c| ChannelView {
                id: c.id.to_string(),
                name: c.name,
                kind: c.kind,
                target: c.target,
                updated: time(&c.updated_at),
            })
            .collect(),
        dead: dead
            .into_iter()
            .map(|n| {
                (
                    n.id.to_string(),
                    n.event,
                    n.attempts,
                    n.last_error.unwrap_or_default(),
                )
            })
            .collect(),
    }
    .into_response();
    *response.status_mut() = status;
    response
}

async fn channels_page(State(state): State<AppState>, v: Viewer) -> Response {
    channels_view(&state, &v, None, None).await
}

#[derive(Deserialize)]
struct ChannelForm {
    csrf: String,
    name: String,
    kind: String,
    url: Option<String>,
    routing_key: Option<String>,
    secret: Option<String>,
}

async fn create_channel(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Form(form): Form<ChannelForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let req = crate::channels::ChannelRequest {
        name: form.name.trim().to_string(),
        kind: form.kind,
        url: non_empty(&form.url),
        routing_key: non_empty(&form.routing_key),
        secret: non_empty(&form.secret),
    };
    match crate::channels::create(&state, &v.principal, req, source).await {
        Ok(_) => see("/channels"),
        Err(err)
            if !StatusCode::from_u16(err.kind.http_status()).is_ok_and(|s| s.is_server_error()) =>
        {
            channels_view(&state, &v, Some(err.message), None).await
        }
        Err(err) => failed(&v, err),
    }
}

async fn test_channel(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    match crate::channels::run_test(&state, &v.principal, id, source).await {
        Ok(answer) => {
            let text = format!(
                "Test {}: {} in {} ms{}",
                if answer.delivered {
                    "delivered"
                } else {
                    "not delivered"
                },
                answer
                    .status
                    .map_or_else(|| "no answer".to_string(), |s| format!("HTTP {s}")),
                answer.latency_ms,
                if answer.response.is_empty() {
                    String::new()
                } else {
                    format!(
                        " — the receiver said: {}",
                        answer.response.chars().take(300).collect::<String>()
                    )
                }
            );
            channels_view(&state, &v, None, Some(text)).await
        }
        Err(err) => failed(&v, err),
    }
}

async fn kubernetes_page(State(state): State<AppState>, v: Viewer) -> Response {
    use k8saudit::attr;
    let tenant = v.principal.tenant_id;
    let now = Utc::now();
    let scope = format!("scope_name:\"{}\"", attr::AUDIT_SCOPE);
    let activity = HistogramParams {
        q: Some(scope.clone()),
        from: Some("now-24h".into()),
        to: Some("now".into()),
        buckets: Some("48".into()),
    }
    .resolve(tenant, now);
    let mut sections = Vec::new();
    if let Ok(h) = activity
        && let Ok(counts) = state.search.histogram(&h).await
    {
        let mut s = section(
            &format!("Audit activity, last 24 hours ({} requests)", counts.total),
            &[],
            Vec::new(),
        );
        s.chart = Some(chart::histogram(
            h.range.from,
            h.range.to,
            &counts.buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        ));
        sections.push(s);
    }
    let queries = [
        (
            "Denied requests",
            format!(
                "{scope} AND attributes.{}:forbid",
                attr::AUTHORIZATION_DECISION
            ),
        ),
        (
            "Failed authentication",
            format!("{scope} AND attributes.{}:401", attr::RESPONSE_CODE),
        ),
        (
            "Exec and attach",
            format!(
                "{scope} AND (attributes.{sub}:exec OR attributes.{sub}:attach)",
                sub = attr::OBJECT_SUBRESOURCE
            ),
        ),
        (
            "Secrets read",
            format!("{scope} AND attributes.{}:secrets", attr::OBJECT_RESOURCE),
        ),
        (
            "RBAC changes",
            format!(
                "{scope} AND (attributes.{res}:clusterrolebindings OR attributes.{res}:rolebindings OR attributes.{res}:clusterroles OR attributes.{res}:roles) AND NOT attributes.{verb}:get AND NOT attributes.{verb}:list AND NOT attributes.{verb}:watch",
                res = attr::OBJECT_RESOURCE,
                verb = attr::AUDIT_VERB
            ),
        ),
    ];
    let mut summary_rows = Vec::new();
    let mut actors: BTreeMap<String, usize> = BTreeMap::new();
    for (name, q) in queries {
        let request = SearchParams {
            q: Some(q.clone()),
            from: Some("now-24h".into()),
            to: Some("now".into()),
            limit: Some("200".into()),
            cursor: None,
            sort: None,
        }
        .resolve(tenant, now);
        let Ok(request) = request else { continue };
        let Ok(result) = state.search.run(&request).await else {
            continue;
        };
        for e in &result.events {
            if let Some(a) = e
                .record
                .attributes
                .get("entity.actor")
                .and_then(Value::as_str)
            {
                *actors.entry(a.to_string()).or_default() += 1;
            }
        }
        summary_rows.push(vec![
            link(name, search_url(&q, "now-24h", "now")),
            cell(result.total.to_string()),
        ]);
    }
    sections.push(section(
        "Sensitive activity, last 24 hours",
        &["what", "requests"],
        summary_rows,
    ));
    let mut top: Vec<(String, usize)> = actors.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sections.push(section(
        "Top actors in sensitive activity (latest 200 of each kind)",
        &["actor", "requests"],
        top.into_iter()
            .take(20)
            .map(|(a, n)| {
                let q = format!(
                    "attributes.entity.actor:\"{}\"",
                    a.replace('\\', "\\\\").replace('"', "\\\"")
                );
                vec![
                    link(a, search_url(&q, "now-24h", "now")),
                    cell(n.to_string()),
                ]
            })
            .collect(),
    ));
    table(&v, "Kubernetes", sections)
}

async fn admin_page(State(state): State<AppState>, v: Viewer) -> Response {
    admin_view(&state, &v, None, None).await
}

#[derive(Deserialize)]
struct TokenForm {
    csrf: String,
    name: String,
    scope: String,
    days: i64,
}

async fn create_token(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let req = crate::admin::NewToken {
        scope: form.scope,
        name: form.name.trim().chars().take(128).collect(),
        expires_in_days: Some(form.days),
        no_expiry: false,
    };
    match crate::admin::mint(&state, &v.principal, req, source).await {
        Ok(created) => admin_view(&state, &v, None, Some(created.token)).await,
        Err(err) if err.kind.http_status() < 500 => {
            admin_view(&state, &v, Some(err.message), None).await
        }
        Err(err) => failed(&v, err),
    }
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

async fn create_user(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Form(form): Form<UserForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let req = crate::admin::NewUser {
        username: form.username.trim().to_string(),
        password: form.password,
        role: form.role,
    };
    match crate::admin::add_user(&state, &v.principal, req, source).await {
        Ok(_) => see("/admin"),
        Err(err) if err.kind.http_status() < 500 => {
            admin_view(&state, &v, Some(err.message), None).await
        }
        Err(err) => failed(&v, err),
    }
}

async fn disable_user(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    match crate::admin::disable(&state, &v.principal, id, source).await {
        Ok(()) => see("/admin"),
        Err(err) => failed(&v, err),
    }
}

#[derive(Deserialize)]
struct MemberForm {
    csrf: String,
    username: String,
    role: String,
}

async fn add_member(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let req = crate::admin::NewMember {
        username: form.username.trim().to_string(),
        role: form.role,
    };
    match crate::admin::member(&state, &v.principal, req, source).await {
        Ok(_) => see("/admin"),
        Err(err) if err.kind.http_status() < 500 => {
            admin_view(&state, &v, Some(err.message), None).await
        }
        Err(err) => failed(&v, err),
    }
}

async fn remove_member(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    crate::auth::ClientAddr(source): crate::auth::ClientAddr,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    match crate::admin::unmember(&state, &v.principal, id, source).await {
        Ok(()) => see("/admin"),
        Err(err) => failed(&v, err),
    }
}

async fn admin_view(
    state: &AppState,
    v: &Viewer,
    error: Option<String>,
    new_token: Option<String>,
) -> Response {
    if !v.can(Permission::Admin) {
        return forbidden(v);
    }
    let tenant = v.principal.tenant_id;
    let users = state
        .access
        .list_tenant_users(tenant)
        .await
        .unwrap_or_default();
    let tokens = state.access.list_tokens(tenant).await.unwrap_or_default();
    let now = Utc::now();
    let trail = state
        .audit
        .list(tenant, now - chrono::Duration::days(7), now, 200)
        .await
        .unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = TablePage {
        nav: nav(v),
        heading: "Administration".into(),
        error,
        new_token,
        token_form: true,
        csrf: v.csrf.clone(),
        sections: vec![
            section(
                "Users",
                &["username", "role", "instance admin", "home", ""],
                users
                    .into_iter()
                    .map(|u| {
                        let id = u.id;
                        let action = if u.member {
                            button("Remove member", format!("/admin/members/{id}/remove"))
                        } else {
                            button("Disable", format!("/admin/users/{id}/disable"))
                        };
                        vec![
                            cell(u.username),
                            cell(u.role),
                            cell(if u.instance_admin { "yes" } else { "" }),
                            cell(if u.member {
                                "other tenant"
                            } else {
                                "this tenant"
                            }),
                            action,
                        ]
                    })
                    .collect(),
            ),
            section(
                "Tokens",
                &[
                    "name",
                    "scope",
                    "created",
                    "expires",
                    "revoked",
                    "last used",
                ],
                tokens
                    .into_iter()
                    .map(|t| {
                        vec![
                            cell(t.name),
                            cell(t.scope),
                            cell(time(&t.created_at)),
                            cell(t.expires_at.map(|x| time(&x)).unwrap_or_default()),
                            cell(t.revoked_at.map(|x| time(&x)).unwrap_or_default()),
                            cell(t.last_used_at.map(|x| time(&x)).unwrap_or_default()),
                        ]
                    })
                    .collect(),
            ),
            section(
                "Audit trail (last 7 days)",
                &["at", "actor", "action", "target", "outcome"],
                trail
                    .into_iter()
                    .map(|r| {
                        vec![
                            cell(time(&r.at)),
                            cell(r.event.actor),
                            cell(r.event.action),
                            cell(r.event.target),
                            cell(r.event.outcome.as_str()),
                        ]
                    })
                    .collect(),
            ),
        ],
    }
    .into_response();
    *response.status_mut() = status;
    response
}

// ------------------------------------------------------------------- rule editing

struct BacktestView {
    summary: String,
    chart: String,
    alerts: Vec<(String, String, u64)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "rule.html")]
struct RulePage {
    nav: Option<Nav>,
    id: String,
    id_link: String,
    source: String,
    version: Option<i32>,
    state: String,
    enabled: bool,
    notice: Option<String>,
    error: Option<String>,
    backtest: Option<BacktestView>,
    can_edit: bool,
    can_toggle: bool,
    csrf: String,
    yaml: String,
    ranges: Vec<(String, bool)>,
}

const NEW_RULE: &str = "apiVersion: palisade/v1\nid: my-rule\ntitle: Something worth a page\nseverity: medium\nkind: match\nquery: 'body:\"failed login\"'\ngroup_by: [attributes.user.name]\nannotations:\n  summary: '{{ group[\"attributes.user.name\"] }} failed to log in'\n";

/// What the rule page shows about rule `id` for this tenant: source, version, the
/// text to edit and whether it is in force.
async fn rule_view(state: &AppState, v: &Viewer, id: &str) -> Result<RulePage, Response> {
    let tenant = v.principal.tenant_id;
    let set = state.engine.rules();
    let file = set.file.iter().find(|r| r.id() == id).cloned();
    let stored = match state.engine.store().rule(tenant, id).await {
        Ok(row) => Some(row),
        Err(storage::StorageError::NotFound(_)) => None,
        Err(err) => return Err(failed(v, err.into())),
    };
    let in_force = set.find(tenant, id);
    let (source, version, yaml) = match (&stored, &file) {
        (Some(row), _) => (
            if alerting::rule::is_tuning(&row.yaml) {
                "tuned shipped rule"
            } else {
                "API rule"
            },
            Some(row.version),
            row.yaml.clone(),
        ),
        (None, Some(rule)) => (
            "shipped / file rule",
            None,
            serde_json::to_string_pretty(&rule.doc).unwrap_or_default(),
        ),
        (None, None) if id == "new" => ("new rule", None, NEW_RULE.to_string()),
        (None, None) => {
            return Err(message(
                Some(v),
                StatusCode::NOT_FOUND,
                "No such rule",
                format!("There is no rule {id:?} for this tenant."),
            ));
        }
    };
    let is_api_rule = stored
        .as_ref()
        .is_some_and(|r| !alerting::rule::is_tuning(&r.yaml));
    Ok(RulePage {
        nav: nav(v),
        id: id.to_string(),
        id_link: url_encode(id),
        source: source.to_string(),
        version,
        state: if in_force.is_some() {
            "enabled"
        } else {
            "disabled"
        }
        .to_string(),
        enabled: in_force.is_some(),
        notice: None,
        error: None,
        backtest: None,
        can_edit: v.can(Permission::Admin),
        can_toggle: v.can(Permission::Admin) && file.is_some() && !is_api_rule,
        csrf: v.csrf.clone(),
        yaml,
        ranges: ["1h", "24h", "7d"]
            .iter()
            .map(|r| (r.to_string(), *r == "24h"))
            .collect(),
    })
}

async fn rule_page(State(state): State<AppState>, v: Viewer, Path(id): Path<String>) -> Response {
    match rule_view(&state, &v, &id).await {
        Ok(page) => page.into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct RuleForm {
    csrf: String,
    yaml: String,
    action: String,
    range: Option<String>,
}

async fn rule_submit(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RuleForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let mut page = match rule_view(&state, &v, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.yaml = form.yaml.clone();
    let rule = match crate::rules::one_rule(&state, &form.yaml) {
        Ok(r) => r,
        Err(err) => {
            page.error = Some(err.message);
            let mut response = page.into_response();
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    if id != "new" && rule.id() != id {
        page.error = Some(format!(
            "id: the document's id {:?} differs from this rule's {id:?}",
            rule.id()
        ));
        let mut response = page.into_response();
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    }
    let tenant = v.principal.tenant_id;
    match form.action.as_str() {
        "validate" => {
            page.notice = Some(format!("{} is valid.", rule.id()));
            page.into_response()
        }
        "backtest" => {
            let hours = match form.range.as_deref() {
                Some("1h") => 1,
                Some("7d") => 24 * 7,
                _ => 24,
            };
            let to = Utc::now();
            let from = to - chrono::Duration::hours(hours);
            let events = match state.engine.candidate_events(tenant, &rule, from, to).await {
                Ok(e) => e,
                Err(err) => return failed(&v, err.into()),
            };
            let truncated = events.len() >= alerting::runtime::MAX_EVALUATED_EVENTS;
            let scanned = events.len();
            let rule_for_run = rule.clone();
            let result = match tokio::task::spawn_blocking(move || {
                alerting::runtime::backtest(&rule_for_run, &events, truncated)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    return failed(&v, ApiError::new(model::ErrorKind::Internal, e.to_string()));
                }
            };
            let start = from
                - chrono::Duration::seconds(from.timestamp().rem_euclid(3600))
                - chrono::Duration::nanoseconds(i64::from(from.timestamp_subsec_nanos()));
            let buckets = ((to - start).num_hours() + 1).max(1) as usize;
            let mut counts = vec![0u64; buckets];
            for h in &result.per_hour {
                let i = (h.hour - start).num_hours();
                if (0..buckets as i64).contains(&i) {
                    counts[i as usize] += h.alerts;
                }
            }
            let end = start + chrono::Duration::hours(buckets as i64);
            page.backtest = Some(BacktestView {
                summary: format!(
                    "{} alert(s) would have fired in the last {}, {} event(s) scanned{}",
                    result.alerts.len(),
                    form.range.as_deref().unwrap_or("24h"),
                    scanned,
                    if result.truncated { " (truncated)" } else { "" }
                ),
                chart: chart::histogram(start, end, &counts),
                alerts: result
                    .alerts
                    .iter()
                    .take(50)
                    .map(|a| {
                        (
                            time(&a.first_at),
                            serde_json::to_string(&a.labels).unwrap_or_default(),
                            a.count,
                        )
                    })
                    .collect(),
            });
            page.into_response()
        }
        "save" => {
            let exists = state.engine.store().rule(tenant, rule.id()).await.is_ok();
            if id == "new"
                && (exists
                    || state
                        .engine
                        .rules()
                        .file
                        .iter()
                        .any(|r| r.id() == rule.id()))
            {
                page.error = Some(format!("id: a rule {:?} already exists", rule.id()));
                let mut response = page.into_response();
                *response.status_mut() = StatusCode::CONFLICT;
                return response;
            }
            let actor = v.principal.actor();
            match state
                .engine
                .store()
                .put_rule(tenant, rule.id(), &form.yaml, &actor, exists)
                .await
            {
                Ok(row) => {
                    if let Err(err) = state.engine.reload_tenant_rules().await {
                        return failed(&v, err.into());
                    }
                    crate::audit::record(
                        &state,
                        model::audit::AuditEvent::new(
                            actor,
                            if exists { "rule.update" } else { "rule.create" },
                            format!("rule:{}", rule.id()),
                            model::audit::Outcome::Success,
                        )
                        .tenant(tenant)
                        .details(json!({"version": row.version})),
                    )
                    .await;
                    see(&format!("/rules/{}", url_encode(rule.id())))
                }
                Err(err) => failed(&v, err.into()),
            }
        }
        other => failed(
            &v,
            crate::rules::invalid(format!(
                "action: {other:?} is not validate, backtest or save"
            )),
        ),
    }
}

async fn rule_toggle(
    State(state): State<AppState>,
    v: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = may(&v, &headers, &form.csrf, Permission::Admin) {
        return refused;
    }
    let tenant = v.principal.tenant_id;
    if !state.engine.rules().file.iter().any(|r| r.id() == id) {
        return failed(
            &v,
            crate::rules::invalid(
                "only shipped rules are switched here; edit an API rule's `enabled`",
            ),
        );
    }
    let stored = state.engine.store().rule(tenant, &id).await.ok();
    let mut doc = match &stored {
        Some(row) if alerting::rule::is_tuning(&row.yaml) => {
            match alerting::rule::parse_tuning(&row.yaml) {
                Ok(d) => d,
                Err(e) => return failed(&v, crate::rules::invalid(e)),
            }
        }
        Some(_) => {
            return failed(
                &v,
                crate::rules::invalid("this tenant replaced the rule; edit its `enabled`"),
            );
        }
        None => alerting::rule::TuningDoc {
            api_version: "palisade/v1".into(),
            tunes: id.clone(),
            enabled: None,
            exceptions: Vec::new(),
        },
    };
    let enabled = state.engine.rules().find(tenant, &id).is_some();
    doc.enabled = Some(!enabled);
    let yaml = alerting::rule::tuning_yaml(&doc);
    let actor = v.principal.actor();
    match state
        .engine
        .store()
        .put_rule(tenant, &id, &yaml, &actor, stored.is_some())
        .await
    {
        Ok(_) => {
            if let Err(err) = state.engine.reload_tenant_rules().await {
                return failed(&v, err.into());
            }
            crate::audit::record(
                &state,
                model::audit::AuditEvent::new(
                    actor,
                    if enabled {
                        "rule.disable"
                    } else {
                        "rule.enable"
                    },
                    format!("rule:{id}"),
                    model::audit::Outcome::Success,
                )
                .tenant(tenant),
            )
            .await;
            see(&format!("/rules/{}", url_encode(&id)))
        }
        Err(err) => failed(&v, err.into()),
    }
}
