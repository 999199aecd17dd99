//! The child side: argv protocol, resource limits, parse, one JSON reply on stdout.
//!
//! Protocol (after the program's leading arguments, e.g. `hearth parse-worker`):
//! `--format <pdf|text|markdown|html> --memory-bytes <N> --cpu-seconds <N> -- <path>`; the worker
//! also takes the path without the `--`, in case an argument parser in front removed it.
//! The worker sets its own limits before it reads a byte of the file: `RLIMIT_AS` (address space)
//! = memory bytes, `RLIMIT_CPU` = CPU seconds (SIGXCPU then, SIGKILL a second later),
//! `RLIMIT_CORE` = 0 (no core dumps of documents), `RLIMIT_FSIZE` = 0 (it writes no files; pipes are
//! not affected). Limits can only go down: a limit already lower stays.
//!
//! Exit status: 0 with a [`WorkerReply`] on stdout (the document, or the [`ParseError`] that is the
//! file's fault); 2 bad arguments; 3 limits could not be set; 4 the file could not be read
//! (reason on stderr); 5 stdout could not be written. Anything else — a signal, an abort — is a
//! crash, which the parent classifies from the status and the stderr tail.

use crate::parse::{panic_message, parse_bytes, Format, ParseError, ParsedDocument};
use rlimit::Resource;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write;
use std::panic::catch_unwind;
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) const EXIT_USAGE: u8 = 2;
pub(super) const EXIT_LIMITS: u8 = 3;
pub(super) const EXIT_READ: u8 = 4;
pub(super) const EXIT_WRITE: u8 = 5;

/// What the worker writes to stdout when it exits 0.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WorkerReply {
    Ok(ParsedDocument),
    Error(ParseError),
}

/// One parse job, as passed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkerRequest {
    pub format: Format,
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    pub path: PathBuf,
}

impl WorkerRequest {
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "--format".into(),
            self.format.as_str().into(),
            "--memory-bytes".into(),
            self.memory_bytes.to_string().into(),
            "--cpu-seconds".into(),
            self.cpu_seconds.to_string().into(),
            "--".into(),
            self.path.clone().into_os_string(),
        ]
    }

    pub fn from_args(args: &[OsString]) -> Result<Self, String> {
        let (mut format, mut memory, mut cpu, mut path) = (None, None, None, None);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .and_then(|v| v.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.to_str() {
                Some("--format") => {
                    let v = value("--format")?;
                    format = Some(Format::from_name(&v).ok_or(format!("unknown format {v:?}"))?);
                }
                Some("--memory-bytes") => memory = Some(number(&value("--memory-bytes")?)?),
                Some("--cpu-seconds") => cpu = Some(number(&value("--cpu-seconds")?)?),
                Some("--") => {
                    path = it.next().map(PathBuf::from);
                    if it.next().is_some() {
                        return Err("one path only".into());
                    }
                }
                // A bare path too: an argument parser in front (clap's trailing arguments) may
                // have eaten the `--`.
                Some(a) if !a.starts_with("--") && path.is_none() => path = Some(PathBuf::from(a)),
                None if path.is_none() => path = Some(PathBuf::from(arg)),
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        Ok(WorkerRequest {
            format: format.ok_or("--format is required")?,
            memory_bytes: memory.ok_or("--memory-bytes is required")?,
            cpu_seconds: cpu.ok_or("--cpu-seconds is required")?,
            path: path.ok_or("a path after -- is required")?,
        })
    }
}

fn number(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("{v:?} is not a number"))
}

/// The parse worker's whole program: `args` are the arguments after the program's own leading
/// ones (for the daemon, after `hearth parse-worker`). Call it before any logging or runtime is
/// set up: stdout carries the reply and nothing else.
pub fn worker_main(args: &[OsString]) -> ExitCode {
    let req = match WorkerRequest::from_args(args) {
        Ok(req) => req,
        Err(msg) => {
            eprintln!("parse-worker: {msg}");
            eprintln!(
                "usage: parse-worker --format <pdf|text|markdown|html> --memory-bytes N --cpu-seconds N -- PATH"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = apply_limits(req.memory_bytes, req.cpu_seconds) {
        eprintln!("parse-worker: could not set resource limits: {e}");
        return ExitCode::from(EXIT_LIMITS);
    }
    let bytes = match std::fs::read(&req.path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", req.path.display());
            return ExitCode::from(EXIT_READ);
        }
    };
    let reply = match catch_unwind(|| parse_bytes(&bytes, req.format)) {
        Ok(Ok(doc)) => WorkerReply::Ok(doc),
        Ok(Err(e)) => WorkerReply::Error(e),
        Err(panic) => WorkerReply::Error(ParseError::ParserFailed(panic_message(panic.as_ref()))),
    };
    drop(bytes);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer(&mut out, &reply)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("parse-worker: could not write the result: {e}");
        return ExitCode::from(EXIT_WRITE);
    }
    ExitCode::SUCCESS
}

/// Lowers this process's limits (never raises a hard limit, which would fail).
fn apply_limits(memory_bytes: u64, cpu_seconds: u64) -> std::io::Result<()> {
    lower(Resource::CORE, 0, 0)?;
    lower(Resource::FSIZE, 0, 0)?;
    lower(Resource::AS, memory_bytes, memory_bytes)?;
    lower(
        Resource::CPU,
        cpu_seconds.max(1),
        cpu_seconds.max(1).saturating_add(1),
    )?;
    Ok(())
}

fn lower(resource: Resource, soft: u64, hard: u64) -> std::io::Result<()> {
    let (_, cur_hard) = resource.get()?;
    let hard = hard.min(cur_hard);
    resource.set(soft.min(hard), hard)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let req = WorkerRequest {
            format: Format::Markdown,
            memory_bytes: 1 << 30,
            cpu_seconds: 60,
            path: PathBuf::from("/tmp/a file --format.md"),
        };
        assert_eq!(WorkerRequest::from_args(&req.to_args()).unwrap(), req);
    }

    #[test]
    fn path_without_double_dash() {
        let args: Vec<OsString> = [
            "--format",
            "pdf",
            "--memory-bytes",
            "1",
            "--cpu-seconds",
            "2",
            "/x.pdf",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            WorkerRequest::from_args(&args).unwrap().path,
            PathBuf::from("/x.pdf")
        );
        let two: Vec<OsString> = ["/a", "/b"].iter().map(OsString::from).collect();
        assert!(WorkerRequest::from_args(&two).unwrap_err().contains("/b"));
    }

    #[test]
    fn bad_args_are_reported() {
        let args: Vec<OsString> = ["--format", "docx", "--", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(WorkerRequest::from_args(&args)
            .unwrap_err()
            .contains("docx"));
        let args: Vec<OsString> = ["--format", "pdf", "--", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(WorkerRequest::from_args(&args)
            .unwrap_err()
            .contains("--memory-bytes"));
    }
}
