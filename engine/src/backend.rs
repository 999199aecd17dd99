//! The process-wide llama.cpp backend and the compute devices it found.
//!
//! hearth is built with llama-cpp-2's `dynamic-backends` feature: no compute backend is linked into
//! the binary. At start-up ggml loads them as shared libraries from one directory — the best CPU
//! variant (`libggml-cpu-<isa>.so`, chosen by the CPU's features) and any GPU backend present
//! (`libggml-cuda.so`). ggml skips a library that fails to load without saying why, so after
//! loading, every `libggml-<name>*.so` in the directory whose backend did not register is probed
//! here (dlopen, the backend's own support check, its API version) and reported by file and reason:
//! a missing CUDA library, or a backend built from another llama.cpp tree.
//!
//! llama.cpp may be initialised once per process, so the backend and the report live in
//! `OnceLock`s; every engine thread borrows them.

use std::ffi::{c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::LlamaBackendDeviceType;

use crate::EngineError;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
static REPORT: OnceLock<BackendReport> = OnceLock::new();
/// Serialises the first initialisation: llama.cpp refuses a second `init`.
static INIT: Mutex<()> = Mutex::new(());

/// ggml's backend interface version of the llama.cpp tree llama-cpp-sys-2 vendors
/// (`GGML_BACKEND_API_VERSION` in `ggml/src/ggml-backend-impl.h`). Used only to explain a
/// rejected backend when no backend registered to read the version from.
const GGML_BACKEND_API_VERSION: c_int = 3;

/// How to bring up llama.cpp.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Route llama.cpp's own log lines into `tracing` (they are noisy at info level).
    pub log_to_tracing: bool,
    /// Directory with the ggml backend libraries; `None` looks next to the executable
    /// ([`default_backend_dirs`]).
    pub backend_dir: Option<PathBuf>,
    /// Load ggml's AMX build of the CPU backend (Sapphire Rapids and later) where the CPU has AMX.
    /// Off by default: see [`crate::amx`].
    pub cpu_amx: bool,
}

/// What kind of device a backend drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The host CPU.
    Cpu,
    /// A discrete GPU.
    Gpu,
    /// A GPU sharing the host's memory.
    IntegratedGpu,
    /// Another accelerator (BLAS, NPU).
    Accelerator,
    /// Something ggml did not classify.
    Unknown,
}

impl DeviceKind {
    /// Lower-case name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
            DeviceKind::IntegratedGpu => "igpu",
            DeviceKind::Accelerator => "accelerator",
            DeviceKind::Unknown => "unknown",
        }
    }

    /// A GPU of either kind.
    pub fn is_gpu(self) -> bool {
        matches!(self, DeviceKind::Gpu | DeviceKind::IntegratedGpu)
    }
}

/// One compute device ggml can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeDevice {
    /// ggml's device name (`CUDA0`, `CPU`).
    pub name: String,
    /// What it is (`NVIDIA H100 80GB HBM3`, the CPU's model).
    pub description: String,
    /// The backend that drives it (`CUDA`, `CPU`).
    pub backend: String,
    /// CPU, GPU, ...
    pub kind: DeviceKind,
    /// Device memory in bytes (host memory for the CPU).
    pub memory_total: u64,
    /// Free device memory in bytes when it was read.
    pub memory_free: u64,
}

/// A backend library that is present but did not register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    /// The backend family (`cuda`, `cpu`, `vulkan`).
    pub backend: String,
    /// The library file.
    pub file: PathBuf,
    /// Why it was not used.
    pub reason: String,
}

/// What start-up found: where backends were loaded from, which registered, which did not and why,
/// and the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    /// The directory searched, if one was found.
    pub dir: Option<PathBuf>,
    /// Registered backends (`CPU`, `CUDA`).
    pub loaded: Vec<String>,
    /// Libraries present that did not register.
    pub failures: Vec<BackendFailure>,
    /// Devices, in ggml's order; memory as read at start-up.
    pub devices: Vec<ComputeDevice>,
}

impl BackendReport {
    /// True when at least one GPU device is usable.
    pub fn has_gpu(&self) -> bool {
        self.devices.iter().any(|d| d.kind.is_gpu())
    }

    /// One line per failure, for error messages.
    pub fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "no GPU backend library was found".into();
        }
        self.failures.iter().map(|f| format!("{} ({}): {}", f.backend, f.file.display(), f.reason)).collect::<Vec<_>>().join("; ")
    }
}

/// Initialise llama.cpp once: load the backend libraries, then `llama_backend_init`. Later calls
/// return the same backend and ignore their options.
pub fn init_backend(options: &BackendOptions) -> Result<&'static LlamaBackend, EngineError> {
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    let _guard = INIT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    if options.log_to_tracing {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    }
    let report = load_backends(options.backend_dir.as_deref(), options.cpu_amx)?;
    let backend = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
    let _ = REPORT.set(report);
    Ok(BACKEND.get_or_init(|| backend))
}

/// The report of the loaded backends, once [`init_backend`] has run.
pub fn backend_report() -> Option<&'static BackendReport> {
    REPORT.get()
}

/// The devices with their memory as of now (free memory changes as models load).
pub fn devices() -> Vec<ComputeDevice> {
    if BACKEND.get().is_none() {
        return Vec::new();
    }
    read_devices()
}

fn read_devices() -> Vec<ComputeDevice> {
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| ComputeDevice {
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: match d.device_type {
                LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
                LlamaBackendDeviceType::Gpu => DeviceKind::Gpu,
                LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
                LlamaBackendDeviceType::Accelerator => DeviceKind::Accelerator,
                LlamaBackendDeviceType::Unknown => DeviceKind::Unknown,
            },
            memory_total: d.memory_total as u64,
            memory_free: d.memory_free as u64,
        })
        .collect()
}

/// Where backends are looked for when no directory is configured, relative to the running
/// executable: `backends/` beside it (a build tree, a tarball), `../backends` (cargo's
/// `examples/` and `deps/`), and `../lib64/hearth/backends` (an installed `/usr/bin/hearth`).
pub fn default_backend_dirs() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) else { return Vec::new() };
    vec![exe_dir.join("backends"), exe_dir.join("../backends"), exe_dir.join("../lib64/hearth/backends")]
}

/// The backend family of a library file name: `libggml-cpu-haswell.so` is `cpu`,
/// `libggml-cuda.so` is `cuda`; `None` for files that are not backends (`libggml-base.so`).
fn backend_family(file_name: &str) -> Option<String> {
    let stem = file_name.strip_prefix("libggml-")?.strip_suffix(".so")?;
    let family = stem.split('-').next()?;
    (!family.is_empty() && family != "base").then(|| family.to_owned())
}

fn load_backends(configured: Option<&Path>, cpu_amx: bool) -> Result<BackendReport, EngineError> {
    let dir = match configured {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(EngineError::Backend(format!("backend directory {} does not exist", dir.display())));
            }
            dir.to_path_buf()
        }
        None => default_backend_dirs().into_iter().find(|d| d.is_dir()).map(|d| d.canonicalize().unwrap_or(d)).ok_or_else(|| {
            EngineError::Backend(format!(
                "no backend directory found (looked in {}); set [engine] backend_dir",
                default_backend_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    let files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| EngineError::Backend(format!("cannot read backend directory {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .filter_map(|e| Some((backend_family(e.file_name().to_str()?)?, e.path())))
        .collect();
    if files.is_empty() {
        return Err(EngineError::Backend(format!("{} holds no ggml backend (libggml-cpu-*.so, libggml-cuda.so, ...)", dir.display())));
    }
    let mut failures = Vec::new();
    let skip_amx = match crate::amx::request_amx() {
        crate::amx::AmxState::Absent => None,
        crate::amx::AmxState::Enabled if cpu_amx => None,
        crate::amx::AmxState::Enabled => Some("skipped: ggml's AMX kernels are off unless [engine] cpu_amx = true".to_owned()),
        crate::amx::AmxState::Refused(errno) => Some(format!("skipped: the CPU reports AMX but the kernel refused its use (arch_prctl errno {errno})")),
    };
    match skip_amx {
        Some(reason) => {
            // Load from a folder of links to every backend but the AMX build.
            let filtered = without_amx_variants(&dir, &files)?;
            llama_cpp_2::llama_backend::load_backends_from_path(&filtered);
            let _ = std::fs::remove_dir_all(&filtered);
            for (family, file) in files.iter().filter(|(_, f)| f.file_name().and_then(|n| n.to_str()).is_some_and(crate::amx::uses_amx)) {
                failures.push(BackendFailure { backend: family.clone(), file: file.clone(), reason: reason.clone() });
            }
        }
        None => llama_cpp_2::llama_backend::load_backends_from_path(&dir),
    }

    let loaded = registered_backends();
    let current_api = loaded_api_version().unwrap_or(GGML_BACKEND_API_VERSION);
    let mut families: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    for family in families {
        if loaded.iter().any(|name| name.eq_ignore_ascii_case(family)) {
            continue;
        }
        for (_, file) in files.iter().filter(|(f, _)| f == family) {
            failures.push(BackendFailure { backend: family.to_owned(), file: file.clone(), reason: probe(file, current_api) });
        }
    }
    if loaded.is_empty() {
        let reasons = failures.iter().map(|f| format!("{}: {}", f.file.display(), f.reason)).collect::<Vec<_>>().join("; ");
        return Err(EngineError::Backend(format!("no backend in {} could be loaded: {reasons}", dir.display())));
    }
    let mut report = BackendReport { dir: Some(dir), loaded, failures, devices: Vec::new() };
    report.devices = read_devices();
    // A GPU backend that registered but found no device (driver present, no card visible).
    for name in &report.loaded {
        let has_device = report.devices.iter().any(|d| d.backend.eq_ignore_ascii_case(name));
        if !has_device {
            let file = files.iter().find(|(f, _)| f.eq_ignore_ascii_case(name)).map(|(_, p)| p.clone()).unwrap_or_default();
            report.failures.push(BackendFailure {
                backend: name.to_lowercase(),
                file,
                reason: "loaded, but it found no device (no GPU visible to this process?)".into(),
            });
        }
    }
    Ok(report)
}

/// A temporary folder of symbolic links to the backends in `dir` except AMX builds (ggml loads the
/// best variant of a folder, so the way to leave one out is a folder without it).
fn without_amx_variants(dir: &Path, files: &[(String, PathBuf)]) -> Result<PathBuf, EngineError> {
    let filtered = std::env::temp_dir().join(format!("hearth-backends-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&filtered);
    let made = std::fs::create_dir_all(&filtered).and_then(|()| {
        for (_, file) in files {
            let Some(name) = file.file_name() else { continue };
            if !name.to_str().is_some_and(crate::amx::uses_amx) {
                std::os::unix::fs::symlink(dir.join(name), filtered.join(name))?;
            }
        }
        Ok(())
    });
    made.map_err(|e| EngineError::Backend(format!("cannot prepare the backends without AMX in {}: {e}", filtered.display())))?;
    Ok(filtered)
}

/// Names of the registered backends.
fn registered_backends() -> Vec<String> {
    // SAFETY: ggml's registry functions take no pointers from us; indices are below the count,
    // and the names are static NUL-terminated strings owned by the registered backends.
    unsafe {
        (0..llama_cpp_sys_2::ggml_backend_reg_count())
            .map(|i| {
                let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
                let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
                if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

/// The API version of a backend ggml accepted (all registered ones carry the current version).
fn loaded_api_version() -> Option<c_int> {
    // SAFETY: a registered `ggml_backend_reg_t` points at a `struct ggml_backend_reg` whose first
    // member is `int api_version` (ggml-backend-impl.h); it lives as long as the process.
    unsafe {
        if llama_cpp_sys_2::ggml_backend_reg_count() == 0 {
            return None;
        }
        let reg = llama_cpp_sys_2::ggml_backend_reg_get(0);
        (!reg.is_null()).then(|| *reg.cast::<c_int>())
    }
}

/// Why ggml did not register the backend in `file`: the same steps ggml takes, with the reasons
/// it keeps to itself in a release build.
fn probe(file: &Path, current_api: c_int) -> String {
    // SAFETY: loading a ggml backend library runs its initialisers, as ggml itself just did.
    let library = match unsafe { libloading::Library::new(file) } {
        Ok(library) => library,
        Err(e) => return format!("cannot be loaded: {e}"),
    };
    // SAFETY: these are the C signatures ggml defines for a dynamically loaded backend
    // (`ggml_backend_score_t`, `ggml_backend_init_t`).
    unsafe {
        if let Ok(score) = library.get::<unsafe extern "C" fn() -> c_int>(b"ggml_backend_score\0") {
            if score() == 0 {
                return "not supported by this machine (the backend's own check, ggml_backend_score, said no)".into();
            }
        }
        let Ok(init) = library.get::<unsafe extern "C" fn() -> *mut c_void>(b"ggml_backend_init\0") else {
            return "not a ggml backend: it has no ggml_backend_init".into();
        };
        let reg = init();
        if reg.is_null() {
            return "its initialisation (ggml_backend_init) failed".into();
        }
        let version = *reg.cast::<c_int>();
        if version != current_api {
            return format!(
                "built for ggml backend API version {version}, but this hearth's ggml has version {current_api}: \
                 rebuild it from the llama.cpp source that llama-cpp-sys-2 vendors (packaging/cuda/build_cuda_backend.sh)"
            );
        }
    }
    "ggml did not register it (another variant of the same backend may have been chosen)".into()
}

/// The backend, initialising it with default options if nobody did.
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    init_backend(&BackendOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_families_come_from_file_names() {
        assert_eq!(backend_family("libggml-cpu-haswell.so").as_deref(), Some("cpu"));
        assert_eq!(backend_family("libggml-cpu-x64.so").as_deref(), Some("cpu"));
        assert_eq!(backend_family("libggml-cuda.so").as_deref(), Some("cuda"));
        assert_eq!(backend_family("libggml-base.so"), None);
        assert_eq!(backend_family("libggml.so"), None);
        assert_eq!(backend_family("libllama.so"), None);
        assert_eq!(backend_family("libggml-cuda.so.1"), None);
    }

    #[test]
    fn a_file_that_is_not_a_library_is_reported_with_the_loader_error() {
        let dir = std::env::temp_dir().join(format!("hearth-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("libggml-cuda.so");
        std::fs::write(&file, b"not an ELF file").unwrap_or_default();
        let reason = probe(&file, GGML_BACKEND_API_VERSION);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(reason.starts_with("cannot be loaded:"), "{reason}");
    }

    #[test]
    fn failures_text_names_each_library() {
        let report = BackendReport {
            dir: None,
            loaded: vec!["CPU".into()],
            failures: vec![BackendFailure { backend: "cuda".into(), file: "/x/libggml-cuda.so".into(), reason: "cannot be loaded: libcudart.so.13".into() }],
            devices: Vec::new(),
        };
        assert!(!report.has_gpu());
        assert_eq!(report.failures_text(), "cuda (/x/libggml-cuda.so): cannot be loaded: libcudart.so.13");
    }
}
