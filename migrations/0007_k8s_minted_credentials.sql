-- Credentials issued through the API (storage::requests, built-in C-03): the latest
-- TokenRequest / service-account token Secret / CSR per principal, by whom and from
-- where, and whether its first use from another address has been seen. Rows are
-- pruned with log retention.
CREATE TABLE k8s_minted_credentials (
    tenant_id   uuid NOT NULL,
    cluster     text NOT NULL,
    principal   text NOT NULL,
    minted_at   timestamptz NOT NULL,
    minted_ip   text NOT NULL,
    audit_id    text NOT NULL,
    minted_by   text NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (tenant_id, cluster, principal)
);
CREATE INDEX k8s_minted_credentials_minted_at ON k8s_minted_credentials (minted_at);
