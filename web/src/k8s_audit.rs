//! `POST /v1/k8s/audit` on the OTLP/HTTP listener: kube-apiserver's audit webhook, a
//! thin adapter like OTLP/HTTP over `ingest::k8s_webhook`.
//!
//! Order of checks: token -> content type -> content encoding -> capped body ->
//! bounded decompression -> decode -> normalise and commit (the same `Ingestor` path,
//! time policy and limits as OTLP). The answer comes as soon as the accepted events
//! are committed; detection and indexing follow, so a slow backend never holds the
//! API server.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use ingest::body::{Encoding, decompress};
use ingest::{IngestError, MAX_BODY_BYTES};
use serde::Deserialize;

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
) -> Result<ingest::k8s_webhook::AuditExport, IngestError> {
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
    let cluster = ingest::k8s_webhook::cluster_name(query.cluster.as_deref())?;
    state
        .ingestor
        .metrics()
        .bytes
        .with_label_values(&["k8s_webhook"])
        .inc_by(raw.len() as u64);
    let batch = tokio::task::block_in_place(|| -> Result<_, IngestError> {
        let bytes = decompress(Vec::from(raw), encoding, MAX_BODY_BYTES)?;
        ingest::k8s_webhook::decode_event_list(&bytes)
    })?;
    state
        .ingestor
        .export_audit(grant.tenant_id, &cluster, batch)
        .await
}
