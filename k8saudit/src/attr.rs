//! Every attribute name Palisade's Kubernetes audit records carry (and the resource
//! attributes it reads), in one place: code names them through these constants, so a
//! rename is one edit and a typo does not compile. Rules and tests write them out, as
//! users do (`attributes.k8s.audit.verb:create`); docs/kubernetes.md lists them.

// k8s.actor*
pub const ACTOR_KIND: &str = "k8s.actor.kind";

// k8s.allowed*
pub const ALLOWED: &str = "k8s.allowed";

// k8s.audit*
pub const AUDIT_ANNOTATIONS: &str = "k8s.audit.annotations";
pub const AUDIT_BODY_LOGGED: &str = "k8s.audit.body_logged";
pub const AUDIT_DETECT: &str = "k8s.audit.detect";
pub const AUDIT_ID: &str = "k8s.audit.id";
pub const AUDIT_LEVEL: &str = "k8s.audit.level";
pub const AUDIT_RECORD: &str = "k8s.audit.record";
pub const AUDIT_REDACTED: &str = "k8s.audit.redacted";
pub const AUDIT_REQUEST_URI: &str = "k8s.audit.request_uri";
pub const AUDIT_STAGE: &str = "k8s.audit.stage";
pub const AUDIT_STAGES: &str = "k8s.audit.stages";
pub const AUDIT_TRUNCATED: &str = "k8s.audit.truncated";
pub const AUDIT_VERB: &str = "k8s.audit.verb";

// k8s.authorization*
pub const AUTHORIZATION_DECISION: &str = "k8s.authorization.decision";
pub const AUTHORIZATION_REASON: &str = "k8s.authorization.reason";

// k8s.client*
pub const CLIENT_IP: &str = "k8s.client.ip";

// k8s.cluster*
pub const CLUSTER_NAME: &str = "k8s.cluster.name";

// k8s.credential*
pub const CREDENTIAL_MINT_AUDIT_ID: &str = "k8s.credential.mint_audit_id";
pub const CREDENTIAL_MINTED_BY: &str = "k8s.credential.minted_by";
pub const CREDENTIAL_MINTED_FOR: &str = "k8s.credential.minted_for";
pub const CREDENTIAL_MINTED_IP: &str = "k8s.credential.minted_ip";
pub const CREDENTIAL_MINTED_USE: &str = "k8s.credential.minted_use";

// k8s.csr*
pub const CSR_SIGNER: &str = "k8s.csr.signer";
pub const CSR_SUBJECT_CN: &str = "k8s.csr.subject_cn";
pub const CSR_SUBJECT_ORGANIZATIONS: &str = "k8s.csr.subject_organizations";

// k8s.exec*
pub const EXEC_COMMAND: &str = "k8s.exec.command";
pub const EXEC_CONTAINER: &str = "k8s.exec.container";
pub const EXEC_TTY: &str = "k8s.exec.tty";
/// The exec command is only a health or loopback port check (`derive::is_health_check`).
pub const EXEC_HEALTH_CHECK: &str = "k8s.exec.health_check";

// k8s.impersonated_user*
pub const IMPERSONATED_USER_GROUPS: &str = "k8s.impersonated_user.groups";
pub const IMPERSONATED_USER_KIND: &str = "k8s.impersonated_user.kind";
pub const IMPERSONATED_USER_NAME: &str = "k8s.impersonated_user.name";

// k8s.namespace*
pub const NAMESPACE_NAME: &str = "k8s.namespace.name";

// k8s.object*
pub const OBJECT_API_GROUP: &str = "k8s.object.api_group";
pub const OBJECT_API_VERSION: &str = "k8s.object.api_version";
pub const OBJECT_NAME: &str = "k8s.object.name";
pub const OBJECT_NAMESPACE: &str = "k8s.object.namespace";
pub const OBJECT_PATH: &str = "k8s.object.path";
pub const OBJECT_RESOURCE: &str = "k8s.object.resource";
pub const OBJECT_SUBRESOURCE: &str = "k8s.object.subresource";
pub const OBJECT_SYSTEM_NAME: &str = "k8s.object.system_name";

// k8s.owner*
pub const OWNER_KIND: &str = "k8s.owner.kind";
pub const OWNER_NAME: &str = "k8s.owner.name";

// k8s.pod*
pub const POD_DANGEROUS_CAPABILITIES: &str = "k8s.pod.dangerous_capabilities";
pub const POD_HOST_NETWORK: &str = "k8s.pod.host_network";
pub const POD_HOST_PATHS: &str = "k8s.pod.host_paths";
pub const POD_HOST_PID: &str = "k8s.pod.host_pid";
pub const POD_IMAGES: &str = "k8s.pod.images";
pub const POD_IP: &str = "k8s.pod.ip";
pub const POD_IPS: &str = "k8s.pod.ips";
pub const POD_NAME: &str = "k8s.pod.name";
pub const POD_PRIVILEGED: &str = "k8s.pod.privileged";
pub const POD_SENSITIVE_HOST_PATHS: &str = "k8s.pod.sensitive_host_paths";
pub const POD_SPEC_SOURCE: &str = "k8s.pod.spec_source";

// k8s.pod_security*
pub const POD_SECURITY_AUDIT_VIOLATIONS: &str = "k8s.pod_security.audit_violations";
pub const POD_SECURITY_ENFORCE_POLICY: &str = "k8s.pod_security.enforce_policy";
pub const POD_SECURITY_EXEMPT: &str = "k8s.pod_security.exempt";
pub const POD_SECURITY_WARN_VIOLATIONS: &str = "k8s.pod_security.warn_violations";

// k8s.proxy*
pub const PROXY_KIND: &str = "k8s.proxy.kind";
pub const PROXY_PATH: &str = "k8s.proxy.path";

// k8s.rbac*
pub const RBAC_RESOURCES: &str = "k8s.rbac.resources";
pub const RBAC_RISKS: &str = "k8s.rbac.risks";
pub const RBAC_ROLE_REF: &str = "k8s.rbac.role_ref";
pub const RBAC_SUBJECTS: &str = "k8s.rbac.subjects";
pub const RBAC_VERBS: &str = "k8s.rbac.verbs";

// k8s.request*
pub const REQUEST_HEALTH: &str = "k8s.request.health";
pub const REQUEST_PATH: &str = "k8s.request.path";
pub const REQUEST_SINGLE_OBJECT: &str = "k8s.request.single_object";
pub const REQUEST_TARGET: &str = "k8s.request.target";

// k8s.request_object*
pub const REQUEST_OBJECT: &str = "k8s.request_object";

// k8s.response*
pub const RESPONSE_CODE: &str = "k8s.response.code";
pub const RESPONSE_REASON: &str = "k8s.response.reason";

// k8s.response_object*
pub const RESPONSE_OBJECT: &str = "k8s.response_object";

// k8s.scale*
pub const SCALE_REPLICAS: &str = "k8s.scale.replicas";

// k8s.secret*
pub const SECRET_SERVICE_ACCOUNT: &str = "k8s.secret.service_account";
pub const SECRET_TYPE: &str = "k8s.secret.type";
/// A Service's `spec.type` (ClusterIP, NodePort, LoadBalancer, ExternalName).
pub const SERVICE_TYPE: &str = "k8s.service.type";
/// Whether a written Ingress declares TLS (`spec.tls` non-empty).
pub const INGRESS_TLS: &str = "k8s.ingress.tls";
/// ConfigMap keys that hold credentials, as `key (kind)`; their values are redacted.
pub const CONFIGMAP_CREDENTIALS: &str = "k8s.configmap.credentials";
/// Names of containers a patch adds to a workload's pod template.
pub const CONTAINERS_ADDED: &str = "k8s.workload.containers_added";

// k8s.source_ips*
pub const SOURCE_IPS: &str = "k8s.source_ips";

// k8s.token*
pub const TOKEN_EXPIRATION_SECONDS: &str = "k8s.token.expiration_seconds";

// k8s.user*
pub const USER_EFFECTIVE: &str = "k8s.user.effective";
pub const USER_GROUPS: &str = "k8s.user.groups";
pub const USER_NAME: &str = "k8s.user.name";
pub const USER_OFF_POD: &str = "k8s.user.off_pod";
pub const USER_POD_IPS: &str = "k8s.user.pod_ips";
pub const USER_POD_NAME: &str = "k8s.user.pod_name";
pub const USER_SA_NAME: &str = "k8s.user.sa_name";
pub const USER_SA_NAMESPACE: &str = "k8s.user.sa_namespace";
pub const USER_UID: &str = "k8s.user.uid";

// k8s.user_agent*
pub const USER_AGENT: &str = "k8s.user_agent";
pub const USER_AGENT_FAMILY: &str = "k8s.user_agent.family";

/// Prefix of the pod-spec fields (`k8s.pod.privileged`, `k8s.pod.host_pid`, ...).
pub const POD_PREFIX: &str = "k8s.pod.";

/// The scope of Palisade's normalised Kubernetes audit records (reserved at ingest).
pub const AUDIT_SCOPE: &str = "k8s.audit";

/// Attributes of Palisade's own Kubernetes audit records (scope `k8s.audit`) that are
/// searched by their words only (`attributes_text.`): the redacted request and
/// response bodies. Every other attribute is also matched as a whole value.
pub const WORDS_ONLY_AUDIT_KEYS: [&str; 2] = [REQUEST_OBJECT, RESPONSE_OBJECT];

/// Whether `path` (as written after `attributes.`) lies inside a words-only attribute
/// of a record in `scope`.
pub fn words_only(scope: &str, path: &str) -> bool {
    scope == AUDIT_SCOPE
        && WORDS_ONLY_AUDIT_KEYS.iter().any(|key| {
            path.strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
}
