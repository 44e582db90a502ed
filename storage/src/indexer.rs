//! The indexer: follows the committed sequence of `log_records` into the tantivy index.
//!
//! One task per process. It takes the batches the local writer just committed (no
//! Postgres read) and falls back to Postgres for anything else, polling every
//! [`POLL`] so rows committed by other replicas sharing the database are picked up
//! (see `follow`). Because sequence order equals
//! commit order (see `logs`), reading `seq > checkpoint` never skips a row.
//!
//! It commits the index when it has drained everything visible (so a record is
//! searchable well within a second of its acknowledgement) or every
//! [`CATCH_UP_COMMIT_DOCS`] documents while catching up after a restart or rebuild.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use tokio::sync::{broadcast, watch};

use crate::follow::{Batch, Follower};

use crate::index::LogIndex;
use crate::logs::LogStore;

const FETCH: i64 = 5_000;
const POLL: Duration = Duration::from_millis(250);
const CATCH_UP_COMMIT_DOCS: usize = 200_000;

/// Shared progress of the indexer, read by `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct IndexerStatus {
    /// Highest sequence id searchable.
    pub indexed_seq: AtomicI64,
    /// Set once the index has caught up with Postgres after start.
    pub caught_up: AtomicBool,
    /// Retention asks for documents older than this (µs since epoch) to be deleted;
    /// 0 when nothing is pending. The indexer applies it, being the only committer.
    pub delete_before: AtomicI64,
}

/// How often catching up is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Run until `shutdown` flips to true. `batches` are the local writer's freshly
/// committed batches (see [`Follower`]); without it the indexer reads Postgres only.
pub async fn run(
    logs: Arc<LogStore>,
    index: Arc<LogIndex>,
    committed: watch::Receiver<i64>,
    batches: Option<broadcast::Receiver<Batch>>,
    status: Arc<IndexerStatus>,
    shutdown: CancellationToken,
) {
    let mut follower = Follower::new(logs, index.checkpoint(), batches, committed);
    status.indexed_seq.store(follower.last, Ordering::Relaxed);
    let mut uncommitted = 0usize;
    // Catching up (first start, a rebuild, a long stop) is logged as it goes.
    let behind = follower.target() - follower.last;
    let mut progress = (behind > 10_000).then(|| {
        tracing::info!(
            from_seq = follower.last,
            to_seq = follower.target(),
            "index catching up with the database"
        );
        std::time::Instant::now()
    });
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let expired = status.delete_before.swap(0, Ordering::Relaxed);
        if expired > 0 {
            let applied = index.delete_before(expired);
            if let Err(err) = applied {
                tracing::error!(error = %err, "index retention delete failed");
            } else if commit(&index, follower.last).await.is_ok() {
                uncommitted = 0;
                status.indexed_seq.store(follower.last, Ordering::Relaxed);
            }
        }
        let before = follower.last;
        let batch = match follower.next(FETCH).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "indexer cannot read postgres; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        if !batch.is_empty() {
            let full = batch.len() as i64 >= FETCH;
            uncommitted += batch.len();
            let index2 = index.clone();
            let added = tokio::task::spawn_blocking(move || index2.add(&batch)).await;
            if let Err(err) = added
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::error!(error = %err, "indexing failed; retrying");
                follower.last = before;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if !full || uncommitted >= CATCH_UP_COMMIT_DOCS {
                if let Err(err) = commit(&index, follower.last).await {
                    tracing::error!(error = %err, "index commit failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                uncommitted = 0;
                status.indexed_seq.store(follower.last, Ordering::Relaxed);
            }
            if let Some(logged) = progress.as_mut()
                && logged.elapsed() >= PROGRESS_EVERY
            {
                tracing::info!(
                    indexed_seq = follower.last,
                    to_seq = follower.target(),
                    "index catching up"
                );
                *logged = std::time::Instant::now();
            }
            if full {
                continue;
            }
            if progress.take().is_some() {
                tracing::info!(indexed_seq = follower.last, "index caught up");
            }
            // A short batch means everything visible has been indexed.
            mark_caught_up(&status, follower.last);
            continue;
        }
        if uncommitted > 0 && commit(&index, follower.last).await.is_ok() {
            uncommitted = 0;
            status.indexed_seq.store(follower.last, Ordering::Relaxed);
        }
        mark_caught_up(&status, follower.last);
        follower.wait(POLL, &shutdown).await;
    }
    if uncommitted > 0 {
        let _ = commit(&index, follower.last).await;
    }
}

fn mark_caught_up(status: &IndexerStatus, checkpoint: i64) {
    if !status.caught_up.swap(true, Ordering::Relaxed) {
        tracing::info!(checkpoint, "index caught up with postgres");
    }
}

async fn commit(index: &Arc<LogIndex>, checkpoint: i64) -> crate::Result<()> {
    let index = index.clone();
    tokio::task::spawn_blocking(move || index.commit(checkpoint))
        .await
        .map_err(|err| crate::StorageError::Internal(err.to_string()))?
}
