//! The worker's confinement, applied by the child to itself before it reads a byte of its input.
//!
//! Layers, each on its own so that a kernel without one still gets the others:
//! - **resource limits** (`rlimit`): `RLIMIT_AS` and `RLIMIT_CPU` from the request,
//!   `RLIMIT_CORE` = 0 (no core dumps of documents), `RLIMIT_FSIZE` = 0 (no file grows; pipes are
//!   not affected), `RLIMIT_NOFILE` = [`OPEN_FILES`] (stdin, stdout, stderr and a little slack:
//!   the worker opens nothing), `RLIMIT_NPROC` = 0 (no `fork`, no thread: the count is per user and
//!   the user already runs the daemon). Linux exempts root from `RLIMIT_NPROC`, so a daemon run as
//!   root keeps only the Landlock and wall-clock layers there; the packaged service runs as its own
//!   user. Limits only go down: a limit already lower stays.
//! - **Landlock** (an empty ruleset that handles every file-system right of ABI v6, TCP bind and
//!   connect, signals and abstract sockets): from then on every `open`, `execve`, `mkdir`... is
//!   denied, anywhere, and no signal reaches a process outside the worker. Descriptors already open
//!   (the input on stdin, the pipes) keep working: Landlock checks opens, not reads. `no_new_privs`
//!   is set with it. Best effort: an older kernel enforces what it knows ([`Landlock::Partial`]),
//!   one without Landlock nothing ([`Landlock::Unsupported`]); the daemon's start-up self-check
//!   logs which.
//! - **no inherited descriptor**: a parent's descriptor without close-on-exec (a build tool's
//!   jobserver pipe, a library's `fopen`) would stay readable under Landlock, which checks opens
//!   only; the worker closes every descriptor above stderr first ([`close_inherited`]).
//! - **a cleared environment** is the parent's part (`Command::env_clear`, in `mod.rs`).
//!
//! What the worker still needs after this: nothing from the file system. The dynamic loader has
//! mapped its libraries before `main`, Rust's stack-overflow guard was set up before `main`,
//! pdf-extract's fonts and encodings are compiled in, and `RUST_BACKTRACE` is unset (so a panic
//! does not open the binary to symbolize a backtrace).

use landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI,
};
use rlimit::Resource;
use serde::{Deserialize, Serialize};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `RLIMIT_NOFILE` of the worker: it holds stdin, stdout and stderr and opens nothing.
pub const OPEN_FILES: u64 = 16;

/// The Landlock ABI whose rights the worker asks for (file system, TCP, scopes): the newest one
/// this code was tested against. A newer kernel enforces all of it.
const REQUESTED_ABI: ABI = ABI::V6;

/// How far Landlock confined the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Landlock {
    /// Every requested restriction holds; `abi` is the kernel's Landlock ABI.
    Enforced { abi: i32 },
    /// The kernel's Landlock is older than the rights asked for: some hold, some do not.
    Partial { abi: i32 },
    /// The kernel has no Landlock (not built in, or not enabled at boot).
    Unsupported { reason: String },
    /// The kernel has Landlock but applying it failed.
    Failed { error: String },
}

impl std::fmt::Display for Landlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Landlock::Enforced { abi } => write!(f, "Landlock ABI v{abi} enforced"),
            Landlock::Partial { abi } => write!(f, "Landlock ABI v{abi} partially enforced"),
            Landlock::Unsupported { reason } => write!(f, "kernel lacks Landlock ({reason})"),
            Landlock::Failed { error } => write!(f, "Landlock could not be applied: {error}"),
        }
    }
}

/// Lowers this process's resource limits (never raises a hard limit, which would fail).
pub fn apply_limits(memory_bytes: u64, cpu_seconds: u64) -> std::io::Result<()> {
    lower(Resource::CORE, 0)?;
    lower(Resource::FSIZE, 0)?;
    lower(Resource::NOFILE, OPEN_FILES)?;
    lower(Resource::NPROC, 0)?;
    lower(Resource::AS, memory_bytes)?;
    // SIGXCPU at the soft limit, SIGKILL a second later.
    let cpu = cpu_seconds.max(1);
    let (_, hard) = Resource::CPU.get()?;
    let hard = cpu.saturating_add(1).min(hard);
    Resource::CPU.set(cpu.min(hard), hard)
}

fn lower(resource: Resource, value: u64) -> std::io::Result<()> {
    let (_, hard) = resource.get()?;
    let value = value.min(hard);
    resource.set(value, value)
}

/// The soft limit of `resource`, for the self-check's report.
pub fn current_limit(resource: Resource) -> u64 {
    resource.get().map_or(u64::MAX, |(soft, _)| soft)
}

/// The descriptors above 2 this process holds, with what each refers to, from `/proc/self/fd`
/// (so, before Landlock). The listing's own descriptor is closed when this returns and is not in it.
pub fn descriptors() -> Vec<(RawFd, String)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut held = Vec::new();
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy().into_owned();
        // The listing's own: /proc/<pid>/fd.
        if fd > 2 && !(target.starts_with("/proc/") && target.ends_with("/fd")) {
            held.push((fd, target));
        }
    }
    held
}

/// Closes every descriptor above stderr, which this process can only have inherited; returns them
/// as `"N -> target"`.
pub fn close_inherited() -> Vec<String> {
    descriptors()
        .into_iter()
        .map(|(fd, target)| {
            // SAFETY: the worker calls this first thing in a fresh process, before it opens
            // anything: no object here owns a descriptor above 2 (the listing's own is closed and
            // not listed), so each one listed was inherited, is owned by nothing, and is closed once.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            format!("{fd} -> {target}")
        })
        .collect()
}

/// Denies this process every new file-system access, TCP bind and connect, and signals or abstract
/// sockets outside it, for the rest of its life (and any child's).
pub fn restrict() -> Landlock {
    let created = Ruleset::default()
        .handle_access(AccessFs::from_all(REQUESTED_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(REQUESTED_ABI)))
        .and_then(|r| r.scope(Scope::from_all(REQUESTED_ABI)))
        .and_then(|r| r.create());
    let status = match created.and_then(|r| r.restrict_self()) {
        Ok(status) => status,
        Err(e) => {
            return Landlock::Failed {
                error: e.to_string(),
            }
        }
    };
    let abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        LandlockStatus::NotEnabled => {
            return Landlock::Unsupported {
                reason: "built in but not enabled at boot".into(),
            }
        }
        // ENOSYS, or any other error: a seccomp filter (a systemd unit's SystemCallFilter=)
        // that refuses the calls looks the same from here.
        LandlockStatus::NotImplemented => {
            return Landlock::Unsupported {
                reason: "not built into this kernel, or its system calls are filtered".into(),
            }
        }
    };
    match status.ruleset {
        RulesetStatus::FullyEnforced => Landlock::Enforced { abi },
        RulesetStatus::PartiallyEnforced => Landlock::Partial { abi },
        RulesetStatus::NotEnforced => Landlock::Unsupported {
            reason: format!("ABI v{abi} enforces none of the rules"),
        },
    }
}
