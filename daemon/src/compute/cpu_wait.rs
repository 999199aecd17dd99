//! How llama.cpp's CPU threads wait for each other: `[engine] cpu_wait`.
//!
//! ggml's CPU backend is built with OpenMP here, so every barrier between two operations of a
//! graph (several hundred per token) is an OpenMP barrier. GNU libgomp's default is to spin on it
//! for a long while (300,000 iterations) before sleeping: fastest when the threads own their
//! cores, ruinous when they do not, since a thread spinning for one that the kernel has
//! descheduled burns its time slice at every barrier. Sleeping at once costs a wake-up at every
//! barrier instead, which an idle machine pays for. Measured on the 2-core development box (a VM),
//! the default chat model with 2 threads, 128 tokens, the servers answering in turn:
//!
//! | policy | idle box | beside two busy processes |
//! |---|---|---|
//! | libgomp's default spin | 1.6 s | 32 to 196 s (48 tokens: 12 to 74 s) |
//! | `GOMP_SPINCOUNT=3000` (`brief`, the default) | 1.6 s | 4.0 to 5.0 s |
//! | `OMP_WAIT_POLICY=PASSIVE` (`sleep`) | 4.2 s | 3.2 to 6.4 s (48 tokens: 1.2 to 2.4 s) |
//!
//! A workstation runs a browser and other tools beside hearth, so `brief` (spin 3,000 iterations,
//! then sleep) is the default: the idle speed of spinning, and most of sleeping's speed under load.
//!
//! libgomp reads its environment once, when the process loads it, before `main`. So `serve` (and
//! `quantize`, whose calibration and accuracy report run the model) sets the variable and replaces
//! itself with the same binary and arguments (`exec`: same pid, same descriptors, so systemd and
//! supervisors see nothing). A user's own `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` in the environment
//! wins, and nothing is re-executed.

use std::ffi::OsString;

use crate::config::CpuWait;

/// libgomp's wait policy variable.
const POLICY: &str = "OMP_WAIT_POLICY";
/// libgomp's spin count variable.
const SPIN_COUNT: &str = "GOMP_SPINCOUNT";
/// Spins before sleeping for `brief`: as fast as libgomp's default on idle cores, measured.
const BRIEF_SPINS: &str = "3000";

/// What to do about the wait policy at start-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// The environment is already as configured (or the user set it).
    Keep,
    /// Set this variable to this value and execute the binary again.
    Reexec(&'static str, &'static str),
}

/// The action for `setting`, given the environment's `OMP_WAIT_POLICY` and `GOMP_SPINCOUNT`.
pub fn decide(setting: CpuWait, policy: Option<&OsString>, spin_count: Option<&OsString>) -> Action {
    if policy.is_some() || spin_count.is_some() {
        return Action::Keep;
    }
    match setting {
        CpuWait::Spin => Action::Keep,
        CpuWait::Brief => Action::Reexec(SPIN_COUNT, BRIEF_SPINS),
        CpuWait::Sleep => Action::Reexec(POLICY, "PASSIVE"),
    }
}

/// Apply `setting`: returns only when nothing needs to change or the re-execution failed (then
/// the reason is printed and hearth runs with libgomp's default).
pub fn ensure(setting: CpuWait) {
    let Action::Reexec(name, value) = decide(setting, std::env::var_os(POLICY).as_ref(), std::env::var_os(SPIN_COUNT).as_ref()) else { return };
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let error = std::process::Command::new("/proc/self/exe").arg0(arg0).args(args).env(name, value).exec();
    eprintln!("hearth: cannot re-execute itself with {name}={value} ({error}); llama.cpp's CPU threads keep libgomp's long spin");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_reexecutes_once_with_its_variable() {
        assert_eq!(decide(CpuWait::Brief, None, None), Action::Reexec("GOMP_SPINCOUNT", "3000"));
        assert_eq!(decide(CpuWait::Sleep, None, None), Action::Reexec("OMP_WAIT_POLICY", "PASSIVE"));
        // After the re-execution the variable is set: no loop.
        assert_eq!(decide(CpuWait::Brief, None, Some(&"3000".into())), Action::Keep);
        assert_eq!(decide(CpuWait::Sleep, Some(&"PASSIVE".into()), None), Action::Keep);
    }

    #[test]
    fn a_users_own_setting_wins_and_spin_changes_nothing() {
        assert_eq!(decide(CpuWait::Brief, Some(&"ACTIVE".into()), None), Action::Keep);
        assert_eq!(decide(CpuWait::Sleep, None, Some(&"100000".into())), Action::Keep);
        assert_eq!(decide(CpuWait::Spin, None, None), Action::Keep);
    }
}
