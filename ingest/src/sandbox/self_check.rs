//! The worker's self-check: proof, from inside a real worker, that its confinement holds.
//!
//! The parent runs the worker exactly as for a parse (same arguments, limits, cleared environment,
//! input on stdin), plus `--self-check` and paths to try. After confining itself and parsing its
//! input, the worker tries to open each `--try-read` path for reading and to create each
//! `--try-create` path, and reports every outcome with what it can see of its environment and its
//! limits ([`SelfCheck`]). The daemon runs it once at start-up and logs one line; the tests run it
//! to show that the worker cannot read `/etc/hostname` or the state directory, cannot write, and
//! does not see the daemon's environment, while it still parses.

use super::confine::Landlock;
use crate::parse::{ParseError, ParsedDocument};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the self-check tries after confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfCheckRequest {
    /// Files or directories it tries to open for reading.
    pub read: Vec<PathBuf>,
    /// Files it tries to create (`O_CREAT | O_EXCL`): none exists afterwards unless confinement
    /// failed.
    pub create: Vec<PathBuf>,
}

/// What a self-checking worker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// How far Landlock confined it.
    pub landlock: Landlock,
    /// `RLIMIT_NOFILE` as it ran.
    pub open_files_limit: u64,
    /// `RLIMIT_NPROC` as it ran (Linux does not apply it to root).
    pub processes_limit: u64,
    /// Names of the environment variables it saw (values are never reported).
    pub environment: Vec<String>,
    /// Descriptors beyond stdin, stdout and stderr that it inherited and closed before confining
    /// itself, as `"N -> target"` (a parent's descriptor without close-on-exec: Landlock would not
    /// stop reads on it).
    pub closed: Vec<String>,
    /// Descriptors beyond stdin, stdout and stderr still open once it had closed those: none is
    /// expected.
    pub open: Vec<String>,
    /// Each attempt and its outcome.
    pub attempts: Vec<Attempt>,
    /// Its input, parsed.
    pub document: Result<ParsedDocument, ParseError>,
}

impl SelfCheck {
    /// The attempts that succeeded: each one is a hole in the confinement.
    pub fn allowed(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(|a| a.denied.is_none())
    }
}

/// One attempted access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Read (open for reading) or create.
    pub access: Access,
    /// The path tried.
    pub path: PathBuf,
    /// The error that stopped it (`None`: it succeeded).
    pub denied: Option<String>,
}

/// The kind of access attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Open for reading.
    Read,
    /// Create a new file.
    Create,
}

/// The child's side: try every access in `request` (after confinement).
pub(super) fn attempt_all(request: &SelfCheckRequest) -> Vec<Attempt> {
    let reads = request.read.iter().map(|path| Attempt {
        access: Access::Read,
        path: path.clone(),
        denied: std::fs::File::open(path).err().map(|e| e.to_string()),
    });
    let creates = request.create.iter().map(|path| Attempt {
        access: Access::Create,
        path: path.clone(),
        denied: std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .err()
            .map(|e| e.to_string()),
    });
    reads.chain(creates).collect()
}

/// Names of the variables in this process's environment.
pub(super) fn environment_names() -> Vec<String> {
    std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect()
}
