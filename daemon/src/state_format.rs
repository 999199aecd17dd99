//! The state directory's format version, so that state written by one release is opened (or
//! plainly refused) by the next.
//!
//! `VERSION` in the state directory is a small TOML manifest:
//!
//! ```toml
//! format = 1
//! written_by = "hearth 0.1.0 (commit 0123456789ab)"
//! ```
//!
//! `format` is [`FORMAT`], the layout of everything under the state directory (the store's sled
//! trees, vector and keyword indexes, file records, the ingestion queue, stored responses). A
//! release that changes any of it raises [`FORMAT`] and adds a step to [`MIGRATIONS`], which
//! `hearth migrate --check` lists and start-up applies; until then there is none.
//!
//! Invariants: start-up writes `VERSION` before anything else in the directory (a new directory, or
//! one made before the manifest existed, which is format 1) and never opens a directory whose
//! format is newer than [`FORMAT`] (a downgrade): it stops with a message naming both versions.
//! The manifest is written atomically ([`crate::durable`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format this release reads and writes.
pub const FORMAT: u32 = 1;
/// The manifest's file name in the state directory.
pub const MANIFEST: &str = "VERSION";

/// One step from format `from` to `from + 1`: what it changes, for `hearth migrate --check`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The format it starts from.
    pub from: u32,
    /// What it changes, one sentence.
    pub changes: &'static str,
}

/// The steps from older formats to [`FORMAT`], oldest first. Format 1 is the first versioned one.
pub const MIGRATIONS: &[Migration] = &[];

/// The manifest's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The state format.
    pub format: u32,
    /// The release that wrote the manifest (information only).
    #[serde(default)]
    pub written_by: String,
}

/// What a state directory holds, as `hearth migrate --check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No state yet: start-up will create it at [`FORMAT`].
    Empty,
    /// State without a manifest, from before formats were recorded: format 1.
    Unversioned,
    /// A manifest with this format.
    Format(u32),
}

/// Why a state directory cannot be used by this release.
#[derive(Debug, thiserror::Error)]
pub enum StateFormatError {
    /// The manifest cannot be read or written.
    #[error("state directory {dir}: {reason}")]
    Io { dir: PathBuf, reason: String },
    /// The manifest is not a manifest.
    #[error("state directory {dir}: {MANIFEST} is not a state manifest ({reason}); it should read like `format = {FORMAT}`")]
    Malformed { dir: PathBuf, reason: String },
    /// A newer release wrote the state.
    #[error(
        "state directory {dir} has format {found} (written by {written_by}), newer than format {FORMAT} that this hearth ({}) reads: \
         run the release that wrote it, or point server.state_dir at another directory; hearth does not downgrade state",
        env!("CARGO_PKG_VERSION")
    )]
    Newer { dir: PathBuf, found: u32, written_by: String },
    /// An older format with no migration step in this release.
    #[error("state directory {dir} has format {found}, and this hearth has no migration from it to format {FORMAT}")]
    NoMigration { dir: PathBuf, found: u32 },
}

/// This release, as the manifest records it.
pub fn release() -> String {
    format!("hearth {} (commit {})", env!("CARGO_PKG_VERSION"), env!("HEARTH_GIT_COMMIT"))
}

/// What `state_dir` holds, without changing anything.
pub fn inspect(state_dir: &Path) -> Result<(Found, Option<Manifest>), StateFormatError> {
    let io = |e: std::io::Error| StateFormatError::Io { dir: state_dir.to_path_buf(), reason: e.to_string() };
    let path = state_dir.join(MANIFEST);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let manifest: Manifest = toml::from_str(&text).map_err(|e| StateFormatError::Malformed { dir: state_dir.to_path_buf(), reason: e.message().to_owned() })?;
            Ok((Found::Format(manifest.format), Some(manifest)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let empty = match std::fs::read_dir(state_dir) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(io(e)),
            };
            Ok((if empty { Found::Empty } else { Found::Unversioned }, None))
        }
        Err(e) => Err(io(e)),
    }
}

/// The migration steps from `found` to [`FORMAT`]; an error for a newer format or a missing step.
pub fn plan(state_dir: &Path, found: &Found, manifest: Option<&Manifest>) -> Result<Vec<Migration>, StateFormatError> {
    let format = match found {
        Found::Empty | Found::Unversioned => return Ok(Vec::new()),
        Found::Format(format) => *format,
    };
    if format > FORMAT {
        let written_by = manifest.map(|m| m.written_by.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "an unknown release".into());
        return Err(StateFormatError::Newer { dir: state_dir.to_path_buf(), found: format, written_by });
    }
    let steps: Vec<Migration> = MIGRATIONS.iter().filter(|m| m.from >= format).copied().collect();
    if format == 0 || steps.len() != (FORMAT - format) as usize {
        return Err(StateFormatError::NoMigration { dir: state_dir.to_path_buf(), found: format });
    }
    Ok(steps)
}

/// At start-up, before anything else opens the state directory (which exists): refuse a newer
/// format, and record [`FORMAT`] where no manifest is yet.
pub fn open(state_dir: &Path) -> Result<(), StateFormatError> {
    let (found, manifest) = inspect(state_dir)?;
    let steps = plan(state_dir, &found, manifest.as_ref())?;
    if let Some(step) = steps.first() {
        // No release has had a step yet; the first one to add a step applies it here.
        return Err(StateFormatError::NoMigration { dir: state_dir.to_path_buf(), found: step.from });
    }
    if matches!(found, Found::Format(_)) {
        return Ok(());
    }
    let manifest = Manifest { format: FORMAT, written_by: release() };
    let text = toml::to_string(&manifest).map_err(|e| StateFormatError::Io { dir: state_dir.to_path_buf(), reason: e.to_string() })?;
    let text = format!("# The format of this hearth state directory; see `hearth migrate --check`.\n{text}");
    crate::durable::write_atomic(&state_dir.join(MANIFEST), text.as_bytes())
        .map_err(|e| StateFormatError::Io { dir: state_dir.to_path_buf(), reason: format!("cannot write {MANIFEST}: {e}") })
}

/// `hearth migrate --check`'s report: what a start of this release would change.
pub fn check_report(state_dir: &Path) -> Result<String, StateFormatError> {
    let (found, manifest) = inspect(state_dir)?;
    let steps = plan(state_dir, &found, manifest.as_ref())?;
    let dir = state_dir.display();
    Ok(match found {
        Found::Empty => format!("{dir}: no state yet; start-up creates it at format {FORMAT}, nothing to migrate"),
        Found::Unversioned => format!("{dir}: state from before formats were recorded (format 1); start-up records format {FORMAT} in {MANIFEST}, nothing to migrate"),
        Found::Format(format) if steps.is_empty() => format!("{dir}: format {format}, nothing to migrate"),
        Found::Format(format) => {
            let mut text = format!("{dir}: format {format}; start-up migrates it to format {FORMAT}:");
            for step in steps {
                text.push_str(&format!("\n  {} -> {}: {}", step.from, step.from + 1, step.changes));
            }
            text
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_the_current_format_and_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(inspect(dir.path()).unwrap().0, Found::Empty);
        open(dir.path()).unwrap();
        let (found, manifest) = inspect(dir.path()).unwrap();
        assert_eq!(found, Found::Format(FORMAT));
        assert_eq!(manifest.unwrap().written_by, release());
        open(dir.path()).unwrap();
        assert_eq!(check_report(dir.path()).unwrap(), format!("{}: format {FORMAT}, nothing to migrate", dir.path().display()));
    }

    #[test]
    fn state_without_a_manifest_is_format_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        assert_eq!(inspect(dir.path()).unwrap().0, Found::Unversioned);
        assert!(check_report(dir.path()).unwrap().contains("nothing to migrate"));
        open(dir.path()).unwrap();
        assert_eq!(inspect(dir.path()).unwrap().0, Found::Format(1));
    }

    #[test]
    fn a_newer_format_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "format = 7\nwritten_by = \"hearth 9.0.0\"\n").unwrap();
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format 7") && err.contains("hearth 9.0.0") && err.contains(&format!("format {FORMAT}")), "{err}");
        assert!(check_report(dir.path()).is_err());
    }

    #[test]
    fn a_malformed_manifest_says_what_it_should_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "1\n").unwrap();
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a state manifest") && err.contains("format = 1"), "{err}");
    }
}
