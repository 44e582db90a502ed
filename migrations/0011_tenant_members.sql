-- Users in several tenants: a user has one home tenant (users.tenant_id, users.role)
-- and may be a member of others with a role per tenant. A session acts in one tenant
-- at a time (sessions.tenant_id); its role is the role the user has in that tenant,
-- looked up on every request, so removing a membership takes effect at once.
CREATE TABLE tenant_members (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    role        text NOT NULL CHECK (role IN ('viewer', 'responder', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX tenant_members_tenant ON tenant_members (tenant_id);
