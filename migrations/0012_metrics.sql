-- Metrics: series and their samples (issue "Metrics").
--
-- Invariants (see ARCHITECTURE.md):
-- * A series is one label set (metric name included) of one tenant; `hash` is the
--   first 16 bytes of SHA-256 over the canonical label set, unique per tenant.
-- * metric_samples rows hold encoded chunks (metrics::chunk) of one series inside one
--   hour bucket (min_ms and max_ms in the same hour); the compactor merges a bucket's
--   rows into one. Partitions are daily on min_ms; retention drops whole partitions.
-- * Delta-temporality series are stored as running totals: running_total is the sum
--   so far, updated in the transaction that stores the points.

CREATE TABLE metric_series (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    name           text NOT NULL,
    labels         jsonb NOT NULL,
    hash           bytea NOT NULL,
    running_total  float8 NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, hash)
);
CREATE INDEX metric_series_name ON metric_series (tenant_id, name);

CREATE TABLE metric_samples (
    tenant_id  uuid NOT NULL,
    series_id  bigint NOT NULL,
    min_ms     bigint NOT NULL,
    max_ms     bigint NOT NULL,
    n          integer NOT NULL,
    data       bytea NOT NULL
) PARTITION BY RANGE (min_ms);
CREATE INDEX metric_samples_series ON metric_samples (series_id, min_ms);

CREATE TABLE metric_exemplars (
    tenant_id   uuid NOT NULL,
    series_id   bigint NOT NULL,
    time_ms     bigint NOT NULL,
    value       float8 NOT NULL,
    trace_id    text NOT NULL,
    span_id     text NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX metric_exemplars_series ON metric_exemplars (series_id, time_ms);
