-- Identity and access: sessions, login throttling and Palisade's own audit trail.

ALTER TABLE users ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX users_tenant ON users (tenant_id);

-- Server-side sessions. Only a SHA-256 of the session id (the cookie) is stored.
CREATE TABLE sessions (
    id_hash       text PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    source_addr   text
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Palisade's own audit trail: append-only and hash-chained.
-- hash = sha256(prev_hash || '\n' || canonical JSON of the entry's fields); the first
-- entry's prev_hash is 64 zeros. `palisade audit verify` recomputes the chain.
CREATE TABLE audit_log (
    id           bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    tenant_id    uuid,
    actor        text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    source_addr  text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- The chain head: one row, locked FOR UPDATE by each append so entries are chained
-- in a single order even across replicas.
CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL,
    last_hash  text NOT NULL
);
INSERT INTO audit_chain_head (last_id, last_hash) VALUES (0, repeat('0', 64));

-- Refuse accidental edits; tampering by a database superuser is what the hash chain
-- detects.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
