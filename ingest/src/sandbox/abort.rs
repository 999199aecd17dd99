//! The worker's SIGABRT handler: tells a native library's silent abort on allocation failure from
//! other crashes.
//!
//! PDFium's allocator aborts the process when an allocation fails (under the worker's
//! address-space limit: a decompression bomb, a huge image) and prints nothing, so the parent saw
//! only "crashed (SIGABRT)". The handler, installed once the limits are set, reads the process's
//! peak resident memory (`getrusage`, a plain system call, safe in a signal handler) and, when it
//! reached half of the address-space limit, writes [`OUT_OF_MEMORY`] to stderr with `write(2)`;
//! then it restores the default action and raises the signal again, so the process still dies of
//! SIGABRT as before. The parent ([`super::classify`]) reports such an end as out of memory.
//! A limit set once before the handler is installed is the only state it reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the handler writes when the abort came near the memory limit.
pub(super) const OUT_OF_MEMORY: &str = "parse-worker: aborted near its memory limit (out of memory)";

/// The address-space limit the handler compares against, in bytes.
static LIMIT_BYTES: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_abort(_signal: libc::c_int) {
    // SAFETY: getrusage writes into the zeroed struct we own; write(2), signal(2) and raise(3)
    // are async-signal-safe.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0 {
            let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0).saturating_mul(1024);
            let limit = LIMIT_BYTES.load(Ordering::Relaxed);
            if limit > 0 && peak.saturating_mul(2) >= limit {
                for part in ["\n", OUT_OF_MEMORY, "\n"] {
                    let _ = libc::write(2, part.as_ptr().cast(), part.len());
                }
            }
        }
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
        libc::raise(libc::SIGABRT);
    }
}

/// Installs the handler for a process limited to `limit_bytes` of address space.
pub(super) fn install(limit_bytes: u64) {
    LIMIT_BYTES.store(limit_bytes, Ordering::Relaxed);
    let handler: extern "C" fn(libc::c_int) = on_abort;
    // SAFETY: the handler only makes async-signal-safe calls (see above).
    unsafe {
        libc::signal(libc::SIGABRT, handler as libc::sighandler_t);
    }
}
