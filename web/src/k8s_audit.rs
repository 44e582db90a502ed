//! `POST /v1/k8s/audit` on the OTLP/HTTP listener: kube-apiserver's audit webhook.
//!
//! The body is an `audit.k8s.io/v1` `EventList`. Each item is normalised and redacted
//! on its own (a malformed item is rejected with its reason; the rest are kept); the
//! answer comes as soon as the accepted events are committed — detection and
//! indexing follow asynchronously, so a slow backend never holds the API server.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use ingest::body::{Encoding, decompress};
use ingest::{IngestError, MAX_BODY_BYTES};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::ClientAddr;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct WebhookQuery {
    /// The cluster the events come from (set it in the webhook kubeconfig's URL).
    cluster: Option<String>,
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn webhook(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = handle(&state, source.as_deref(), query, &headers, body).await;
    state.ingestor.observe(
        "k8s_webhook",
        started,
        result.as_ref().map(|_| ()).map_err(IngestError::kind),
    );
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn handle(
    state: &AppState,
    source: Option<&str>,
    query: WebhookQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, IngestError> {
    let grant = ingest::authenticate_ingest(
        &state.access,
        &state.limits,
        header_str(headers, header::AUTHORIZATION),
        source,
    )
    .await?;
    let media = header_str(headers, header::CONTENT_TYPE).unwrap_or("application/json");
    if !media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(IngestError::UnsupportedMedia(format!(
            "unsupported content-type {media:?}: the audit webhook sends application/json"
        )));
    }
    let encoding = Encoding::from_header(header_str(headers, header::CONTENT_ENCODING))?;
    let raw = crate::otlp_http::read_capped(body).await?;
    let cluster = query
        .cluster
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| k8saudit::DEFAULT_CLUSTER.to_string());
    // The cluster name keys every request of this cluster (stage folding,
    // inventories): a short, printable name, like a Kubernetes object name.
    if cluster.len() > 253
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(IngestError::Malformed(
            "cluster: use 1-253 letters, digits, '-', '_', '.' or ':'".into(),
        ));
    }
    let now = Utc::now();
    let policy = state.ingestor.time_policy();
    let (records, rejected, errors) = tokio::task::block_in_place(|| -> Result<_, IngestError> {
        let bytes = decompress(Vec::from(raw), encoding, MAX_BODY_BYTES)?;
        let list: Value = serde_json::from_slice(&bytes)
            .map_err(|e| IngestError::Malformed(format!("invalid EventList JSON: {e}")))?;
        let (items, api_version) = match k8saudit::event_list_items(list) {
            Ok(found) => found,
            Err(message) => return Err(IngestError::Malformed(message)),
        };
        if items.len() > ingest::decode::MAX_RECORDS_PER_REQUEST {
            return Err(IngestError::TooManyRecords {
                limit: ingest::decode::MAX_RECORDS_PER_REQUEST,
                what: "audit events",
            });
        }
        let mut resource = Map::new();
        resource.insert("service.name".into(), json!("kube-apiserver"));
        resource.insert("k8s.cluster.name".into(), json!(cluster));
        let (mut records, mut rejected, mut errors) = (Vec::new(), 0u64, Vec::new());
        for (i, mut item) in items.into_iter().enumerate() {
            // kube-apiserver's webhook backend encodes an EventList whose items carry
            // no kind/apiVersion of their own: the list's type applies to them.
            if let (Some(obj), Some(version)) = (item.as_object_mut(), api_version.as_deref()) {
                obj.entry("kind").or_insert_with(|| json!("Event"));
                obj.entry("apiVersion").or_insert_with(|| json!(version));
            }
            let mut reject = |reason: String| {
                rejected += 1;
                if errors.len() < 20 {
                    errors.push(format!("item {i}: {reason}"));
                }
            };
            if !k8saudit::is_audit_event(&item) {
                reject("not an audit.k8s.io Event".into());
                continue;
            }
            match k8saudit::to_record(item, grant.tenant_id, &cluster, now, resource.clone()) {
                Ok(r) if r.time < now - policy.max_age || r.time > now + policy.max_future => {
                    reject(format!(
                        "stageTimestamp {} is outside the accepted window",
                        r.time.to_rfc3339()
                    ));
                }
                Ok(r) => records.push(r),
                Err(m) => reject(m.0),
            }
        }
        Ok((records, rejected, errors))
    })?;
    let accepted = records.len() as u64;
    if accepted == 0 && rejected > 0 {
        // Never a silent 200 for a batch in which nothing was kept.
        state
            .ingestor
            .metrics()
            .rejected
            .with_label_values(&["invalid_k8s_audit_event"])
            .inc_by(rejected);
        return Err(IngestError::Malformed(format!(
            "all {rejected} audit event(s) rejected: {}",
            errors.join("; ")
        )));
    }
    let metrics = state.ingestor.metrics();
    metrics
        .records
        .with_label_values(&["k8s_webhook", "rejected"])
        .inc_by(rejected);
    if rejected > 0 {
        metrics
            .rejected
            .with_label_values(&["invalid_k8s_audit_event"])
            .inc_by(rejected);
    }
    if accepted > 0 {
        state.ingestor.write(records).await?;
        metrics
            .records
            .with_label_values(&["k8s_webhook", "accepted"])
            .inc_by(accepted);
    }
    Ok(json!({"accepted": accepted, "rejected": rejected, "errors": errors}))
}
