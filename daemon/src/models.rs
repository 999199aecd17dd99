//! The served models: one engine per `[[models]]` entry, looked up by the name clients send.
//!
//! Loading verifies each file against its pinned sha256 before llama.cpp sees it, so a swapped or
//! damaged file stops start-up with a message instead of serving the wrong model.

use std::io::Read;
use std::path::Path;

use engine::{Engine, EngineError, FlashAttention, KvCacheDtype, ModelConfig, ModelKind};
use sha2::{Digest, Sha256};

use crate::config::{EngineSettings, FlashAttentionSetting, KvCacheDtypeSetting, ModelKindSetting, ModelSettings, Settings};
use crate::error::ApiError;

/// Why a model could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("model `{name}`: file {path} has sha256 {actual}, but the configuration pins {expected}; refusing to load it")]
    Checksum { name: String, path: String, expected: String, actual: String },
    #[error("model `{name}`: cannot read {path}: {reason}")]
    Unreadable { name: String, path: String, reason: String },
    #[error("model `{name}`: {source}")]
    Engine { name: String, source: EngineError },
}

/// The loaded engines.
#[derive(Debug)]
pub struct Models {
    engines: Vec<Engine>,
}

impl Models {
    /// Verify and load every configured model (blocking; run it off the async runtime).
    pub fn load(settings: &Settings) -> Result<Models, ModelLoadError> {
        let mut engines = Vec::with_capacity(settings.models.len());
        for m in &settings.models {
            if let Some(expected) = &m.sha256 {
                verify_sha256(m, expected)?;
            }
            tracing::info!(model = %m.name, path = %m.path.display(), "Loading model.");
            let engine = Engine::start(engine_config(m, &settings.engine))
                .map_err(|source| ModelLoadError::Engine { name: m.name.clone(), source })?;
            engines.push(engine);
        }
        Ok(Models { engines })
    }

    /// Every engine, in configuration order.
    pub fn all(&self) -> &[Engine] {
        &self.engines
    }

    /// The engine serving `name`, or a 400 naming the model.
    pub fn get(&self, name: &str) -> Result<&Engine, ApiError> {
        self.engines.iter().find(|e| e.info().name == name).ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))
    }
}

fn engine_config(m: &ModelSettings, engine: &EngineSettings) -> ModelConfig {
    ModelConfig {
        name: m.name.clone(),
        kind: match m.kind {
            ModelKindSetting::Chat => ModelKind::Chat,
            ModelKindSetting::Embedding => ModelKind::Embedding,
        },
        path: m.path.clone(),
        max_model_len: m.max_model_len,
        max_num_seqs: m.max_num_seqs,
        max_num_batched_tokens: m.max_num_batched_tokens,
        max_queue: m.max_queue,
        kv_cache_tokens: m.kv_cache_tokens,
        block_size: m.block_size,
        enable_prefix_caching: m.enable_prefix_caching,
        kv_cache_dtype: match m.kv_cache_dtype {
            KvCacheDtypeSetting::F16 => KvCacheDtype::F16,
            KvCacheDtypeSetting::Q8_0 => KvCacheDtype::Q8_0,
        },
        threads: engine.threads,
        n_gpu_layers: m.n_gpu_layers,
        gpu_memory_utilization: engine.gpu_memory_utilization,
        flash_attention: match engine.flash_attention {
            FlashAttentionSetting::Auto => FlashAttention::Auto,
            FlashAttentionSetting::On => FlashAttention::On,
            FlashAttentionSetting::Off => FlashAttention::Off,
        },
    }
}

fn verify_sha256(m: &ModelSettings, expected: &str) -> Result<(), ModelLoadError> {
    let unreadable = |e: std::io::Error| ModelLoadError::Unreadable {
        name: m.name.clone(),
        path: m.path.display().to_string(),
        reason: e.to_string(),
    };
    let actual = sha256_file(&m.path).map_err(unreadable)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ModelLoadError::Checksum {
            name: m.name.clone(),
            path: m.path.display().to_string(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Hex sha256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
