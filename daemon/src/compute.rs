//! The compute devices: load the ggml backends from `[engine] backend_dir` once at start-up, log
//! what was found (and why a backend present there was not used), and enforce
//! `[engine] require_gpu`. `hearth info`, the start-up log and `/v1/models` all describe the same
//! [`BackendReport`].

pub mod cpu_wait;

use engine::{BackendOptions, BackendReport, ComputeDevice};
use serde_json::{json, Value};

use crate::config::EngineSettings;

/// Why the compute backends are not usable.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// No backend could be loaded at all.
    #[error("compute backends: {0}")]
    Backend(#[from] engine::EngineError),
    /// `require_gpu = true` and no GPU is usable.
    #[error("engine.require_gpu is set, but no GPU is usable: {0}")]
    NoGpu(String),
}

/// Load the backends (once per process), log the devices and failures, and check `require_gpu`.
pub fn init(engine: &EngineSettings, log_to_tracing: bool) -> Result<&'static BackendReport, ComputeError> {
    engine::init_backend(&BackendOptions { log_to_tracing, backend_dir: engine.backend_dir(), cpu_amx: engine.cpu_amx })?;
    let Some(report) = engine::backend_report() else {
        return Err(ComputeError::Backend(engine::EngineError::Backend("the backend report is missing".into())));
    };
    let dir = report.dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
    tracing::info!(%dir, loaded = %report.loaded.join(", "), "Compute backends loaded.");
    for device in &report.devices {
        tracing::info!(
            device = %device.name,
            kind = device.kind.as_str(),
            description = %device.description,
            memory_total_mib = device.memory_total >> 20,
            memory_free_mib = device.memory_free >> 20,
            "Compute device."
        );
    }
    for failure in &report.failures {
        tracing::warn!(backend = %failure.backend, file = %failure.file.display(), reason = %failure.reason, "Compute backend not used.");
    }
    if !report.has_gpu() {
        if engine.require_gpu {
            return Err(ComputeError::NoGpu(report.failures_text()));
        }
        tracing::info!("No GPU is usable; running on the CPU.");
    }
    Ok(report)
}

/// One device as JSON (`/v1/models` metadata).
pub fn device_json(device: &ComputeDevice) -> Value {
    json!({
        "name": device.name,
        "description": device.description,
        "backend": device.backend,
        "type": device.kind.as_str(),
        "memory_total": device.memory_total,
        "memory_free": device.memory_free,
    })
}

/// The report as text, for `hearth info`.
pub fn describe(report: &BackendReport, devices: &[ComputeDevice]) -> String {
    let mut out = String::new();
    let dir = report.dir.as_ref().map_or_else(|| "-".to_owned(), |d| d.display().to_string());
    out.push_str(&format!("backend directory: {dir}\n"));
    out.push_str(&format!("backends loaded:   {}\n", report.loaded.join(", ")));
    out.push_str("devices:\n");
    for d in devices {
        out.push_str(&format!(
            "  {:<8} {:<6} {}  ({} MiB total, {} MiB free)\n",
            d.name,
            d.kind.as_str(),
            d.description,
            d.memory_total >> 20,
            d.memory_free >> 20
        ));
    }
    if report.failures.is_empty() {
        out.push_str("backends not used: none\n");
    } else {
        out.push_str("backends not used:\n");
        for f in &report.failures {
            out.push_str(&format!("  {} ({}): {}\n", f.backend, f.file.display(), f.reason));
        }
    }
    out.push_str(&format!("GPU: {}\n", if report.has_gpu() { "yes" } else { "no (running on the CPU)" }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{BackendFailure, DeviceKind};

    #[test]
    fn describe_lists_devices_and_failures() {
        let report = BackendReport {
            dir: Some("/usr/lib64/hearth/backends".into()),
            loaded: vec!["CPU".into()],
            failures: vec![BackendFailure {
                backend: "cuda".into(),
                file: "/usr/lib64/hearth/backends/libggml-cuda.so".into(),
                reason: "cannot be loaded: libcudart.so.13: cannot open shared object file".into(),
            }],
            devices: Vec::new(),
        };
        let cpu = ComputeDevice {
            name: "CPU".into(),
            description: "AMD EPYC".into(),
            backend: "CPU".into(),
            kind: DeviceKind::Cpu,
            memory_total: 8 << 30,
            memory_free: 4 << 30,
        };
        let text = describe(&report, std::slice::from_ref(&cpu));
        assert!(text.contains("CPU      cpu    AMD EPYC  (8192 MiB total, 4096 MiB free)"), "{text}");
        assert!(text.contains("cuda (/usr/lib64/hearth/backends/libggml-cuda.so): cannot be loaded: libcudart.so.13"), "{text}");
        assert!(text.ends_with("GPU: no (running on the CPU)\n"), "{text}");
        assert_eq!(device_json(&cpu)["type"], "cpu");
    }
}
