-- Paging: notification channels, the notification outbox and its delivery attempts.
--
-- Invariants (see ARCHITECTURE.md):
-- * A notification row is written in the same transaction as the alert change that
--   causes it (storage::alerts::apply), so a committed transition is never without
--   its pages and a rolled-back one never has any.
-- * A row's id is its idempotency key: every attempt sends the same id (the webhook-id
--   header, the PagerDuty dedup_key is the alert fingerprint).
-- * Delivery claims rows with a lease (FOR UPDATE SKIP LOCKED); a worker that dies
--   mid-send leaves the lease to expire, and the row is sent again (at least once,
--   at most one duplicate per crash).
-- * Channel secrets (URL, routing key, signing secret) are stored encrypted
--   (AES-256-GCM under a per-channel data key wrapped by the key-encryption key).

CREATE TABLE channels (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('pagerduty', 'slack', 'webhook', 'alertmanager')),
    -- Where it sends (scheme and host only: the full URL is a secret).
    target       text NOT NULL,
    sealed       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

ALTER TABLE alerts ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN acknowledged_by text;

CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    channel_id       uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    alert_id         uuid REFERENCES alerts (id),
    -- trigger | acknowledge | resolve | test
    event            text NOT NULL CHECK (event IN ('trigger', 'acknowledge', 'resolve', 'test')),
    -- The alert as it was when the notification was decided.
    snapshot         jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_alert ON notifications (alert_id, channel_id, created_at);
CREATE INDEX notifications_tenant_state ON notifications (tenant_id, state, created_at);

CREATE TABLE notification_attempts (
    id               bigserial PRIMARY KEY,
    notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at               timestamptz NOT NULL DEFAULT now(),
    status           integer,
    latency_ms       integer NOT NULL,
    error            text
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id, at);

-- A tenant's routing tree (notify::routing); none: every alert to every channel.
CREATE TABLE routing (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id),
    tree        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
