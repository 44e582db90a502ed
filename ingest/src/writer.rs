//! The durable write path with group commit.
//!
//! Tasks and channels:
//! * Request handlers (HTTP and gRPC) call [`Ingestor::export`]; it normalises, then
//!   queues a [`Job`] on a bounded channel and waits on a oneshot for the commit.
//! * One writer task drains the channel: it takes every job already queued (up to
//!   `max_batch_records`), writes them as **one** COPY in **one** transaction, and
//!   answers every job. While a commit is in flight new jobs queue up, so under load
//!   one fsync covers many requests; when idle a lone request commits immediately.
//! * A semaphore counts queued records. When it is exhausted the request is refused
//!   at once with `Overloaded` (429 + Retry-After), so memory stays bounded.
//! * After each commit the writer hands the committed batch (with its sequence ids) to
//!   followers over a small `broadcast` channel, so the indexer and the rule evaluator
//!   need not read it back from Postgres; a follower that falls behind reads Postgres.
//! * After each commit the writer publishes the highest committed sequence id on a
//!   `watch` channel; the indexer (and later the rule engine) follow it.
//!
//! A client is acknowledged only after the transaction holding its records commits.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use model::StoredLog;
use model::{LogRecord, TenantId};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use storage::StorageError;
use storage::follow::Batch;
use storage::logs::{LogStore, SeqRange};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};

use crate::IngestError;
use crate::metrics::IngestMetrics;
use crate::normalize::{TimePolicy, normalize};

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Records that may wait for a commit before new requests get 429.
    pub max_queued_records: usize,
    /// Upper bound of one COPY batch.
    pub max_batch_records: usize,
    pub time_policy: TimePolicy,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_queued_records: 200_000,
            max_batch_records: 20_000,
            time_policy: TimePolicy::default(),
        }
    }
}

struct Job {
    records: Vec<LogRecord>,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<SeqRange, StorageError>>,
}

pub struct Ingestor {
    jobs: mpsc::Sender<Job>,
    queued: Arc<Semaphore>,
    max_queued: usize,
    committed: watch::Receiver<i64>,
    batches: broadcast::Sender<Batch>,
    metrics: IngestMetrics,
    policy: TimePolicy,
}

impl Ingestor {
    /// Start the writer task. `initial_seq` seeds the committed-sequence watch.
    pub fn start(
        logs: Arc<LogStore>,
        config: IngestConfig,
        metrics: IngestMetrics,
        initial_seq: i64,
    ) -> (Arc<Ingestor>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let (committed_tx, committed_rx) = watch::channel(initial_seq);
        // A few batches only: a follower that falls behind reads Postgres instead.
        let (batches_tx, _) = broadcast::channel(4);
        let handle = tokio::spawn(writer_loop(
            logs,
            rx,
            committed_tx,
            batches_tx.clone(),
            config.max_batch_records,
            metrics.isolations.clone(),
        ));
        let ingestor = Ingestor {
            jobs: tx,
            queued: Arc::new(Semaphore::new(config.max_queued_records)),
            max_queued: config.max_queued_records,
            committed: committed_rx,
            batches: batches_tx,
            metrics,
            policy: config.time_policy,
        };
        (Arc::new(ingestor), handle)
    }

    /// Highest committed sequence id, updated after every commit.
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// The batches this process commits, as they commit (for `storage::follow`).
    pub fn subscribe_batches(&self) -> broadcast::Receiver<Batch> {
        self.batches.subscribe()
    }

    /// The accepted time window of every transport (`--retention-days`).
    pub fn time_policy(&self) -> TimePolicy {
        self.policy
    }

    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Queue records and wait until they are committed.
    pub async fn write(&self, mut records: Vec<LogRecord>) -> Result<SeqRange, IngestError> {
        // Permits count records exactly: a request larger than the whole queue is
        // refused, never admitted with fewer permits than records.
        if records.len() > self.max_queued {
            return Err(IngestError::TooManyRecords {
                limit: self.max_queued,
                what: "log records",
            });
        }
        let wanted = u32::try_from(records.len()).map_err(|_| IngestError::TooManyRecords {
            limit: self.max_queued,
            what: "log records",
        })?;
        for record in &mut records {
            record.replace_unstorable();
        }
        let permit = self
            .queued
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| IngestError::Overloaded)?;
        let (reply, wait) = oneshot::channel();
        let job = Job {
            records,
            _permit: permit,
            reply,
        };
        self.jobs.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => IngestError::ShuttingDown,
        })?;
        match wait.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }

    /// The shared decode-and-ingest path of every transport: normalise a decoded
    /// request for `tenant`, commit what is valid, and build the OTLP response.
    pub async fn export(
        &self,
        tenant: TenantId,
        request: &ExportLogsServiceRequest,
        transport: &'static str,
    ) -> Result<ExportLogsServiceResponse, IngestError> {
        let normalized = normalize(tenant, request, Utc::now(), self.policy)?;
        for (reason, count) in &normalized.reasons {
            self.metrics
                .rejected
                .with_label_values(&[reason])
                .inc_by(*count);
        }
        self.metrics
            .records
            .with_label_values(&[transport, "rejected"])
            .inc_by(normalized.rejected);
        let accepted = normalized.records.len() as u64;
        let error_message = normalized.error_message();
        if accepted > 0 {
            self.write(normalized.records).await?;
            self.metrics
                .records
                .with_label_values(&[transport, "accepted"])
                .inc_by(accepted);
        }
        let partial_success = (normalized.rejected > 0).then_some(ExportLogsPartialSuccess {
            rejected_log_records: normalized.rejected as i64,
            error_message,
        });
        Ok(ExportLogsServiceResponse { partial_success })
    }

    /// Record a finished request in the metrics.
    pub fn observe(
        &self,
        transport: &'static str,
        started: Instant,
        outcome: Result<(), model::ErrorKind>,
    ) {
        let label = match outcome {
            Ok(()) => "ok",
            Err(kind) => kind.as_str(),
        };
        self.metrics
            .requests
            .with_label_values(&[transport, label])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[transport])
            .observe(started.elapsed().as_secs_f64());
    }
}

async fn writer_loop(
    logs: Arc<LogStore>,
    mut jobs: mpsc::Receiver<Job>,
    committed: watch::Sender<i64>,
    batches: broadcast::Sender<Batch>,
    max_batch: usize,
    isolations: prometheus::IntCounter,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let mut rows = batch[0].records.len();
        while rows < max_batch {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += job.records.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(rows);
        let mut sizes = Vec::with_capacity(batch.len());
        for job in &mut batch {
            sizes.push(job.records.len());
            records.append(&mut job.records);
        }
        match logs.insert_batch(&mut records).await {
            Ok(range) => {
                let mut next = range.first;
                for (job, size) in batch.into_iter().zip(sizes) {
                    let size = size as i64;
                    let _ = job.reply.send(Ok(SeqRange {
                        first: next,
                        last: next + size - 1,
                    }));
                    next += size;
                }
                publish(&batches, &committed, records, range);
            }
            Err(err) if err.is_data_error() && batch.len() > 1 => {
                // One request's data failed the group commit: retry each request on
                // its own so only the offending one is refused (400) and every other
                // tenant's request commits.
                isolations.inc();
                tracing::warn!(error = %err, requests = batch.len(), "group commit refused on data; retrying request by request");
                let mut rest = records.into_iter();
                for (job, size) in batch.into_iter().zip(sizes) {
                    let mut mine: Vec<LogRecord> = rest.by_ref().take(size).collect();
                    match logs.insert_batch(&mut mine).await {
                        Ok(range) => {
                            let _ = job.reply.send(Ok(range));
                            publish(&batches, &committed, mine, range);
                        }
                        Err(err) => {
                            let _ = job.reply.send(Err(refusal(err)));
                        }
                    }
                }
            }
            Err(err) if err.is_data_error() => {
                // A lone request whose own data was refused.
                tracing::warn!(error = %err, records = rows, "ingest request refused on data");
                for job in batch {
                    let _ = job.reply.send(Err(err_copy(&err)));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, records = rows, "ingest batch not committed");
                let message = err.to_string();
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(StorageError::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// The error a request gets when its own commit failed: permanent (400, naming where
/// Postgres found the bad value) for data, retryable otherwise.
fn refusal(err: StorageError) -> StorageError {
    if err.is_data_error() {
        err_copy(&err)
    } else {
        StorageError::Unavailable(err.to_string())
    }
}

/// The permanent refusal of a data error, for one more waiting request.
fn err_copy(err: &StorageError) -> StorageError {
    let context = err.context().map(|c| format!(" ({c})")).unwrap_or_default();
    StorageError::Invalid(format!(
        "a record of this request cannot be stored: {err}{context}"
    ))
}

/// Hand a committed batch to followers and advance the committed watch.
fn publish(
    batches: &broadcast::Sender<Batch>,
    committed: &watch::Sender<i64>,
    records: Vec<LogRecord>,
    range: SeqRange,
) {
    if batches.receiver_count() > 0 {
        let stored: Vec<StoredLog> = records
            .into_iter()
            .zip(range.first..)
            .map(|(record, seq)| StoredLog { seq, record })
            .collect();
        let _ = batches.send(Arc::new(stored));
    }
    committed.send_replace(range.last);
}
