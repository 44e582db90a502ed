//! Scheduling: [`Engine::run_schedule`] ticks every second, evaluates due `threshold`
//! rules through the typed query core, lets quiet alerts resolve and refreshes
//! silences.

use super::*;

impl Engine {
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
        Ok(self.settle(tenant, rule, holding, now))
    }

    /// Apply the groups that hold now; let the rule's other active alerts go quiet.
    fn settle(
        &self,
        tenant: TenantId,
        rule: &Rule,
        holding: Vec<Hit>,
        now: DateTime<Utc>,
    ) -> Vec<AlertChange> {
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
                changes.push(change(&entry.row, false, transitions, false));
            }
        }
        active.retain(|_, e| e.alert.state != State::Resolved);
        changes
    }

    /// A metric rule at `now`: its expression over the stored series; each returned
    /// series (labels without `__name__`) is a holding group.
    async fn evaluate_metric(
        &self,
        tenant: TenantId,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> crate::Result<Vec<AlertChange>> {
        let Spec::Metric { query, .. } = &rule.spec else {
            return Ok(Vec::new());
        };
        let Some(store) = self.metrics.read().expect("metrics lock").clone() else {
            return Ok(Vec::new());
        };
        let t = now.timestamp_millis();
        let mut data = metrics::promql::Data::default();
        for f in query.fetches(t, t) {
            let series = store
                .load(tenant, &f, storage::metrics::LoadLimits::default())
                .await
                .map_err(|e| crate::AlertingError::Invalid(e.to_string()))?;
            data.series.insert(f.key, series);
        }
        let value = metrics::eval_instant(query, &data, t)
            .map_err(|e| crate::AlertingError::Invalid(e.to_string()))?;
        let samples = match value {
            metrics::promql::Value::Vector(v) => v,
            // A scalar is one unlabelled series (Prometheus refuses it; we allow it).
            metrics::promql::Value::Scalar(v) => vec![metrics::promql::Sample {
                labels: Default::default(),
                v,
            }],
            other => {
                return Err(crate::AlertingError::Invalid(format!(
                    "expr returns a {}, a metric rule needs an instant vector",
                    other.kind()
                )));
            }
        };
        let holding: Vec<Hit> = samples
            .into_iter()
            .map(|s| {
                let mut group = (*s.labels).clone();
                group.remove("__name__");
                crate::engine::metric_hit(rule, group, s.v, now)
            })
            .collect();
        Ok(self.settle(tenant, rule, holding, now))
    }

    /// One scheduler tick at `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> crate::Result<()> {
        self.refresh_silences().await?;
        self.prune_terms(now).await;
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
                if !matches!(rule.doc.kind, Kind::Threshold | Kind::Metric) {
                    transitions = entry.alert.quiet(now, &timing(&rule));
                }
                if !transitions.is_empty() || silenced != entry.row.silenced {
                    entry.row.silenced = silenced;
                    sync_row(&mut entry.row, &entry.alert);
                    changes.push(change(&entry.row, false, transitions, false));
                }
            }
            active.retain(|_, e| e.alert.state != State::Resolved);
        }
        // Due threshold rules, per tenant.
        let tenants = self.tenants.read().expect("tenants lock").clone();
        for tenant in tenants {
            for rule in rules.for_tenant(tenant) {
                let interval = match &rule.spec {
                    Spec::Threshold { interval, .. } | Spec::Metric { interval, .. } => interval,
                    _ => continue,
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
                let evaluated = if matches!(rule.spec, Spec::Metric { .. }) {
                    self.evaluate_metric(tenant, &rule, now).await
                } else {
                    self.evaluate_threshold(tenant, &rule, now).await
                };
                collect(
                    &mut changes,
                    evaluated,
                    &rule,
                    "scheduled rule evaluation failed",
                );
            }
        }
        self.save_scheduled(&changes).await
    }

    /// Threshold rules whose matching events the index now holds (see
    /// `crossings`): evaluate each over its window now, as a scheduled run would.
    /// Returns whether some wait for the index still.
    pub async fn evaluate_crossings(&self, now: DateTime<Utc>) -> crate::Result<bool> {
        let indexed = self.index.searchable_checkpoint();
        let ready: Vec<(TenantId, String)> = {
            let mut crossings = self.crossings.lock().expect("crossings lock");
            let ready: Vec<(TenantId, String)> = crossings
                .iter()
                .filter(|(_, seq)| **seq <= indexed)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &ready {
                crossings.remove(k);
            }
            ready
        };
        let waiting = !self.crossings.lock().expect("crossings lock").is_empty();
        if ready.is_empty() {
            return Ok(waiting);
        }
        let rules = self.rules();
        let mut changes = Vec::new();
        for (tenant, id) in ready {
            let Some(rule) = rules.find(tenant, &id) else {
                continue;
            };
            let evaluated = self.evaluate_threshold(tenant, &rule, now).await;
            collect(
                &mut changes,
                evaluated,
                &rule,
                "threshold evaluation at a crossing failed",
            );
        }
        self.save_scheduled(&changes).await?;
        Ok(waiting)
    }

    /// Save the alert changes of the schedule's path (signals index 1).
    async fn save_scheduled(&self, changes: &[AlertChange]) -> crate::Result<()> {
        if !changes.is_empty() {
            let saved = self.store.apply(changes, None).await;
            self.finish_signals(1, saved.is_ok());
            saved?;
        }
        Ok(())
    }

    /// Tick every second until `shutdown`; between ticks, evaluate threshold rules
    /// at their crossings as soon as the event follower reports matching events.
    pub async fn run_schedule(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_tick = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_tick {
                if let Err(err) = self.tick(Utc::now()).await {
                    tracing::warn!(error = %err, "rule scheduler tick failed");
                }
                next_tick = tokio::time::Instant::now() + Duration::from_secs(1);
            }
            let waiting = match self.evaluate_crossings(Utc::now()).await {
                Ok(w) => w,
                Err(err) => {
                    tracing::warn!(error = %err, "threshold evaluation at crossings failed");
                    false
                }
            };
            // Matching events not yet in the index: look again shortly.
            let wake = if waiting {
                (tokio::time::Instant::now() + Duration::from_millis(50)).min(next_tick)
            } else {
                next_tick
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.crossing_wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Add one rule's evaluated changes, or log why there are none.
fn collect(
    changes: &mut Vec<AlertChange>,
    evaluated: crate::Result<Vec<AlertChange>>,
    rule: &Rule,
    what: &str,
) {
    match evaluated {
        Ok(c) => changes.extend(c),
        Err(err) => tracing::warn!(error = %err, rule = rule.id(), "{what}"),
    }
}
