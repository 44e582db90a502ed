//! The compiled form of a rule: what the engine evaluates.

use std::net::IpAddr;
use std::time::Duration;

use query::ast::Expr;
use serde_json::Value;

use super::doc::{RuleDoc, Severity};

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Equals(Value),
    In(Vec<Value>),
    Prefix(String),
    Contains(String),
    Cidr(Cidr),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
}

/// A query plus conditions: what one event must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub query: Option<Expr>,
    pub query_text: Option<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub selector: Selector,
}

/// Kind-specific compiled settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Match,
    Threshold {
        window: Duration,
        interval: Duration,
        threshold: f64,
        distinct: Option<String>,
        /// Further conditions over the same events; the rule holds when any does.
        also: Vec<AltCount>,
    },
    Sequence {
        steps: Vec<Step>,
        within: Duration,
    },
    Metric {
        query: metrics::promql::Query,
        interval: Duration,
    },
    /// The key is the rule's `group_by` values.
    NewTerms {
        history: Duration,
        learning: Duration,
    },
}

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub doc: RuleDoc,
    pub selector: Selector,
    pub exceptions: Vec<Expr>,
    /// `escalate` entries, compiled.
    pub escalations: Vec<(Expr, Severity)>,
    pub group_by: Vec<String>,
    pub spec: Spec,
    pub for_: Duration,
    pub resolve_after: Duration,
    pub keep_firing_for: Duration,
    /// Necessary conditions of `selector`, checked first ([`crate::gate`]).
    pub gates: Vec<crate::gate::Gate>,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.doc.id
    }
}

/// An alternative condition of a threshold rule (`also`).
#[derive(Debug, Clone, PartialEq)]
pub struct AltCount {
    pub window: Duration,
    pub threshold: f64,
    pub distinct: Option<String>,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("cidr {text:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("cidr {text:?}: prefix must be 0..{max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let bits = |a: &IpAddr| -> (u128, u8) {
            match a {
                IpAddr::V4(v4) => (u128::from(u32::from(*v4)), 32),
                IpAddr::V6(v6) => (u128::from(*v6), 128),
            }
        };
        let (net, width) = bits(&self.addr);
        let (candidate, cwidth) = bits(ip);
        if width != cwidth {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let shift = u32::from(width - self.prefix);
        (net >> shift) == (candidate >> shift)
    }
}
