//! Alert rules as code, their evaluation, and the alert state machine.
//!
//! * [`rule`]: the YAML schema (`apiVersion: palisade/v1`), parsing with line numbers,
//!   validation into a compiled [`rule::Rule`].
//! * [`eval`]: evaluating the query language and structured conditions against one
//!   record in memory (the same semantics as the index).
//! * [`engine`]: the three kinds — per-event `match`, windowed `threshold`, ordered
//!   `sequence` — as pure state machines driven by an injected clock.
//! * [`lifecycle`]: the alert state machine (`pending` → `firing` → `resolved`) with
//!   `for`, `resolve_after` and `keep_firing_for`.
//! * [`silence`]: label matchers.
//! * [`testing`]: `palisade rules test` — run a rule file's own test cases offline.

pub mod catalogue;
pub mod engine;
pub mod error;
pub mod eval;
pub mod gate;
pub mod lifecycle;
pub mod rule;
pub mod runtime;
pub mod signal;
pub mod silence;
pub mod template;
pub mod testing;

pub use error::{AlertingError, Result};
