//! Running the `hearth` binary as a command, as a user at a terminal does, and reading what it
//! printed.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::hearth_command;

/// Run `hearth ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    hearth_command().args(args).output().unwrap_or_else(|e| panic!("run hearth: {e}"))
}

/// Exit status, stdout and stderr, for an assertion message.
pub fn describe(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The JSON a successful command printed on stdout (`--json`); panics with the output otherwise.
pub fn stdout_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", describe(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(o)))
}

/// A file's sha256 in hex, by `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap_or_else(|e| panic!("sha256sum: {e}"));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}
