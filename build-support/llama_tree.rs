//! Finds the llama.cpp source tree that ships inside the `llama-cpp-sys-2` crate, for build
//! scripts that compile a few llama.cpp sources or headers of their own (`grammar`, `calibration`)
//! without `llama-cpp-sys-2`'s `common` feature (which rebuilds all of llama.cpp). Included by
//! each build script with `#[path = "../build-support/llama_tree.rs"] mod llama_tree;`.
//!
//! First match wins:
//! 1. `HEARTH_LLAMA_CPP_DIR`: a llama.cpp source tree;
//! 2. the `llama-cpp-sys-2` version pinned in the workspace's `Cargo.lock`, in Cargo's registry
//!    sources (`$CARGO_HOME/registry/src/*/llama-cpp-sys-2-<version>/llama.cpp`) or in a
//!    `vendor/llama-cpp-sys-2/llama.cpp` beside the lock file (`cargo vendor`).
//!
//! A tree counts only when it holds `marker` (a path relative to the tree, such as
//! `common/json-schema-to-grammar.cpp`), the file the caller needs. `llama-cpp-sys-2` exports no
//! variable naming its source tree (only `DEP_LLAMA_BACKENDS_DIR` and `DEP_LLAMA_GGML_CMAKE_DIR`,
//! both build outputs), hence the search.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The llama.cpp tree holding `marker`; prints `rerun-if-env-changed` for `HEARTH_LLAMA_CPP_DIR`.
pub fn find(marker: &str) -> Result<PathBuf, String> {
    println!("cargo:rerun-if-env-changed=HEARTH_LLAMA_CPP_DIR");
    if let Some(dir) = env::var_os("HEARTH_LLAMA_CPP_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.join(marker).is_file() { Ok(dir) } else { Err(format!("HEARTH_LLAMA_CPP_DIR={} has no {marker}", dir.display())) };
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let lock = manifest.ancestors().map(|d| d.join("Cargo.lock")).find(|p| p.is_file()).ok_or("no Cargo.lock above the crate")?;
    let version = pinned_version(&fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?)
        .ok_or_else(|| format!("{} does not list llama-cpp-sys-2", lock.display()))?;
    let crate_dir = format!("llama-cpp-sys-2-{version}");
    let mut candidates = Vec::new();
    if let Some(parent) = lock.parent() {
        candidates.push(parent.join("vendor/llama-cpp-sys-2/llama.cpp"));
    }
    if let Some(home) = cargo_home() {
        for index in fs::read_dir(home.join("registry/src")).into_iter().flatten().flatten() {
            candidates.push(index.path().join(&crate_dir).join("llama.cpp"));
        }
    }
    candidates
        .into_iter()
        .find(|c| c.join(marker).is_file())
        .ok_or_else(|| format!("no {crate_dir}/llama.cpp with {marker} in Cargo's registry sources or vendor/; set HEARTH_LLAMA_CPP_DIR"))
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

/// The version of `llama-cpp-sys-2` in a `Cargo.lock`.
fn pinned_version(lock: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"llama-cpp-sys-2\"" {
            let version = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}
