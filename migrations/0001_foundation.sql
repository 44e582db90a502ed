-- Palisade foundation schema.
--
-- Invariants (see ARCHITECTURE.md):
-- * Every row that belongs to a tenant carries tenant_id; every query filters on it.
-- * log_records.seq is assigned inside the commit critical section guarded by the
--   ingest advisory lock, so seq order equals commit order and an indexer that
--   follows "seq > checkpoint" never skips a row.
-- * log_records keeps only btree indexes on (tenant_id, time) and seq: attribute search
--   goes through tantivy, because a GIN index over attributes makes COPY ~5x slower.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    username       text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('viewer', 'responder', 'admin')),
    instance_admin boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

CREATE TABLE api_tokens (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    name            text NOT NULL DEFAULT '',
    -- HMAC-SHA256 of the whole token under the server token key; never the token.
    token_hash      text NOT NULL UNIQUE,
    scope           text NOT NULL CHECK (scope IN ('ingest', 'read', 'respond', 'admin')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    last_used_addr  text
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE SEQUENCE log_seq AS bigint;

CREATE TABLE log_records (
    seq              bigint NOT NULL DEFAULT nextval('log_seq'),
    tenant_id        uuid NOT NULL,
    time             timestamptz NOT NULL,
    observed_time    timestamptz NOT NULL,
    severity_number  smallint NOT NULL,
    severity_text    text NOT NULL,
    body             text NOT NULL,
    attributes       jsonb NOT NULL,
    resource         jsonb NOT NULL,
    scope_name       text NOT NULL,
    scope_version    text NOT NULL,
    trace_id         text,
    span_id          text,
    flags            integer NOT NULL,
    -- 0 = plain log record; later kinds (Kubernetes audit) reuse the table.
    kind             smallint NOT NULL DEFAULT 0
) PARTITION BY RANGE (time);

CREATE INDEX log_records_seq ON log_records (seq);
CREATE INDEX log_records_tenant_time ON log_records (tenant_id, time);

-- Key/value facts about this installation (e.g. bootstrap done).
CREATE TABLE instance_settings (
    key    text PRIMARY KEY,
    value  jsonb NOT NULL
);
