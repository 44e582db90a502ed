//! Rules as code.
//!
//! * [`doc`]: the document as written (YAML, `apiVersion: palisade/v1`).
//! * [`compiled`]: the validated form the engine evaluates ([`Rule`], [`Spec`], [`Cidr`]).
//! * [`compile`]: validation, with errors that name the rule, the field and the line.
//! * [`tuning`]: a tenant's tuning of a shipped rule.
//!
//! A rule file holds one or more YAML documents separated by `---`; the shipped pack
//! keeps one rule per file, named by its id.

use std::time::Duration;

pub mod compile;
pub mod compiled;
pub mod doc;
pub mod tuning;

pub use compile::{RuleError, parse_rules};
pub use compiled::{AltCount, Cidr, Condition, Op, Rule, Selector, Spec, Step};
pub use doc::*;
pub use tuning::{TuningDoc, is_tuning, parse_tuning, tenant_rule, tuning_yaml};

pub const API_VERSION: &str = "palisade/v1";
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_GROUP_BY: usize = 3;

/// Default quiet period after which match and sequence alerts resolve.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(5 * 60);
