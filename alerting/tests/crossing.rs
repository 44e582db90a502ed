//! The in-memory crossing tracker (`alerting::engine::CrossingTracker`) agrees with the
//! threshold evaluation: a group holds in memory exactly when the index-backed
//! evaluation of the same events would hold, for counts, distinct counts and `also`.

use alerting::engine::{CrossingTracker, threshold_groups};
use alerting::rule::parse_rules;
use chrono::{Duration, Utc};
use model::{LogRecord, TenantId};
use serde_json::json;

fn event(user: &str, secret: &str, at: chrono::DateTime<Utc>) -> LogRecord {
    let mut r = LogRecord::new(TenantId(uuid::Uuid::nil()), at, "secret read");
    r.attributes = json!({"user": user, "secret": secret})
        .as_object()
        .unwrap()
        .clone();
    r
}

#[test]
fn the_tracker_says_a_group_holds_when_the_evaluation_does() {
    let rule = parse_rules(
        "apiVersion: palisade/v1\nid: t\ntitle: T\nseverity: high\nkind: threshold\nquery: 'body:secret'\ngroup_by: [attributes.user]\nwindow: 5m\nthreshold: 3\ndistinct: attributes.secret\nalso:\n  - {window: 1m, threshold: 5}\n",
    )
    .unwrap()
    .remove(0);
    let tenant = TenantId(uuid::Uuid::nil());
    let t0 = Utc::now() - Duration::minutes(30);
    let mut tracker = CrossingTracker::default();
    let mut seen: Vec<LogRecord> = Vec::new();
    // (user, secret, seconds after t0): alice reads the same secret four times (no
    // distinct crossing, no `also` either: four in a minute); then a fifth within the
    // minute (`also` holds); bob reads three distinct secrets spread over six minutes
    // (never three within five) then a third within five.
    let script = [
        ("alice", "a", 0),
        ("alice", "a", 10),
        ("alice", "a", 20),
        ("alice", "a", 30),
        ("alice", "a", 40),
        ("bob", "x", 100),
        ("bob", "y", 300),
        ("bob", "z", 470),
        ("bob", "w", 500),
    ];
    for (user, secret, secs) in script {
        let e = event(user, secret, t0 + Duration::seconds(secs));
        let tracked = tracker.observe(tenant, &rule, &e);
        seen.push(e.clone());
        let refs: Vec<(i64, &LogRecord)> = seen
            .iter()
            .enumerate()
            .map(|(i, r)| (i as i64, r))
            .collect();
        let evaluated = threshold_groups(&rule, &refs, e.time).iter().any(|g| {
            g.holds && g.hit.labels.get("attributes.user").map(String::as_str) == Some(user)
        });
        assert_eq!(tracked, evaluated, "{user} {secret} at +{secs}s");
    }
}
