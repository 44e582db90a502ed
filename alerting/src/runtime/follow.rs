//! Event following: [`Engine::run_events`] follows the committed sequence of
//! `log_records` and evaluates `match` and `sequence` rules on every event.

use super::*;

impl Engine {
    /// Follow the committed sequence until `shutdown`. `batches` are the local
    /// writer's freshly committed batches (see `storage::follow`).
    pub async fn run_events(
        self: Arc<Self>,
        committed: watch::Receiver<i64>,
        batches: Option<tokio::sync::broadcast::Receiver<storage::follow::Batch>>,
        shutdown: CancellationToken,
    ) {
        let checkpoint = match self.store.checkpoint(CHECKPOINT).await {
            Ok(Some(seq)) => seq,
            // First start: rules apply from now on (backtests cover the past).
            _ => self.logs.max_seq().await.unwrap_or(0),
        };
        let mut follower =
            storage::follow::Follower::new(self.logs.clone(), checkpoint, batches, committed);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let before = follower.last;
            let batch = match follower.next(BATCH).await {
                Ok(b) => b,
                Err(err) => {
                    tracing::warn!(error = %err, "rule evaluator cannot read postgres; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Some(last) = batch.last().map(|r| r.seq) {
                // CPU-bound (every rule on every record): keep it off the async workers
                // that serve ingest.
                let engine = self.clone();
                let evaluated =
                    tokio::task::spawn_blocking(move || engine.evaluate_events(&batch, Utc::now()))
                        .await;
                let Ok((mut changes, sequences)) = evaluated else {
                    tracing::error!("rule evaluation panicked; retrying the batch");
                    follower.last = before;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                changes.extend(self.resolve_terms(Utc::now()).await);
                match self.store.apply(&changes, Some((CHECKPOINT, last))).await {
                    Ok(()) => {
                        self.finish_signals(0, true);
                        self.persist_sequences(&sequences).await
                    }
                    Err(err) => {
                        self.finish_signals(0, false);
                        tracing::warn!(error = %err, "alert changes not saved; re-evaluating the batch");
                        follower.last = before;
                        // Re-read the working set so evidence is not double counted.
                        let _ = self.restore().await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            follower.wait(Duration::from_millis(250), &shutdown).await;
        }
    }
}
