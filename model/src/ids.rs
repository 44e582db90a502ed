//! Identifiers and access vocabulary.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A tenant (organisation). Every stored object and every query carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an API token may do. Scopes are not nested except that `admin` implies
/// `respond` and `read`, and `respond` implies `read`; `ingest` only writes telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Respond,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Respond => "respond",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of scope `self` may perform an action that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        match needed {
            Scope::Ingest => self == Scope::Ingest,
            Scope::Read => matches!(self, Scope::Read | Scope::Respond | Scope::Admin),
            Scope::Respond => matches!(self, Scope::Respond | Scope::Admin),
            Scope::Admin => self == Scope::Admin,
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "respond" => Ok(Scope::Respond),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: expected ingest, read, respond or admin"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's role within a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "responder" => Ok(Role::Responder),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, responder or admin"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_implication() {
        assert!(Scope::Admin.allows(Scope::Read));
        assert!(Scope::Respond.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Respond));
        assert!(!Scope::Admin.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Read));
        assert_eq!("admin".parse::<Scope>().unwrap(), Scope::Admin);
        assert!("root".parse::<Scope>().unwrap_err().contains("root"));
    }
}
