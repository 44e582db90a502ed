//! OTLP metrics: `POST /v1/metrics` (through `web`) and `MetricsService/Export`
//! (gRPC) share this path: bounded decode -> `metrics::convert` -> time window ->
//! `storage::metrics::MetricStore::write` (committed before the acknowledgement).

use std::sync::Arc;
use std::time::Instant;

use model::TenantId;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;
use storage::access::AccessStore;
use storage::metrics::MetricStore;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::decode::{Format, MAX_JSON_OBJECTS, MAX_RECORDS_PER_REQUEST, each_len_field};
use crate::grpc::to_status;
use crate::limits::TokenLimits;
use crate::{IngestError, MAX_BODY_BYTES};

/// Most data points one export may carry (413 beyond).
pub const MAX_DATA_POINTS: usize = MAX_RECORDS_PER_REQUEST;
/// Most samples the data points of one export may expand to (histogram buckets and
/// summary quantiles each make a sample): 413 beyond.
pub const MAX_SAMPLES: usize = 1_000_000;
/// Newest accepted point: this far ahead of the server's clock.
pub const MAX_FUTURE_MS: i64 = 3_600_000;

fn too_many(what: &'static str, limit: usize) -> IngestError {
    IngestError::TooManyRecords { limit, what }
}

/// Count data points on the wire before decoding.
pub fn check_protobuf_counts(body: &[u8]) -> Result<(), IngestError> {
    let mut points = 0usize;
    each_len_field(body, |f, rm| {
        if f != 1 {
            return;
        }
        each_len_field(rm, |f, sm| {
            if f != 2 {
                return;
            }
            each_len_field(sm, |f, m| {
                if f != 2 {
                    return;
                }
                each_len_field(m, |f, data| {
                    if matches!(f, 5 | 7 | 9 | 10 | 11) {
                        each_len_field(data, |f, _| points += usize::from(f == 1));
                    }
                });
            });
        });
    });
    if points > MAX_DATA_POINTS {
        return Err(too_many("data points", MAX_DATA_POINTS));
    }
    Ok(())
}

/// Data points and the samples they expand to, checked after decoding.
pub fn check_counts(request: &ExportMetricsServiceRequest) -> Result<(), IngestError> {
    let (mut points, mut samples) = (0usize, 0usize);
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        points += g.data_points.len();
                        samples += g.data_points.len();
                    }
                    Some(metric::Data::Sum(s)) => {
                        points += s.data_points.len();
                        samples += s.data_points.len();
                    }
                    Some(metric::Data::Histogram(h)) => {
                        points += h.data_points.len();
                        samples += h
                            .data_points
                            .iter()
                            .map(|p| p.explicit_bounds.len() + 3)
                            .sum::<usize>();
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        points += h.data_points.len();
                        samples += h
                            .data_points
                            .iter()
                            .map(|p| p.positive.as_ref().map_or(0, |b| b.bucket_counts.len()) + 4)
                            .sum::<usize>();
                    }
                    Some(metric::Data::Summary(s)) => {
                        points += s.data_points.len();
                        samples += s
                            .data_points
                            .iter()
                            .map(|p| p.quantile_values.len() + 2)
                            .sum::<usize>();
                    }
                    None => {}
                }
            }
        }
    }
    if points > MAX_DATA_POINTS {
        return Err(too_many("data points", MAX_DATA_POINTS));
    }
    if samples > MAX_SAMPLES {
        return Err(too_many(
            "samples (buckets and quantiles included)",
            MAX_SAMPLES,
        ));
    }
    Ok(())
}

/// Decode an `ExportMetricsServiceRequest` (protobuf or OTLP/JSON) within bounds.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportMetricsServiceRequest, IngestError> {
    let request = match format {
        Format::Protobuf => {
            check_protobuf_counts(body)?;
            ExportMetricsServiceRequest::decode(body).map_err(|err| {
                IngestError::Malformed(format!(
                    "invalid protobuf ExportMetricsServiceRequest: {err}"
                ))
            })?
        }
        Format::Json => {
            let objects = body.iter().filter(|b| **b == b'{').count();
            if objects > MAX_JSON_OBJECTS {
                return Err(too_many("JSON objects", MAX_JSON_OBJECTS));
            }
            let request: ExportMetricsServiceRequest =
                serde_json::from_slice(body).map_err(|err| {
                    IngestError::Malformed(format!(
                        "invalid OTLP/JSON ExportMetricsServiceRequest: {err}"
                    ))
                })?;
            if request.resource_metrics.is_empty()
                && body.windows(18).any(|w| w == b"\"resource_metrics\"")
            {
                return Err(IngestError::Malformed(
                    "OTLP/JSON keys are camelCase: found \"resource_metrics\", expected \"resourceMetrics\"".into(),
                ));
            }
            request
        }
    };
    check_counts(&request)?;
    Ok(request)
}

pub fn encode_response(format: Format, response: &ExportMetricsServiceResponse) -> Vec<u8> {
    match format {
        Format::Protobuf => response.encode_to_vec(),
        Format::Json => match &response.partial_success {
            None => b"{}".to_vec(),
            Some(_) => serde_json::to_vec(response).expect("response serialises"),
        },
    }
}

/// The metrics ingest path shared by HTTP and gRPC.
pub struct MetricsIngest {
    pub store: MetricStore,
    /// Oldest accepted point, as an age (the retention).
    pub max_age_ms: i64,
}

impl MetricsIngest {
    pub async fn export(
        &self,
        tenant: TenantId,
        request: &ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let mut converted = ::metrics::convert::convert(request);
        let now = chrono::Utc::now().timestamp_millis();
        let (oldest, newest) = (now - self.max_age_ms, now + MAX_FUTURE_MS);
        let mut outside = 0u64;
        for s in &mut converted.series {
            let before = s.points.len();
            s.points.retain(|p| p.0 >= oldest && p.0 <= newest);
            outside += (before - s.points.len()) as u64;
        }
        converted.series.retain(|s| !s.points.is_empty());
        converted
            .exemplars
            .retain(|e| e.time_ms >= oldest && e.time_ms <= newest);
        if outside > 0 {
            converted.rejected += outside;
            converted.reason.get_or_insert_with(|| {
                format!(
                    "{outside} samples outside the accepted time window (retention to one hour ahead)"
                )
            });
        }
        self.store
            .write(tenant, &converted.series, &converted.exemplars)
            .await?;
        let partial_success = (converted.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: converted.rejected as i64,
            error_message: converted.reason.clone().unwrap_or_default(),
        });
        Ok(ExportMetricsServiceResponse { partial_success })
    }
}

/// OTLP/gRPC `MetricsService/Export`.
pub struct MetricsGrpc {
    pub ingest: Arc<MetricsIngest>,
    pub access: Arc<AccessStore>,
    pub limits: Arc<TokenLimits>,
    pub ingestor: Arc<crate::writer::Ingestor>,
}

#[tonic::async_trait]
impl MetricsService for MetricsGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let started = Instant::now();
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let source = request.remote_addr().map(|a| a.ip().to_string());
        let result = async {
            let grant = crate::authenticate_ingest(
                &self.access,
                &self.limits,
                header.as_deref(),
                source.as_deref(),
            )
            .await?;
            check_counts(request.get_ref())?;
            self.ingest.export(grant.tenant_id, request.get_ref()).await
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(IngestError::kind);
        self.ingestor.observe("grpc_metrics", started, outcome);
        result.map(Response::new).map_err(|e| to_status(&e))
    }
}

/// The gRPC service with gzip accepted and the body cap.
pub fn metrics_service(
    grpc: MetricsGrpc,
) -> opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer<MetricsGrpc>{
    opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(grpc)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY_BYTES)
}
