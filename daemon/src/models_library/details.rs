//! What `hearth models show` prints and `GET /v1/models/library/{name}` serves: a library model's
//! header facts (architecture, parameters, quantization, context, chat template), its manifest entry
//! and whether it fits the free CPU RAM and GPU memory now.

use serde_json::json;

use super::{gguf, Entry, Library, LibraryError};

/// What `show` prints, also served by the HTTP API.
pub fn details(library: &Library, entry: &Entry) -> Result<serde_json::Value, LibraryError> {
    let path = library.model_path(entry);
    let header = gguf::read(&path).map_err(|e| LibraryError::Invalid(e.to_string()))?;
    let mut parameters = header.parameters;
    for f in entry.files.iter().filter(|f| f.path != entry.file) {
        if let Ok(h) = gguf::read(&library.root().join(&entry.name).join(&f.path)) {
            parameters += h.parameters;
        }
    }
    let ram = mem_available();
    let gpu = engine::cuda_memory();
    Ok(json!({
        "name": entry.name,
        "path": path,
        "architecture": header.architecture(),
        "kind": super::quantize::model_kind(&header),
        "parameters": parameters,
        "quantization": header.quantization(),
        "context_length": header.context_length(),
        "chat_template": header.has_chat_template(),
        "sha256": entry.sha256,
        "size": entry.size,
        "files": entry.files,
        "source": entry.source,
        "added": entry.added,
        "recipe": entry.recipe,
        "fits": {
            "cpu_ram_available": ram,
            "fits_cpu_ram": ram.map(|r| entry.size < r),
            "gpu_free": gpu.map(|g| g.0),
            "fits_gpu": gpu.map(|g| entry.size < g.0),
        },
    }))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
