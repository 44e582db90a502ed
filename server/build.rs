//! Finds the shipped detection pack (`rules/k8s/*.yaml`, one rule per file) at build
//! time, so adding a rule is adding a file: no hand-kept list.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("..")
        .join("rules");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for pack in std::fs::read_dir(&root).expect("rules/ exists") {
        let pack = pack.expect("readable rules/").path();
        if !pack.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", pack.display());
        for file in std::fs::read_dir(&pack).expect("readable rule pack") {
            let path = file.expect("readable rule pack").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = String::from("&[\n");
    for path in &files {
        let rel = path
            .strip_prefix(root.parent().expect("rules/ has a parent"))
            .expect("under root");
        let abs = path.canonicalize().expect("rule file resolves");
        writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            rel.to_string_lossy().replace('\\', "/"),
            abs.to_string_lossy()
        )
        .expect("write to string");
    }
    out.push_str("]\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("builtin_rules.rs");
    std::fs::write(dest, out).expect("OUT_DIR writable");
}
