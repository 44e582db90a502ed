-- Alert rules, alerts and their transitions, silences, rule-engine progress.
--
-- Invariants (see ARCHITECTURE.md):
-- * At most one non-resolved alert per (tenant, fingerprint): a partial unique index.
-- * Every state change of an alert is a row in alert_transitions, written in the same
--   transaction as the alert row, so the future notification outbox can be joined to
--   it in one transaction.
-- * The evaluator's checkpoint advances in the same transaction as the alert changes
--   it caused, so a restart neither loses nor double-counts evidence.

CREATE TABLE rules (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          text NOT NULL,
    version     integer NOT NULL,
    yaml        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE rule_versions (
    tenant_id   uuid NOT NULL,
    id          text NOT NULL,
    version     integer NOT NULL,
    action      text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    yaml        text NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, version)
);

CREATE TABLE alerts (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    rule_id       text NOT NULL,
    fingerprint   text NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity      text NOT NULL,
    labels        jsonb NOT NULL,
    annotations   jsonb NOT NULL,
    event_ids     bigint[] NOT NULL,
    event_count   bigint NOT NULL,
    started_at    timestamptz NOT NULL,
    firing_at     timestamptz,
    resolved_at   timestamptz,
    last_true_at  timestamptz NOT NULL,
    silenced      boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_active_per_fingerprint ON alerts (tenant_id, fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_tenant_started ON alerts (tenant_id, started_at);
CREATE INDEX alerts_active ON alerts (state) WHERE state <> 'resolved';

CREATE TABLE alert_transitions (
    id          bigserial PRIMARY KEY,
    alert_id    uuid NOT NULL REFERENCES alerts (id),
    tenant_id   uuid NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    at          timestamptz NOT NULL,
    silenced    boolean NOT NULL
);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

CREATE TABLE silences (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    matchers    jsonb NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    comment     text NOT NULL CHECK (length(btrim(comment)) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_tenant_ends ON silences (tenant_id, ends_at);

-- Progress of followers of log_records (the per-event rule evaluator).
CREATE TABLE follower_checkpoints (
    name  text PRIMARY KEY,
    seq   bigint NOT NULL
);

-- Half-complete sequences, so a restart does not lose them.
CREATE TABLE sequence_state (
    tenant_id  uuid NOT NULL,
    rule_id    text NOT NULL,
    state      jsonb NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);
