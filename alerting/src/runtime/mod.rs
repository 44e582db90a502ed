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
//!
//! Files: this one holds the engine's state and how alerts change; [`follow`] the
//! event follower, [`schedule`] the scheduler, [`backtest`] backtests.

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

mod backtest;
mod follow;
mod schedule;

pub use backtest::{
    BacktestAlert, BacktestJob, BacktestJobs, BacktestResult, HourCount, JobStatus, backtest,
};

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
    /// Where metric rules load series (set by the server; without it metric rules
    /// are not evaluated).
    metrics: RwLock<Option<storage::metrics::MetricStore>>,
    /// Threshold rules an event just matched, with the highest such sequence number:
    /// the scheduler evaluates them as soon as the index holds that event, so an
    /// alert opens at the crossing instead of at the next `interval`.
    crossings: Mutex<HashMap<(TenantId, String), i64>>,
    /// In-memory sliding counts per group, which say when a group may have crossed.
    crossing_counts: Mutex<crate::engine::CrossingTracker>,
    crossing_wake: tokio::sync::Notify,
    index: Arc<LogIndex>,
    /// New-terms candidates of the batch being evaluated (combinations not written
    /// to Postgres within the last hour by this process); `run_events` resolves them.
    pending_terms: Mutex<Vec<TermCandidate>>,
    /// (tenant, rule, hash) → when this process last wrote the combination.
    known_terms: Mutex<HashMap<TermKey, DateTime<Utc>>>,
    /// (tenant, rule) → when its learning period started.
    terms_start: Mutex<HashMap<(TenantId, String), DateTime<Utc>>>,
    last_terms_prune: Mutex<Option<DateTime<Utc>>>,
}

/// (tenant, rule id, combination hash).
type TermKey = (TenantId, String, [u8; 16]);

/// A combination a new_terms rule saw that may be new.
struct TermCandidate {
    tenant: TenantId,
    rule: Arc<Rule>,
    terms: String,
    hash: [u8; 16],
    hit: Hit,
}

/// Combinations this process remembers having written (a map cleared when full).
const KNOWN_TERMS: usize = 1_000_000;

/// Where correlation signals go once their alert changes are saved: the server
/// passes its ingest writer, so signals are ordinary committed records.
pub type SignalSink = Arc<dyn Fn(Vec<LogRecord>) + Send + Sync>;

fn timing(rule: &Rule) -> Timing {
    Timing {
        for_: rule.for_,
        resolve_after: if matches!(rule.doc.kind, Kind::Threshold | Kind::Metric)
            && rule.doc.resolve_after.is_none()
        {
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

/// The change to save for `row` after `transitions`, with the notification it sends:
/// `trigger` when the alert starts firing or an open firing alert is raised by
/// `escalate`, `resolve` when a firing alert resolves; none while silenced.
fn change(row: &AlertRow, is_new: bool, transitions: Vec<Transition>, raised: bool) -> AlertChange {
    let fired = transitions.iter().any(|t| t.to == State::Firing);
    let resolved = transitions
        .iter()
        .any(|t| t.to == State::Resolved && t.from == Some(State::Firing));
    let notify = if row.silenced {
        None
    } else if fired || (raised && row.state == State::Firing.as_str()) {
        Some("trigger")
    } else if resolved {
        Some("resolve")
    } else {
        None
    };
    AlertChange {
        alert: row.clone(),
        is_new,
        transitions: to_row_transitions(transitions, row.silenced),
        notify,
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
            search: SearchService::new(index.clone(), logs),
            rules: RwLock::new(Arc::new(rules)),
            active: Mutex::new(HashMap::new()),
            sequences: Mutex::new(HashMap::new()),
            silences: RwLock::new(Vec::new()),
            next_due: Mutex::new(HashMap::new()),
            tenants: RwLock::new(Vec::new()),
            pending_signals: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            signal_sink: RwLock::new(None),
            metrics: RwLock::new(None),
            crossings: Mutex::new(HashMap::new()),
            crossing_counts: Mutex::new(Default::default()),
            crossing_wake: tokio::sync::Notify::new(),
            index,
            pending_terms: Mutex::new(Vec::new()),
            known_terms: Mutex::new(HashMap::new()),
            terms_start: Mutex::new(HashMap::new()),
            last_terms_prune: Mutex::new(None),
        })
    }

    /// Evaluate metric rules over this store from now on.
    pub fn set_metric_store(&self, store: storage::metrics::MetricStore) {
        *self.metrics.write().expect("metrics lock") = Some(store);
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
                let mut raised = false;
                if let Some(severity) = hit.labels.get("severity")
                    && severity_rank(severity) > severity_rank(&entry.row.severity)
                {
                    entry.row.severity = severity.clone();
                    entry.row.labels["severity"] = serde_json::json!(severity);
                    raised = true;
                }
                sync_row(&mut entry.row, &entry.alert);
                changes.push(change(&entry.row, false, transitions, raised));
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
            changes.push(change(&row, true, transitions, false));
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
        let mut crossed: Vec<((TenantId, String), i64)> = Vec::new();
        let mut by_tenant: HashMap<TenantId, Vec<Arc<Rule>>> = HashMap::new();
        for stored in batch {
            let tenant = stored.record.tenant_id;
            let tenant_rules = by_tenant
                .entry(tenant)
                .or_insert_with(|| rules.for_tenant(tenant));
            let mut gates = crate::gate::GateView::new(&stored.record);
            for rule in tenant_rules.iter() {
                // A closed gate: the rule's selector cannot hold for this record.
                if !matches!(rule.spec, Spec::Sequence { .. } | Spec::Metric { .. })
                    && !gates.open(&rule.gates)
                {
                    continue;
                }
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
                    Spec::Threshold { .. } => {
                        // A group already firing has crossed: the schedule keeps its
                        // evidence current. Of the others, a group whose in-memory count
                        // reaches the threshold is evaluated at once (through the index).
                        if crate::engine::counts(rule, &stored.record) {
                            let fp = crate::engine::group_fingerprint(rule, &stored.record);
                            let firing = self
                                .active
                                .lock()
                                .expect("active lock")
                                .get(&(tenant, fp))
                                .is_some_and(|a| a.alert.state == State::Firing);
                            let holds = !firing
                                && self.crossing_counts.lock().expect("crossing lock").observe(
                                    tenant,
                                    rule,
                                    &stored.record,
                                );
                            if holds {
                                crossed.push(((tenant, rule.id().to_string()), stored.seq));
                            }
                        }
                        None
                    }
                    Spec::Metric { .. } => None,
                    Spec::NewTerms { .. } => {
                        if let Some((terms, hash)) =
                            crate::engine::new_terms_key(rule, &stored.record)
                        {
                            let key = (tenant, rule.id().to_string(), hash);
                            let fresh = self
                                .known_terms
                                .lock()
                                .expect("terms lock")
                                .get(&key)
                                .is_some_and(|t| now - *t < chrono::Duration::hours(1));
                            if !fresh {
                                let hit =
                                    crate::engine::new_terms_hit(rule, &stored.record, stored.seq);
                                self.pending_terms.lock().expect("terms lock").push(
                                    TermCandidate {
                                        tenant,
                                        rule: rule.clone(),
                                        terms,
                                        hash,
                                        hit,
                                    },
                                );
                            }
                        }
                        None
                    }
                };
                if let Some(hit) = hit {
                    changes.extend(self.apply_hits(tenant, rule, vec![hit], now, false));
                }
            }
        }
        touched_sequences.sort();
        touched_sequences.dedup();
        if !crossed.is_empty() {
            let mut crossings = self.crossings.lock().expect("crossings lock");
            for (key, seq) in crossed {
                let e = crossings.entry(key).or_insert(seq);
                *e = (*e).max(seq);
            }
            drop(crossings);
            self.crossing_wake.notify_one();
        }
        (changes, touched_sequences)
    }

    /// Resolve the batch's new-terms candidates against Postgres: a combination that
    /// is new there (and past the rule's learning period) is an alert.
    pub(crate) async fn resolve_terms(&self, now: DateTime<Utc>) -> Vec<AlertChange> {
        let candidates = std::mem::take(&mut *self.pending_terms.lock().expect("terms lock"));
        let mut changes = Vec::new();
        for c in candidates {
            let Spec::NewTerms { history, learning } = &c.rule.spec else {
                continue;
            };
            let key = (c.tenant, c.rule.id().to_string());
            let cached = self
                .terms_start
                .lock()
                .expect("terms lock")
                .get(&key)
                .copied();
            let start = match cached {
                Some(s) => s,
                None => match self.store.new_terms_start(c.tenant, c.rule.id()).await {
                    Ok(s) => {
                        self.terms_start
                            .lock()
                            .expect("terms lock")
                            .insert(key.clone(), s);
                        s
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, rule = c.rule.id(), "new-terms state unavailable");
                        continue;
                    }
                },
            };
            let cutoff = c.hit.at - chrono::Duration::from_std(*history).unwrap_or_default();
            match self
                .store
                .new_terms_see(c.tenant, c.rule.id(), &c.hash, &c.terms, c.hit.at, cutoff)
                .await
            {
                Ok(new) => {
                    {
                        let mut known = self.known_terms.lock().expect("terms lock");
                        if known.len() >= KNOWN_TERMS {
                            known.clear();
                        }
                        known.insert((c.tenant, key.1.clone(), c.hash), now);
                    }
                    let learned =
                        now >= start + chrono::Duration::from_std(*learning).unwrap_or_default();
                    if new && learned {
                        changes.extend(self.apply_hits(c.tenant, &c.rule, vec![c.hit], now, false));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, rule = c.rule.id(), "new-terms state not saved")
                }
            }
        }
        changes
    }

    /// Forget new-terms combinations past their history, every ten minutes.
    pub(crate) async fn prune_terms(&self, now: DateTime<Utc>) {
        {
            let mut last = self.last_terms_prune.lock().expect("terms lock");
            if last.is_some_and(|l| now - l < chrono::Duration::minutes(10)) {
                return;
            }
            *last = Some(now);
        }
        let rules = self.rules();
        let tenants = self.tenants.read().expect("tenants lock").clone();
        for tenant in tenants {
            for rule in rules.for_tenant(tenant) {
                if let Spec::NewTerms { history, .. } = &rule.spec {
                    let cutoff = now - chrono::Duration::from_std(*history).unwrap_or_default();
                    if let Err(err) = self.store.new_terms_prune(tenant, rule.id(), cutoff).await {
                        tracing::warn!(error = %err, rule = rule.id(), "new-terms prune failed");
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, silenced: bool) -> AlertRow {
        let now = Utc::now();
        AlertRow {
            id: Uuid::nil(),
            tenant_id: TenantId(Uuid::nil()),
            rule_id: "r".into(),
            fingerprint: "f".into(),
            state: state.into(),
            severity: "high".into(),
            labels: serde_json::json!({}),
            annotations: serde_json::json!({}),
            event_ids: vec![1],
            event_count: 1,
            started_at: now,
            firing_at: None,
            resolved_at: None,
            last_true_at: now,
            silenced,
        }
    }

    fn to(from: Option<State>, to: State) -> Transition {
        Transition {
            from,
            to,
            at: Utc::now(),
        }
    }

    /// Which alert changes page: firing, escalation while firing, resolution of a
    /// firing alert; nothing while silenced or pending.
    #[test]
    fn pages_follow_the_alert_lifecycle() {
        let fired = change(
            &row("firing", false),
            true,
            vec![to(None, State::Firing)],
            false,
        );
        assert_eq!(fired.notify, Some("trigger"));
        let pending = change(
            &row("pending", false),
            true,
            vec![to(None, State::Pending)],
            false,
        );
        assert_eq!(pending.notify, None);
        let raised = change(&row("firing", false), false, vec![], true);
        assert_eq!(raised.notify, Some("trigger"), "escalate pages again");
        let raised_pending = change(&row("pending", false), false, vec![], true);
        assert_eq!(raised_pending.notify, None);
        let resolved = change(
            &row("resolved", false),
            false,
            vec![to(Some(State::Firing), State::Resolved)],
            false,
        );
        assert_eq!(resolved.notify, Some("resolve"));
        let never_fired = change(
            &row("resolved", false),
            false,
            vec![to(Some(State::Pending), State::Resolved)],
            false,
        );
        assert_eq!(
            never_fired.notify, None,
            "a pending alert that resolves paged nobody"
        );
        let silenced = change(
            &row("firing", true),
            true,
            vec![to(None, State::Firing)],
            false,
        );
        assert_eq!(silenced.notify, None);
        assert!(silenced.transitions[0].silenced);
    }
}
