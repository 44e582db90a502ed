//! Every Kubernetes attribute name lives in `k8saudit::attr`: no `"k8s.` string
//! literal in the library code of any crate. Rules, tests (`tests/`, `#[cfg(test)]`
//! modules) and the benchmark's synthetic producers write names out, as users and
//! producers do.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_attribute_name_literal_outside_the_attr_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in [
        "model", "k8saudit", "storage", "ingest", "query", "alerting", "web", "server",
    ] {
        sources(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut found = Vec::new();
    for file in &files {
        if file.ends_with("k8saudit/src/attr.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let library = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in library.lines().enumerate() {
            if line.contains("\"k8s.") && !line.trim_start().starts_with("//") {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "use k8saudit::attr constants:\n{}",
        found.join("\n")
    );
    // The module itself names the audit scope and the fields rules rely on.
    assert_eq!(k8saudit::attr::AUDIT_SCOPE, "k8s.audit");
    assert_eq!(k8saudit::attr::AUDIT_DETECT, "k8s.audit.detect");
    assert_eq!(k8saudit::attr::CLIENT_IP, "k8s.client.ip");
}
