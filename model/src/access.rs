//! Permissions and principals: who is calling and what they may do.
//!
//! Every route declares one [`Access`]; a [`Principal`] (a user session or an API
//! token, always bound to one tenant) either holds the permission or not.

use serde::Serialize;
use uuid::Uuid;

use crate::{Role, Scope, TenantId};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Write telemetry (OTLP, audit webhook). Only `ingest` tokens.
    Ingest,
    /// Search, read alerts and incidents.
    Read,
    /// Acknowledge, resolve, assign, notes, silences.
    Respond,
    /// Rules, channels, users, tokens, retention, the audit trail of the tenant.
    Admin,
    /// Manage tenants (instance administrators only).
    InstanceAdmin,
    /// Any authenticated principal (e.g. its own session).
    Authenticated,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Ingest,
        Permission::Read,
        Permission::Respond,
        Permission::Admin,
        Permission::InstanceAdmin,
        Permission::Authenticated,
    ];
}

/// A route's access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// No authentication (health, login).
    Public,
    Requires(Permission),
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    Session {
        user_id: Uuid,
        username: String,
        role: Role,
        instance_admin: bool,
    },
    Token {
        token_id: Uuid,
        scope: Scope,
    },
}

/// An authenticated caller, bound to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub credential: Credential,
}

impl Role {
    pub fn allows(self, needed: Permission) -> bool {
        match needed {
            Permission::Ingest | Permission::InstanceAdmin => false,
            Permission::Authenticated | Permission::Read => true,
            Permission::Respond => matches!(self, Role::Responder | Role::Admin),
            Permission::Admin => self == Role::Admin,
        }
    }
}

impl Scope {
    pub fn permits(self, needed: Permission) -> bool {
        match needed {
            Permission::Authenticated => true,
            Permission::Ingest => self.allows(Scope::Ingest),
            Permission::Read => self.allows(Scope::Read),
            Permission::Respond => self.allows(Scope::Respond),
            Permission::Admin => self.allows(Scope::Admin),
            // Tenants are managed by people, not tokens.
            Permission::InstanceAdmin => false,
        }
    }
}

impl Principal {
    pub fn can(&self, needed: Permission) -> bool {
        match &self.credential {
            Credential::Session {
                role,
                instance_admin,
                ..
            } => match needed {
                Permission::InstanceAdmin => *instance_admin,
                other => role.allows(other),
            },
            Credential::Token { scope, .. } => scope.permits(needed),
        }
    }

    /// A stable, non-secret description for the audit trail (`user:alice`,
    /// `token:<id>`).
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Session { username, .. } => format!("user:{username}"),
            Credential::Token { token_id, .. } => format!("token:{token_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, instance_admin: bool) -> Principal {
        Principal {
            tenant_id: TenantId(Uuid::nil()),
            credential: Credential::Session {
                user_id: Uuid::nil(),
                username: "u".into(),
                role,
                instance_admin,
            },
        }
    }

    fn token(scope: Scope) -> Principal {
        Principal {
            tenant_id: TenantId(Uuid::nil()),
            credential: Credential::Token {
                token_id: Uuid::nil(),
                scope,
            },
        }
    }

    #[test]
    fn role_and_scope_table() {
        use Permission::*;
        let cases: Vec<(Principal, Vec<Permission>)> = vec![
            (user(Role::Viewer, false), vec![Read, Authenticated]),
            (
                user(Role::Responder, false),
                vec![Read, Respond, Authenticated],
            ),
            (
                user(Role::Admin, false),
                vec![Read, Respond, Admin, Authenticated],
            ),
            (
                user(Role::Viewer, true),
                vec![Read, InstanceAdmin, Authenticated],
            ),
            (token(Scope::Ingest), vec![Ingest, Authenticated]),
            (token(Scope::Read), vec![Read, Authenticated]),
            (token(Scope::Respond), vec![Read, Respond, Authenticated]),
            (
                token(Scope::Admin),
                vec![Read, Respond, Admin, Authenticated],
            ),
        ];
        for (principal, allowed) in cases {
            for p in Permission::ALL {
                assert_eq!(
                    principal.can(p),
                    allowed.contains(&p),
                    "{principal:?} {p:?}"
                );
            }
        }
    }
}
