//! Layered settings: the embedded default (`config/hearth.toml`), then `/etc/hearth/hearth.toml`,
//! then `--config FILE`, then `HEARTH__SECTION__KEY` environment variables, merged by the config
//! crate.
//!
//! Nothing that looks wrong is let through with a warning. Each file (and the environment) is
//! checked on its own, laid over the default, so an unknown key is reported together with the file
//! that has it; invalid values are reported with the key and the layer the value came from.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Format, Map, Source, Value, ValueKind};
use serde::Deserialize;

/// The embedded default configuration, documented key by key.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/hearth.toml");
/// The system-wide configuration file, read when it exists.
pub const SYSTEM_CONFIG: &str = "/etc/hearth/hearth.toml";
const DEFAULT_ORIGIN: &str = "the embedded default configuration";

/// Everything hearth is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub engine: EngineSettings,
    pub models: Vec<ModelSettings>,
}

/// `[server]`: the HTTP listener and the state directory.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: String,
    /// Directory for hearth's state.
    pub state_dir: PathBuf,
    /// Accepted bearer tokens; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
}

/// `[limits]`: per-request limits.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: u32,
    /// Most inputs in one embeddings request.
    pub max_embedding_inputs: usize,
}

/// `[engine]`: settings shared by every local model.
#[derive(Debug, Clone, Deserialize)]
pub struct EngineSettings {
    /// CPU threads for llama.cpp; 0 means every core.
    pub threads: u32,
    /// Directory of the ggml backend libraries; empty means next to the binary
    /// (`backends/`, or `../lib64/hearth/backends` for an installed `/usr/bin/hearth`).
    pub backend_dir: PathBuf,
    /// Refuse to start without a GPU instead of falling back to the CPU.
    pub require_gpu: bool,
    /// Share of each GPU's memory hearth may use; the KV cache of a chat model with
    /// `kv_cache_tokens = 0` gets what the weights leave of it.
    pub gpu_memory_utilization: f32,
    /// Flash attention: "auto" (on a GPU where the device supports it; off on the CPU unless the
    /// KV cache is quantized), "on" or "off".
    pub flash_attention: FlashAttentionSetting,
}

/// `flash_attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttentionSetting {
    Auto,
    On,
    Off,
}

impl EngineSettings {
    /// The configured backend directory, or `None` for the default search.
    pub fn backend_dir(&self) -> Option<PathBuf> {
        (!self.backend_dir.as_os_str().is_empty()).then(|| self.backend_dir.clone())
    }
}

/// What a model is served for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKindSetting {
    Chat,
    Embedding,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSettings {
    pub name: String,
    pub kind: ModelKindSetting,
    pub path: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub max_model_len: u32,
    #[serde(default = "defaults::max_num_seqs")]
    pub max_num_seqs: u32,
    #[serde(default = "defaults::max_num_batched_tokens")]
    pub max_num_batched_tokens: u32,
    #[serde(default)]
    pub kv_cache_tokens: u32,
    #[serde(default = "defaults::block_size")]
    pub block_size: u32,
    #[serde(default = "defaults::enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    #[serde(default)]
    pub kv_cache_dtype: KvCacheDtypeSetting,
    #[serde(default = "defaults::max_queue")]
    pub max_queue: usize,
    #[serde(default = "defaults::n_gpu_layers")]
    pub n_gpu_layers: u32,
}

/// `kv_cache_dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheDtypeSetting {
    #[default]
    F16,
    Q8_0,
}

mod defaults {
    pub fn block_size() -> u32 {
        16
    }
    pub fn enable_prefix_caching() -> bool {
        true
    }
    pub fn max_num_seqs() -> u32 {
        16
    }
    pub fn max_num_batched_tokens() -> u32 {
        512
    }
    pub fn max_queue() -> usize {
        256
    }
    pub fn n_gpu_layers() -> u32 {
        999
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key hearth does not know.
    #[error("unknown configuration key `{key}` in {origin}")]
    UnknownKey { key: String, origin: String },
    /// A value that has the wrong type or is out of range.
    #[error("invalid value for `{key}` in {origin}: {reason}")]
    Invalid { key: String, origin: String, reason: String },
    /// A file that cannot be read or parsed.
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Where settings come from, in order.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The system file; read only if it exists.
    pub system: PathBuf,
    /// The file named on the command line; must exist.
    pub file: Option<PathBuf>,
}

impl Sources {
    /// The standard layering with an optional `--config` file.
    pub fn standard(file: Option<PathBuf>) -> Self {
        Self { system: PathBuf::from(SYSTEM_CONFIG), file }
    }
}

impl Settings {
    /// Load and validate the layered configuration.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let mut files = Vec::new();
        if sources.system.is_file() {
            files.push(sources.system.clone());
        }
        if let Some(file) = &sources.file {
            if !file.is_file() {
                return Err(ConfigError::File { path: file.clone(), reason: "no such file".into() });
            }
            files.push(file.clone());
        }
        // Each layer alone over the default, so unknown keys are blamed on the right layer.
        for file in &files {
            let layer = default_builder().add_source(file_source(file)?);
            check_layer(layer, &file.display().to_string())?;
        }
        check_layer(default_builder().add_source(env_source()), "the environment (HEARTH__SECTION__KEY variables)")?;

        let mut builder = default_builder();
        for file in &files {
            builder = builder.add_source(file_source(file)?);
        }
        let merged = builder.add_source(env_source()).build().map_err(|e| config_error(e, None))?;
        let settings: Settings = merged.clone().try_deserialize().map_err(|e| config_error(e, Some(&merged)))?;
        settings.validate(&merged)?;
        Ok(settings)
    }

    /// The listen address, already validated.
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// Semantic checks the types cannot express.
    fn validate(&self, merged: &Config) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin_of(merged, key),
            reason,
        };
        let addr: SocketAddr = self
            .server
            .listen
            .parse()
            .map_err(|_| invalid("server.listen", format!("{:?} is not an address like 127.0.0.1:8080", self.server.listen)))?;
        if !addr.ip().is_loopback() && self.server.api_keys.is_empty() {
            return Err(invalid(
                "server.listen",
                format!("{addr} is not a loopback address; set server.api_keys to listen beyond this machine"),
            ));
        }
        if self.server.api_keys.iter().any(|k| k.trim().len() < 8) {
            return Err(invalid("server.api_keys", "every API key needs at least 8 characters".into()));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }
        if self.limits.max_tokens == 0 {
            return Err(invalid("limits.max_tokens", "must be at least 1".into()));
        }
        let utilization = self.engine.gpu_memory_utilization;
        if !(utilization > 0.0 && utilization <= 1.0) {
            return Err(invalid("engine.gpu_memory_utilization", format!("{utilization} is outside (0, 1]")));
        }
        if self.models.is_empty() {
            return Err(invalid("models", "at least one [[models]] entry is needed".into()));
        }
        let mut names = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            let bad = |field: &str, reason: String| ConfigError::Invalid {
                origin: origin_of(merged, &format!("models[{i}].{field}")),
                key: key(field),
                reason,
            };
            if m.name.trim().is_empty() || !names.insert(m.name.clone()) {
                return Err(bad("name", format!("{:?} is empty or used twice", m.name)));
            }
            if let Some(sha) = &m.sha256 {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("sha256", format!("{sha:?} is not 64 hexadecimal digits")));
                }
            }
            if !(1..=256).contains(&m.max_num_seqs) {
                return Err(bad("max_num_seqs", format!("{} is outside 1..=256", m.max_num_seqs)));
            }
            if m.max_num_batched_tokens < m.max_num_seqs {
                return Err(bad(
                    "max_num_batched_tokens",
                    format!("{} is smaller than max_num_seqs {}: one step must fit a token of every sequence", m.max_num_batched_tokens, m.max_num_seqs),
                ));
            }
            if m.max_queue == 0 {
                return Err(bad("max_queue", "must be at least 1".into()));
            }
            if !(1..=1024).contains(&m.block_size) {
                return Err(bad("block_size", format!("{} is outside 1..=1024", m.block_size)));
            }
            if m.kv_cache_tokens != 0 && m.kv_cache_tokens < m.max_model_len {
                return Err(bad(
                    "kv_cache_tokens",
                    format!("{} is smaller than max_model_len {}", m.kv_cache_tokens, m.max_model_len),
                ));
            }
        }
        Ok(())
    }
}

fn default_builder() -> config::ConfigBuilder<config::builder::DefaultState> {
    Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml))
}

/// One configuration file, parsed up front so every value carries the path exactly as the
/// operator gave it (the config crate's own file source rewrites it relative to the working directory).
#[derive(Debug, Clone)]
struct LayerFile {
    values: Map<String, Value>,
}

impl Source for LayerFile {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.values.clone())
    }
}

fn file_source(path: &Path) -> Result<LayerFile, ConfigError> {
    let fail = |reason: String| ConfigError::File { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let values = FileFormat::Toml.parse(Some(&path.display().to_string()), &text).map_err(|e| fail(e.to_string()))?;
    Ok(LayerFile { values })
}

fn env_source() -> Environment {
    Environment::with_prefix("HEARTH").prefix_separator("__").separator("__").try_parsing(true).list_separator(",").with_list_parse_key("server.api_keys")
}

/// Deserialize one layer over the default and reject keys the settings do not have. (The structs
/// do not use `deny_unknown_fields`: serde_ignored sees, and names, every ignored key instead.)
fn check_layer(builder: config::ConfigBuilder<config::builder::DefaultState>, origin: &str) -> Result<(), ConfigError> {
    let merged = builder.build().map_err(|e| config_error(e, None))?;
    let mut unknown = Vec::new();
    let result: Result<Settings, _> = serde_ignored::deserialize(merged.clone(), |path| unknown.push(path.to_string()));
    if let Some(key) = unknown.into_iter().next() {
        return Err(ConfigError::UnknownKey { key, origin: origin.to_owned() });
    }
    result.map(drop).map_err(|e| config_error(e, Some(&merged)))
}

/// Translate the config crate's error; `merged` names the layer where the crate did not.
fn config_error(e: config::ConfigError, merged: Option<&Config>) -> ConfigError {
    let origin_for = |origin: Option<String>, key: &str| {
        origin.or_else(|| merged.map(|m| origin_of(m, key))).unwrap_or_else(|| DEFAULT_ORIGIN.into())
    };
    match e {
        config::ConfigError::Type { origin, unexpected, expected, key } => {
            let key = tidy_key(key.unwrap_or_default());
            ConfigError::Invalid { origin: origin_for(origin, &key), key, reason: format!("found {unexpected}, expected {expected}") }
        }
        config::ConfigError::NotFound(key) => ConfigError::Invalid {
            key,
            origin: "the merged configuration".into(),
            reason: "missing".into(),
        },
        config::ConfigError::FileParse { uri, cause } => ConfigError::File {
            path: PathBuf::from(uri.unwrap_or_default()),
            reason: cause.to_string(),
        },
        config::ConfigError::At { error, origin, key } => match config_error(*error, merged) {
            ConfigError::Invalid { reason, .. } => {
                let key = tidy_key(key.unwrap_or_default());
                ConfigError::Invalid { origin: origin_for(origin, &key), key, reason }
            }
            other => other,
        },
        other => ConfigError::Invalid { key: String::new(), origin: "the configuration".into(), reason: other.to_string() },
    }
}

/// Which layer the value at `key` (`server.listen`, `models[0].path`) came from.
fn origin_of(merged: &Config, key: &str) -> String {
    let mut value = &merged.cache;
    for segment in key.split(['.', '[']) {
        let next = match (&value.kind, segment.strip_suffix(']')) {
            (ValueKind::Array(items), Some(index)) => index.parse::<usize>().ok().and_then(|i| items.get(i)),
            (ValueKind::Table(table), None) => table.get(segment),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return DEFAULT_ORIGIN.into(),
        }
    }
    value.origin().map_or_else(|| DEFAULT_ORIGIN.into(), str::to_owned)
}

/// The config crate writes array keys as `models[0]kind`; spell them `models[0].kind`.
fn tidy_key(key: String) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut after_bracket = false;
    for c in key.chars() {
        if after_bracket && c != '.' && c != '[' {
            out.push('.');
        }
        after_bracket = c == ']';
        out.push(c);
    }
    out
}
