//! Puts llama.cpp's shared libraries where hearth's binaries find them at run time.
//!
//! With the `dynamic-backends` feature, llama-cpp-sys-2 builds libllama, libggml and libggml-base
//! as shared libraries and the compute backends (one `libggml-cpu-<isa>.so` per CPU variant) as
//! loadable modules, but leaves only dangling symlinks beside the binaries. This script copies the
//! real files, by the names the dynamic linker asks for (`libllama.so.0`), into
//! `target/<profile>/lib/`, and the backends into `target/<profile>/backends/`, where `hearth`
//! looks for them by default. Binaries find `lib/` through their run path: `$ORIGIN/lib` for
//! `hearth` (set in daemon/build.rs), `$ORIGIN/../lib` for examples (set here; `cargo test` sets the library path itself).
//! Files are replaced by rename, so a process that has the old ones mapped keeps running.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-examples=-Wl,--disable-new-dtags,-rpath,$ORIGIN/../lib");
    let Some(backends) = std::env::var_os("DEP_LLAMA_BACKENDS_DIR").map(PathBuf::from) else {
        println!("cargo:warning=llama-cpp-sys-2 reported no backends directory (is the dynamic-backends feature on?)");
        return;
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    println!("cargo:rerun-if-changed={}", backends.display());
    let prefix = backends.parent().map(Path::to_path_buf).unwrap_or_default();
    let result = copy_backends(&backends, &profile_dir.join("backends"))
        .and_then(|()| copy_libraries(&[prefix.join("lib"), prefix.join("lib64")], &profile_dir.join("lib")));
    if let Err(e) = result {
        println!("cargo:warning=could not copy llama.cpp's shared libraries next to the binaries: {e}");
    }
}

fn copy_backends(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("libggml-") && name.ends_with(".so") {
            replace(&path, &to.join(name))?;
        }
    }
    Ok(())
}

/// The libraries hearth's binaries load. llama-cpp-sys-2 also builds libllama-common (its
/// `common` feature, on by default through llama-cpp-2); nothing of hearth calls into it and the
/// linker drops it, so it is not copied (97 MB).
const NEEDED: [&str; 3] = ["libllama", "libggml", "libggml-base"];

/// Copy each needed library under its soname-style name (`libllama.so.0`: one numeric suffix),
/// or under `libx.so` when it has no versioned name.
fn copy_libraries(from: &[PathBuf], to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    let names: Vec<(String, PathBuf)> = from
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
        .filter(|(name, _)| name.starts_with("lib") && name.contains(".so"))
        .collect();
    for (name, path) in &names {
        let (base, version) = name.split_once(".so").unwrap_or((name, ""));
        if !NEEDED.contains(&base) {
            continue;
        }
        let soname = version.strip_prefix('.').is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        let unversioned_only = version.is_empty() && !names.iter().any(|(n, _)| n.starts_with(&format!("{base}.so.")));
        if soname || unversioned_only {
            replace(path, &to.join(name))?;
        }
    }
    Ok(())
}

/// Copy `from` (following symlinks) to `to` through a temporary file and a rename.
fn replace(from: &Path, to: &Path) -> std::io::Result<()> {
    let tmp = to.with_extension("tmp-copy");
    fs::copy(from, &tmp)?;
    fs::rename(&tmp, to)
}
