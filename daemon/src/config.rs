//! Layered settings: the embedded default (`config/hearth.toml`), then `/etc/hearth/hearth.toml`,
//! then `--config FILE`, then `HEARTH__SECTION__KEY` environment variables, merged by the config
//! crate.
//!
//! `[[models]]` lists are the exception to "later layers win": entries are merged by name, so a
//! user's file adds or retunes models without dropping the default ones, unless it sets
//! `replace_default_models = true` ([`layers`], which also holds `hearth serve`'s `--model`,
//! `--listen` and `--port`, laid over every layer).
//!
//! Nothing that looks wrong is let through with a warning. Each file (and the environment) is
//! checked on its own, laid over the default, so an unknown key is reported together with the file
//! that has it; invalid values are reported with the key and the layer the value came from.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Format, Map, Source, Value, ValueKind};
use serde::Deserialize;

use keys::{KeyList, KeyRing};

pub mod hosts;
pub mod keys;
pub mod layers;
pub use layers::CommandLine;

/// The embedded default configuration, documented key by key.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/hearth.toml");
/// The system-wide configuration file, read when it exists.
pub const SYSTEM_CONFIG: &str = "/etc/hearth/hearth.toml";
const DEFAULT_ORIGIN: &str = "the embedded default configuration";

/// Everything hearth is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// A layer with `true` replaces the `[[models]]` list before it instead of merging by name.
    #[serde(default)]
    pub replace_default_models: bool,
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub engine: EngineSettings,
    pub models: Vec<ModelSettings>,
    pub ingest: IngestSettings,
    pub rag: RagSettings,
    pub store: StoreSettings,
}

/// `[store]`: the vector index each new vector store gets, and the store's limits.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    /// HNSW graph degree (`M`).
    pub connectivity: usize,
    /// Candidates examined while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidates examined while searching (`ef`).
    pub expansion_search: usize,
    /// Element type of the stored vectors.
    pub quantization: store::Quantization,
    /// Most vector stores; creating one more is a 409.
    pub max_vector_stores: usize,
    /// Free disk space (bytes) uploads, attachments and ingestion may not eat into; 0: no guard.
    pub min_free_bytes: u64,
}

impl StoreSettings {
    /// How to open the store in `path` with these limits.
    pub fn store_config(&self, path: PathBuf) -> store::StoreConfig {
        store::StoreConfig { max_collections: self.max_vector_stores, min_free_bytes: self.min_free_bytes, ..store::StoreConfig::new(path) }
    }

    /// The index configuration of a vector store created now.
    pub fn index(&self) -> store::VectorIndexConfig {
        store::VectorIndexConfig {
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
            quantization: self.quantization,
        }
    }
}

/// `[rag]`: answers over the vector stores (the Responses API's `file_search`, `hearth eval`).
#[derive(Debug, Clone, Deserialize)]
pub struct RagSettings {
    /// The system instructions that open every RAG prompt.
    pub instructions: String,
    /// Cosine similarity below which no chunk counts as relevant.
    pub min_relevance: f32,
    /// The answer when nothing relevant is found.
    pub no_answer: String,
    /// Tokens reserved for the answer when a request sets no `max_output_tokens`.
    pub max_output_tokens: u32,
    /// Chunks retrieved when a request sets no `max_num_results`.
    pub max_num_results: usize,
}

/// `[ingest]`: uploads, parsing, chunking and the watched folders.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// Largest file accepted by `POST /v1/files` and by a watched folder, in bytes.
    pub max_file_bytes: u64,
    /// Files parsed and embedded at the same time.
    pub workers: usize,
    /// Most files waiting to be ingested; beyond this an attach gets 429.
    pub max_pending: usize,
    /// Default `static` chunking: tokens per chunk.
    pub max_chunk_size_tokens: usize,
    /// Default `static` chunking: tokens shared by consecutive chunks.
    pub chunk_overlap_tokens: usize,
    /// Chunks embedded per engine call.
    pub embed_batch: usize,
    /// Address-space limit of the parser process, in MiB.
    pub parse_memory_mb: u64,
    /// CPU-time limit of the parser process, in seconds.
    pub parse_cpu_seconds: u64,
    /// Wall-time limit of the parser process, in seconds.
    pub parse_timeout_seconds: u64,
    /// OCR languages (Tesseract codes) for scanned PDF pages and images.
    pub ocr_languages: Vec<String>,
    /// OCR time budget per document, in seconds (added to the parser's limits for PDFs and images).
    pub ocr_seconds: u64,
    /// A watched file is ingested once its size and modification time have not changed for this long.
    pub stable_seconds: f64,
    /// Every watched folder is rescanned this often, on top of file-system events (which can be lost).
    pub rescan_seconds: f64,
    /// Watched folders.
    #[serde(default)]
    pub watch: Vec<WatchSettings>,
}

/// One `[[ingest.watch]]` entry: a folder whose files become searchable in a vector store.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchSettings {
    /// The folder (created if missing). Symbolic links inside it are not followed.
    pub path: PathBuf,
    /// Name of the vector store its files go to (created if missing).
    pub vector_store: String,
}

/// `[server]`: the HTTP listener and the state directory.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: String,
    /// Directory for hearth's state.
    pub state_dir: PathBuf,
    /// API keys: `KEY` (scope `admin`), `SCOPE:KEY`, or `{ key, scope }`. With no key here or in
    /// `api_key_file`, there is no authentication (and only loopback addresses may be listened on).
    pub api_keys: KeyList,
    /// A file of API keys, one a line (`KEY` or `SCOPE:KEY`, `#` comments), read at start-up;
    /// empty: none.
    pub api_key_file: PathBuf,
    /// Names requests may be addressed to (`Host`) besides localhost, loopback addresses and the
    /// listen address; `".lan"` matches a domain and its subdomains, `"*"` any name.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://app.example`) whose pages may call the API; a request from any other
    /// origin is refused.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// Most open client connections, all workers together; more wait in the listen backlog.
    pub max_connections: usize,
    /// Longest a request body may take to arrive, in seconds (for uploads: the longest pause
    /// between two pieces); then 408 and the connection closes.
    pub body_read_timeout_seconds: u64,
    /// A generation whose client takes no event for this long (a stalled reader) is cancelled and
    /// its KV cache freed, in seconds; 0: never.
    pub stall_timeout_seconds: u64,
    /// Kernel send buffer of each client connection (SO_SNDBUF), in bytes; 0: the kernel's
    /// automatic sizing. A stalled reader is detected once this and the event queue are full.
    pub send_buffer_bytes: usize,
    /// After SIGTERM or SIGINT, how long requests in flight (streams included) may run before
    /// their connections are closed, in seconds. Keep it below the unit's `TimeoutStopSec`.
    pub drain_seconds: u64,
    /// The keys of `api_keys` and `api_key_file`, read and checked while loading the settings.
    #[serde(skip)]
    pub keys: KeyRing,
}

impl ServerSettings {
    /// The key file, unless `api_key_file` is empty.
    pub fn api_key_file(&self) -> Option<&Path> {
        (!self.api_key_file.as_os_str().is_empty()).then_some(self.api_key_file.as_path())
    }
}

/// `[limits]`: budgets on everything a client controls.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: u32,
    /// Most inputs in one embeddings request.
    pub max_embedding_inputs: usize,
    /// Most tokens in one embeddings request, all inputs together.
    pub max_embedding_tokens_per_request: usize,
    /// Most `stop` strings in one request.
    pub max_stop_strings: usize,
    /// Most bytes of all `stop` strings of one request together.
    pub max_stop_bytes: usize,
    /// Most schema nodes (each `enum` member counting as one) in a `response_format` schema.
    pub max_schema_nodes: usize,
    /// Largest grammar a `response_format` schema may become, in bytes of GBNF.
    pub max_grammar_bytes: usize,
    /// Longest a `response_format` schema may take to convert, in milliseconds.
    pub schema_time_budget_ms: u64,
    /// Most values in one `in`/`nin` list of a search filter.
    pub max_filter_values: usize,
    /// Largest `max_num_results` of a search or a `file_search` tool.
    pub max_num_results: usize,
    /// Stored responses older than this are deleted, in seconds.
    pub responses_ttl_seconds: u64,
    /// Most stored responses; the oldest are deleted first.
    pub max_stored_responses: usize,
    /// Most bytes of stored responses together; the oldest are deleted first.
    pub max_stored_response_bytes: u64,
    /// Longest `previous_response_id` chain, in responses.
    pub max_response_chain: usize,
}

impl LimitSettings {
    /// `[limits]` of the embedded default configuration, for tests of the code they bound.
    #[cfg(test)]
    pub fn embedded_default() -> LimitSettings {
        default_builder().build().and_then(|c| c.get("limits")).unwrap_or_else(|e| panic!("the embedded [limits]: {e}"))
    }

    /// The first key whose value cannot work, and why.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let at_least_one = [
            ("limits.max_tokens", self.max_tokens as usize),
            ("limits.max_embedding_inputs", self.max_embedding_inputs),
            ("limits.max_embedding_tokens_per_request", self.max_embedding_tokens_per_request),
            ("limits.max_schema_nodes", self.max_schema_nodes),
            ("limits.max_filter_values", self.max_filter_values),
            ("limits.max_num_results", self.max_num_results),
            ("limits.max_stored_responses", self.max_stored_responses),
            ("limits.max_response_chain", self.max_response_chain),
            ("limits.schema_time_budget_ms", usize::try_from(self.schema_time_budget_ms).unwrap_or(usize::MAX)),
            ("limits.responses_ttl_seconds", usize::try_from(self.responses_ttl_seconds).unwrap_or(usize::MAX)),
        ];
        if let Some(&(key, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err((key, "must be at least 1".into()));
        }
        if self.max_grammar_bytes < 4096 {
            return Err(("limits.max_grammar_bytes", format!("{} is below 4096, too small for any JSON grammar", self.max_grammar_bytes)));
        }
        if self.max_stored_response_bytes < 65_536 {
            return Err(("limits.max_stored_response_bytes", format!("{} is below 65536", self.max_stored_response_bytes)));
        }
        Ok(())
    }
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
    /// Use ggml's AMX CPU kernels (Intel Sapphire Rapids and later); off: the AVX-512 build serves.
    pub cpu_amx: bool,
    /// How llama.cpp's CPU threads wait for each other between operations (see
    /// `compute::cpu_wait`): `brief` spin then sleep, `sleep` at once, or `spin` (libgomp's default).
    pub cpu_wait: CpuWait,
    /// Share of each GPU's memory hearth may use; the KV cache of a chat model with
    /// `kv_cache_tokens = 0` gets what the weights leave of it.
    pub gpu_memory_utilization: f32,
    /// Flash attention: "auto" (llama.cpp's choice per device, GPU and CPU; always on for a
    /// quantized KV cache), "on" or "off".
    pub flash_attention: FlashAttentionSetting,
    /// Decode tokens and prefill chunks of a step as one llama.cpp batch ("mixed") or two
    /// ("split"); "auto" mixes on a GPU and splits on the CPU.
    pub batch_mixing: BatchMixingSetting,
    /// While requests decode, a step's prompt prefill is cut so that the step takes at most this
    /// many times a step of decode tokens alone (learned as it runs); 0 turns the limit off.
    pub max_decode_slowdown: f32,
    /// An engine thread whose heartbeat is older than this many seconds is stalled: `/ready`
    /// answers 503 naming it and `/health` says `degraded`.
    pub stall_seconds: f64,
    /// Bytes of host RAM for each chat model's saved prompt prefixes (the prefix cache's RAM tier); 0: off.
    pub prefix_cache_ram_bytes: u64,
    /// Bytes of disk for each chat model's saved prompt prefixes, in `<state_dir>/prefix-cache/<model>/`; 0: off.
    pub prefix_cache_disk_bytes: u64,
    /// KV layout of chat models: "unified" (one cache, prefixes shared by tagging cells),
    /// "per_sequence" (a stream of max_model_len cells per sequence, prefixes shared by copying);
    /// "auto" is per_sequence on a GPU and unified on the CPU.
    #[serde(default)]
    pub kv_layout: KvLayoutSetting,
    /// Local chat models loaded at once (0: no limit); past it the least recently used idle
    /// `load = "on_demand"` model is unloaded to load another.
    #[serde(default)]
    pub max_loaded_models: usize,
    /// How long a request waits for its model to load (or for room under the budget) before a
    /// 503 `model_loading` with `Retry-After`.
    #[serde(default = "defaults::model_load_timeout_seconds")]
    pub model_load_timeout_seconds: u64,
}

/// `[engine] cpu_wait`: how llama.cpp's CPU threads wait at the barriers between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuWait {
    /// Spin briefly, then sleep (`GOMP_SPINCOUNT=3000`): as fast as spinning on idle cores, and
    /// nearly as good as sleeping beside other busy programs.
    Brief,
    /// Sleep at once (`OMP_WAIT_POLICY=PASSIVE`): slower on idle cores.
    Sleep,
    /// Spin long before sleeping (libgomp's default): ruinous beside other busy programs.
    Spin,
}

/// A local model's `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSetting {
    /// Loaded at start-up and kept loaded (start-up fails when it cannot load).
    #[default]
    Startup,
    /// Loaded by the first request for it; unloaded when the budget needs room and it is idle.
    OnDemand,
}

/// `batch_mixing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMixingSetting {
    Auto,
    Mixed,
    Split,
}

/// `kv_layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvLayoutSetting {
    #[default]
    Auto,
    Unified,
    PerSequence,
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

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderSetting {
    /// llama.cpp inside hearth.
    #[default]
    Local,
    /// An OpenAI-compatible server elsewhere (vLLM, llm-d, KServe), reached at `base_url`.
    Remote,
}

/// One `[[models]]` entry. The keys in [`LOCAL_ONLY_KEYS`] apply to `provider = "local"`, those
/// in [`REMOTE_ONLY_KEYS`] to `provider = "remote"`; setting one on the other kind is an error.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSettings {
    pub name: String,
    pub kind: ModelKindSetting,
    #[serde(default)]
    pub provider: ProviderSetting,
    /// The GGUF file of a local model (required for local models).
    #[serde(default)]
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
    #[serde(default = "defaults::prefix_cache_max_tokens")]
    pub prefix_cache_max_tokens: u32,
    #[serde(default)]
    pub kv_cache_dtype: KvCacheDtypeSetting,
    #[serde(default = "defaults::max_queue")]
    pub max_queue: usize,
    #[serde(default = "defaults::n_gpu_layers")]
    pub n_gpu_layers: u32,
    /// Local: load at start-up (the default) or on first use.
    #[serde(default)]
    pub load: LoadSetting,
    /// Remote: the upstream's OpenAI base URL, `/v1` included (`http://vllm:8000/v1`).
    #[serde(default)]
    pub base_url: String,
    /// Remote: the model name the upstream serves; default: `name`.
    #[serde(default)]
    pub remote_model: Option<String>,
    /// Remote: a file holding the upstream's API key (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Remote: an environment variable holding the upstream's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Remote: a PEM file of CA certificates trusted for an `https://` upstream, besides the
    /// system's roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Remote: longest wait for a TCP connection to the upstream.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Remote: longest wait for the upstream's response head, retries included.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Remote: longest silence from the upstream once it has answered (between stream events).
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Remote: further attempts after a connection failure or a 503, before anything was streamed.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Remote: wait before the first retry; doubled for each further one.
    #[serde(default = "defaults::retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Remote: requests in flight to the upstream at once; more wait (up to `max_queue` of them).
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Remote: longest wait for one of the `max_concurrency` slots before a 429.
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// Sampling defaults for requests to this model that omit the field (as Ollama's Modelfile
    /// `PARAMETER` and vLLM's generation config): temperature 0..=2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Default `top_p`, in (0, 1].
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Default `top_k`; -1 or 0 disable it.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Default `min_p`, 0..=1.
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Default multiplicative repetition penalty (a request's `repetition_penalty`), in (0, 10].
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
}

/// `[[models]]` keys that only a local model has.
pub const LOCAL_ONLY_KEYS: [&str; 11] = [
    "path",
    "sha256",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_tokens",
    "block_size",
    "enable_prefix_caching",
    "prefix_cache_max_tokens",
    "kv_cache_dtype",
    "n_gpu_layers",
    "load",
];

/// `[[models]]` keys that only a remote model has.
pub const REMOTE_ONLY_KEYS: [&str; 12] = [
    "base_url",
    "remote_model",
    "api_key_file",
    "api_key_env",
    "ca_file",
    "connect_timeout_ms",
    "request_timeout_ms",
    "read_timeout_ms",
    "max_retries",
    "retry_backoff_ms",
    "max_concurrency",
    "queue_timeout_ms",
];

impl ModelSettings {
    /// The name the upstream knows a remote model by.
    pub fn remote_model_name(&self) -> &str {
        self.remote_model.as_deref().unwrap_or(&self.name)
    }
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
    pub fn model_load_timeout_seconds() -> u64 {
        120
    }
    pub fn block_size() -> u32 {
        16
    }
    pub fn enable_prefix_caching() -> bool {
        true
    }
    pub fn prefix_cache_max_tokens() -> u32 {
        8192
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
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn request_timeout_ms() -> u64 {
        60_000
    }
    pub fn read_timeout_ms() -> u64 {
        60_000
    }
    pub fn max_retries() -> u32 {
        2
    }
    pub fn retry_backoff_ms() -> u64 {
        250
    }
    pub fn max_concurrency() -> usize {
        64
    }
    pub fn queue_timeout_ms() -> u64 {
        30_000
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
    /// A command-line value that cannot apply (`--model` naming no file, `--port` without an address).
    #[error("{0}")]
    CommandLine(String),
}

/// Where settings come from, in order.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The system file; read only if it exists.
    pub system: PathBuf,
    /// The file named on the command line; must exist.
    pub file: Option<PathBuf>,
    /// `hearth serve`'s `--model`, `--listen` and `--port`, laid over everything.
    pub command_line: CommandLine,
}

impl Sources {
    /// The standard layering with an optional `--config` file.
    pub fn standard(file: Option<PathBuf>) -> Self {
        Self { system: PathBuf::from(SYSTEM_CONFIG), file, command_line: CommandLine::default() }
    }
}

/// `[[models]]` paths of the form `library:NAME` become the library model's file
/// (`<state_dir>/models/`, see [`crate::models_library`]); a name not in the library is an error.
fn resolve_library_models(settings: &mut Settings, merged: &Config) -> Result<(), ConfigError> {
    let state_dir = settings.server.state_dir.clone();
    for (i, m) in settings.models.iter_mut().enumerate() {
        let resolved = crate::models_library::resolve_config_path(&state_dir, &m.path).map_err(|e| {
            let key = format!("models[{i}].path");
            ConfigError::Invalid { origin: origin_of(merged, &key), key: format!("models[{:?}].path", m.name), reason: e.to_string() }
        })?;
        if let Some((path, _sha256)) = resolved {
            m.path = path;
        }
    }
    Ok(())
}

/// `server.state_dir` alone, without validating the rest: `hearth models` and `hearth quantize`
/// need no more, and must work while a `[[models]]` entry names a library model not yet added.
pub fn state_dir_only(sources: &Sources) -> Result<PathBuf, ConfigError> {
    let mut builder = default_builder();
    if sources.system.is_file() {
        builder = builder.add_source(file_source(&sources.system)?);
    }
    if let Some(file) = &sources.file {
        builder = builder.add_source(file_source(file)?);
    }
    let merged = builder.add_source(env_source()).build().map_err(|e| config_error(e, None))?;
    merged.get_string("server.state_dir").map(PathBuf::from).map_err(|e| config_error(e, Some(&merged)))
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
        let default = default_values();
        let layers = files.iter().map(|f| file_source(f)).collect::<Result<Vec<_>, _>>()?;
        // Each layer alone over the default (its models merged by name), so unknown keys are blamed
        // on the right layer.
        for (file, layer) in files.iter().zip(&layers) {
            let models = layers::overrides(&[&default, &layer.values], &CommandLine::default(), "").map_err(command_line_error)?;
            check_layer(default_builder().add_source(layer.clone()).add_source(models), &file.display().to_string())?;
        }
        check_layer(default_builder().add_source(env_source()), "the environment (HEARTH__SECTION__KEY variables)")?;

        let mut builder = default_builder();
        for layer in &layers {
            builder = builder.add_source(layer.clone());
        }
        let builder = builder.add_source(env_source());
        let listen = builder.build_cloned().ok().and_then(|c| c.get_string("server.listen").ok()).unwrap_or_default();
        let mut all = vec![&default];
        all.extend(layers.iter().map(|l| &l.values));
        let overrides = layers::overrides(&all, &sources.command_line, &listen).map_err(command_line_error)?;
        let merged = builder.add_source(overrides).build().map_err(|e| config_error(e, None))?;
        let mut settings: Settings = merged.clone().try_deserialize().map_err(|e| config_error(e, Some(&merged)))?;
        resolve_library_models(&mut settings, &merged)?;
        settings.server.keys = KeyRing::build(&settings.server.api_keys, settings.server.api_key_file()).map_err(|e| ConfigError::Invalid {
            key: e.setting().to_owned(),
            origin: origin_of(&merged, e.setting()),
            reason: e.to_string(),
        })?;
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
        if !addr.ip().is_loopback() && self.server.keys.is_empty() {
            return Err(invalid(
                "server.listen",
                format!("{addr} is not a loopback address; set server.api_keys or server.api_key_file to listen beyond this machine"),
            ));
        }
        self.validate_edge(addr, merged)?;
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1".into()));
        }
        if self.server.body_read_timeout_seconds == 0 {
            return Err(invalid("server.body_read_timeout_seconds", "must be at least 1".into()));
        }
        self.limits.check().map_err(|(key, reason)| invalid(key, reason))?;
        let utilization = self.engine.gpu_memory_utilization;
        if !(utilization > 0.0 && utilization <= 1.0) {
            return Err(invalid("engine.gpu_memory_utilization", format!("{utilization} is outside (0, 1]")));
        }
        let slowdown = self.engine.max_decode_slowdown;
        if !(slowdown == 0.0 || (1.0..=100.0).contains(&slowdown)) {
            return Err(invalid("engine.max_decode_slowdown", format!("{slowdown} is neither 0 (off) nor within 1..=100")));
        }
        let stall = self.engine.stall_seconds;
        if !(stall.is_finite() && stall > 0.0) {
            return Err(invalid("engine.stall_seconds", format!("{stall} is not a positive number of seconds")));
        }
        if self.models.is_empty() {
            return Err(invalid("models", "at least one [[models]] entry is needed".into()));
        }
        self.check_load_budget().map_err(|(key, reason)| invalid(key, reason))?;
        let mut names = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            // Named by the model, not by its index: the list is the defaults merged with the
            // user's entries, so an index would not be the position in the user's file.
            let bad = |field: &str, reason: String| ConfigError::Invalid {
                origin: origin_of(merged, &key(field)),
                key: format!("models[{:?}].{field}", m.name),
                reason,
            };
            if m.name.trim().is_empty() || !names.insert(m.name.clone()) {
                return Err(bad("name", format!("{:?} is empty or used twice", m.name)));
            }
            let (other_kind_keys, applies_to) = match m.provider {
                ProviderSetting::Local => (&REMOTE_ONLY_KEYS[..], "provider = \"remote\" models"),
                ProviderSetting::Remote => (&LOCAL_ONLY_KEYS[..], "local models (a remote model's engine is configured on the upstream)"),
            };
            if let Some(field) = other_kind_keys.iter().find(|field| lookup(merged, &key(field)).is_some()) {
                return Err(bad(field, format!("applies only to {applies_to}")));
            }
            match m.provider {
                ProviderSetting::Local if m.path.as_os_str().is_empty() => {
                    return Err(bad("path", "a local model needs the path of its GGUF file (or set provider = \"remote\")".into()));
                }
                ProviderSetting::Local => {}
                ProviderSetting::Remote => check_remote(m).map_err(|(field, reason)| bad(field, reason))?,
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
            check_sampling_defaults(m).map_err(|(field, reason)| bad(field, reason))?;
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
        self.validate_ingest(merged)?;
        let index = &self.store;
        if !(2..=128).contains(&index.connectivity) || !(1..=4096).contains(&index.expansion_add) || !(1..=4096).contains(&index.expansion_search) {
            return Err(ConfigError::Invalid {
                key: "store.connectivity".into(),
                origin: origin_of(merged, "store.connectivity"),
                reason: "connectivity must be 2..=128, expansion_add and expansion_search 1..=4096".into(),
            });
        }
        if index.max_vector_stores == 0 {
            return Err(ConfigError::Invalid {
                key: "store.max_vector_stores".into(),
                origin: origin_of(merged, "store.max_vector_stores"),
                reason: "must be at least 1".into(),
            });
        }
        if !(-1.0..=1.0).contains(&self.rag.min_relevance) {
            return Err(ConfigError::Invalid { key: "rag.min_relevance".into(), origin: origin_of(merged, "rag.min_relevance"), reason: "must be a cosine similarity between -1 and 1".into() });
        }
        if !(1..=50).contains(&self.rag.max_num_results) || self.rag.max_output_tokens == 0 {
            return Err(ConfigError::Invalid { key: "rag.max_num_results".into(), origin: origin_of(merged, "rag.max_num_results"), reason: "max_num_results must be 1..=50 and max_output_tokens at least 1".into() });
        }
        Ok(())
    }

    /// `[engine] max_loaded_models` against the local chat models' `load`: the start-up models must
    /// fit the budget and leave room for an on-demand one, if there is one.
    fn check_load_budget(&self) -> Result<(), (&'static str, String)> {
        if self.engine.model_load_timeout_seconds == 0 {
            return Err(("engine.model_load_timeout_seconds", "must be at least 1".into()));
        }
        let budget = self.engine.max_loaded_models;
        if budget == 0 {
            return Ok(());
        }
        let chat = self.models.iter().filter(|m| m.provider == ProviderSetting::Local && m.kind == ModelKindSetting::Chat);
        let (startup, on_demand): (Vec<_>, Vec<_>) = chat.partition(|m| m.load == LoadSetting::Startup);
        let room = if on_demand.is_empty() { budget } else { budget - 1 };
        if startup.len() > room {
            let names = startup.iter().map(|m| format!("`{}`", m.name)).collect::<Vec<_>>().join(", ");
            return Err((
                "engine.max_loaded_models",
                format!(
                    "{budget} chat model(s) may be loaded at once, but {} load at start-up ({names}){}: set load = \"on_demand\" on some or raise the limit",
                    startup.len(),
                    if on_demand.is_empty() { String::new() } else { " and an on-demand model needs one more".into() }
                ),
            ));
        }
        Ok(())
    }

    /// `allowed_hosts` and `allowed_origins`: well-formed, and names listed when every interface is.
    fn validate_edge(&self, addr: SocketAddr, merged: &Config) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid { origin: origin_of(merged, &key), key, reason };
        for (i, host) in self.server.allowed_hosts.iter().enumerate() {
            hosts::check_host_entry(host).map_err(|reason| invalid(format!("server.allowed_hosts[{i}]"), reason))?;
        }
        for (i, origin) in self.server.allowed_origins.iter().enumerate() {
            hosts::canonical_origin(origin).map_err(|reason| invalid(format!("server.allowed_origins[{i}]"), reason))?;
        }
        if addr.ip().is_unspecified() && self.server.allowed_hosts.is_empty() {
            return Err(invalid(
                "server.allowed_hosts".into(),
                format!("{addr} listens on every interface: list the names and addresses clients reach this machine by in server.allowed_hosts (or [\"*\"] to answer any, relying on the API keys)"),
            ));
        }
        Ok(())
    }

    fn validate_ingest(&self, merged: &Config) -> Result<(), ConfigError> {
        let ingest = &self.ingest;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: format!("ingest.{key}"),
            origin: origin_of(merged, &format!("ingest.{key}")),
            reason,
        };
        if ingest.workers == 0 || ingest.max_pending == 0 || ingest.embed_batch == 0 {
            return Err(invalid("workers", "workers, max_pending and embed_batch must be at least 1".into()));
        }
        if let Err(reason) = ingest::ChunkingOptions::new(ingest.max_chunk_size_tokens, ingest.chunk_overlap_tokens) {
            return Err(invalid("max_chunk_size_tokens", reason.to_string()));
        }
        if ingest.parse_memory_mb < 64 || ingest.parse_cpu_seconds == 0 || ingest.parse_timeout_seconds == 0 {
            return Err(invalid("parse_memory_mb", "the parser needs at least 64 MiB and 1 s of CPU and wall time".into()));
        }
        if !(ingest.stable_seconds >= 0.0 && ingest.rescan_seconds > 0.0) {
            return Err(invalid("rescan_seconds", "stable_seconds must be >= 0 and rescan_seconds > 0".into()));
        }
        let mut names = HashSet::new();
        for (i, w) in ingest.watch.iter().enumerate() {
            if w.vector_store.trim().is_empty() {
                return Err(invalid(&format!("watch[{i}].vector_store"), "must name a vector store".into()));
            }
            if !names.insert(w.path.clone()) {
                return Err(invalid(&format!("watch[{i}].path"), format!("{} is watched twice", w.path.display())));
            }
        }
        Ok(())
    }
}

/// The embedded default's values, as the `[[models]]` merge reads them.
fn default_values() -> Map<String, Value> {
    FileFormat::Toml.parse(None, DEFAULT_CONFIG).unwrap_or_default()
}

/// A command-line value that cannot apply (`--model` that names no file, `--port` with no address).
fn command_line_error(reason: String) -> ConfigError {
    ConfigError::CommandLine(reason)
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
    Environment::with_prefix("HEARTH").prefix_separator("__").separator("__").try_parsing(true).list_separator(",")
        .with_list_parse_key("server.api_keys")
        .with_list_parse_key("server.allowed_hosts")
        .with_list_parse_key("server.allowed_origins")
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
    lookup(merged, key).and_then(Value::origin).map_or_else(|| DEFAULT_ORIGIN.into(), str::to_owned)
}

/// The value at `key` in the merged configuration, if some layer set it.
fn lookup<'a>(merged: &'a Config, key: &str) -> Option<&'a Value> {
    let mut value = &merged.cache;
    for segment in key.split(['.', '[']) {
        value = match (&value.kind, segment.strip_suffix(']')) {
            (ValueKind::Array(items), Some(index)) => index.parse::<usize>().ok().and_then(|i| items.get(i))?,
            (ValueKind::Table(table), None) => table.get(segment)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A model's sampling defaults, each within the range a request's field has.
fn check_sampling_defaults(m: &ModelSettings) -> Result<(), (&'static str, String)> {
    let within = |field: &'static str, value: Option<f64>, ok: fn(f64) -> bool, range: &str| match value {
        Some(v) if !(v.is_finite() && ok(v)) => Err((field, format!("{v} is outside {range}"))),
        _ => Ok(()),
    };
    within("temperature", m.temperature, |v| (0.0..=2.0).contains(&v), "0..=2")?;
    within("top_p", m.top_p, |v| v > 0.0 && v <= 1.0, "(0, 1]")?;
    within("min_p", m.min_p, |v| (0.0..=1.0).contains(&v), "0..=1")?;
    within("repeat_penalty", m.repeat_penalty, |v| v > 0.0 && v <= 10.0, "(0, 10]")?;
    match m.top_k {
        Some(k) if k < -1 || k > i64::from(i32::MAX) => Err(("top_k", format!("{k} is not -1, 0 or a positive count"))),
        _ => Ok(()),
    }
}

/// The checks of a remote model's keys; the error names the field.
fn check_remote(m: &ModelSettings) -> Result<(), (&'static str, String)> {
    if m.base_url.trim().is_empty() {
        return Err(("base_url", "a remote model needs the upstream's OpenAI base URL, like \"http://vllm:8000/v1\"".into()));
    }
    let url = reqwest::Url::parse(&m.base_url).map_err(|e| ("base_url", format!("{:?} is not a URL: {e}", m.base_url)))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(("base_url", format!("{:?}: the scheme {other:?} is not http or https", m.base_url))),
    }
    if let Some(ca) = &m.ca_file {
        if url.scheme() != "https" {
            return Err(("ca_file", format!("{} is only used for an https:// base_url", ca.display())));
        }
        std::fs::File::open(ca).map_err(|e| ("ca_file", format!("{} cannot be read: {e}", ca.display())))?;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(("base_url", "must not carry credentials; put the upstream's key in api_key_file or api_key_env".into()));
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some() {
        return Err(("base_url", format!("{:?} needs a host and no query or fragment", m.base_url)));
    }
    if m.remote_model.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(("remote_model", "must not be empty; leave it out to use `name`".into()));
    }
    if m.api_key_file.is_some() && m.api_key_env.is_some() {
        return Err(("api_key_env", "set api_key_file or api_key_env, not both".into()));
    }
    if m.api_key_env.as_deref().is_some_and(|v| v.is_empty() || v.contains('=')) {
        return Err(("api_key_env", "must name an environment variable".into()));
    }
    let positive: [(&'static str, u64); 5] = [
        ("connect_timeout_ms", m.connect_timeout_ms),
        ("request_timeout_ms", m.request_timeout_ms),
        ("read_timeout_ms", m.read_timeout_ms),
        ("queue_timeout_ms", m.queue_timeout_ms),
        ("max_concurrency", m.max_concurrency as u64),
    ];
    if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err((field, "must be at least 1".into()));
    }
    if m.max_retries > 10 {
        return Err(("max_retries", format!("{} is more than 10", m.max_retries)));
    }
    Ok(())
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
