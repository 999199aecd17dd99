//! Intel AMX: whether ggml's AMX build of the CPU backend may be loaded.
//!
//! ggml ships a CPU backend variant for Sapphire Rapids (`libggml-cpu-sapphirerapids.so`) whose
//! matrix kernels use AMX tiles, and picks it from CPUID alone. On a Xeon with AMX in a virtual
//! machine (the 2-core development box) hearth died with SIGILL (exit 132) at the first chat
//! decode, on a `tilezero` in `tinygemm_kernel_amx`, although the kernel had granted the tile-data
//! state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` answered 0) and a small AMX program
//! ran there: the kernel's tile configuration was not in place on that thread. A request must never
//! crash the daemon, so the AMX build is loaded only with `[engine] cpu_amx = true` (and a kernel
//! that grants the state); otherwise the backend folder is loaded without it and the AVX-512 build
//! serves. hearth asks for the state either way, as the kernel's AMX documentation prescribes.

/// What the kernel said about AMX for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmxState {
    /// Not an x86-64 Linux machine, or its CPU has no AMX: nothing to do.
    Absent,
    /// The kernel granted the tile-data state: AMX kernels may run.
    Enabled,
    /// The CPU reports AMX but the kernel refused the request (errno): AMX kernels would fault.
    Refused(i32),
}

/// Ask the kernel for AMX tile data if the CPU has AMX. Idempotent; call before loading backends.
pub fn request_amx() -> AmxState {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        if !cpu_reports_amx() {
            return AmxState::Absent;
        }
        const SYS_ARCH_PRCTL: std::ffi::c_long = 158;
        const ARCH_REQ_XCOMP_PERM: std::ffi::c_long = 0x1023;
        const XFEATURE_XTILEDATA: std::ffi::c_long = 18;
        extern "C" {
            fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
        }
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, n) takes two integers, touches no memory of ours
        // and only extends the process's permitted XSAVE features.
        let result = unsafe { syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        if result == 0 {
            AmxState::Enabled
        } else {
            AmxState::Refused(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        AmxState::Absent
    }
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn cpu_reports_amx() -> bool {
    // Leaf 7 is valid when the maximum leaf is at least 7.
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    if max_leaf < 7 {
        return false;
    }
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    leaf7.edx & (1 << 24) != 0
}

/// A backend file built for AMX (ggml's only such CPU variant is Sapphire Rapids').
pub(crate) fn uses_amx(file_name: &str) -> bool {
    file_name.contains("sapphirerapids")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_twice_gives_the_same_answer() {
        assert_eq!(request_amx(), request_amx());
    }

    #[test]
    fn only_the_sapphire_rapids_variant_is_an_amx_build() {
        assert!(uses_amx("libggml-cpu-sapphirerapids.so"));
        assert!(!uses_amx("libggml-cpu-icelake.so"));
        assert!(!uses_amx("libggml-cuda.so"));
    }
}
