//! Stand-in for `hearth parse-worker` in this crate's tests and benchmark: the same
//! `ingest::worker_main` the daemon calls from its hidden subcommand.

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    ingest::worker_main(&args)
}
