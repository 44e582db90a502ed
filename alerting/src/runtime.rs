//! The running rule engine.
//!
//! Tasks (started by the server):
//! * [`Engine::run_events`] follows the committed sequence of `log_records` (like the
//!   indexer) and evaluates `match` and `sequence` rules on every event. The alert
//!   changes of a batch and the new checkpoint commit in one transaction, so evidence
//!   is counted exactly once across restarts.
//! * [`Engine::run_schedule`] ticks every second: evaluates due `threshold` rules
//!   through the index, lets quiet alerts resolve, refreshes silences.
//!
//! State: `active` (non-resolved alerts, keyed by tenant and fingerprint) and
//! `sequences` live in memory behind mutexes held only between awaits, and are
//! rebuilt from Postgres at start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, Utc};
use model::{LogRecord, StoredLog, TenantId};
use query::search::{Order, SearchRequest, SearchService, TimeRange};
use storage::alerts::{AlertChange, AlertRow, AlertStore, TransitionRow};
use storage::index::LogIndex;
use storage::logs::LogStore;
use tokio::sync::watch;
use uuid::Uuid;

use crate::engine::{Hit, SequenceState, match_event, threshold_groups};
use crate::lifecycle::{Alert, State, Timing, Transition};
use crate::rule::{Kind, Rule, Spec};
use crate::silence::{Matcher, Recurrence, silences};

const CHECKPOINT: &str = "rules";
const BATCH: i64 = 2_000;
/// Most events a threshold evaluation or a backtest reads.
pub const MAX_EVALUATED_EVENTS: usize = 100_000;

/// The rules in force: file rules apply to every tenant; API rules to their tenant
/// (and replace a file rule with the same id there).
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    pub file: Vec<Arc<Rule>>,
    pub tenants: HashMap<TenantId, Vec<Arc<Rule>>>,
}

impl RuleSet {
    pub fn for_tenant(&self, tenant: TenantId) -> Vec<Arc<Rule>> {
        let own = self.tenants.get(&tenant).cloned().unwrap_or_default();
        let mut rules: Vec<Arc<Rule>> = self
            .file
            .iter()
            .filter(|f| !own.iter().any(|o| o.id() == f.id()))
            .cloned()
            .collect();
        rules.extend(own);
        rules.retain(|r| r.doc.enabled);
        rules
    }

    pub fn find(&self, tenant: TenantId, id: &str) -> Option<Arc<Rule>> {
        self.for_tenant(tenant).into_iter().find(|r| r.id() == id)
    }
}

struct Active {
    row: AlertRow,
    alert: Alert,
}

/// A silence in force.
struct ActiveSilence {
    tenant: TenantId,
    matchers: Vec<Matcher>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    recurrence: Option<Recurrence>,
}

pub struct Engine {
    store: AlertStore,
    logs: Arc<LogStore>,
    /// The typed query core: the same search path as the API.
    search: SearchService,
    rules: RwLock<Arc<RuleSet>>,
    active: Mutex<HashMap<(TenantId, String), Active>>,
    sequences: Mutex<HashMap<(TenantId, String), SequenceState>>,
    silences: RwLock<Vec<ActiveSilence>>,
    next_due: Mutex<HashMap<(TenantId, String), DateTime<Utc>>>,
    /// Tenants to evaluate file threshold rules for.
    tenants: RwLock<Vec<TenantId>>,
    /// Correlation signals of the changes not yet saved (see [`crate::signal`]).
    /// Kept per path (index 0: event evaluation, 1: the threshold schedule), which
    /// run concurrently and save their changes separately.
    pending_signals: [Mutex<Vec<LogRecord>>; 2],
    signal_sink: RwLock<Option<SignalSink>>,
}

/// Where correlation signals go once their alert changes are saved: the server
/// passes its ingest writer, so signals are ordinary committed records.
pub type SignalSink = Arc<dyn Fn(Vec<LogRecord>) + Send + Sync>;

fn timing(rule: &Rule) -> Timing {
    Timing {
        for_: rule.for_,
        resolve_after: if rule.doc.kind == Kind::Threshold && rule.doc.resolve_after.is_none() {
            Duration::ZERO
        } else {
            rule.resolve_after
        },
        keep_firing_for: rule.keep_firing_for,
    }
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "info" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

fn to_row_transitions(ts: Vec<Transition>, silenced: bool) -> Vec<TransitionRow> {
    ts.into_iter()
        .map(|t| TransitionRow {
            from: t.from.map(|s| s.as_str().to_string()),
            to: t.to.as_str().to_string(),
            at: t.at,
            silenced,
        })
        .collect()
}

fn labels_of(row: &AlertRow) -> BTreeMap<String, String> {
    serde_json::from_value(row.labels.clone()).unwrap_or_default()
}

impl Engine {
    pub fn new(
        store: AlertStore,
        logs: Arc<LogStore>,
        index: Arc<LogIndex>,
        rules: RuleSet,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            logs: logs.clone(),
            search: SearchService::new(index, logs),
            rules: RwLock::new(Arc::new(rules)),
            active: Mutex::new(HashMap::new()),
            sequences: Mutex::new(HashMap::new()),
            silences: RwLock::new(Vec::new()),
            next_due: Mutex::new(HashMap::new()),
            tenants: RwLock::new(Vec::new()),
            pending_signals: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            signal_sink: RwLock::new(None),
        })
    }

    /// Send correlation signals to `sink` from now on.
    pub fn set_signal_sink(&self, sink: SignalSink) {
        *self.signal_sink.write().expect("sink lock") = Some(sink);
    }

    /// Hand the signals of saved changes to the sink (or drop them when the changes
    /// were not saved: re-evaluation produces them again).
    fn finish_signals(&self, path: usize, saved: bool) {
        let signals = std::mem::take(&mut *self.pending_signals[path].lock().expect("signal lock"));
        if !saved || signals.is_empty() {
            return;
        }
        if let Some(sink) = self.signal_sink.read().expect("sink lock").clone() {
            sink(signals);
        }
    }

    pub fn store(&self) -> &AlertStore {
        &self.store
    }

    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().expect("rules lock").clone()
    }

    pub fn set_rules(&self, rules: RuleSet) {
        *self.rules.write().expect("rules lock") = Arc::new(rules);
    }

    pub fn set_tenants(&self, tenants: Vec<TenantId>) {
        *self.tenants.write().expect("tenants lock") = tenants;
    }

    /// Load the working set (active alerts, sequence progress, silences) from Postgres.
    pub async fn restore(&self) -> crate::Result<()> {
        let rows = self.store.active().await?;
        {
            let mut active = self.active.lock().expect("active lock");
            active.clear();
            for row in rows {
                let alert = Alert {
                    state: State::parse(&row.state).unwrap_or(State::Firing),
                    started_at: row.started_at,
                    firing_at: row.firing_at,
                    resolved_at: row.resolved_at,
                    last_true_at: row.last_true_at,
                    event_ids: row.event_ids.clone(),
                    count: row.event_count as u64,
                };
                active.insert(
                    (row.tenant_id, row.fingerprint.clone()),
                    Active { row, alert },
                );
            }
        }
        let states = self.store.sequence_states().await?;
        {
            let mut sequences = self.sequences.lock().expect("sequence lock");
            for (tenant, rule, state) in states {
                if let Ok(state) = serde_json::from_value::<SequenceState>(state) {
                    sequences.insert((tenant, rule), state);
                }
            }
        }
        self.refresh_silences().await
    }

    /// Re-read active silences (also called by the API right after a change).
    pub async fn refresh_silences(&self) -> crate::Result<()> {
        let rows = self.store.active_silences().await?;
        let parsed = rows
            .into_iter()
            .filter_map(|(tenant, s)| {
                let matchers: Vec<Matcher> = serde_json::from_value(s.matchers).ok()?;
                let recurrence = match (&s.schedule, s.duration_secs) {
                    (Some(schedule), Some(secs)) => Some(
                        Recurrence::parse(schedule, Duration::from_secs(secs.max(1) as u64))
                            .ok()?,
                    ),
                    _ => None,
                };
                Some(ActiveSilence {
                    tenant,
                    matchers,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    recurrence,
                })
            })
            .collect();
        *self.silences.write().expect("silences lock") = parsed;
        Ok(())
    }

    fn silenced(
        &self,
        tenant: TenantId,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> bool {
        self.silences
            .read()
            .expect("silences lock")
            .iter()
            .any(|s| {
                s.tenant == tenant
                    && silences(
                        &s.matchers,
                        s.starts_at,
                        s.ends_at,
                        s.recurrence.as_ref(),
                        labels,
                        now,
                    )
            })
    }

    /// Turn hits into alert changes (open or update), at processing time `now`.
    fn apply_hits(
        &self,
        tenant: TenantId,
        rule: &Rule,
        hits: Vec<Hit>,
        now: DateTime<Utc>,
        snapshot: bool,
    ) -> Vec<AlertChange> {
        let timing = timing(rule);
        let mut changes = Vec::new();
        let mut active = self.active.lock().expect("active lock");
        for hit in hits {
            let key = (tenant, hit.fingerprint.clone());
            let silenced = self.silenced(tenant, &hit.labels, now);
            if let Some(entry) = active.get_mut(&key) {
                let before = entry.alert.count;
                let transitions = entry.alert.holds(now, &timing, &hit.event_ids, hit.count);
                if snapshot {
                    // Threshold: the evidence is the current window, not a running sum.
                    entry.alert.count = before.max(hit.count);
                }
                if entry.alert.count > before
                    && let Some(signal) =
                        crate::signal::signal_record(tenant, rule, &hit, entry.row.id)
                {
                    self.pending_signals[usize::from(snapshot)]
                        .lock()
                        .expect("signal lock")
                        .push(signal);
                }
                entry.row.annotations = serde_json::to_value(&hit.annotations).unwrap_or_default();
                entry.row.silenced = silenced;
                // An escalated event raises the open alert; nothing lowers it.
                if let Some(severity) = hit.labels.get("severity")
                    && severity_rank(severity) > severity_rank(&entry.row.severity)
                {
                    entry.row.severity = severity.clone();
                    entry.row.labels["severity"] = serde_json::json!(severity);
                }
                sync_row(&mut entry.row, &entry.alert);
                changes.push(AlertChange {
                    alert: entry.row.clone(),
                    is_new: false,
                    transitions: to_row_transitions(transitions, silenced),
                });
                continue;
            }
            let (alert, transitions) = Alert::open(now, &timing, &hit.event_ids, hit.count);
            let mut row = AlertRow {
                id: Uuid::now_v7(),
                tenant_id: tenant,
                rule_id: rule.id().to_string(),
                fingerprint: hit.fingerprint.clone(),
                state: String::new(),
                severity: hit
                    .labels
                    .get("severity")
                    .cloned()
                    .unwrap_or_else(|| rule.doc.severity.as_str().to_string()),
                labels: serde_json::to_value(&hit.labels).unwrap_or_default(),
                annotations: serde_json::to_value(&hit.annotations).unwrap_or_default(),
                event_ids: Vec::new(),
                event_count: 0,
                started_at: now,
                firing_at: None,
                resolved_at: None,
                last_true_at: now,
                silenced,
            };
            sync_row(&mut row, &alert);
            if let Some(signal) = crate::signal::signal_record(tenant, rule, &hit, row.id) {
                self.pending_signals[usize::from(snapshot)]
                    .lock()
                    .expect("signal lock")
                    .push(signal);
            }
            changes.push(AlertChange {
                alert: row.clone(),
                is_new: true,
                transitions: to_row_transitions(transitions, silenced),
            });
            active.insert(key, Active { row, alert });
        }
        changes
    }

    /// Evaluate `match` and `sequence` rules on a batch of committed records.
    pub fn evaluate_events(
        &self,
        batch: &[StoredLog],
        now: DateTime<Utc>,
    ) -> (Vec<AlertChange>, Vec<(TenantId, String)>) {
        let rules = self.rules();
        let mut changes = Vec::new();
        let mut touched_sequences = Vec::new();
        let mut by_tenant: HashMap<TenantId, Vec<Arc<Rule>>> = HashMap::new();
        for stored in batch {
            let tenant = stored.record.tenant_id;
            let tenant_rules = by_tenant
                .entry(tenant)
                .or_insert_with(|| rules.for_tenant(tenant));
            for rule in tenant_rules.iter() {
                let hit = match rule.spec {
                    Spec::Match => match_event(rule, &stored.record, stored.seq),
                    Spec::Sequence { .. } => {
                        let key = (tenant, rule.id().to_string());
                        let mut sequences = self.sequences.lock().expect("sequence lock");
                        let state = sequences.entry(key.clone()).or_default();
                        let before = state.progress.len();
                        let hit = state.on_event(rule, &stored.record, stored.seq);
                        if hit.is_some()
                            || state.progress.len() != before
                            || !state.progress.is_empty()
                        {
                            touched_sequences.push(key);
                        }
                        hit
                    }
                    Spec::Threshold { .. } => None,
                };
                if let Some(hit) = hit {
                    changes.extend(self.apply_hits(tenant, rule, vec![hit], now, false));
                }
            }
        }
        touched_sequences.sort();
        touched_sequences.dedup();
        (changes, touched_sequences)
    }

    async fn persist_sequences(&self, keys: &[(TenantId, String)]) {
        for key in keys {
            let state = {
                let sequences = self.sequences.lock().expect("sequence lock");
                sequences.get(key).cloned().unwrap_or_default()
            };
            let value = serde_json::to_value(&state).unwrap_or_default();
            if let Err(err) = self.store.save_sequence_state(key.0, &key.1, &value).await {
                tracing::warn!(error = %err, rule = %key.1, "cannot save sequence progress");
            }
        }
    }

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
                let Ok((changes, sequences)) = evaluated else {
                    tracing::error!("rule evaluation panicked; retrying the batch");
                    follower.last = before;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
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

    /// Events of `tenant` matching a rule's query in `[from, to]`, oldest first (at
    /// most [`MAX_EVALUATED_EVENTS`]).
    pub async fn candidate_events(
        &self,
        tenant: TenantId,
        rule: &Rule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> crate::Result<Vec<StoredLog>> {
        let query_text = rule
            .selector
            .query_text
            .clone()
            .or_else(|| match &rule.spec {
                Spec::Sequence { steps, .. } => {
                    let parts: Vec<String> = steps
                        .iter()
                        .filter_map(|s| s.selector.query_text.clone())
                        .map(|q| format!("({q})"))
                        .collect();
                    (parts.len() == steps.len()).then(|| parts.join(" OR "))
                }
                _ => None,
            })
            .unwrap_or_default();
        let query = query::parse::parse(&query_text)
            .map_err(|e| crate::AlertingError::Invalid(e.to_string()))?;
        let request = SearchRequest {
            tenant,
            query,
            range: TimeRange { from, to },
            limit: MAX_EVALUATED_EVENTS,
            cursor: None,
            order: Order::Newest,
        };
        let mut events = self.search.run(&request).await?.events;
        events.sort_by_key(|e| (e.record.time, e.seq));
        Ok(events)
    }

    async fn evaluate_threshold(
        &self,
        tenant: TenantId,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> crate::Result<Vec<AlertChange>> {
        let Spec::Threshold { window, also, .. } = &rule.spec else {
            return Ok(Vec::new());
        };
        let longest = also.iter().map(|a| a.window).fold(*window, Duration::max);
        let from = now - chrono::Duration::from_std(longest).unwrap_or_default();
        let events = self.candidate_events(tenant, rule, from, now).await?;
        let refs: Vec<(i64, &LogRecord)> = events.iter().map(|e| (e.seq, &e.record)).collect();
        let groups = threshold_groups(rule, &refs, now);
        let holding: Vec<Hit> = groups
            .iter()
            .filter(|g| g.holds)
            .map(|g| {
                let mut hit = g.hit.clone();
                hit.count = g.value as u64;
                hit
            })
            .collect();
        let holding_fps: HashSet<String> = holding.iter().map(|h| h.fingerprint.clone()).collect();
        let mut changes = self.apply_hits(tenant, rule, holding, now, true);
        // Groups of this rule that no longer hold: let them go quiet.
        let timing = timing(rule);
        let mut active = self.active.lock().expect("active lock");
        for ((t, fp), entry) in active.iter_mut() {
            if *t != tenant || entry.row.rule_id != rule.id() || holding_fps.contains(fp) {
                continue;
            }
            let transitions = entry.alert.quiet(now, &timing);
            if !transitions.is_empty() {
                sync_row(&mut entry.row, &entry.alert);
                changes.push(AlertChange {
                    alert: entry.row.clone(),
                    is_new: false,
                    transitions: to_row_transitions(transitions, entry.row.silenced),
                });
            }
        }
        active.retain(|_, e| e.alert.state != State::Resolved);
        Ok(changes)
    }

    /// One scheduler tick at `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> crate::Result<()> {
        self.refresh_silences().await?;
        let rules = self.rules();
        let mut changes = Vec::new();
        // Quiet periods of match and sequence alerts; silence changes.
        {
            let mut active = self.active.lock().expect("active lock");
            for ((tenant, _), entry) in active.iter_mut() {
                let Some(rule) = rules.find(*tenant, &entry.row.rule_id) else {
                    continue;
                };
                let silenced = self.silenced(*tenant, &labels_of(&entry.row), now);
                let mut transitions = Vec::new();
                if rule.doc.kind != Kind::Threshold {
                    transitions = entry.alert.quiet(now, &timing(&rule));
                }
                if !transitions.is_empty() || silenced != entry.row.silenced {
                    entry.row.silenced = silenced;
                    sync_row(&mut entry.row, &entry.alert);
                    changes.push(AlertChange {
                        alert: entry.row.clone(),
                        is_new: false,
                        transitions: to_row_transitions(transitions, silenced),
                    });
                }
            }
            active.retain(|_, e| e.alert.state != State::Resolved);
        }
        // Due threshold rules, per tenant.
        let tenants = self.tenants.read().expect("tenants lock").clone();
        for tenant in tenants {
            for rule in rules.for_tenant(tenant) {
                let Spec::Threshold { interval, .. } = &rule.spec else {
                    continue;
                };
                let key = (tenant, rule.id().to_string());
                let due = self.next_due.lock().expect("due lock").get(&key).copied();
                if due.is_some_and(|d| d > now) {
                    continue;
                }
                self.next_due.lock().expect("due lock").insert(
                    key,
                    now + chrono::Duration::from_std(*interval).unwrap_or_default(),
                );
                match self.evaluate_threshold(tenant, &rule, now).await {
                    Ok(c) => changes.extend(c),
                    Err(err) => {
                        tracing::warn!(error = %err, rule = rule.id(), "threshold evaluation failed")
                    }
                }
            }
        }
        if !changes.is_empty() {
            let saved = self.store.apply(&changes, None).await;
            self.finish_signals(1, saved.is_ok());
            saved?;
        }
        Ok(())
    }

    /// Tick every second until `shutdown`.
    pub async fn run_schedule(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.tick(Utc::now()).await {
                tracing::warn!(error = %err, "rule scheduler tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

fn sync_row(row: &mut AlertRow, alert: &Alert) {
    row.state = alert.state.as_str().to_string();
    row.started_at = alert.started_at;
    row.firing_at = alert.firing_at;
    row.resolved_at = alert.resolved_at;
    row.last_true_at = alert.last_true_at;
    row.event_ids = alert.event_ids.clone();
    row.event_count = alert.count as i64;
}

/// What a backtest found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BacktestResult {
    pub rule_id: String,
    pub events_scanned: usize,
    pub truncated: bool,
    pub alerts: Vec<BacktestAlert>,
    /// Alerts raised per hour (by the hour of their first event).
    pub per_hour: Vec<HourCount>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BacktestAlert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize)]
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

impl Engine {
    /// Re-read every tenant's API rules from Postgres, keeping the file rules.
    pub async fn reload_tenant_rules(&self) -> crate::Result<()> {
        let rows = self.store.all_rules().await?;
        let file = self.rules().file.clone();
        let mut tenants: HashMap<TenantId, Vec<Arc<Rule>>> = HashMap::new();
        for (tenant, row) in rows {
            match crate::rule::tenant_rule(&row.yaml, &file) {
                Ok(rule) => tenants.entry(tenant).or_default().push(Arc::new(rule)),
                Err(err) => {
                    tracing::error!(error = %err, rule = %row.id, "stored rule no longer valid; skipped")
                }
            }
        }
        self.set_rules(RuleSet { file, tenants });
        Ok(())
    }
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
    pub fn status(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering;
        let state = self.state.lock().expect("job lock").clone();
        let (name, result, error) = match state {
            JobState::Running => ("running", None, None),
            JobState::Done(r) => ("done", Some(r), None),
            JobState::Cancelled => ("cancelled", None, None),
            JobState::Failed(e) => ("failed", None, Some(e)),
        };
        let done = self.slices_done.load(Ordering::Relaxed);
        serde_json::json!({
            "id": self.id,
            "rule_id": self.rule_id,
            "state": name,
            "progress": if name == "done" { 1.0 } else { done as f64 / self.slices.max(1) as f64 },
            "events_scanned": self.scanned.load(Ordering::Relaxed),
            "started_at": self.started_at,
            "result": result,
            "error": error,
        })
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
