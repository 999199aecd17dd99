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
    let ram = super::fit::mem_available();
    let gpu = engine::cuda_memory();
    // The fit before load at the model's context (at most 8192 tokens) and one sequence, as a
    // `[[models]]` entry with defaults would load it.
    let context = header.context_length().map_or(8192, |c| c.min(8192)) as u32;
    let ask = super::fit::KvAsk {
        chat: super::quantize::model_kind(&header) == super::quantize::ModelKind::Chat,
        max_model_len: context,
        max_num_seqs: 1,
        kv_cache_tokens: 0,
        q8_0: false,
        n_gpu_layers: 999,
        per_sequence: false,
    };
    let fit = match super::fit::plan(&path, ask) {
        Ok(Some(fit)) => fit.to_string(),
        Ok(None) => "unknown (the header lacks the layer shape)".to_owned(),
        Err(reason) => reason,
    };
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
        "fit": fit,
        "fit_at": format!("max_model_len {context}, 1 sequence"),
        "fits": {
            "cpu_ram_available": ram,
            "fits_cpu_ram": ram.map(|r| entry.size < r),
            "gpu_free": gpu.map(|g| g.0),
            "fits_gpu": gpu.map(|g| entry.size < g.0),
        },
    }))
}
