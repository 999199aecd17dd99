//! The parse worker's confinement, checked once at start-up and logged in one line.
//!
//! The daemon runs a real worker (`hearth parse-worker --self-check`, the same limits, cleared
//! environment and Landlock as every parse) on a small Markdown input, and has it try to read the
//! state directory and `/etc/hostname` and to create a file in the state directory. Its report
//! becomes one line: "parse worker: Landlock ABI v7 enforced ..." where every attempt was denied,
//! "kernel lacks Landlock: the parse worker runs with rlimits and a cleared environment only"
//! where the kernel has none, and an error naming the hole where something that should have been
//! denied was not. Parsing goes on in every case: the log says how confined it is.

use std::path::{Path, PathBuf};

use ingest::sandbox::{Access, Landlock, SelfCheck, SelfCheckRequest, OPEN_FILES};
use ingest::{Format, Sandbox};

/// How loud a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

/// Run the self-check and log what it found.
pub async fn check(sandbox: Sandbox, state_dir: PathBuf) {
    let probe = state_dir.join("ingest").join(".parse-worker-probe");
    let _ = std::fs::remove_file(&probe);
    let mut read = vec![state_dir.clone()];
    if Path::new("/etc/hostname").exists() {
        read.push(PathBuf::from("/etc/hostname"));
    }
    let request = SelfCheckRequest { read, create: vec![probe.clone()] };
    let input = b"# Self-check\n\nThe parse worker parses this line.\n".to_vec();
    let report = sandbox.self_check(request, input, Format::Markdown).await;
    let _ = std::fs::remove_file(&probe); // there only if confinement failed
    let lines = match report {
        Ok(report) => verdict(&report, rustix::process::geteuid().is_root()),
        Err(e) => vec![(Level::Error, format!("parse worker: the start-up self-check failed ({e}); documents may fail to parse"))],
    };
    for (level, line) in lines {
        match level {
            Level::Info => tracing::info!("{line}"),
            Level::Warn => tracing::warn!("{line}"),
            Level::Error => tracing::error!("{line}"),
        }
    }
}

/// The log lines for a report: the first says how far Landlock holds, the others name holes.
fn verdict(report: &SelfCheck, root: bool) -> Vec<(Level, String)> {
    let processes = if root {
        "child processes still possible (Linux exempts root from RLIMIT_NPROC: run hearth as its own user)"
    } else {
        "no child processes"
    };
    let rest = format!("{OPEN_FILES} descriptors, {processes}, an empty environment");
    let mut lines = vec![match &report.landlock {
        Landlock::Enforced { abi } => (Level::Info, format!("parse worker: Landlock ABI v{abi} enforced: it opens no file but its input; {rest}")),
        Landlock::Partial { abi } => {
            (Level::Warn, format!("parse worker: Landlock ABI v{abi} partially enforced (an older kernel restricts some rights only); {rest}"))
        }
        Landlock::Unsupported { reason } => {
            (Level::Warn, format!("kernel lacks Landlock ({reason}): the parse worker runs with rlimits and a cleared environment only"))
        }
        Landlock::Failed { error } => {
            (Level::Error, format!("parse worker: Landlock could not be applied ({error}): it runs with rlimits and a cleared environment only"))
        }
    }];
    if matches!(report.landlock, Landlock::Enforced { .. } | Landlock::Partial { .. }) {
        for hole in report.allowed() {
            let verb = match hole.access {
                Access::Read => "read",
                Access::Create => "create",
            };
            lines.push((Level::Error, format!("parse worker: confinement failed: it could {verb} {}", hole.path.display())));
        }
    }
    if !report.open.is_empty() {
        lines.push((Level::Error, format!("parse worker: descriptors beyond stdio stay open in it, which Landlock does not guard: {}", report.open.join(", "))));
    }
    if !report.environment.is_empty() {
        lines.push((Level::Error, format!("parse worker: it sees environment variables: {}", report.environment.join(", "))));
    }
    if let Err(e) = &report.document {
        lines.push((Level::Error, format!("parse worker: it could not parse its self-check input: {e}")));
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use ingest::sandbox::Attempt;

    fn report(landlock: Landlock, denied: bool) -> SelfCheck {
        SelfCheck {
            landlock,
            open_files_limit: OPEN_FILES,
            processes_limit: 0,
            environment: Vec::new(),
            closed: Vec::new(),
            open: Vec::new(),
            attempts: vec![Attempt { access: Access::Read, path: "/etc/hostname".into(), denied: denied.then(|| "Permission denied (os error 13)".into()) }],
            document: ingest::parse_bytes(b"# a\n\nb\n", Format::Markdown),
        }
    }

    #[test]
    fn one_line_says_how_far_the_worker_is_confined() {
        let lines = verdict(&report(Landlock::Enforced { abi: 7 }, true), false);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].0, Level::Info);
        assert!(lines[0].1.starts_with("parse worker: Landlock ABI v7 enforced"), "{lines:?}");
        assert!(lines[0].1.contains("no child processes"), "{lines:?}");
        assert!(verdict(&report(Landlock::Enforced { abi: 7 }, true), true)[0].1.contains("RLIMIT_NPROC"));

        let lines = verdict(&report(Landlock::Unsupported { reason: "not built into this kernel".into() }, false), false);
        assert_eq!(lines.len(), 1, "an unconfined read is expected without Landlock: {lines:?}");
        assert_eq!(lines[0].0, Level::Warn);
        assert!(lines[0].1.starts_with("kernel lacks Landlock (not built into this kernel): the parse worker runs with rlimits and a cleared environment only"), "{lines:?}");
    }

    #[test]
    fn holes_and_a_visible_environment_are_errors() {
        let mut leaky = report(Landlock::Enforced { abi: 6 }, false);
        leaky.environment = vec!["HEARTH__SERVER__API_KEYS".into()];
        leaky.open = vec!["7 -> /var/lib/hearth/db/conf".into()];
        let lines = verdict(&leaky, false);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[1], (Level::Error, "parse worker: confinement failed: it could read /etc/hostname".to_owned()));
        assert_eq!(lines[2], (Level::Error, "parse worker: descriptors beyond stdio stay open in it, which Landlock does not guard: 7 -> /var/lib/hearth/db/conf".to_owned()));
        assert_eq!(lines[3], (Level::Error, "parse worker: it sees environment variables: HEARTH__SERVER__API_KEYS".to_owned()));
    }
}
