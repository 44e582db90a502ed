//! The alert state machine, driven by an injected clock.
//!
//! ```text
//!            condition holds            held for `for`
//!   (none) ─────────────────▶ pending ─────────────────▶ firing
//!                               │                          │ quiet for max(resolve_after,
//!                               │ quiet for resolve_after  │     keep_firing_for)
//!                               ▼                          ▼
//!                            resolved ◀────────────────────┘
//! ```
//! With `for: 0` a new alert goes straight to `firing`. A resolved alert is final:
//! the next occurrence opens a new alert with the same fingerprint.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Evidence kept per alert: the first event ids and the total count.
pub const MAX_EVIDENCE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        match text {
            "pending" => Some(State::Pending),
            "firing" => Some(State::Firing),
            "resolved" => Some(State::Resolved),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub for_: Duration,
    pub resolve_after: Duration,
    pub keep_firing_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: Option<State>,
    pub to: State,
    pub at: DateTime<Utc>,
}

/// One alert's mutable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub state: State,
    pub started_at: DateTime<Utc>,
    pub firing_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Last time the condition held.
    pub last_true_at: DateTime<Utc>,
    pub event_ids: Vec<i64>,
    pub count: u64,
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

impl Alert {
    /// A new alert whose condition first held at `now`.
    pub fn open(
        now: DateTime<Utc>,
        timing: &Timing,
        event_ids: &[i64],
        count: u64,
    ) -> (Alert, Vec<Transition>) {
        let mut alert = Alert {
            state: State::Pending,
            started_at: now,
            firing_at: None,
            resolved_at: None,
            last_true_at: now,
            event_ids: Vec::new(),
            count: 0,
        };
        alert.add_evidence(event_ids, count);
        let mut transitions = vec![Transition {
            from: None,
            to: State::Pending,
            at: now,
        }];
        if timing.for_.is_zero() {
            transitions = vec![Transition {
                from: None,
                to: State::Firing,
                at: now,
            }];
            alert.state = State::Firing;
            alert.firing_at = Some(now);
        }
        (alert, transitions)
    }

    fn add_evidence(&mut self, event_ids: &[i64], count: u64) {
        for id in event_ids {
            if self.event_ids.len() >= MAX_EVIDENCE {
                break;
            }
            if !self.event_ids.contains(id) {
                self.event_ids.push(*id);
            }
        }
        self.count += count;
    }

    fn move_to(&mut self, to: State, at: DateTime<Utc>) -> Transition {
        let from = self.state;
        self.state = to;
        match to {
            State::Firing => self.firing_at = Some(at),
            State::Resolved => self.resolved_at = Some(at),
            State::Pending => {}
        }
        Transition {
            from: Some(from),
            to,
            at,
        }
    }

    /// The condition holds at `now` (a matching event, a threshold crossed, a sequence
    /// completed). `count` adds to the evidence total.
    pub fn holds(
        &mut self,
        now: DateTime<Utc>,
        timing: &Timing,
        event_ids: &[i64],
        count: u64,
    ) -> Vec<Transition> {
        if self.state == State::Resolved {
            return Vec::new();
        }
        self.last_true_at = self.last_true_at.max(now);
        self.add_evidence(event_ids, count);
        if self.state == State::Pending && elapsed(self.started_at, now) >= timing.for_ {
            return vec![self.move_to(State::Firing, now)];
        }
        Vec::new()
    }

    /// Time passes without the condition holding (a quiet period, or a threshold
    /// evaluation below the threshold).
    pub fn quiet(&mut self, now: DateTime<Utc>, timing: &Timing) -> Vec<Transition> {
        let quiet_for = elapsed(self.last_true_at, now);
        match self.state {
            State::Pending if quiet_for >= timing.resolve_after => {
                vec![self.move_to(State::Resolved, now)]
            }
            State::Firing if quiet_for >= timing.resolve_after.max(timing.keep_firing_for) => {
                vec![self.move_to(State::Resolved, now)]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn timing(for_: u64, resolve_after: u64, keep: u64) -> Timing {
        Timing {
            for_: Duration::from_secs(for_),
            resolve_after: Duration::from_secs(resolve_after),
            keep_firing_for: Duration::from_secs(keep),
        }
    }

    /// Drive an alert with a script of (time, holds?) and return its states after each step.
    fn run(timing: Timing, script: &[(i64, bool)]) -> Vec<State> {
        let (first, rest) = script.split_first().unwrap();
        assert!(first.1, "scripts start with the condition holding");
        let (mut alert, _) = Alert::open(t(first.0), &timing, &[1], 1);
        let mut states = vec![alert.state];
        for (i, (secs, holds)) in rest.iter().enumerate() {
            if *holds {
                alert.holds(t(*secs), &timing, &[i as i64 + 2], 1);
            } else {
                alert.quiet(t(*secs), &timing);
            }
            states.push(alert.state);
        }
        states
    }

    use State::*;

    #[test]
    fn fires_at_once_without_for_and_resolves_after_quiet_period() {
        assert_eq!(
            run(
                timing(0, 300, 0),
                &[(0, true), (100, false), (299, false), (300, false)]
            ),
            vec![Firing, Firing, Firing, Resolved]
        );
    }

    #[test]
    fn pending_until_for_elapses_while_holding() {
        assert_eq!(
            run(
                timing(60, 300, 0),
                &[(0, true), (30, true), (59, true), (60, true)]
            ),
            vec![Pending, Pending, Pending, Firing]
        );
        // A pending alert that goes quiet resolves without ever firing.
        assert_eq!(
            run(timing(60, 30, 0), &[(0, true), (40, false)]),
            vec![Pending, Resolved]
        );
    }

    #[test]
    fn keep_firing_for_damps_flapping() {
        let damped = timing(0, 10, 120);
        assert_eq!(
            run(
                damped,
                &[
                    (0, true),
                    (20, false),
                    (60, true),
                    (100, false),
                    (179, false),
                    (180, false)
                ]
            ),
            vec![Firing, Firing, Firing, Firing, Firing, Resolved]
        );
        let undamped = timing(0, 10, 0);
        assert_eq!(
            run(undamped, &[(0, true), (20, false)]),
            vec![Firing, Resolved]
        );
    }

    #[test]
    fn evidence_keeps_the_first_hundred_ids_and_the_total() {
        let timing = timing(0, 300, 0);
        let (mut alert, transitions) = Alert::open(t(0), &timing, &[0], 1);
        assert_eq!(
            transitions,
            vec![Transition {
                from: None,
                to: Firing,
                at: t(0)
            }]
        );
        for i in 1..250 {
            alert.holds(t(i), &timing, &[i], 1);
        }
        assert_eq!(alert.count, 250);
        assert_eq!(alert.event_ids.len(), MAX_EVIDENCE);
        assert_eq!(alert.event_ids[..3], [0, 1, 2]);
        // Resolved alerts are final.
        alert.quiet(t(1000), &timing);
        assert_eq!(alert.state, Resolved);
        assert!(alert.holds(t(1001), &timing, &[999], 1).is_empty());
        assert_eq!(alert.state, Resolved);
    }
}
