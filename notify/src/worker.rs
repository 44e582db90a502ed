//! The outbox delivery worker.
//!
//! Loop: claim due notifications with a lease (`storage::notify`), open the channel's
//! secrets, check the destination again, build the payload, send it through a client
//! that follows no redirect and connects only to allowed addresses, and record the
//! attempt. 2xx: delivered. 408, 429, 5xx and network errors: retried with capped
//! exponential backoff and jitter, never sooner than `Retry-After`. Any other 4xx:
//! permanent, dead at once. Past [`Config::max_attempts`] or [`Config::give_up_after`]:
//! dead. A crash mid-send leaves the lease to expire; the row is sent again with the
//! same id (at least once, at most one duplicate per crash).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::{Value, json};
use storage::logs::LogStore;
use storage::notify::{Attempt, Due, Next, NotificationStore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::channel::{Kind, Secrets};
use crate::guard::{Destinations, GuardedResolver};
use crate::payload::{Group, Notice, Outgoing, build};
use crate::routing::{MAX_GROUP_SIZE, Routing, Target};
use crate::seal::Keyring;

#[derive(Debug, Clone)]
pub struct Config {
    /// How long a claimed notification is held before another worker may take it.
    pub lease: Duration,
    /// Per request: connect, send and read the answer.
    pub timeout: Duration,
    pub max_attempts: i32,
    /// A notification still undelivered this long after it was decided is dead.
    pub give_up_after: chrono::Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Slack: at most one message per this interval per channel.
    pub slack_pace: Duration,
    /// Base URL of the UI for deep links (`--public-url`).
    pub public_url: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            give_up_after: chrono::Duration::hours(24),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            slack_pace: Duration::from_secs(1),
            public_url: None,
        }
    }
}

/// The HTTP client every outbound notification uses: no redirects, no proxy, the
/// guarded resolver, a deadline per request.
pub fn client(policy: Arc<Destinations>, timeout: Duration) -> reqwest::Client {
    // reqwest is built without a TLS provider of its own: ring, as the listeners use.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

#[derive(Clone)]
pub struct NotifyMetrics {
    pub attempts: IntCounterVec,
    pub notifications: IntGaugeVec,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<NotifyMetrics> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "palisade_notification_attempts_total",
                "Notification delivery attempts, by channel kind and outcome",
            ),
            &["kind", "outcome"],
        )?;
        let notifications = IntGaugeVec::new(
            Opts::new(
                "palisade_notifications",
                "Notifications in the outbox, by state (pending, delivered, dead)",
            ),
            &["state"],
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        Ok(NotifyMetrics {
            attempts,
            notifications,
        })
    }
}

/// The receiver's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: Option<u16>,
    pub latency: Duration,
    pub retry_after: Option<Duration>,
    /// The first bytes of the body (for the channel test) or the transport error.
    pub detail: String,
    /// The destination policy refused the URL: nothing was sent, and retrying cannot
    /// help.
    pub refused: bool,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// Whether trying again may succeed: 408, 429, 5xx, or no answer at all.
    pub fn retryable(&self) -> bool {
        if self.refused {
            return false;
        }
        match self.status {
            None => true,
            Some(s) => s == 408 || s == 429 || s >= 500,
        }
    }
}

/// Sends notifications (the worker's, and the channel test's).
pub struct Sender {
    pub keys: Keyring,
    pub policy: Arc<Destinations>,
    pub client: reqwest::Client,
    pub logs: Arc<LogStore>,
    pub config: Config,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

impl Sender {
    /// The channel's secrets, opened.
    pub fn secrets(&self, channel: &storage::notify::ChannelRow) -> Result<Secrets, String> {
        let plain = self
            .keys
            .open(&channel.sealed, channel.id.as_bytes())
            .map_err(|e| format!("channel secrets: {e}"))?;
        serde_json::from_slice(&plain).map_err(|e| format!("channel secrets: {e}"))
    }

    /// The deep link to an alert.
    pub fn link(&self, alert_id: Option<&str>) -> Option<String> {
        let base = self.config.public_url.as_deref()?.trim_end_matches('/');
        Some(match alert_id {
            Some(id) => format!("{base}/alerts/{id}"),
            None => format!("{base}/alerts"),
        })
    }

    /// What a notification about `alert` says: link, first evidence, audit ids and,
    /// for correlations, the detections they joined.
    pub async fn notice(
        &self,
        tenant: model::TenantId,
        id: Uuid,
        event: &str,
        alert: Value,
        group: Option<Group>,
    ) -> Notice {
        let ids: Vec<i64> = alert["event_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).take(3).collect())
            .unwrap_or_default();
        let events = if ids.is_empty() {
            Vec::new()
        } else {
            self.logs
                .fetch_by_seqs(tenant, &ids, None)
                .await
                .unwrap_or_default()
        };
        let mut audit_ids = Vec::new();
        let mut evidence = Vec::new();
        let mut joined = Vec::new();
        for e in &events {
            let attrs = &e.record.attributes;
            if let Some(a) = attrs
                .get(k8saudit::attr::AUDIT_ID)
                .or_else(|| attrs.get(alerting::signal::ATTR_AUDIT_ID))
                .and_then(Value::as_str)
            {
                audit_ids.push(a.to_string());
            }
            if let Some(rule) = attrs
                .get(alerting::signal::ATTR_RULE)
                .and_then(Value::as_str)
            {
                joined.push(rule.to_string());
            }
            evidence.push(json!({
                "id": e.seq.to_string(),
                "time": e.record.time,
                "body": e.record.body,
                "attributes": attrs,
            }));
        }
        let link = self.link(alert["id"].as_str());
        let mut alert = alert;
        if !joined.is_empty() {
            alert["joined_detections"] = json!(joined);
        }
        Notice {
            id: id.to_string(),
            event: event.to_string(),
            alert,
            link,
            evidence,
            audit_ids,
            group,
        }
    }

    /// Send one request; the destination is checked again first.
    pub async fn send(&self, out: &Outgoing) -> Answer {
        let started = Instant::now();
        if let Err(e) = self.policy.check_url(&out.url) {
            return Answer {
                status: None,
                latency: started.elapsed(),
                retry_after: None,
                detail: e,
                refused: true,
            };
        }
        let mut request = self.client.post(&out.url).body(out.body.clone());
        for (name, value) in &out.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = retry_after(resp.headers());
                // Only the first bytes of the answer are read: a receiver cannot make
                // the worker buffer an unbounded body.
                let mut resp = resp;
                let mut body = Vec::new();
                while body.len() < MAX_ANSWER_BYTES
                    && let Ok(Some(chunk)) = resp.chunk().await
                {
                    body.extend_from_slice(&chunk);
                }
                let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                Answer {
                    status: Some(status),
                    latency: started.elapsed(),
                    retry_after,
                    detail,
                    refused: false,
                }
            }
            Err(err) => {
                let err = err.without_url();
                // The resolver refused every address of the name: as permanent as a
                // refused literal address.
                if let Some(refused) = crate::guard::refusal(&err) {
                    return Answer {
                        status: None,
                        latency: started.elapsed(),
                        retry_after: None,
                        detail: refused.to_string(),
                        refused: true,
                    };
                }
                let mut detail = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(s) = source {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    source = s.source();
                }
                Answer {
                    status: None,
                    latency: started.elapsed(),
                    retry_after: None,
                    // Never the URL: it is a secret.
                    detail,
                    refused: false,
                }
            }
        }
    }
}

/// The worker: one per process; several processes may share the outbox.
pub struct Worker {
    pub store: NotificationStore,
    pub sender: Arc<Sender>,
    pub metrics: NotifyMetrics,
    slack_last: Mutex<HashMap<Uuid, Instant>>,
    /// Routing trees by tenant, re-read after [`ROUTING_TTL`].
    routing: Mutex<HashMap<model::TenantId, CachedRouting>>,
}

/// A tenant's routing tree as read at an instant (`None`: no tree).
type CachedRouting = (Instant, Option<Arc<Routing>>);

/// How much of a receiver's answer is read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Notifications claimed (and sent in parallel) at a time.
pub const CLAIM: i64 = 64;

/// How long a tenant's routing tree is cached by a worker.
pub const ROUTING_TTL: Duration = Duration::from_secs(2);
/// How often repeat pages are looked for.
pub const REPEAT_SCAN: Duration = Duration::from_secs(1);
/// How often a firing alert is pushed to Alertmanager again, so that it stays firing
/// there (each push holds it for [`crate::payload::ALERTMANAGER_HOLD_HOURS`]).
pub const ALERTMANAGER_REFRESH: chrono::Duration = chrono::Duration::hours(1);

/// Whether a firing alert's last trigger to a channel (`c`) calls for another now:
/// its route (`targets`, the tree's answer for the alert) repeats it, or the channel
/// is an Alertmanager whose copy would otherwise expire.
pub fn repeat_due(
    c: &storage::notify::RepeatCandidate,
    targets: &[Target],
    now: DateTime<Utc>,
) -> bool {
    let since = now - c.last_at;
    let routed = targets.iter().find(|t| t.channel == c.channel);
    if c.routed && routed.is_none() {
        return false;
    }
    let repeat = routed
        .and_then(|t| t.repeat_interval)
        .is_some_and(|every| since >= chrono::Duration::from_std(every).unwrap_or_default());
    repeat || (c.kind == "alertmanager" && since >= ALERTMANAGER_REFRESH)
}

/// A group's key on a channel: its labels' values, as a JSON object.
fn group_labels(by: &[String], labels: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        by.iter()
            .map(|l| (l.clone(), json!(labels.get(l).cloned().unwrap_or_default())))
            .collect(),
    )
}

fn label_map(labels: &Value, severity: &str) -> std::collections::BTreeMap<String, String> {
    let mut map: std::collections::BTreeMap<String, String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    map.insert("severity".into(), severity.to_string());
    map
}

/// Capped exponential backoff with jitter: a delay in `[d/2, d]`,
/// `d = min(cap, base * 2^attempts)`.
pub fn backoff(attempts: i32, base: Duration, cap: Duration) -> Duration {
    let exp = 2u32.saturating_pow(attempts.clamp(0, 30) as u32);
    let d = base.saturating_mul(exp).min(cap);
    let jitter = u64::from(u32::from_le_bytes(model::token::random_bytes::<4>()));
    let half = d / 2;
    half + Duration::from_nanos(
        (half.as_nanos() as u64).saturating_mul(jitter) / u64::from(u32::MAX),
    )
}

impl Worker {
    pub fn new(store: NotificationStore, sender: Arc<Sender>, metrics: NotifyMetrics) -> Worker {
        Worker {
            store,
            sender,
            metrics,
            slack_last: Mutex::new(HashMap::new()),
            routing: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's routing tree (cached), `None` without one. A tree that no longer
    /// parses (a channel it names was deleted) routes as if there were none, loudly.
    async fn routing(&self, tenant: model::TenantId) -> Option<Arc<Routing>> {
        if let Some((at, tree)) = self.routing.lock().expect("routing lock").get(&tenant)
            && at.elapsed() < ROUTING_TTL
        {
            return tree.clone();
        }
        let tree = match self.store.routing(tenant).await {
            Ok(Some(value)) => match serde_json::from_value::<Routing>(value) {
                Ok(tree) => Some(Arc::new(tree)),
                Err(err) => {
                    tracing::error!(%err, tenant = %tenant.0, "stored routing tree unreadable; paging every channel");
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(%err, "routing not readable; using the cached tree");
                return self
                    .routing
                    .lock()
                    .expect("routing lock")
                    .get(&tenant)
                    .and_then(|(_, t)| t.clone());
            }
        };
        self.routing
            .lock()
            .expect("routing lock")
            .insert(tenant, (Instant::now(), tree.clone()));
        tree
    }

    /// Forget a tenant's cached tree (after `PUT /api/v1/routing`).
    pub fn routing_changed(&self, tenant: model::TenantId) {
        self.routing.lock().expect("routing lock").remove(&tenant);
    }

    /// Enqueue repeat pages of firing, unacknowledged alerts whose route has a
    /// `repeat_interval` that has passed since the last trigger to that channel, and
    /// refresh firing alerts in Alertmanager before their `endsAt`.
    async fn repeat(&self) {
        let candidates = match self.store.repeat_candidates().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(%err, "repeat pages not computed");
                return;
            }
        };
        let now = Utc::now();
        for c in candidates {
            let targets = match c.routed {
                true => match self.routing(c.tenant_id).await {
                    Some(tree) => tree.targets(&label_map(&c.labels, &c.severity)),
                    None => Vec::new(),
                },
                false => Vec::new(),
            };
            if repeat_due(&c, &targets, now)
                && let Err(err) = self.store.enqueue_repeat(c.alert_id, c.channel_id).await
            {
                tracing::warn!(%err, "repeat page not enqueued");
            }
        }
    }

    /// Deliver until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_gauges = Instant::now() - Duration::from_secs(60);
        let mut last_repeat = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let claimed = match self.store.claim_due(CLAIM, self.sender.config.lease).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(error = %err, "notification outbox not readable; retrying");
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            let claimed = self.one_per_group(claimed).await;
            // A claimed batch is sent in parallel (one slow receiver does not hold the
            // others back); the next claim waits for all of it.
            let mut sends = tokio::task::JoinSet::new();
            for due in claimed {
                let worker = self.clone();
                sends.spawn(async move { worker.deliver(due).await });
            }
            while sends.join_next().await.is_some() {}
            if last_repeat.elapsed() >= REPEAT_SCAN {
                self.repeat().await;
                last_repeat = Instant::now();
            }
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                if let Ok(counts) = self.store.counts().await {
                    for state in ["pending", "grouped", "delivered", "dead", "skipped"] {
                        let n = counts
                            .iter()
                            .find(|(s, _)| s == state)
                            .map_or(0, |(_, n)| *n);
                        self.metrics
                            .notifications
                            .with_label_values(&[state])
                            .set(n);
                    }
                }
                last_gauges = Instant::now();
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// The route target of `due` when its page would lead a group: its group's key.
    async fn group_slot(&self, due: &Due) -> Option<String> {
        if due.group_key.is_some()
            || due.attempts > 0
            || !matches!(due.event.as_str(), "trigger" | "resolve")
            || due.channel.kind == Kind::PagerDuty.as_str()
        {
            return None;
        }
        let tree = self.routing(due.tenant_id).await?;
        let labels = label_map(
            &due.snapshot["labels"],
            due.snapshot["severity"].as_str().unwrap_or_default(),
        );
        let target = tree
            .targets(&labels)
            .into_iter()
            .find(|t| t.channel == due.channel.name)?;
        (!target.group_by.is_empty()).then(|| group_labels(&target.group_by, &labels).to_string())
    }

    /// Of the claimed notifications that would lead the same group (channel, event,
    /// key), keep the oldest and give the others back: it carries them.
    async fn one_per_group(&self, claimed: Vec<Due>) -> Vec<Due> {
        let mut leaders: HashMap<(Uuid, String, String), usize> = HashMap::new();
        let mut keep = Vec::with_capacity(claimed.len());
        let mut give_back = Vec::new();
        for due in claimed {
            match self.group_slot(&due).await {
                Some(key) => {
                    let slot = (due.channel.id, due.event.clone(), key);
                    match leaders.get(&slot) {
                        Some(&i) => {
                            let leader: &mut Due = &mut keep[i];
                            if due.created_at < leader.created_at {
                                give_back.push(std::mem::replace(leader, due).id);
                            } else {
                                give_back.push(due.id);
                            }
                        }
                        None => {
                            leaders.insert(slot, keep.len());
                            keep.push(due);
                        }
                    }
                }
                None => keep.push(due),
            }
        }
        if !give_back.is_empty()
            && let Err(err) = self.store.release(&give_back).await
        {
            // Their leases expire; they are grouped or sent on their own later.
            tracing::warn!(%err, "claimed notifications not given back");
        }
        keep
    }

    async fn finish(&self, due: &Due, attempt: Option<&Attempt>, next: Next) {
        if let Err(err) = self.store.finish(due.id, attempt, next).await {
            // The lease expires and the notification is sent again: at least once.
            tracing::warn!(error = %err, notification = %due.id, "delivery outcome not saved");
        }
    }

    async fn deliver(&self, due: Due) {
        let sender = &self.sender;
        let config = &sender.config;
        let now = Utc::now();
        let kind = match Kind::parse(&due.channel.kind) {
            Ok(k) => k,
            Err(e) => return self.dead(&due, e).await,
        };
        let secrets = match sender.secrets(&due.channel) {
            Ok(s) => s,
            Err(e) => return self.dead(&due, e).await,
        };
        // Routing: is this channel one this alert goes to, and has its wait passed?
        let mut group = due.group_key.as_deref().map(|key| Group {
            labels: serde_json::from_str(key).unwrap_or_default(),
            others: due
                .members
                .as_ref()
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        });
        if due.event != "test"
            && let Some(tree) = self.routing(due.tenant_id).await
        {
            let labels = label_map(
                &due.snapshot["labels"],
                due.snapshot["severity"].as_str().unwrap_or_default(),
            );
            let targets = tree.targets(&labels);
            let Some(target) = targets.iter().find(|t| t.channel == due.channel.name) else {
                return self.finish(&due, None, Next::Skipped).await;
            };
            let ready =
                due.created_at + chrono::Duration::from_std(target.group_wait).unwrap_or_default();
            if due.event == "trigger" && due.attempts == 0 && ready > now {
                return self.finish(&due, None, Next::Defer(ready)).await;
            }
            // Grouping: the first due page of a group carries the group's others.
            if !target.group_by.is_empty()
                && kind != Kind::PagerDuty
                && matches!(due.event.as_str(), "trigger" | "resolve")
                && due.group_key.is_none()
                && due.attempts == 0
            {
                let group_labels = group_labels(&target.group_by, &labels);
                let key = group_labels.to_string();
                if due.event == "trigger" {
                    match self.store.last_group_page(due.channel.id, &key).await {
                        Ok(Some(last)) => {
                            let next = last
                                + chrono::Duration::from_std(target.group_interval)
                                    .unwrap_or_default();
                            if next > now {
                                return self.finish(&due, None, Next::Defer(next)).await;
                            }
                        }
                        Ok(None) => {}
                        Err(err) => {
                            tracing::warn!(%err, "group's last page not readable; retrying");
                            let at = now + chrono::Duration::seconds(1);
                            return self.finish(&due, None, Next::Defer(at)).await;
                        }
                    }
                }
                let values: Vec<String> = group_labels
                    .as_object()
                    .map(|m| {
                        m.values()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let names: Vec<String> = group_labels
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                match self
                    .store
                    .absorb(
                        due.id,
                        due.channel.id,
                        &due.event,
                        &key,
                        &names,
                        &values,
                        MAX_GROUP_SIZE - 1,
                    )
                    .await
                {
                    Ok(others) => {
                        group = Some(Group {
                            labels: group_labels,
                            others,
                        })
                    }
                    Err(err) => {
                        tracing::warn!(%err, "group not formed; retrying");
                        let at = now + chrono::Duration::seconds(1);
                        return self.finish(&due, None, Next::Defer(at)).await;
                    }
                }
            }
        }
        if kind == Kind::Slack {
            // Check and reserve the channel's next slot under one lock: notifications
            // of one claim are sent in parallel.
            let wait = {
                let mut last = self.slack_last.lock().expect("pace lock");
                let now = Instant::now();
                match last.get(&due.channel.id).map(|t| *t + config.slack_pace) {
                    Some(free) if free > now => Some(free - now),
                    _ => {
                        last.insert(due.channel.id, now);
                        None
                    }
                }
            };
            if let Some(wait) = wait {
                let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                return self.finish(&due, None, Next::Defer(at)).await;
            }
        }
        let notice = sender
            .notice(
                due.tenant_id,
                due.id,
                &due.event,
                due.snapshot.clone(),
                group,
            )
            .await;
        let Some(out) = build(kind, &notice, &secrets, now) else {
            // Nothing to say on this channel (Alertmanager has no acknowledgement).
            return self.finish(&due, None, Next::Delivered).await;
        };
        let answer = sender.send(&out).await;
        let attempt = Attempt {
            at: now,
            status: answer.status.map(i32::from),
            latency_ms: answer.latency.as_millis().min(i32::MAX as u128) as i32,
            error: (!answer.ok()).then(|| match answer.status {
                Some(s) => format!(
                    "HTTP {s}: {}",
                    answer.detail.chars().take(200).collect::<String>()
                ),
                None => answer.detail.clone(),
            }),
        };
        let attempts = due.attempts + 1;
        let next = if answer.ok() {
            Next::Delivered
        } else if !answer.retryable()
            || attempts >= config.max_attempts
            || now - due.created_at > config.give_up_after
        {
            Next::Dead
        } else {
            let wait = backoff(due.attempts, config.backoff_base, config.backoff_cap)
                .max(answer.retry_after.unwrap_or_default());
            Next::RetryAt(now + chrono::Duration::from_std(wait).unwrap_or_default())
        };
        let outcome = match next {
            Next::Delivered => "delivered",
            Next::Dead => "dead",
            _ => "retry",
        };
        self.metrics
            .attempts
            .with_label_values(&[kind.as_str(), outcome])
            .inc();
        if outcome == "dead" {
            tracing::warn!(notification = %due.id, channel = %due.channel.name, error = ?attempt.error, "notification dead-lettered");
        }
        self.finish(&due, Some(&attempt), next).await;
    }

    async fn dead(&self, due: &Due, error: String) {
        tracing::warn!(notification = %due.id, channel = %due.channel.name, %error, "notification dead-lettered");
        let attempt = Attempt {
            at: Utc::now(),
            status: None,
            latency_ms: 0,
            error: Some(error),
        };
        self.finish(due, Some(&attempt), Next::Dead).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::notify::RepeatCandidate;

    fn candidate(kind: &str, routed: bool, minutes_ago: i64) -> RepeatCandidate {
        RepeatCandidate {
            tenant_id: model::TenantId(Uuid::nil()),
            alert_id: Uuid::nil(),
            channel_id: Uuid::nil(),
            channel: "c".into(),
            kind: kind.into(),
            routed,
            last_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
            labels: json!({}),
            severity: "high".into(),
        }
    }

    fn target(repeat: Option<u64>) -> Target {
        Target {
            channel: "c".into(),
            group_wait: Duration::ZERO,
            repeat_interval: repeat.map(Duration::from_secs),
            group_by: Vec::new(),
            group_interval: crate::routing::DEFAULT_GROUP_INTERVAL,
        }
    }

    #[test]
    fn repeats_follow_the_route_and_alertmanager_is_refreshed_before_it_expires() {
        let now = Utc::now();
        // A route's repeat_interval.
        assert!(repeat_due(
            &candidate("slack", true, 5),
            &[target(Some(240))],
            now
        ));
        assert!(!repeat_due(
            &candidate("slack", true, 3),
            &[target(Some(240))],
            now
        ));
        assert!(!repeat_due(
            &candidate("slack", true, 500),
            &[target(None)],
            now
        ));
        // Alertmanager: pushed again every hour, tree or not, so a long-firing alert
        // does not reach its endsAt there.
        assert!(repeat_due(&candidate("alertmanager", false, 61), &[], now));
        assert!(!repeat_due(&candidate("alertmanager", false, 59), &[], now));
        assert!(repeat_due(
            &candidate("alertmanager", true, 61),
            &[target(None)],
            now
        ));
        // A tree that no longer routes the alert to the channel: nothing.
        assert!(!repeat_due(&candidate("alertmanager", true, 61), &[], now));
        assert!(
            ALERTMANAGER_REFRESH < chrono::Duration::hours(crate::payload::ALERTMANAGER_HOLD_HOURS)
        );
    }
}
