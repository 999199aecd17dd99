//! Build facts for `hearth --version`, and the binary's run path.
//!
//! - `HEARTH_GIT_COMMIT`: the repository's commit (`git rev-parse --short=12 HEAD`), or `unknown`
//!   without git or `.git` (a source tarball); a packager may set `HEARTH_GIT_COMMIT` in the
//!   environment instead. Only a new commit re-runs this script (HEAD and its branch are watched,
//!   not the index: uncommitted edits are not marked, so an edit does not rebuild the crate twice).
//! - `HEARTH_LLAMA_CPP`: the llama.cpp tree compiled in: the llama-cpp-sys-2 (and llama-cpp-2)
//!   versions from `Cargo.lock`, and ggml's version from that crate's `ggml/CMakeLists.txt` when
//!   the registry source is found. The crate ships llama.cpp without its git history, so
//!   llama.cpp's own build number is not known to any build of it (its CMake says 0).
//! - The run path: llama.cpp's shared libraries (libllama, libggml, libggml-base) are found in
//!   `lib/` beside the binary in a build tree (engine/build.rs puts them there) and in
//!   `../lib64/hearth` for an installed `/usr/bin/hearth` (the RPM). DT_RPATH rather than RUNPATH,
//!   so it also serves the libraries' own dependencies on each other.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib:$ORIGIN/../lib64/hearth");

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    println!("cargo:rustc-env=HEARTH_GIT_COMMIT={}", git_commit(&root));
    println!("cargo:rustc-env=HEARTH_LLAMA_CPP={}", llama_cpp(&root));
}

/// The commit, from the environment, git, or `unknown`.
fn git_commit(root: &Path) -> String {
    println!("cargo:rerun-if-env-changed=HEARTH_GIT_COMMIT");
    if let Some(commit) = std::env::var("HEARTH_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        return commit.trim().to_owned();
    }
    let git_dir = root.join(".git");
    if !git_dir.exists() {
        // Watched while missing, so a build directory shared with a copy that has no `.git` does
        // not keep this answer for a tree that has one.
        println!("cargo:rerun-if-changed={}", git_dir.display());
        return "unknown".into();
    }
    // A new commit moves HEAD or the branch it names (or packed-refs, once refs are packed).
    for file in ["HEAD", "packed-refs"] {
        println!("cargo:rerun-if-changed={}", git_dir.join(file).display());
    }
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed={}", git_dir.join(reference).display());
        }
    }
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(root).output().ok().filter(|o| o.status.success());
    let Some(out) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".into() };
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `llama-cpp-sys-2 0.1.161 (llama-cpp-2 0.1.160), ggml 0.26.0`, from what can be found.
fn llama_cpp(root: &Path) -> String {
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock = std::fs::read_to_string(lock).unwrap_or_default();
    let sys = locked_version(&lock, "llama-cpp-sys-2");
    let mut text = format!("llama-cpp-sys-2 {}", sys.as_deref().unwrap_or("unknown"));
    if let Some(wrapper) = locked_version(&lock, "llama-cpp-2") {
        text.push_str(&format!(" (llama-cpp-2 {wrapper})"));
    }
    if let Some(ggml) = sys.as_deref().and_then(ggml_version) {
        text.push_str(&format!(", ggml {ggml}"));
    }
    text
}

/// The version of `package` in Cargo.lock's text.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{package}\"") {
            let version = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}

/// ggml's version in the registry source of llama-cpp-sys-2 `version`, when it is there.
fn ggml_version(version: &str) -> Option<String> {
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registries = std::fs::read_dir(cargo_home.join("registry").join("src")).ok()?;
    let cmake = registries
        .filter_map(Result::ok)
        .map(|r| r.path().join(format!("llama-cpp-sys-2-{version}")).join("llama.cpp/ggml/CMakeLists.txt"))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(cmake).ok()?;
    let part = |name: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(&format!("set(GGML_VERSION_{name} "))?.strip_suffix(')').map(str::to_owned))
    };
    Some(format!("{}.{}.{}", part("MAJOR")?, part("MINOR")?, part("PATCH")?))
}
