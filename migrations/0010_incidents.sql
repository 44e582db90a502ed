-- Incidents: alerts grouped by what they are about, and what responders did.
--
-- Invariants (see ARCHITECTURE.md):
-- * An alert belongs to at most one incident (incident_alerts.alert_id is the key);
--   it joins in the same transaction as the alert change that makes it fire
--   (storage::alerts::apply), so a firing alert is never without its incident.
-- * Every state change, assignment, note, pin, merge and split is a row in
--   incident_activity written in the transaction that makes it: the timeline is
--   read from these rows, alert_transitions and notification_attempts, never kept
--   separately.
-- * A merged incident is resolved with merged_into set; its alerts, entities and
--   activity move to the surviving incident.

CREATE TABLE incident_settings (
    tenant_id     uuid PRIMARY KEY REFERENCES tenants (id),
    -- Entity kinds that group alerts (`labels`: every kind from a rule's group labels).
    group_on      text[] NOT NULL,
    window_secs   integer NOT NULL CHECK (window_secs > 0),
    auto_resolve  boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL
);

CREATE TABLE incidents (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    title             text NOT NULL,
    state             text NOT NULL CHECK (state IN ('triggered', 'acknowledged', 'resolved')),
    severity          text NOT NULL,
    assignee          text,
    opened_at         timestamptz NOT NULL,
    acknowledged_at   timestamptz,
    resolved_at       timestamptz,
    -- When one of its alerts last fired or changed: the grouping window runs from here.
    last_activity_at  timestamptz NOT NULL,
    merged_into       uuid REFERENCES incidents (id),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_tenant_opened ON incidents (tenant_id, opened_at DESC);
CREATE INDEX incidents_open ON incidents (tenant_id, last_activity_at) WHERE state <> 'resolved';

CREATE TABLE incident_alerts (
    alert_id     uuid PRIMARY KEY REFERENCES alerts (id),
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    -- The alert's entities when it joined (a split recomputes both sides from these).
    entities     jsonb NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_alerts_incident ON incident_alerts (incident_id);

CREATE TABLE incident_entities (
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    tenant_id    uuid NOT NULL,
    kind         text NOT NULL,
    value        text NOT NULL,
    PRIMARY KEY (incident_id, kind, value)
);
CREATE INDEX incident_entities_lookup ON incident_entities (tenant_id, kind, value);

CREATE TABLE incident_activity (
    id           bigserial PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    tenant_id    uuid NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind         text NOT NULL CHECK (kind IN ('state_change', 'assignment', 'note', 'pin')),
    actor        text NOT NULL,
    payload      jsonb NOT NULL
);
CREATE INDEX incident_activity_incident ON incident_activity (incident_id, at, id);
