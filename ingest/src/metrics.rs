//! Ingest instrumentation (`palisade_ingest_*`).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct IngestMetrics {
    /// Records by transport and outcome (`accepted` or `rejected`).
    pub records: IntCounterVec,
    /// Rejected records by reason (per-record rejections and whole-request failures).
    pub rejected: IntCounterVec,
    /// Request body bytes as received (before decompression), by transport.
    pub bytes: IntCounterVec,
    /// Requests by transport and outcome class.
    pub requests: IntCounterVec,
    /// Time from request start to acknowledgement, by transport.
    pub latency: HistogramVec,
    /// Group commits that failed on data and were retried request by request.
    pub isolations: IntCounter,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<IngestMetrics> {
        let records = IntCounterVec::new(
            Opts::new(
                "palisade_ingest_records_total",
                "Log records received, by transport and outcome",
            ),
            &["transport", "outcome"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "palisade_ingest_rejected_records_total",
                "Log records rejected, by reason",
            ),
            &["reason"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "palisade_ingest_received_bytes_total",
                "Request body bytes received (compressed size)",
            ),
            &["transport"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "palisade_ingest_requests_total",
                "Export requests, by transport and result",
            ),
            &["transport", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "palisade_ingest_request_duration_seconds",
                "Time from receiving an export request to acknowledging it",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["transport"],
        )?;
        let isolations = IntCounter::new(
            "palisade_ingest_batch_isolations_total",
            "Group commits refused by Postgres because of one request's data, then retried request by request",
        )?;
        registry.register(Box::new(isolations.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(IngestMetrics {
            records,
            rejected,
            bytes,
            requests,
            latency,
            isolations,
        })
    }
}
