//! `/api/v1/incidents`: alerts grouped by what they are about, the responders'
//! actions on them, their timeline (also live, over Server-Sent Events) and exports
//! for the post-incident review.

pub mod export;
pub mod markdown;
pub mod timeline;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use model::Principal;
use model::audit::{AuditEvent, Outcome};
use model::incident::Entity;
use serde::Deserialize;
use serde_json::{Value, json};
use storage::incidents::{IncidentFilter, IncidentRow, IncidentSettings};
use uuid::Uuid;

use self::timeline::Key;
use crate::auth::ClientAddr;
use crate::extract::{ApiJson, ApiQuery, ObjectId};
use crate::rules::invalid;
use crate::wire::{
    ErrorBody, Incident, IncidentList, IncidentSettingsBody, Timeline, TimelineEntry,
};
use crate::{ApiError, AppState};

/// Page size bounds of the timeline.
pub const DEFAULT_TIMELINE_LIMIT: usize = 200;
pub const MAX_TIMELINE_LIMIT: usize = 1000;
/// Most entries an export holds.
pub const MAX_EXPORT_ENTRIES: usize = 100_000;
/// Live timeline streams open at once (per process), and how long one lasts (the
/// client reconnects with `Last-Event-ID`).
pub const MAX_STREAMS: usize = 256;
pub const STREAM_LIFETIME: Duration = Duration::from_secs(3600);
/// How often a live stream looks for new entries.
pub const STREAM_POLL: Duration = Duration::from_millis(500);
/// Most incidents merged at once, alerts split at once.
pub const MAX_MERGE: usize = 50;
pub const MAX_SPLIT: usize = 1000;

fn streams() -> &'static Arc<tokio::sync::Semaphore> {
    static STREAMS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    STREAMS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)))
}

/// Record a responder's action on an incident in the audit trail (API and UI).
pub(crate) async fn audit(
    state: &AppState,
    p: &Principal,
    source: Option<String>,
    action: &str,
    id: Uuid,
    details: Option<Value>,
) {
    let mut event = AuditEvent::new(
        p.actor(),
        action,
        format!("incident:{id}"),
        Outcome::Success,
    )
    .tenant(p.tenant_id)
    .source(source);
    if let Some(d) = details {
        event = event.details(d);
    }
    crate::audit::record(state, event).await;
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    /// `triggered`, `acknowledged` or `resolved`.
    state: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `info`.
    severity: Option<String>,
    /// The assigned user.
    assignee: Option<String>,
    /// `kind:value`, e.g. `actor:alice@example.com`.
    entity: Option<String>,
    /// Opened at or after (RFC 3339 or relative, `now-24h`).
    from: Option<String>,
    /// Opened at or before.
    to: Option<String>,
    /// 1-1000 [default: 100].
    limit: Option<i64>,
}

const STATES: &[&str] = &["triggered", "acknowledged", "resolved"];
const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info"];

/// Incidents, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(IncidentQuery),
    responses((status = 200, body = IncidentList), (status = 400, body = ErrorBody)))]
pub async fn list_incidents(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> Result<Json<IncidentList>, ApiError> {
    if let Some(s) = q.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(invalid(format!(
            "state: expected triggered, acknowledged or resolved, got {s:?}"
        )));
    }
    if let Some(s) = q.severity.as_deref().filter(|s| !SEVERITIES.contains(s)) {
        return Err(invalid(format!(
            "severity: expected critical, high, medium, low or info, got {s:?}"
        )));
    }
    let entity = q
        .entity
        .as_deref()
        .map(Entity::parse)
        .transpose()
        .map_err(invalid)?;
    let now = Utc::now();
    let limit = crate::extract::list_limit(q.limit, 100)?;
    let filter = IncidentFilter {
        state: q.state,
        severity: q.severity,
        assignee: q.assignee,
        entity,
        from: crate::extract::optional_time(q.from.as_deref(), now, "from")?,
        to: crate::extract::optional_time(q.to.as_deref(), now, "to")?,
        limit,
    };
    let rows = state.incidents.list(p.tenant_id, &filter).await?;
    Ok(Json(IncidentList {
        incidents: rows.into_iter().map(Incident::from).collect(),
    }))
}

/// One incident.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")),
    responses((status = 200, body = Incident), (status = 404, body = ErrorBody)))]
pub async fn get_incident(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(state.incidents.get(p.tenant_id, id).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    /// A new title (1-512 bytes, one line).
    title: String,
}

/// Edit an incident's title.
#[utoipa::path(patch, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")), request_body = IncidentPatch,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_incident(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<IncidentPatch>,
) -> Result<Json<Incident>, ApiError> {
    let title = req.title.trim();
    if title.is_empty() || title.len() > storage::incidents::MAX_TITLE_BYTES {
        return Err(invalid(format!(
            "title: 1 to {} bytes",
            storage::incidents::MAX_TITLE_BYTES
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(invalid("title: one line, no control characters"));
    }
    let row = state
        .incidents
        .retitle(p.tenant_id, id, title, &p.actor())
        .await?;
    audit(&state, &p, source, "incident.retitle", id, None).await;
    Ok(Json(row.into()))
}

macro_rules! transition {
    ($name:ident, $method:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "incidents",
            params(("id" = uuid::Uuid, Path, description = "incident id")),
            responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(p): Extension<Principal>,
            ClientAddr(source): ClientAddr,
            ObjectId(id): ObjectId,
        ) -> Result<Json<Incident>, ApiError> {
            let row = state.incidents.$method(p.tenant_id, id, &p.actor()).await?;
            audit(&state, &p, source, $action, id, None).await;
            Ok(Json(row.into()))
        }
    };
}

transition!(
    acknowledge_incident,
    acknowledge,
    "/api/v1/incidents/{id}/acknowledge",
    "incident.acknowledge",
    "Acknowledge: the incident and its firing alerts (repeat pages stop, PagerDuty gets `acknowledge`)."
);
transition!(
    resolve_incident,
    resolve,
    "/api/v1/incidents/{id}/resolve",
    "incident.resolve",
    "Resolve by hand: channels get `resolve` for its open alerts and repeats stop."
);
transition!(
    reopen_incident,
    reopen,
    "/api/v1/incidents/{id}/reopen",
    "incident.reopen",
    "Reopen a resolved incident (state `triggered`)."
);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// A user of the tenant, or `null` to unassign.
    assignee: Option<String>,
}

/// Assign (or unassign) an incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/assign", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")), request_body = AssignRequest,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn assign_incident(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Json<Incident>, ApiError> {
    if let Some(name) = &req.assignee {
        let users = state.access.list_tenant_users(p.tenant_id).await?;
        if !users.iter().any(|u| &u.username == name) {
            return Err(invalid(format!(
                "assignee: no user named {:?} in this tenant",
                name.chars().take(64).collect::<String>()
            )));
        }
    }
    let row = state
        .incidents
        .assign(p.tenant_id, id, req.assignee.as_deref(), &p.actor())
        .await?;
    audit(
        &state,
        &p,
        source,
        "incident.assign",
        id,
        Some(json!({"assignee": req.assignee})),
    )
    .await;
    Ok(Json(row.into()))
}

/// A responder activity row as its timeline entry.
fn entry_of(row: storage::incidents::ActivityRow) -> TimelineEntry {
    TimelineEntry {
        time: row.at,
        kind: row.kind,
        actor: row.actor,
        payload: row.payload,
    }
}

/// NUL cannot be stored (Postgres text and jsonb refuse it): replaced by U+FFFD, as
/// ingest does.
pub(crate) fn no_nul(text: &str) -> String {
    text.replace('\u{0}', "\u{FFFD}")
}

/// A note's timeline payload: the Markdown as written and its sanitised HTML.
pub(crate) fn note_payload(text: &str) -> Value {
    let text = no_nul(text);
    json!({"html": markdown::render(&text), "markdown": text})
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// Markdown, up to 16 KiB; shown sanitised.
    text: String,
}

/// Add a note; answers the timeline entry.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/notes", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")), request_body = NoteRequest,
    responses((status = 201, body = TimelineEntry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_note(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<NoteRequest>,
) -> Result<(StatusCode, Json<TimelineEntry>), ApiError> {
    if req.text.trim().is_empty() || req.text.len() > storage::incidents::MAX_NOTE_BYTES {
        return Err(invalid(format!(
            "text: 1 to {} bytes of Markdown",
            storage::incidents::MAX_NOTE_BYTES
        )));
    }
    let payload = note_payload(&req.text);
    let row = state
        .incidents
        .add_activity(p.tenant_id, id, "note", payload, &p.actor())
        .await?;
    audit(&state, &p, source, "incident.note", id, None).await;
    Ok((StatusCode::CREATED, Json(entry_of(row))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The event's id (as search and the timeline show it).
    event_id: String,
    /// Why it matters (up to 1 KiB).
    #[serde(default)]
    comment: Option<String>,
}

/// Pin an event to the incident; answers the timeline entry.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/pins", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")), request_body = PinRequest,
    responses((status = 201, body = TimelineEntry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_pin(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<PinRequest>,
) -> Result<(StatusCode, Json<TimelineEntry>), ApiError> {
    let seq: i64 = req
        .event_id
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("event_id: not an event id"))?;
    if req.comment.as_ref().is_some_and(|c| c.len() > 1024) {
        return Err(invalid("comment: at most 1024 bytes"));
    }
    // The incident first: a pin on another tenant's incident is a 404, whatever the
    // event.
    state.incidents.get(p.tenant_id, id).await?;
    let found = state
        .engine
        .logs()
        .fetch_by_seqs(p.tenant_id, &[seq], None)
        .await?;
    let Some(event) = found.first() else {
        return Err(invalid(format!("event_id: no event {seq}")));
    };
    let payload = json!({
        "event_id": seq.to_string(), "comment": req.comment.as_deref().map(no_nul),
        "event_time": event.record.time, "body": event.record.body,
    });
    let row = state
        .incidents
        .add_activity(p.tenant_id, id, "pin", payload, &p.actor())
        .await?;
    audit(&state, &p, source, "incident.pin", id, None).await;
    Ok((StatusCode::CREATED, Json(entry_of(row))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// Incidents merged into this one (at most 50).
    incidents: Vec<Uuid>,
}

/// Merge other incidents into this one.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/merge", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "the surviving incident")), request_body = MergeRequest,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn merge_incidents(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<MergeRequest>,
) -> Result<Json<Incident>, ApiError> {
    if req.incidents.is_empty() || req.incidents.len() > MAX_MERGE {
        return Err(invalid(format!("incidents: 1 to {MAX_MERGE} incident ids")));
    }
    let mut seen = HashSet::new();
    if !req.incidents.iter().all(|i| seen.insert(*i)) {
        return Err(invalid("incidents: an id appears twice"));
    }
    let row = state
        .incidents
        .merge(p.tenant_id, id, &req.incidents, &p.actor())
        .await?;
    audit(
        &state,
        &p,
        source,
        "incident.merge",
        id,
        Some(json!({"merged": req.incidents})),
    )
    .await;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// Alerts of this incident that move to a new incident.
    alert_ids: Vec<Uuid>,
}

/// Split alerts off into a new incident; answers the new incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/split", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")), request_body = SplitRequest,
    responses((status = 201, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn split_incident(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiJson(req): ApiJson<SplitRequest>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    if req.alert_ids.len() > MAX_SPLIT {
        return Err(invalid(format!("alert_ids: at most {MAX_SPLIT}")));
    }
    let row = state
        .incidents
        .split(p.tenant_id, id, &req.alert_ids, &p.actor())
        .await?;
    audit(
        &state,
        &p,
        source,
        "incident.split",
        id,
        Some(json!({"to": row.id})),
    )
    .await;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// Start (RFC 3339 or relative) [default: 15 minutes before the incident opened].
    from: Option<String>,
    /// End [default: its resolution, or now].
    to: Option<String>,
    /// Comma-separated kinds (`alert_fired,note,event`) [default: all].
    kinds: Option<String>,
    /// Correlated events of this entity only (`kind:value`).
    entity: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1-1000 [default: 200].
    limit: Option<usize>,
}

fn timeline_query(incident: &IncidentRow, q: &TimelineQuery) -> Result<timeline::Query, ApiError> {
    let now = Utc::now();
    let (default_from, default_to) = timeline::window(incident);
    let from = match &q.from {
        Some(t) => query::time::parse_time(t, now, "from")?,
        None => default_from,
    };
    let to = match &q.to {
        Some(t) => query::time::parse_time(t, now, "to")?,
        None => default_to,
    };
    if from > to {
        return Err(invalid("from: after to"));
    }
    let kinds = match &q.kinds {
        None => None,
        Some(list) => {
            let mut set = HashSet::new();
            for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                if !timeline::KINDS.contains(&k) {
                    return Err(invalid(format!(
                        "kinds: {k:?} is not one of {}",
                        timeline::KINDS.join(", ")
                    )));
                }
                set.insert(k.to_string());
            }
            Some(set)
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_TIMELINE_LIMIT);
    if !(1..=MAX_TIMELINE_LIMIT).contains(&limit) {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_TIMELINE_LIMIT}"
        )));
    }
    Ok(timeline::Query {
        from,
        to,
        kinds,
        entity: q
            .entity
            .as_deref()
            .map(Entity::parse)
            .transpose()
            .map_err(invalid)?,
        after: q.cursor.as_deref().map(Key::decode).transpose()?,
        limit,
    })
}

/// The incident's timeline: one ordered stream of alerts, pages, responders' actions
/// and correlated events.
#[utoipa::path(get, path = "/api/v1/incidents/{id}/timeline", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id"), TimelineQuery),
    responses((status = 200, body = Timeline), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_timeline(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let incident = state.incidents.get(p.tenant_id, id).await?;
    let query = timeline_query(&incident, &q)?;
    let (entries, next) = timeline::read(&state, p.tenant_id, &incident, &query).await?;
    Ok(Json(Timeline {
        entries: entries.into_iter().map(|(_, e)| e).collect(),
        next_cursor: next.map(|k| k.encode()),
    }))
}

/// New timeline entries as they happen (Server-Sent Events: `event: entry`, `id` a
/// cursor, `data` the entry's JSON). Reconnecting with `Last-Event-ID` resumes.
#[utoipa::path(get, path = "/api/v1/incidents/{id}/events", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id")),
    responses((status = 200, description = "text/event-stream of timeline entries"),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn stream_events(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let incident = state.incidents.get(p.tenant_id, id).await?;
    let permit = streams().clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            model::ErrorKind::ResourceExhausted,
            format!("at most {MAX_STREAMS} live timelines are open; retry later"),
        )
    })?;
    let start = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(text) => Key::decode(text)?,
        None => Key::before(Utc::now()),
    };
    let tenant = p.tenant_id;
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    let stream = futures_util::stream::unfold(
        (
            state,
            incident,
            start,
            Vec::<(String, TimelineEntry)>::new(),
            permit,
        ),
        move |(state, incident, mut after, mut queue, permit)| async move {
            loop {
                if let Some((cursor, entry)) = queue.pop() {
                    let event = SseEvent::default()
                        .event("entry")
                        .id(cursor)
                        .json_data(&entry)
                        .unwrap_or_default();
                    return Some((
                        Ok::<_, Infallible>(event),
                        (state, incident, after, queue, permit),
                    ));
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(STREAM_POLL).await;
                let incident = match state.incidents.get(tenant, incident.id).await {
                    Ok(i) => i,
                    Err(_) => continue,
                };
                let query = timeline::Query {
                    from: timeline::window(&incident).0,
                    to: Utc::now(),
                    kinds: None,
                    entity: None,
                    after: Some(after.clone()),
                    limit: 100,
                };
                if let Ok((entries, _)) = timeline::read(&state, tenant, &incident, &query).await {
                    let mut keyed = Vec::with_capacity(entries.len());
                    for (key, entry) in entries {
                        if key > after {
                            after = key.clone();
                        }
                        keyed.push((key.encode(), entry));
                    }
                    keyed.reverse();
                    queue = keyed;
                }
                return Some((
                    Ok(SseEvent::default().comment("poll")),
                    (state, incident, after, queue, permit),
                ));
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` or `markdown` [default: json].
    format: Option<String>,
}

/// The whole timeline for the post-incident review, with the rule definitions as they
/// were when they fired, sealed by a SHA-256 chain (`palisade incident verify FILE`).
#[utoipa::path(get, path = "/api/v1/incidents/{id}/export", tag = "incidents",
    params(("id" = uuid::Uuid, Path, description = "incident id"), ExportQuery),
    responses((status = 200, description = "the export (application/json or text/markdown)"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export_incident(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ObjectId(id): ObjectId,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.as_deref().unwrap_or("json");
    if !["json", "markdown"].contains(&format) {
        return Err(invalid(format!(
            "format: expected json or markdown, got {format:?}"
        )));
    }
    let incident = state.incidents.get(p.tenant_id, id).await?;
    let (from, to) = timeline::window(&incident);
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let query = timeline::Query {
            from,
            to,
            kinds: None,
            entity: None,
            after: after.clone(),
            limit: MAX_TIMELINE_LIMIT,
        };
        let (page, next) = timeline::read(&state, p.tenant_id, &incident, &query).await?;
        entries.extend(page.into_iter().map(|(_, e)| e));
        if entries.len() > MAX_EXPORT_ENTRIES {
            return Err(invalid(format!(
                "the timeline has more than {MAX_EXPORT_ENTRIES} entries; page it with GET .../timeline"
            )));
        }
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let rules = rule_definitions(&state, &p, &entries).await?;
    let header = json!({
        "incident": Incident::from(incident.clone()),
        "rules": rules,
        "exported_at": Utc::now(),
        "exported_by": p.actor(),
        "window": {"from": from, "to": to},
        "entry_count": entries.len(),
    });
    let (body, head, content_type) = if format == "json" {
        let (body, head) = export::to_json(&header, &entries);
        (body, head, "application/json")
    } else {
        let (body, head) = export::to_markdown(&header, &entries);
        (body, head, "text/markdown; charset=utf-8")
    };
    audit(
        &state,
        &p,
        source,
        "incident.export",
        id,
        Some(json!({"format": format, "entries": entries.len(), "head": head})),
    )
    .await;
    let filename = format!(
        "incident-{id}.{}",
        if format == "json" { "json" } else { "md" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The definitions of the rules whose alerts fired in the incident: the API-managed
/// version in force when the alert fired, else the file rule as loaded now.
async fn rule_definitions(
    state: &AppState,
    p: &Principal,
    entries: &[TimelineEntry],
) -> Result<Vec<Value>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.kind == "alert_fired") {
        let Some(rule) = e.payload["rule_id"].as_str() else {
            continue;
        };
        if !seen.insert(rule.to_string()) {
            continue;
        }
        match state.incidents.rule_at(p.tenant_id, rule, e.time).await? {
            Some((version, yaml)) => out.push(json!({
                "id": rule, "source": format!("api, version {version}"), "fired_at": e.time,
                "definition": yaml,
            })),
            None => {
                let doc = state
                    .engine
                    .rules()
                    .file
                    .iter()
                    .find(|r| r.id() == rule)
                    .map(|r| serde_json::to_string_pretty(&r.doc).unwrap_or_default());
                out.push(json!({
                    "id": rule,
                    "source": if doc.is_some() { "file (as loaded at export)" } else { "unknown (deleted)" },
                    "fired_at": e.time, "definition": doc.unwrap_or_default(),
                }));
            }
        }
    }
    Ok(out)
}

/// The tenant's incident grouping.
#[utoipa::path(get, path = "/api/v1/incident-settings", tag = "incidents",
    responses((status = 200, body = IncidentSettingsBody)))]
pub async fn get_incident_settings(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<IncidentSettingsBody>, ApiError> {
    let s = state.incidents.settings(p.tenant_id).await?;
    Ok(Json(IncidentSettingsBody {
        group_on: s.group_on,
        window: format!("{}s", s.window.num_seconds()),
        auto_resolve: s.auto_resolve,
    }))
}

/// Longest grouping window.
pub const MAX_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// Set the tenant's incident grouping.
#[utoipa::path(put, path = "/api/v1/incident-settings", tag = "incidents", request_body = IncidentSettingsBody,
    responses((status = 200, body = IncidentSettingsBody), (status = 400, body = ErrorBody)))]
pub async fn put_incident_settings(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ClientAddr(source): ClientAddr,
    ApiJson(req): ApiJson<IncidentSettingsBody>,
) -> Result<Json<IncidentSettingsBody>, ApiError> {
    if req.group_on.len() > 32 {
        return Err(invalid("group_on: at most 32 kinds"));
    }
    if let Some(bad) = req
        .group_on
        .iter()
        .find(|k| k.is_empty() || k.len() > 128 || k.contains(':'))
    {
        return Err(invalid(format!("group_on: {bad:?} is not an entity kind")));
    }
    let window =
        query::time::parse_duration(&req.window).map_err(|e| invalid(format!("window: {e}")))?;
    if window <= chrono::Duration::zero() || window > MAX_WINDOW {
        return Err(invalid("window: between 1s and 7d"));
    }
    let settings = IncidentSettings {
        group_on: req.group_on.clone(),
        window,
        auto_resolve: req.auto_resolve,
    };
    state
        .incidents
        .put_settings(p.tenant_id, &settings, &p.actor())
        .await?;
    crate::audit::record(
        &state,
        AuditEvent::new(
            p.actor(),
            "incident.settings",
            "incident-settings",
            Outcome::Success,
        )
        .tenant(p.tenant_id)
        .source(source),
    )
    .await;
    Ok(Json(IncidentSettingsBody {
        window: format!("{}s", window.num_seconds()),
        ..req
    }))
}
