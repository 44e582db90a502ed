//! Backtests: replay stored events through a rule as if it had been enabled, at once
//! or as a cancellable background job over time slices.

use super::*;

/// What a backtest found.
#[derive(Debug, Clone)]
pub struct BacktestResult {
    pub rule_id: String,
    pub events_scanned: usize,
    pub truncated: bool,
    pub alerts: Vec<BacktestAlert>,
    /// Alerts raised per hour (by the hour of their first event).
    pub per_hour: Vec<HourCount>,
}

#[derive(Debug, Clone)]
pub struct BacktestAlert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct HourCount {
    pub hour: DateTime<Utc>,
    pub alerts: u64,
}

/// Replay `events` (oldest first) through `rule` as if it had been enabled: match and
/// sequence rules per event; threshold rules evaluated every `interval`.
pub fn backtest(rule: &Rule, events: &[StoredLog], truncated: bool) -> BacktestResult {
    use chrono::{DurationRound, TimeDelta};
    // Backtests read the index, which holds one document per Kubernetes request: the
    // richest line, which may not be the line the live evaluator saw (an exec's
    // ResponseComplete replaces its ResponseStarted). Each is the request's only
    // representative here, so each is evaluated.
    let events: Vec<StoredLog> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if !k8saudit::inventory::evaluable(&e.record)
                && e.record
                    .attributes
                    .get(k8saudit::attr::AUDIT_RECORD)
                    .and_then(serde_json::Value::as_str)
                    == Some("update")
            {
                e.record.attributes.insert(
                    k8saudit::attr::AUDIT_DETECT.into(),
                    serde_json::Value::Bool(true),
                );
            }
            e
        })
        .collect();
    let events = events.as_slice();
    let mut alerts: BTreeMap<String, BacktestAlert> = BTreeMap::new();
    let mut record = |hit: Hit, count: u64, replace: bool| {
        let entry = alerts
            .entry(hit.fingerprint.clone())
            .or_insert(BacktestAlert {
                fingerprint: hit.fingerprint.clone(),
                labels: hit.labels.clone(),
                count: 0,
                first_at: hit.at,
                last_at: hit.at,
            });
        entry.count = if replace {
            entry.count.max(count)
        } else {
            entry.count + count
        };
        entry.last_at = entry.last_at.max(hit.at);
    };
    match &rule.spec {
        Spec::Match => {
            for e in events {
                if let Some(hit) = match_event(rule, &e.record, e.seq) {
                    record(hit, 1, false);
                }
            }
        }
        Spec::Sequence { .. } => {
            let mut state = SequenceState::default();
            for e in events {
                if let Some(hit) = state.on_event(rule, &e.record, e.seq) {
                    let count = hit.count;
                    record(hit, count, false);
                }
            }
        }
        // Refused before replay (web::backtests): a metric rule has no log events.
        Spec::Metric { .. } => {}
        // No stored history in a replay: the first `learning` of the range learns.
        Spec::NewTerms { .. } => {
            for hit in
                crate::engine::new_terms_replay(rule, events.iter().map(|e| (e.seq, &e.record)))
            {
                record(hit, 1, false);
            }
        }
        Spec::Threshold { interval, .. } => {
            let refs: Vec<(i64, &LogRecord)> = events.iter().map(|e| (e.seq, &e.record)).collect();
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                let step =
                    chrono::Duration::from_std(*interval).unwrap_or(chrono::Duration::seconds(60));
                let mut now = first.record.time;
                while now <= last.record.time + step {
                    for g in threshold_groups(rule, &refs, now) {
                        if g.holds {
                            let mut hit = g.hit.clone();
                            hit.at = now;
                            record(hit, g.value as u64, true);
                        }
                    }
                    now += step;
                }
            }
        }
    }
    let mut per_hour: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
    for a in alerts.values() {
        let hour = a
            .first_at
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or(a.first_at);
        *per_hour.entry(hour).or_default() += 1;
    }
    BacktestResult {
        rule_id: rule.id().to_string(),
        events_scanned: events.len(),
        truncated,
        alerts: alerts.into_values().collect(),
        per_hour: per_hour
            .into_iter()
            .map(|(hour, alerts)| HourCount { hour, alerts })
            .collect(),
    }
}

/// A background backtest as seen from outside.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub id: Uuid,
    pub rule_id: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub state: &'static str,
    /// 0 to 1.
    pub progress: f64,
    pub events_scanned: u64,
    pub started_at: DateTime<Utc>,
    pub result: Option<BacktestResult>,
    pub error: Option<String>,
}

/// A backtest running in the background: progress per time slice, cancellable.
pub struct BacktestJob {
    pub id: Uuid,
    pub tenant: TenantId,
    pub rule_id: String,
    pub started_at: DateTime<Utc>,
    state: Mutex<JobState>,
    cancelled: std::sync::atomic::AtomicBool,
    slices_done: std::sync::atomic::AtomicUsize,
    slices: usize,
    scanned: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone)]
enum JobState {
    Running,
    Done(BacktestResult),
    Cancelled,
    Failed(String),
}

impl BacktestJob {
    /// `{"id","rule_id","state","progress","events_scanned","result"?,"error"?}`
    pub fn status(&self) -> JobStatus {
        use std::sync::atomic::Ordering;
        let state = self.state.lock().expect("job lock").clone();
        let (name, result, error) = match state {
            JobState::Running => ("running", None, None),
            JobState::Done(r) => ("done", Some(r), None),
            JobState::Cancelled => ("cancelled", None, None),
            JobState::Failed(e) => ("failed", None, Some(e)),
        };
        let done = self.slices_done.load(Ordering::Relaxed);
        JobStatus {
            id: self.id,
            rule_id: self.rule_id.clone(),
            state: name,
            progress: if name == "done" {
                1.0
            } else {
                done as f64 / self.slices.max(1) as f64
            },
            events_scanned: self.scanned.load(Ordering::Relaxed) as u64,
            started_at: self.started_at,
            result,
            error,
        }
    }

    /// Ask the job to stop; a running job is marked cancelled at once.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut state = self.state.lock().expect("job lock");
        if matches!(*state, JobState::Running) {
            *state = JobState::Cancelled;
        }
    }

    fn finish(&self, outcome: JobState) {
        let mut state = self.state.lock().expect("job lock");
        if matches!(*state, JobState::Running) {
            *state = outcome;
        }
    }
}

/// Background backtests, per process; finished jobs are kept for an hour.
#[derive(Default)]
pub struct BacktestJobs {
    jobs: Mutex<HashMap<Uuid, Arc<BacktestJob>>>,
}

impl BacktestJobs {
    pub fn get(&self, tenant: TenantId, id: Uuid) -> Option<Arc<BacktestJob>> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .get(&id)
            .filter(|j| j.tenant == tenant)
            .cloned()
    }

    /// Start a backtest of `rule` over `[from, to]`, scanned in up to 48 time slices.
    pub fn start(
        &self,
        engine: Arc<Engine>,
        tenant: TenantId,
        rule: Rule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Arc<BacktestJob> {
        let hours = ((to - from).num_hours() + 1).clamp(1, 48) as usize;
        let job = Arc::new(BacktestJob {
            id: Uuid::now_v7(),
            tenant,
            rule_id: rule.id().to_string(),
            started_at: Utc::now(),
            state: Mutex::new(JobState::Running),
            cancelled: std::sync::atomic::AtomicBool::new(false),
            slices_done: std::sync::atomic::AtomicUsize::new(0),
            slices: hours,
            scanned: std::sync::atomic::AtomicUsize::new(0),
        });
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            let cutoff = Utc::now() - chrono::Duration::hours(1);
            jobs.retain(|_, j| {
                j.started_at > cutoff
                    || matches!(*j.state.lock().expect("job lock"), JobState::Running)
            });
            jobs.insert(job.id, job.clone());
        }
        let task_job = job.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            let job = task_job;
            let step = (to - from) / job.slices as i32;
            let mut events = Vec::new();
            for i in 0..job.slices {
                if job.cancelled.load(Ordering::Relaxed) {
                    return;
                }
                let slice_from = from + step * i as i32;
                let slice_to = if i + 1 == job.slices {
                    to
                } else {
                    from + step * (i as i32 + 1) - chrono::Duration::microseconds(1)
                };
                match engine
                    .candidate_events(tenant, &rule, slice_from, slice_to)
                    .await
                {
                    Ok(mut found) => {
                        job.scanned.fetch_add(found.len(), Ordering::Relaxed);
                        events.append(&mut found);
                    }
                    Err(err) => {
                        job.finish(JobState::Failed(err.to_string()));
                        return;
                    }
                }
                job.slices_done.store(i + 1, Ordering::Relaxed);
                if events.len() >= MAX_EVALUATED_EVENTS {
                    break;
                }
            }
            let truncated = events.len() >= MAX_EVALUATED_EVENTS;
            events.truncate(MAX_EVALUATED_EVENTS);
            let result =
                tokio::task::spawn_blocking(move || backtest(&rule, &events, truncated)).await;
            match result {
                Ok(result) => job.finish(JobState::Done(result)),
                Err(err) => job.finish(JobState::Failed(err.to_string())),
            }
        });
        job
    }
}
