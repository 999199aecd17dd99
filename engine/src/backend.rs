//! The process-wide llama.cpp backend. llama.cpp may be initialised once per process, so the
//! backend lives in a `OnceLock`; every engine thread borrows it.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::EngineError;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
/// Serialises the first initialisation: llama.cpp refuses a second `init`.
static INIT: Mutex<()> = Mutex::new(());

/// How to bring up llama.cpp.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Route llama.cpp's own log lines into `tracing` (they are noisy at info level).
    pub log_to_tracing: bool,
    /// Directory with dynamically loadable ggml backends; `None` uses the compiled-in ones.
    pub backend_dir: Option<PathBuf>,
}

/// Initialise llama.cpp once; later calls return the same backend and ignore their options.
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
    let backend = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
    Ok(BACKEND.get_or_init(|| backend))
}

/// The backend, initialising it with default options if nobody did.
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    init_backend(&BackendOptions::default())
}
