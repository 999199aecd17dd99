//! How llama.cpp's CPU threads wait for each other: `[engine] cpu_wait`.
//!
//! ggml's CPU backend is built with OpenMP here, so every barrier between two operations of a
//! graph (several hundred per token) is an OpenMP barrier, and GNU libgomp's default is to spin
//! on it for a while before sleeping. That is fastest when the threads own their cores, and
//! ruinous when they do not: a thread spinning for one that the kernel has descheduled burns its
//! time slice, at every barrier. On the 2-core development box, a 48-token answer of the default
//! chat model (2 threads) took 12 to 74 s beside two busy processes with the default policy,
//! and 1.2 to 2.4 s with `OMP_WAIT_POLICY=PASSIVE` (threads sleep at once), alternating the
//! three servers in one run (`GOMP_SPINCOUNT=10000`, a short spin, took 5.9 to 11 s). A
//! workstation runs a browser and other tools beside hearth, so `sleep` is the default; `spin`
//! keeps libgomp's default for a machine whose cores hearth has to itself.
//!
//! libgomp reads its environment once, when the process loads it, before `main`. So `serve` (and
//! `quantize`, whose calibration and accuracy report run the model) sets the variable and replaces itself with the same binary and arguments (`exec`: same pid,
//! same descriptors, so systemd and supervisors see nothing). A user's own `OMP_WAIT_POLICY` or
//! `GOMP_SPINCOUNT` in the environment wins, and nothing is re-executed.

use std::ffi::OsString;

use crate::config::CpuWait;

/// libgomp's wait policy variable.
const POLICY: &str = "OMP_WAIT_POLICY";
/// libgomp's spin count variable; set by a user, it says the user chose.
const SPIN_COUNT: &str = "GOMP_SPINCOUNT";

/// What to do about the wait policy at start-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// The environment is already as configured (or the user set it).
    Keep,
    /// Set `OMP_WAIT_POLICY` to this value and execute the binary again.
    Reexec(&'static str),
}

/// The action for `setting`, given the environment's `OMP_WAIT_POLICY` and `GOMP_SPINCOUNT`.
pub fn decide(setting: CpuWait, policy: Option<&OsString>, spin_count: Option<&OsString>) -> Action {
    match (setting, policy, spin_count) {
        (CpuWait::Spin, _, _) | (_, Some(_), _) | (_, _, Some(_)) => Action::Keep,
        (CpuWait::Sleep, None, None) => Action::Reexec("PASSIVE"),
    }
}

/// Apply `setting`: returns only when nothing needs to change or the re-execution failed (then
/// the reason is logged and hearth runs with libgomp's default).
pub fn ensure(setting: CpuWait) {
    let Action::Reexec(value) = decide(setting, std::env::var_os(POLICY).as_ref(), std::env::var_os(SPIN_COUNT).as_ref()) else { return };
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let error = std::process::Command::new("/proc/self/exe").arg0(arg0).args(args).env(POLICY, value).exec();
    eprintln!("hearth: cannot re-execute itself with {POLICY}={value} ({error}); llama.cpp's CPU threads keep spinning while they wait");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_reexecutes_once_with_the_passive_policy() {
        assert_eq!(decide(CpuWait::Sleep, None, None), Action::Reexec("PASSIVE"));
        // After the re-execution the variable is set: no loop.
        assert_eq!(decide(CpuWait::Sleep, Some(&"PASSIVE".into()), None), Action::Keep);
    }

    #[test]
    fn a_users_own_setting_wins_and_spin_changes_nothing() {
        assert_eq!(decide(CpuWait::Sleep, Some(&"ACTIVE".into()), None), Action::Keep);
        assert_eq!(decide(CpuWait::Sleep, None, Some(&"100000".into())), Action::Keep);
        assert_eq!(decide(CpuWait::Spin, None, None), Action::Keep);
    }
}
