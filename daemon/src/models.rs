//! The served models: one [`Backend`] per `[[models]]` entry, looked up by the name clients send.
//! A local model is an engine loaded here, through the [`Registry`] (at start-up, or on its first
//! request with `load = "on_demand"`); a remote one is a client of an upstream server.
//!
//! Loading verifies each local file against its pinned sha256 before llama.cpp sees it, so a
//! swapped or damaged file stops start-up with a message instead of serving the wrong model. A
//! remote model's API key is read here, once; a missing key file or variable stops start-up with
//! a message that names the file or variable (never the key). The upstream itself need not be up:
//! `/ready` says whether it is.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::{BatchMixing, Engine, EngineError, FlashAttention, KvCacheDtype, KvLayout, ModelConfig, ModelKind, PrefixTierConfig};
use sha2::{Digest, Sha256};

use crate::config::{BatchMixingSetting, FlashAttentionSetting, KvCacheDtypeSetting, KvLayoutSetting, LoadSetting, ModelKindSetting, ModelSettings, ProviderSetting, Settings};
use crate::fault::ServiceError;
use crate::models_library::fit::{self, KvAsk};
use crate::models_registry::{Loaded, Registry, SlotConfig};
use crate::provider::{Backend, RemoteClient, RemoteConfig};

/// Why a model could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("model `{name}`: file {path} has sha256 {actual}, but the configuration pins {expected}; refusing to load it")]
    Checksum { name: String, path: String, expected: String, actual: String },
    #[error("model `{name}`: cannot read {path}: {reason}")]
    Unreadable { name: String, path: String, reason: String },
    #[error("model `{name}`: {source}")]
    Engine { name: String, source: EngineError },
    #[error("model `{name}`: {reason}")]
    Remote { name: String, reason: String },
    #[error("{reason}")]
    Startup { name: String, reason: String },
    #[error("model `{name}` {reason}")]
    DoesNotFit { name: String, reason: String },
}

/// The served models: every configured one, and the registry of the local ones.
#[derive(Debug)]
pub struct Models {
    backends: Vec<Backend>,
    registry: Arc<Registry>,
}

impl Models {
    /// Verify and load the models that load at start-up: every remote client, every local
    /// embedding model and every local chat model with `load = "startup"` (blocking; run it off
    /// the async runtime). The others load on their first request.
    pub fn load(settings: &Settings) -> Result<Models, ModelLoadError> {
        let locals: Vec<&ModelSettings> = settings.models.iter().filter(|m| m.provider == ProviderSetting::Local).collect();
        let slots = locals
            .iter()
            .map(|m| SlotConfig {
                name: m.name.clone(),
                kind: model_kind(m.kind),
                pinned: m.kind == ModelKindSetting::Embedding || m.load == LoadSetting::Startup,
                max_model_len: m.max_model_len,
            })
            .collect();
        let owned: Vec<ModelSettings> = locals.iter().map(|m| (*m).clone()).collect();
        let loader_settings = settings.clone();
        let loader: crate::models_registry::Loader =
            Arc::new(move |i: usize| load_local(&owned[i], &loader_settings).map_err(|e| e.to_string()));
        let timeout = Duration::from_secs(settings.engine.model_load_timeout_seconds.max(1));
        let registry = Registry::new(slots, settings.engine.max_loaded_models, timeout, loader);

        let mut backends = Vec::with_capacity(settings.models.len());
        let mut local_index = 0;
        for m in &settings.models {
            let backend = match m.provider {
                ProviderSetting::Local => {
                    let i = local_index;
                    local_index += 1;
                    if m.kind == ModelKindSetting::Embedding || m.load == LoadSetting::Startup {
                        registry.load_blocking(i).map_err(|reason| ModelLoadError::Startup { name: m.name.clone(), reason })?;
                    } else {
                        tracing::info!(model = %m.name, path = %m.path.display(), "Model loads on its first request (load = \"on_demand\").");
                    }
                    Backend::Local(registry.handle(i))
                }
                ProviderSetting::Remote => {
                    let remote = |reason: String| ModelLoadError::Remote { name: m.name.clone(), reason };
                    let api_key = read_api_key(m).map_err(remote)?;
                    tracing::info!(model = %m.name, base_url = %m.base_url, remote_model = %m.remote_model_name(),
                        api_key = api_key_source(m), "Using a remote model.");
                    Backend::Remote(RemoteClient::start(remote_config(m, api_key)).map_err(remote)?)
                }
            };
            backends.push(backend);
        }
        Ok(Models { backends, registry })
    }

    /// Every model, in configuration order (handles that hold no request: a chat model's engine
    /// is reached through [`Models::acquire`]).
    pub fn all(&self) -> &[Backend] {
        &self.backends
    }

    /// The model served as `name`, or a 404 (`model_not_found`) naming it. For listings; a
    /// request takes its model with [`Models::acquire`].
    pub fn get(&self, name: &str) -> Result<&Backend, ServiceError> {
        self.backends.iter().find(|b| b.name() == name).ok_or_else(|| ServiceError::ModelNotFound(name.to_owned()))
    }

    /// The model `name` for one request: a local model loaded (waiting for its load, within
    /// `[engine] model_load_timeout_seconds`) and held until the returned backend, and the event
    /// stream of a generation submitted through it, are dropped.
    pub async fn acquire(&self, name: &str) -> Result<Backend, ServiceError> {
        match self.get(name)? {
            Backend::Local(local) => Ok(Backend::Local(local.held().await?)),
            remote @ Backend::Remote(_) => Ok(remote.clone()),
        }
    }

    /// The local models' registry (states, load and unload).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

/// What a `[[models]]` entry asks of the KV cache, for the fit before load.
pub fn kv_ask(m: &ModelSettings, settings: &Settings) -> KvAsk {
    KvAsk {
        chat: m.kind == ModelKindSetting::Chat,
        max_model_len: m.max_model_len,
        max_num_seqs: m.max_num_seqs,
        kv_cache_tokens: m.kv_cache_tokens,
        q8_0: m.kv_cache_dtype == KvCacheDtypeSetting::Q8_0,
        n_gpu_layers: m.n_gpu_layers,
        // `auto` is per_sequence only with the whole model on a GPU, where the engine sizes the
        // streams from the GPU's free memory and says what does not fit.
        per_sequence: settings.engine.kv_layout == KvLayoutSetting::PerSequence,
    }
}

/// Verify a local model's file, check that it fits (placing as many layers on the GPU as fit),
/// and start its engine (blocking).
fn load_local(m: &ModelSettings, settings: &Settings) -> Result<Loaded, ModelLoadError> {
    if let Some(expected) = &m.sha256 {
        verify_sha256(m, expected)?;
    }
    let mut config = engine_config(m, settings);
    let fit = fit::plan(&m.path, kv_ask(m, settings)).map_err(|reason| ModelLoadError::DoesNotFit { name: m.name.clone(), reason })?;
    if let Some(fit) = &fit {
        // Only a reduced fit overrides the configured count: the fit counts repeating layers, where
        // llama.cpp's n_gpu_layers counts the output layer too (22 of a 22-layer model left layer 0
        // on the CPU, and flash attention off).
        if fit.device.is_some() && fit.reduced {
            config.n_gpu_layers = fit.gpu_layers();
        }
        if fit.reduced {
            tracing::warn!(model = %m.name, fit = %fit, n_gpu_layers = m.n_gpu_layers, "Fewer layers on the GPU than configured: no more fit.");
        } else {
            tracing::info!(model = %m.name, fit = %fit, "Fit before load.");
        }
    }
    tracing::info!(model = %m.name, path = %m.path.display(), "Loading model.");
    let engine = Engine::start(config).map_err(|source| ModelLoadError::Engine { name: m.name.clone(), source })?;
    Ok(Loaded { engine, fit: fit.map(|f| f.to_string()) })
}

/// A remote model's API key from `api_key_file` (trimmed) or `api_key_env`; `None` when neither
/// is set. Errors name the file or the variable, never the key.
pub fn read_api_key(m: &ModelSettings) -> Result<Option<String>, String> {
    let key = match (&m.api_key_file, &m.api_key_env) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read api_key_file {}: {e}", file.display()))?
            .trim()
            .to_owned(),
        (None, Some(var)) => std::env::var(var).map_err(|e| format!("api_key_env {var}: {e}"))?.trim().to_owned(),
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        return Err(format!("the API key in {} is empty", api_key_source(m)));
    }
    Ok(Some(key))
}

/// Where a remote model's key comes from, for logs: never the key itself.
fn api_key_source(m: &ModelSettings) -> String {
    match (&m.api_key_file, &m.api_key_env) {
        (Some(file), _) => format!("file {}", file.display()),
        (None, Some(var)) => format!("environment variable {var}"),
        (None, None) => "none".into(),
    }
}

fn remote_config(m: &ModelSettings, api_key: Option<String>) -> RemoteConfig {
    let ms = Duration::from_millis;
    RemoteConfig {
        name: m.name.clone(),
        kind: model_kind(m.kind),
        base_url: m.base_url.trim_end_matches('/').to_owned(),
        remote_model: m.remote_model_name().to_owned(),
        api_key,
        ca_file: m.ca_file.clone(),
        max_model_len: m.max_model_len,
        connect_timeout: ms(m.connect_timeout_ms),
        request_timeout: ms(m.request_timeout_ms),
        read_timeout: ms(m.read_timeout_ms),
        max_retries: m.max_retries,
        retry_backoff: ms(m.retry_backoff_ms),
        max_concurrency: m.max_concurrency,
        max_queue: m.max_queue,
        queue_timeout: ms(m.queue_timeout_ms),
    }
}

fn model_kind(kind: ModelKindSetting) -> ModelKind {
    match kind {
        ModelKindSetting::Chat => ModelKind::Chat,
        ModelKindSetting::Embedding => ModelKind::Embedding,
    }
}

fn engine_config(m: &ModelSettings, settings: &Settings) -> ModelConfig {
    let engine = &settings.engine;
    ModelConfig {
        name: m.name.clone(),
        kind: model_kind(m.kind),
        path: m.path.clone(),
        max_model_len: m.max_model_len,
        max_num_seqs: m.max_num_seqs,
        max_num_batched_tokens: m.max_num_batched_tokens,
        max_queue: m.max_queue,
        kv_cache_tokens: m.kv_cache_tokens,
        block_size: m.block_size,
        enable_prefix_caching: m.enable_prefix_caching,
        prefix_cache_max_tokens: m.prefix_cache_max_tokens,
        prefix_tiers: PrefixTierConfig {
            ram_bytes: engine.prefix_cache_ram_bytes,
            disk_bytes: engine.prefix_cache_disk_bytes,
            dir: Some(settings.server.state_dir.join("prefix-cache").join(dir_name(&m.name))),
        },
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
        batch_mixing: match engine.batch_mixing {
            BatchMixingSetting::Auto => BatchMixing::Auto,
            BatchMixingSetting::Mixed => BatchMixing::Mixed,
            BatchMixingSetting::Split => BatchMixing::Split,
        },
        kv_layout: match engine.kv_layout {
            KvLayoutSetting::Auto => KvLayout::Auto,
            KvLayoutSetting::Unified => KvLayout::Unified,
            KvLayoutSetting::PerSequence => KvLayout::PerSequence,
        },
        max_decode_slowdown: engine.max_decode_slowdown,
        stall_timeout: Duration::from_secs(settings.server.stall_timeout_seconds),
    }
}

/// A model name as one directory name: characters other than ASCII letters, digits, `.`, `-`
/// and `_` become `_` (names are free text; a `/` must not make a path).
fn dir_name(name: &str) -> String {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if safe.trim_matches('.').is_empty() {
        format!("model-{safe}")
    } else {
        safe
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
