-- New-terms rules (issue "Detections measured against other people's rules").
--
-- Invariants (see ARCHITECTURE.md):
-- * rule_terms holds, per tenant and rule, each combination of the rule's group_by
--   values seen (hash: first 16 bytes of SHA-256 of the canonical JSON), when it was
--   first and last seen. A combination is new when it has no row, or its last_seen
--   is older than the rule's history. Rows are pruned past the history and beyond
--   100,000 per tenant and rule (the oldest last_seen go first).
-- * rule_terms_start is when a rule was first evaluated for a tenant: its learning
--   period runs from there, across restarts and replicas.

CREATE TABLE rule_terms (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    rule_id     text NOT NULL,
    hash        bytea NOT NULL,
    terms       text NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, hash)
);
CREATE INDEX rule_terms_last_seen ON rule_terms (tenant_id, rule_id, last_seen);

CREATE TABLE rule_terms_start (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    rule_id     text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, rule_id)
);
