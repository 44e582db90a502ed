-- Pod IP inventory (storage::requests): which addresses a pod had, learnt from
-- kubelets' pod status updates in the audit log and from log records enriched by
-- the OpenTelemetry k8sattributes processor. A service-account request whose token
-- is bound to pod P but comes from an address P never had is marked
-- k8s.user.off_pod (built-in C-05). Rows are pruned with log retention.
CREATE TABLE k8s_pod_ips (
    tenant_id   uuid NOT NULL,
    cluster     text NOT NULL,
    namespace   text NOT NULL,
    pod         text NOT NULL,
    ips         text[] NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, cluster, namespace, pod)
);
CREATE INDEX k8s_pod_ips_updated_at ON k8s_pod_ips (updated_at);
