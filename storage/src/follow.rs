//! Following the committed sequence of `log_records`.
//!
//! A [`Follower`] yields batches of committed records in sequence order, each batch
//! continuing exactly where the last ended. When the local ingest writer hands over
//! the batch it just committed (a `broadcast` channel) and that batch starts at
//! `last + 1`, it is used as is; otherwise — a gap (another replica committed in
//! between), a lagged channel, a restart — the follower reads Postgres, the system of
//! record. Either way a record is never skipped and never yielded twice.

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use model::StoredLog;
use tokio::sync::{broadcast, watch};

use crate::Result;
use crate::logs::LogStore;

pub type Batch = Arc<Vec<StoredLog>>;

pub struct Follower {
    logs: Arc<LogStore>,
    batches: Option<broadcast::Receiver<Batch>>,
    committed: watch::Receiver<i64>,
    pending: Option<Batch>,
    /// Highest sequence id yielded so far.
    pub last: i64,
}

impl Follower {
    pub fn new(
        logs: Arc<LogStore>,
        last: i64,
        batches: Option<broadcast::Receiver<Batch>>,
        committed: watch::Receiver<i64>,
    ) -> Follower {
        Follower {
            logs,
            batches,
            committed,
            pending: None,
            last,
        }
    }

    fn take_contiguous(&mut self, batch: Batch) -> Option<Batch> {
        let (first, last) = (batch.first()?.seq, batch.last()?.seq);
        if last <= self.last {
            return None; // already yielded
        }
        if first == self.last + 1 {
            self.last = last;
            return Some(batch);
        }
        None // a gap: Postgres fills it
    }

    /// The next batch after `last`, at most `limit` records from Postgres; empty when
    /// caught up.
    pub async fn next(&mut self, limit: i64) -> Result<Batch> {
        if let Some(batch) = self.pending.take()
            && let Some(batch) = self.take_contiguous(batch)
        {
            return Ok(batch);
        }
        if let Some(rx) = self.batches.as_mut() {
            loop {
                match rx.try_recv() {
                    Ok(batch) => {
                        let (first, last) = match (batch.first(), batch.last()) {
                            (Some(f), Some(l)) => (f.seq, l.seq),
                            _ => continue,
                        };
                        if last <= self.last {
                            continue;
                        }
                        if first == self.last + 1 {
                            self.last = last;
                            return Ok(batch);
                        }
                        break;
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(broadcast::error::TryRecvError::Closed) => {
                        self.batches = None;
                        break;
                    }
                }
            }
        }
        let batch = self.logs.fetch_after(self.last, limit).await?;
        if let Some(last) = batch.last() {
            self.last = last.seq;
        }
        Ok(Arc::new(batch))
    }

    /// The highest committed sequence id this process knows of.
    pub fn target(&self) -> i64 {
        *self.committed.borrow()
    }

    /// Wait until there may be more: a batch from the local writer, a new committed
    /// sequence id, `poll` (rows committed by other processes), or `shutdown`.
    pub async fn wait(&mut self, poll: Duration, shutdown: &CancellationToken) {
        if *self.committed.borrow_and_update() > self.last {
            return;
        }
        match self.batches.as_mut() {
            Some(rx) => {
                tokio::select! {
                    received = rx.recv() => {
                        if let Ok(batch) = received {
                            self.pending = Some(batch);
                        }
                    }
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = self.committed.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}
