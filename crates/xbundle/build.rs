//! Build script: a fingerprint of this crate's sources, `XBUNDLE_IMPL_HASH`, and one of the
//! runtime's, `XBUNDLE_RUNTIME_HASH`.
//!
//! The pipeline tasks (`analyze:`, `secrets:`, `assemble:`) put it in their keys, so a change to
//! the code that computes their results (the class table, assembly defaults, …) invalidates
//! cached results by itself, without relying on someone bumping a version constant. It hashes
//! every file under `src/` (paths and contents, in sorted order) with std's `DefaultHasher`,
//! which is deterministic for a given Rust release: caches are shared between machines that
//! build xbundle with the same toolchain.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The fingerprint of every file below `dirs` (paths and contents, sorted).
fn fingerprint(dirs: &[&str]) -> u64 {
    let mut paths = Vec::new();
    for dir in dirs {
        println!("cargo:rerun-if-changed={dir}");
        files(Path::new(dir), &mut paths);
    }
    paths.sort();
    let mut hasher = DefaultHasher::new();
    for path in &paths {
        path.to_string_lossy().replace('\\', "/").hash(&mut hasher);
        std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

fn main() {
    println!(
        "cargo:rustc-env=XBUNDLE_IMPL_HASH={:016x}",
        fingerprint(&["src"])
    );
    // The runtime's sources (and the manifest crate it links), which `runtime@<platform>`
    // builds: its key when they lie outside the repository being built.
    println!(
        "cargo:rustc-env=XBUNDLE_RUNTIME_HASH={:016x}",
        fingerprint(&[
            "../runtime/src",
            "../runtime/Cargo.toml",
            "../manifest/src",
            "../manifest/Cargo.toml",
            "../../Cargo.lock",
        ])
    );
}
