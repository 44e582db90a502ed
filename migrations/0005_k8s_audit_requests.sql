-- One logical record per Kubernetes API request (storage::requests).
--
-- Every audit line is kept in log_records; this table remembers, per
-- (tenant, cluster, auditID), the richest stage stored and whether the request has
-- been handed to the rules, so a request is evaluated once even when its stages
-- arrive in different batches, over different transports or across restarts.
-- Rows are pruned with log retention (last_time).
CREATE TABLE k8s_audit_requests (
    tenant_id  uuid NOT NULL,
    cluster    text NOT NULL,
    audit_id   text NOT NULL,
    rank       smallint NOT NULL,
    stages     text[] NOT NULL,
    evaluated  boolean NOT NULL,
    last_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, cluster, audit_id)
);
CREATE INDEX k8s_audit_requests_last_time ON k8s_audit_requests (last_time);
