//! Ollama's wire types: the request bodies of `/api/*` as Ollama's clients send them, and the
//! response objects as its docs and the `ollama` Python package read them. Field names are
//! Ollama's; durations are nanoseconds; times are RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A chat message (`images` are refused, see [`super::generate`]): an assistant's earlier
/// `tool_calls`, a `tool` message's result with the `tool_name` it came from.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaMessage)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub images: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message: the function whose result it is.
    #[serde(default)]
    pub tool_name: Option<String>,
}

/// A function call, Ollama's shape: the arguments are an object, not JSON text, and there is no
/// call id.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaToolCall)]
pub struct ToolCall {
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaFunctionCall)]
pub struct FunctionCall {
    pub name: String,
    #[schema(value_type = Object)]
    pub arguments: serde_json::Map<String, Value>,
}

/// Fields `/api/chat` and `/api/generate` share.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaGenerateCommon)]
pub struct Common {
    /// `name` or `name:tag`; `name:latest` is `name`.
    pub model: String,
    /// Defaults to true, as in Ollama.
    pub stream: Option<bool>,
    /// `"json"` or a JSON schema.
    #[schema(value_type = Option<Object>)]
    pub format: Option<Value>,
    pub options: Option<Options>,
    /// Accepted; hearth keeps its models loaded.
    #[schema(value_type = Option<Object>)]
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub keep_alive: Option<Value>,
    /// Thinking: refused when true (no reasoning model here).
    #[schema(value_type = Option<Object>)]
    pub think: Option<Value>,
    /// Log-probabilities of each generated token.
    pub logprobs: Option<bool>,
    /// Alternatives per token with `logprobs` (0 to 20).
    pub top_logprobs: Option<i64>,
}

/// `POST /api/chat`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaChatRequest)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub messages: Vec<MessageIn>,
    /// Function tools: `[{"type": "function", "function": {"name", "description", "parameters"}}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaGenerateRequest)]
pub struct GenerateRequest {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub prompt: Option<String>,
    pub system: Option<String>,
    /// Refused when non-empty (fill-in-the-middle).
    pub suffix: Option<String>,
    /// Refused when non-empty: hearth uses the model's own template.
    pub template: Option<String>,
    /// The prompt is sent as written, without the chat template.
    pub raw: Option<bool>,
    /// Refused when non-empty (deprecated in Ollama).
    pub context: Option<Vec<i64>>,
    #[schema(value_type = Option<Vec<String>>)]
    pub images: Option<Vec<Value>>,
}

/// Ollama's `options` (Modelfile parameters). Sampling ones map to hearth's sampling; the
/// runtime ones are hearth's configuration's to decide and are accepted without effect.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaOptions)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub seed: Option<i64>,
    /// Most tokens to generate; -1 (infinite) and -2 (fill the context) mean no limit.
    pub num_predict: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// At most the model's `max_model_len`: hearth does not resize a context per request.
    pub num_ctx: Option<i64>,
    /// Refused unless 0 (off).
    pub mirostat: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub mirostat_tau: Option<f64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub mirostat_eta: Option<f64>,
    /// Refused unless 1 (off).
    pub typical_p: Option<f64>,
    /// Refused unless 1 (off).
    pub tfs_z: Option<f64>,
    // Accepted without effect: hearth's configuration decides them.
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub num_keep: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub repeat_last_n: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub penalize_newline: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub numa: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub num_batch: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub num_gpu: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub main_gpu: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub low_vram: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub f16_kv: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub logits_all: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub vocab_only: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub use_mmap: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub use_mlock: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub embedding_only: Option<bool>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub num_thread: Option<i64>,
}

/// `POST /api/embed`: `input` is a string or strings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaEmbedRequest)]
pub struct EmbedRequest {
    pub model: String,
    #[schema(value_type = Object)]
    pub input: Value,
    /// Ollama truncates long inputs by default; hearth refuses an input longer than the model's
    /// context instead, with a 400 that says so.
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub truncate: Option<bool>,
    pub dimensions: Option<i64>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub options: Option<Options>,
    #[schema(value_type = Option<Object>)]
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub keep_alive: Option<Value>,
}

/// `POST /api/embeddings` (the legacy form: one `prompt`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaEmbeddingsRequest)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub prompt: String,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub options: Option<Options>,
    #[schema(value_type = Option<Object>)]
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub keep_alive: Option<Value>,
}

/// `POST /api/show`: `model` (or the older `name`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = OllamaShowRequest)]
pub struct ShowRequest {
    pub model: Option<String>,
    pub name: Option<String>,
    #[expect(dead_code, reason = "accepted as Ollama clients send it; it changes nothing here")]
    pub verbose: Option<bool>,
}

/// The message of a chat answer: text, and the calls when the model made some.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaMessageOut)]
pub struct MessageOut {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// A token's log-probability, Ollama's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaLogprob)]
pub struct Logprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub top_logprobs: Vec<Logprob>,
}

/// Timings and counts of the final object of a generation. Absent (every field `None`) on the
/// objects before the last and on the answer to a request with nothing to generate, as in Ollama.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaStats)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// 0: hearth loads its models at start-up, never for a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u32>,
    /// From arrival to the first generated token (queueing and prompt processing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u32>,
    /// From the first generated token to the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// One object of `/api/chat` (one NDJSON line when streamed, or the whole answer).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaChatResponse)]
pub struct ChatChunk {
    pub model: String,
    pub created_at: String,
    pub message: MessageOut,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
    #[serde(flatten)]
    pub stats: Stats,
}

/// One object of `/api/generate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaGenerateResponse)]
pub struct GenerateChunk {
    pub model: String,
    pub created_at: String,
    pub response: String,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
    #[serde(flatten)]
    pub stats: Stats,
}

/// `POST /api/embed`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaEmbedResponse)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u64,
}

/// `POST /api/embeddings`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaEmbeddingResponse)]
pub struct EmbeddingResponse {
    pub embedding: Vec<f32>,
}

/// What Ollama calls a model's details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaModelDetails)]
pub struct Details {
    pub parent_model: String,
    /// `gguf` for a local model, `remote` for one served by an upstream.
    pub format: &'static str,
    pub family: String,
    pub families: Option<Vec<String>>,
    /// `135M`, `7.2B`; empty when unknown (a remote model).
    pub parameter_size: String,
    pub quantization_level: String,
}

/// One model of `GET /api/tags`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaTag)]
pub struct Tag {
    /// `name:latest`.
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub details: Details,
}

/// `GET /api/tags`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaTags)]
pub struct Tags {
    pub models: Vec<Tag>,
}

/// One model of `GET /api/ps`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaRunning)]
pub struct Running {
    pub name: String,
    pub model: String,
    pub size: u64,
    /// The weights' size when they were offloaded to a GPU, else 0.
    pub size_vram: u64,
    pub details: Details,
    /// hearth's longest prompt + output (`max_model_len`).
    pub context_length: u32,
}

/// `GET /api/ps`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaProcesses)]
pub struct Processes {
    pub models: Vec<Running>,
}

/// `POST /api/show`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaShowResponse)]
pub struct ShowResponse {
    /// Empty: hearth's models come from its configuration, not a Modelfile.
    pub modelfile: String,
    /// Ollama's `parameters` text: hearth's defaults for this model.
    pub parameters: String,
    /// The GGUF's chat template (Jinja), when it has one.
    pub template: String,
    pub details: Details,
    /// GGUF metadata keys (`general.architecture`, `<arch>.context_length`, ...), sorted.
    #[schema(value_type = Object)]
    pub model_info: BTreeMap<String, InfoValue>,
    /// `completion` for a chat model, `embedding` for an embedding model.
    pub capabilities: Vec<&'static str>,
    pub modified_at: String,
}

/// A value of [`ShowResponse::model_info`]: a name or a count.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InfoValue {
    Text(String),
    Count(u64),
}

impl From<String> for InfoValue {
    fn from(text: String) -> InfoValue {
        InfoValue::Text(text)
    }
}

impl From<u64> for InfoValue {
    fn from(count: u64) -> InfoValue {
        InfoValue::Count(count)
    }
}

impl From<u32> for InfoValue {
    fn from(count: u32) -> InfoValue {
        InfoValue::Count(u64::from(count))
    }
}

/// `GET /api/version`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaVersion)]
pub struct Version {
    /// hearth's version.
    pub version: &'static str,
}

/// Ollama's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OllamaError)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_info_values_are_bare_strings_and_numbers() {
        let info: BTreeMap<String, InfoValue> =
            [("general.architecture".to_owned(), "llama".to_owned().into()), ("llama.context_length".to_owned(), 8192u32.into()), ("general.parameter_count".to_owned(), 134_515_008u64.into())].into();
        let wire = serde_json::to_string(&info).unwrap_or_default();
        assert_eq!(wire, r#"{"general.architecture":"llama","general.parameter_count":134515008,"llama.context_length":8192}"#);
    }
}
