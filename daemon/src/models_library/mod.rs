//! The model library: GGUF models kept in `<state_dir>/models/`, each under a name that
//! `[[models]]` can serve (`path = "library:NAME"`, resolved when the configuration loads).
//!
//! Layout: `<state_dir>/models/library.json` is the manifest (the source of truth: every entry's
//! name, source, files with their sizes and sha256, when it was added, its quantization and the
//! recipe that made it); each entry's files live in `<state_dir>/models/<name>/`. A split model
//! keeps all its shards there and the entry names the first.
//!
//! Invariants: the manifest is replaced atomically ([`crate::durable::write_atomic`]: temp file,
//! fsync, rename, directory fsync). A new entry's files are written and hashed in a hidden staging
//! directory (`.staging-*`), renamed into place, and only then added to the manifest, so a crash
//! leaves either no entry or a complete one; staging left over from a crash is removed on the next
//! write. Writers serialize on an exclusive lock file (`.lock`), so the CLI and a running daemon
//! can both change the library. Names are `[A-Za-z0-9._-]`, 1..=64 characters, not starting with
//! a dot: they become directory names.

pub mod calibrate;
pub mod details;
pub mod fit;
pub mod gguf;
pub mod import;
mod oci;
pub mod pull;
pub mod quantize;
pub mod recipes;
mod time;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's format; raised when its layout changes.
pub const FORMAT: u32 = 1;
/// The library's directory under the state directory.
pub const DIR: &str = "models";
/// The prefix that makes a `[[models]]` path a library name.
pub const PATH_PREFIX: &str = "library:";

/// What went wrong, split into the caller's mistakes and our faults.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The caller asked for something that does not exist.
    #[error("no model named `{0}` in the library (`hearth models list` shows them)")]
    NotFound(String),
    /// The name is taken.
    #[error("a model named `{0}` is already in the library; pick another with --name, or `hearth models rm {0}` first")]
    Exists(String),
    /// Bad input: a name, a path, a file that is not a model, a checksum that does not match.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the library failed.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl LibraryError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LibraryError {
        let context = context.into();
        move |source| LibraryError::Io { context, source }
    }
}

/// One file of an entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Relative to the entry's directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// How a quantized entry was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecipeRecord {
    /// The recipe's name (`w4a16`).
    pub name: String,
    /// The GGUF type it maps to (`Q4_K_M`).
    pub ggml_type: String,
    /// The library entry or file quantized.
    pub source: String,
    /// Whether the source was already quantized (llama.cpp's `allow_requantize`).
    pub requantized: bool,
    /// The calibration text, when an importance matrix was used.
    #[serde(default)]
    pub calibration: Option<calibrate::CalibrationRecord>,
    /// Seconds the quantization took.
    pub seconds: f64,
}

/// One model in the library.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    /// Where it came from: a path, an `oci:` layout or archive, a URL, `quantize:<source>`.
    pub source: String,
    /// The file llama.cpp opens (the first shard of a split model), relative to the entry's directory.
    pub file: String,
    /// sha256 of `file`.
    pub sha256: String,
    /// Bytes over all files.
    pub size: u64,
    /// Every file (one, or each shard).
    pub files: Vec<FileRecord>,
    /// RFC 3339, UTC.
    pub added: String,
    /// `gguf`.
    pub format: String,
    /// The GGUF file type (`Q4_K_M`, `F16`).
    pub quantization: String,
    /// `general.architecture`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Set on entries `hearth quantize` made.
    #[serde(default)]
    pub recipe: Option<RecipeRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    models: Vec<Entry>,
}

/// The library in one state directory.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
}

/// An exclusive hold on the library's writers (released when dropped).
#[derive(Debug)]
pub struct WriteLock {
    _file: std::fs::File,
}

impl Library {
    /// The library of `state_dir` (nothing is created until the first write).
    pub fn new(state_dir: &Path) -> Library {
        Library { root: state_dir.join(DIR) }
    }

    /// `<state_dir>/models`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join("library.json")
    }

    /// Every entry, in the order they were added; empty when the library does not exist yet.
    pub fn list(&self) -> Result<Vec<Entry>, LibraryError> {
        let path = self.manifest_path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LibraryError::io(format!("cannot read {}", path.display()))(e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| LibraryError::Invalid(format!("{} is damaged: {e}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(LibraryError::Invalid(format!(
                "{} has format {}; this release reads format {FORMAT}",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest.models)
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Result<Entry, LibraryError> {
        self.list()?.into_iter().find(|e| e.name == name).ok_or_else(|| LibraryError::NotFound(name.to_owned()))
    }

    /// The file llama.cpp opens for `entry`.
    pub fn model_path(&self, entry: &Entry) -> PathBuf {
        self.root.join(&entry.name).join(&entry.file)
    }

    /// Take the writers' lock, creating the library's directory.
    pub fn lock(&self) -> Result<WriteLock, LibraryError> {
        std::fs::create_dir_all(&self.root).map_err(LibraryError::io(format!("cannot create {}", self.root.display())))?;
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LibraryError::io(format!("cannot open {}", path.display())))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| LibraryError::io(format!("cannot lock {}", path.display()))(e.into()))?;
        Ok(WriteLock { _file: file })
    }

    /// A fresh staging directory for a new entry's files (under the lock).
    pub fn staging(&self, _lock: &WriteLock) -> Result<Staging, LibraryError> {
        let path = self.root.join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).map_err(LibraryError::io(format!("cannot create {}", path.display())))?;
        Ok(Staging { path })
    }

    /// Remove staging directories a crash left (under the lock, so none is in use), and scratch
    /// directories ([`Library::scratch`]) older than a day (they are used without the lock).
    pub fn sweep(&self, _lock: &WriteLock) {
        let Ok(dir) = std::fs::read_dir(&self.root) else { return };
        let day = std::time::Duration::from_secs(24 * 3600);
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = || entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > day);
            if name.starts_with(".staging-") || (name.starts_with(".scratch-") && stale()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A scratch directory in the library's file system for files that are never published (the
    /// uncalibrated comparison model of `hearth quantize --calibration`); removed when dropped.
    /// Unlike [`Library::staging`] it needs no lock: [`Library::sweep`] leaves it alone for a day.
    pub fn scratch(&self) -> Result<Staging, LibraryError> {
        let path = self.root.join(format!(".scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).map_err(LibraryError::io(format!("cannot create {}", path.display())))?;
        Ok(Staging { path })
    }

    /// Publish a staged entry: hash its files, move them to `<name>/`, then add it to the manifest.
    /// `primary` is the file llama.cpp opens, relative to the staging directory.
    pub fn publish(&self, lock: &WriteLock, staging: Staging, draft: Draft) -> Result<Entry, LibraryError> {
        check_name(&draft.name)?;
        let mut models = self.list()?;
        if models.iter().any(|e| e.name == draft.name) {
            return Err(LibraryError::Exists(draft.name));
        }
        let header = gguf::read(&staging.path.join(&draft.primary)).map_err(|e| LibraryError::Invalid(e.to_string()))?;
        let mut files = Vec::new();
        for rel in &draft.files {
            let p = staging.path.join(rel);
            let (size, sha256) = hash_file(&p)?;
            files.push(FileRecord { path: rel.clone(), size, sha256 });
        }
        let sha256 = files.iter().find(|f| f.path == draft.primary).map(|f| f.sha256.clone()).unwrap_or_default();
        if let Some(want) = &draft.expect_sha256 {
            if !want.eq_ignore_ascii_case(&sha256) {
                return Err(LibraryError::Invalid(format!("sha256 mismatch: expected {want}, the file has {sha256}; nothing was added")));
            }
        }
        let target = self.root.join(&draft.name);
        if target.exists() {
            // Left by an entry removed from the manifest whose files could not be deleted.
            std::fs::remove_dir_all(&target).map_err(LibraryError::io(format!("cannot clear {}", target.display())))?;
        }
        sync_dir(&staging.path);
        std::fs::rename(&staging.path, &target).map_err(LibraryError::io(format!("cannot move the files to {}", target.display())))?;
        sync_dir(&self.root);
        let entry = Entry {
            name: draft.name,
            source: draft.source,
            file: draft.primary,
            sha256,
            size: files.iter().map(|f| f.size).sum(),
            files,
            added: time::now_rfc3339(),
            format: "gguf".into(),
            quantization: header.quantization(),
            architecture: header.architecture().map(str::to_owned),
            recipe: draft.recipe,
        };
        models.push(entry.clone());
        self.write_manifest(lock, models)?;
        Ok(entry)
    }

    /// Remove an entry: from the manifest first, then its files.
    pub fn remove(&self, lock: &WriteLock, name: &str) -> Result<Entry, LibraryError> {
        let mut models = self.list()?;
        let at = models.iter().position(|e| e.name == name).ok_or_else(|| LibraryError::NotFound(name.to_owned()))?;
        let entry = models.remove(at);
        self.write_manifest(lock, models)?;
        let dir = self.root.join(&entry.name);
        std::fs::remove_dir_all(&dir).map_err(LibraryError::io(format!("removed `{name}` from the library, but cannot delete {}", dir.display())))?;
        Ok(entry)
    }

    /// Re-hash an entry's files against the manifest.
    pub fn verify(&self, entry: &Entry) -> Vec<Mismatch> {
        let mut bad = Vec::new();
        for f in &entry.files {
            let p = self.root.join(&entry.name).join(&f.path);
            match hash_file(&p) {
                Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
                Ok((size, sha)) => bad.push(Mismatch { file: f.path.clone(), reason: format!("size {size} sha256 {sha}, the manifest says size {} sha256 {}", f.size, f.sha256) }),
                Err(e) => bad.push(Mismatch { file: f.path.clone(), reason: e.to_string() }),
            }
        }
        bad
    }

    fn write_manifest(&self, _lock: &WriteLock, models: Vec<Entry>) -> Result<(), LibraryError> {
        let manifest = Manifest { format: FORMAT, models };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| LibraryError::Invalid(e.to_string()))?;
        let path = self.manifest_path();
        crate::durable::write_atomic(&path, &bytes).map_err(LibraryError::io(format!("cannot write {}", path.display())))
    }
}

/// A file whose bytes no longer match the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub file: String,
    pub reason: String,
}

/// A directory that a new entry's files are written into before [`Library::publish`].
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a successful publish the directory was renamed away and this finds nothing.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What [`Library::publish`] needs besides the staged files.
#[derive(Debug, Clone)]
pub struct Draft {
    pub name: String,
    pub source: String,
    /// The file llama.cpp opens, relative to the staging directory.
    pub primary: String,
    /// Every file, relative to the staging directory.
    pub files: Vec<String>,
    /// Refuse to publish unless `primary` has this sha256.
    pub expect_sha256: Option<String>,
    pub recipe: Option<RecipeRecord>,
}

/// Names become directory names: `[A-Za-z0-9._-]`, 1..=64, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), LibraryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LibraryError::Invalid(format!(
            "{name:?} is not a valid model name: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot"
        )))
    }
}

/// A name from a file name: `SmolLM2-135M-Instruct.Q4_1.gguf` -> `SmolLM2-135M-Instruct.Q4_1`,
/// `m-00001-of-00003.gguf` -> `m`; other characters become `-`.
pub fn name_from_file(file: &str) -> String {
    let stem = file.strip_suffix(".gguf").unwrap_or(file);
    let stem = split_stem(stem).map_or(stem, |(base, _, _)| base);
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let name = name.trim_start_matches('.');
    name.chars().take(64).collect()
}

/// `base-00001-of-00003` -> (`base`, 1, 3).
pub fn split_stem(stem: &str) -> Option<(&str, u32, u32)> {
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (base, index) = rest.rsplit_once('-')?;
    if index.len() != 5 || total.len() != 5 {
        return None;
    }
    Some((base, index.parse().ok()?, total.parse().ok()?))
}

/// Size and sha256 of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), LibraryError> {
    let mut f = std::fs::File::open(path).map_err(LibraryError::io(format!("cannot open {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(LibraryError::io(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Resolve a `[[models]]` path of the form `library:NAME` against the library of `state_dir`:
/// `Ok(None)` when `path` is an ordinary path, the file and its sha256 otherwise.
pub fn resolve_config_path(state_dir: &Path, path: &Path) -> Result<Option<(PathBuf, String)>, LibraryError> {
    let Some(name) = path.to_str().and_then(|p| p.strip_prefix(PATH_PREFIX)) else { return Ok(None) };
    let library = Library::new(state_dir);
    let entry = library.get(name).map_err(|e| match e {
        LibraryError::NotFound(n) => LibraryError::Invalid(format!(
            "no model named `{n}` in the library at {} (`hearth models list --state-dir {}` lists them; `hearth models import` adds one)",
            library.root().display(),
            state_dir.display()
        )),
        other => other,
    })?;
    Ok(Some((library.model_path(&entry), entry.sha256)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn stage_one(lib: &Library, lock: &WriteLock, name: &str, bytes: &[u8]) -> Result<Entry, LibraryError> {
        let staging = lib.staging(lock)?;
        std::fs::write(staging.path().join("m.gguf"), bytes).unwrap();
        let draft = Draft { name: name.into(), source: "test".into(), primary: "m.gguf".into(), files: vec!["m.gguf".into()], expect_sha256: None, recipe: None };
        lib.publish(lock, staging, draft)
    }

    #[test]
    fn publish_list_verify_remove() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        assert!(lib.list().unwrap().is_empty());
        let lock = lib.lock().unwrap();
        let bytes = gguf::tests::tiny_gguf(&[("general.architecture", "llama")]);
        let e = stage_one(&lib, &lock, "tiny", &bytes).unwrap();
        assert_eq!(e.size, bytes.len() as u64);
        assert_eq!(e.quantization, "Q8_0");
        assert!(lib.model_path(&e).is_file());
        assert!(matches!(stage_one(&lib, &lock, "tiny", &bytes), Err(LibraryError::Exists(_))));
        assert_eq!(lib.list().unwrap().len(), 1);
        assert!(lib.verify(&e).is_empty());
        std::fs::write(lib.model_path(&e), b"GGUF changed").unwrap();
        assert_eq!(lib.verify(&e).len(), 1);
        let (file, sha) = resolve_config_path(dir.path(), Path::new("library:tiny")).unwrap().unwrap();
        assert_eq!((file, sha), (lib.model_path(&e), e.sha256.clone()));
        assert!(resolve_config_path(dir.path(), Path::new("models/x.gguf")).unwrap().is_none());
        lib.remove(&lock, "tiny").unwrap();
        assert!(lib.list().unwrap().is_empty());
        assert!(!lib.root().join("tiny").exists());
        let e = resolve_config_path(dir.path(), Path::new("library:tiny")).unwrap_err().to_string();
        assert!(e.contains("no model named `tiny`"), "{e}");
    }

    #[test]
    fn a_wrong_checksum_or_a_non_gguf_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        let lock = lib.lock().unwrap();
        let staging = lib.staging(&lock).unwrap();
        std::fs::write(staging.path().join("m.gguf"), gguf::tests::tiny_gguf(&[])).unwrap();
        let draft = Draft { name: "x".into(), source: "t".into(), primary: "m.gguf".into(), files: vec!["m.gguf".into()], expect_sha256: Some("00".repeat(32)), recipe: None };
        let e = lib.publish(&lock, staging, draft).unwrap_err().to_string();
        assert!(e.contains("sha256 mismatch"), "{e}");
        assert!(stage_one(&lib, &lock, "y", b"not a model").is_err());
        assert!(lib.list().unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(lib.root()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")], "staging is cleaned up");
    }

    #[test]
    fn sweep_keeps_a_scratch_directory_in_use_and_removes_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        let lock = lib.lock().unwrap();
        let fresh = lib.scratch().unwrap();
        std::fs::write(fresh.path().join("without-imatrix.gguf"), b"scratch").unwrap();
        let stale = lib.scratch().unwrap();
        let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        std::fs::File::open(stale.path()).unwrap().set_modified(two_days_ago).unwrap();
        let leftover = lib.staging(&lock).unwrap().path().to_owned();
        std::fs::create_dir_all(&leftover).unwrap();
        lib.sweep(&lock);
        assert!(fresh.path().join("without-imatrix.gguf").is_file(), "a scratch file in use survives the sweep");
        assert!(!stale.path().exists() && !leftover.exists());
        let path = fresh.path().to_owned();
        drop(fresh);
        assert!(!path.exists(), "dropped, the scratch directory is gone");
    }

    #[test]
    fn names() {
        assert!(check_name("SmolLM2-135M.Q4_1").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(name_from_file("SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct.Q4_1");
        assert_eq!(name_from_file("big model-00001-of-00003.gguf"), "big-model");
        assert_eq!(split_stem("m-00002-of-00003"), Some(("m", 2, 3)));
        assert_eq!(split_stem("m-2-of-3"), None);
    }
}
