//! `/v1/models` answers: OpenAI's model object plus hearth's `state`, `in_flight`, `load` and
//! `meta`. A local model's details are those of its engine, or of its last load while it is
//! unloaded (`null` before its first); a remote model has no load state of its own.

use serde::Serialize;

/// One served model.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ModelObject {
    Local(LocalModel),
    Remote(RemoteModel),
}

/// A model hearth runs itself.
#[derive(Debug, Serialize)]
pub struct LocalModel {
    pub id: String,
    pub object: &'static str,
    /// When its engine was loaded (0: never yet).
    pub created: u64,
    pub owned_by: &'static str,
    pub max_model_len: Option<u32>,
    /// `loaded`, `loading`, `unloaded`, `unloading` or `failed`.
    pub state: String,
    /// Why the last load failed (`state` `failed`).
    pub state_reason: Option<String>,
    /// Requests holding the model now.
    pub in_flight: usize,
    /// `startup` (kept loaded) or `on_demand`.
    pub load: &'static str,
    /// How long the last load took, in milliseconds.
    pub last_load_ms: Option<u64>,
    pub meta: LocalMeta,
}

/// A local model's details (`null` before its first load).
#[derive(Debug, Serialize)]
pub struct LocalMeta {
    pub kind: &'static str,
    pub provider: &'static str,
    pub n_ctx_train: Option<u32>,
    pub n_embd: Option<u32>,
    pub n_vocab: Option<u32>,
    pub n_params: Option<u64>,
    pub size: Option<u64>,
    pub kv_cache_tokens: Option<u32>,
    pub n_gpu_layers: Option<u32>,
    pub on_gpu: Option<bool>,
    /// The compute devices, as `hearth info` lists them.
    pub devices: Vec<serde_json::Value>,
}

/// A model served by an OpenAI-compatible upstream.
#[derive(Debug, Serialize)]
pub struct RemoteModel {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    pub max_model_len: Option<u32>,
    /// Always `remote`.
    pub state: &'static str,
    pub meta: RemoteMeta,
}

/// A remote model's details.
#[derive(Debug, Serialize)]
pub struct RemoteMeta {
    pub kind: &'static str,
    pub provider: &'static str,
    /// The upstream's name for it.
    pub remote_model: String,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

/// `POST /v1/models/{id}/load`: the model, and how long the request waited for it.
#[derive(Debug, Serialize)]
pub struct Loaded {
    #[serde(flatten)]
    pub model: ModelObject,
    pub waited_ms: u64,
}

/// `POST /v1/models/{id}/unload`: the model, and how long the unload took (`null`: it was not loaded).
#[derive(Debug, Serialize)]
pub struct Unloaded {
    #[serde(flatten)]
    pub model: ModelObject,
    pub unload_ms: Option<u64>,
}
