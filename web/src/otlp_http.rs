//! OTLP/HTTP `POST /v1/logs`: a thin adapter over `ingest`'s shared path.
//!
//! Order of checks: token (401/403) -> content type (415) -> content encoding (415)
//! -> body read with a cap (413) -> bounded decompression (413) -> decode (400) ->
//! normalise and commit (200 with `partial_success`, or 429/503 with Retry-After).
//! Error bodies are `google.rpc.Status` in the request's format, as OTLP specifies.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ingest::body::{Encoding, decompress};
use ingest::decode::{Format, decode_logs, encode_response, encode_status};
use ingest::{IngestError, MAX_BODY_BYTES};

use crate::AppState;
use crate::auth::ClientAddr;

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn export_logs(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE));
    let result = handle(
        &state,
        &headers,
        source.as_deref(),
        format.as_ref().ok().copied(),
        body,
    )
    .await;
    reply(&state, "http", started, format.ok(), result)
}

/// Record the request in the ingest metrics and answer it: the encoded OTLP response,
/// or a `google.rpc.Status` in the request's format (JSON when it had none).
fn reply(
    state: &AppState,
    transport: &'static str,
    started: Instant,
    format: Option<Format>,
    result: Result<Vec<u8>, IngestError>,
) -> Response {
    let outcome = result.as_ref().map(|_| ()).map_err(IngestError::kind);
    state.ingestor.observe(transport, started, outcome);
    let reply_format = format.unwrap_or(Format::Json);
    match result {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, reply_format.content_type())],
            bytes,
        )
            .into_response(),
        Err(err) => error_response(&err, reply_format),
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    source: Option<&str>,
    format: Option<Format>,
    body: Body,
) -> Result<Vec<u8>, IngestError> {
    let authorization = header_str(headers, header::AUTHORIZATION);
    let grant =
        ingest::authenticate_ingest(&state.access, &state.limits, authorization, source).await?;
    let format = match format {
        Some(f) => f,
        None => Format::from_content_type(header_str(headers, header::CONTENT_TYPE))?,
    };
    let encoding = Encoding::from_header(header_str(headers, header::CONTENT_ENCODING))?;
    let raw = read_capped(body).await?;
    state
        .ingestor
        .metrics()
        .bytes
        .with_label_values(&["http"])
        .inc_by(raw.len() as u64);
    let decoded = tokio::task::block_in_place(|| -> Result<_, IngestError> {
        let bytes = decompress(Vec::from(raw), encoding, MAX_BODY_BYTES)?;
        decode_logs(format, &bytes)
    })?;
    let response = state
        .ingestor
        .export(grant.tenant_id, &decoded, "http")
        .await?;
    Ok(encode_response(format, &response))
}

/// OTLP/HTTP `POST /v1/metrics`: the same checks, status codes and error bodies as
/// `/v1/logs`; acknowledged after the points are committed.
pub async fn export_metrics(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE)).ok();
    let result = async {
        let authorization = header_str(&headers, header::AUTHORIZATION);
        let grant = ingest::authenticate_ingest(
            &state.access,
            &state.limits,
            authorization,
            source.as_deref(),
        )
        .await?;
        let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE))?;
        let encoding = Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING))?;
        let raw = read_capped(body).await?;
        state
            .ingestor
            .metrics()
            .bytes
            .with_label_values(&["http_metrics"])
            .inc_by(raw.len() as u64);
        let decoded = tokio::task::block_in_place(|| {
            let bytes = decompress(Vec::from(raw), encoding, MAX_BODY_BYTES)?;
            ingest::otlp_metrics::decode(format, &bytes)
        })?;
        let response = state
            .metrics_ingest
            .export(grant.tenant_id, &decoded)
            .await?;
        Ok::<_, IngestError>(ingest::otlp_metrics::encode_response(format, &response))
    }
    .await;
    reply(&state, "http_metrics", started, format, result)
}

/// Read a request body of at most [`MAX_BODY_BYTES`] (before decompression, which
/// has its own cap): 413 beyond it, 400 if the client breaks off.
pub async fn read_capped(body: Body) -> Result<axum::body::Bytes, IngestError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|err| {
            let inner = err.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                IngestError::TooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                IngestError::Malformed(format!("could not read request body: {inner}"))
            }
        })
}

/// The OTLP/HTTP renderer: a `google.rpc.Status` in the request's format.
fn error_response(err: &IngestError, format: Format) -> Response {
    let public = model::Public::of(err);
    let status =
        StatusCode::from_u16(public.kind.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = encode_status(format, public.kind.grpc_code(), &public.message);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    crate::error::with_headers(&mut response, &public);
    response
}
