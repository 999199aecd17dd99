//! What hearth sends an upstream and how it reads the answers, as pure functions: the request
//! bodies, the chunks of a stream, the embeddings response. No I/O here, so every shape is tested
//! inline.
//!
//! Every generation goes upstream as a stream (`stream: true`, `stream_options.include_usage`),
//! whether or not the client asked for one: the tokens come back one chunk at a time for hearth
//! to pass on or collect, a client that hangs up is noticed while the upstream is still working,
//! and time to first token and inter-token latency are measured the same way for every backend.
//! Only the fields the client set are sent, so the upstream's own defaults apply to the rest: the
//! sampling fields are [`engine::SamplingParams`] serialized, so a field added there is forwarded
//! without a line here.

use engine::{FinishReason, Usage};
use serde_json::{json, Map, Value};

use crate::provider::{EmbedInput, Embedded, GenerateSpec, Prompt};

/// The path (under `base_url`) and body of a generation request.
pub fn generation_request(remote_model: &str, spec: GenerateSpec) -> (&'static str, Value) {
    let mut body = Map::new();
    body.insert("model".into(), json!(remote_model));
    let path = match spec.prompt {
        Prompt::Chat(messages) => {
            let messages: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
            body.insert("messages".into(), Value::Array(messages));
            "/chat/completions"
        }
        Prompt::Text(text) => {
            body.insert("prompt".into(), json!(text));
            "/completions"
        }
        Prompt::Tokens(tokens) => {
            body.insert("prompt".into(), json!(tokens));
            "/completions"
        }
    };
    if let Some((_, n)) = spec.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    // A struct of numbers and a string-keyed map always serializes to an object.
    if let Ok(Value::Object(sampling)) = serde_json::to_value(&spec.sampling) {
        body.extend(sampling);
    }
    if let Some(format) = spec.response_format {
        body.insert("response_format".into(), format);
    }
    if !spec.stop.is_empty() {
        body.insert("stop".into(), json!(spec.stop));
    }
    if spec.ignore_eos {
        body.insert("ignore_eos".into(), json!(true));
    }
    body.insert("stream".into(), json!(true));
    let mut stream_options = json!({"include_usage": true});
    if spec.continuous_usage {
        stream_options["continuous_usage_stats"] = json!(true);
    }
    body.insert("stream_options".into(), stream_options);
    (path, Value::Object(body))
}

/// The body of an embeddings request: always floats (hearth encodes base64 itself).
pub fn embedding_request(remote_model: &str, input: &EmbedInput, dimensions: Option<i64>) -> Value {
    let input = match input {
        EmbedInput::Texts(texts) => json!(texts),
        EmbedInput::Tokens(lists) => json!(lists),
    };
    let mut body = json!({"model": remote_model, "input": input, "encoding_format": "float"});
    if let Some(d) = dimensions {
        body["dimensions"] = json!(d);
    }
    body
}

/// The vectors of an embeddings response, in input order, and its prompt tokens.
pub fn parse_embeddings(body: &[u8], inputs: usize) -> Result<Embedded, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("its embeddings response is not JSON: {e}"))?;
    let data = value["data"].as_array().ok_or("its embeddings response has no `data` list")?;
    if data.len() != inputs {
        return Err(format!("it returned {} embeddings for {inputs} inputs", data.len()));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (position, item) in data.iter().enumerate() {
        let index = item["index"].as_u64().map_or(position, |i| i as usize);
        let vector = match &item["embedding"] {
            Value::Array(values) => values.iter().map(|v| v.as_f64().map(|f| f as f32)).collect::<Option<Vec<f32>>>(),
            Value::String(b64) => decode_base64_f32(b64),
            _ => None,
        }
        .ok_or_else(|| format!("embedding {position} is not a list of numbers"))?;
        match vectors.get_mut(index) {
            Some(slot @ None) => *slot = Some(vector),
            _ => return Err(format!("embedding {position} has a duplicate or out-of-range index {index}")),
        }
    }
    let prompt_tokens = value["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize;
    Ok(Embedded { vectors: vectors.into_iter().flatten().collect(), prompt_tokens })
}

fn decode_base64_f32(text: &str) -> Option<Vec<f32>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    (bytes.len() % 4 == 0).then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// What one event of an upstream stream means for hearth.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// New text, with the tokens so far.
    Text { text: String, completion_tokens: u32 },
    /// `[DONE]`: the generation ended.
    Done { reason: FinishReason, usage: Usage },
}

/// Reads the `data` of an upstream's stream events, chat or completions. Tokens are counted one
/// per chunk with text unless the upstream sends running `usage` (continuous usage stats), and the
/// final `usage` chunk (`include_usage`) has the last word. The finish reason arrives before the
/// usage chunk, so the generation ends only at `[DONE]`.
#[derive(Debug, Default)]
pub struct ChunkReader {
    completion_tokens: u32,
    reason: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl ChunkReader {
    /// One event's data: text, the end, nothing of interest (a role chunk, a usage chunk), or the
    /// upstream's error message.
    pub fn read(&mut self, data: &str) -> Result<Option<Chunk>, String> {
        if data.trim() == "[DONE]" {
            return Ok(Some(self.finish()));
        }
        let value: Value = serde_json::from_str(data).map_err(|e| format!("sent a chunk that is not JSON ({e}): {}", clip(data)))?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(format!("reported an error in the stream: {}", error_message(error)));
        }
        let usage = value.get("usage").and_then(usage_of);
        if usage.is_some() {
            self.usage = usage;
        }
        let choice = value["choices"].get(0);
        if let Some(reason) = choice.and_then(|c| c["finish_reason"].as_str()) {
            self.reason = Some(if reason == "length" { FinishReason::Length } else { FinishReason::Stop });
        }
        let text = choice.and_then(|c| c["delta"]["content"].as_str().or_else(|| c["text"].as_str())).unwrap_or("");
        if text.is_empty() {
            return Ok(None);
        }
        self.completion_tokens = match usage {
            Some(u) if u.completion_tokens > self.completion_tokens => u.completion_tokens,
            _ => self.completion_tokens + 1,
        };
        Ok(Some(Chunk::Text { text: text.to_owned(), completion_tokens: self.completion_tokens }))
    }

    /// Prompt tokens, once the upstream has sent a `usage` (every chunk with continuous usage
    /// stats, else only the last).
    pub fn prompt_tokens(&self) -> Option<u32> {
        self.usage.map(|u| u.prompt_tokens)
    }

    /// The stream's bytes ran out: the end, if a finish reason came (a server that does not send
    /// `[DONE]`), else `None` (it broke off).
    pub fn at_eof(&mut self) -> Option<Chunk> {
        (self.reason.is_some() && !self.done).then(|| self.finish())
    }

    fn finish(&mut self) -> Chunk {
        self.done = true;
        let mut usage = self.usage.unwrap_or_default();
        usage.completion_tokens = usage.completion_tokens.max(self.completion_tokens);
        Chunk::Done { reason: self.reason.unwrap_or(FinishReason::Stop), usage }
    }
}

fn usage_of(u: &Value) -> Option<Usage> {
    let count = |key: &str| u[key].as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Some(Usage {
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens").unwrap_or(0),
        cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64().map_or(0, |n| n as u32),
    })
}

/// The message of an OpenAI-shaped error object (or a vLLM-style `{"message"}`), else its JSON.
pub fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("message").and_then(Value::as_str).map_or_else(|| clip(&error.to_string()), str::to_owned),
        other => clip(&other.to_string()),
    }
}

/// The message and `param` of an error response body: OpenAI's `{"error": {...}}`, vLLM's older
/// `{"object": "error", "message"}`, FastAPI's `{"detail"}`, or the text itself.
pub fn error_body(body: &[u8]) -> (String, Option<String>) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return (if text.is_empty() { "(no message)".into() } else { clip(text) }, None);
    };
    let error = value.get("error").filter(|e| e.is_object()).unwrap_or(&value);
    let message = match (error.get("message"), value.get("detail")) {
        (Some(Value::String(m)), _) => m.clone(),
        (_, Some(Value::String(d))) => d.clone(),
        (_, Some(detail)) => clip(&detail.to_string()),
        _ => clip(&value.to_string()),
    };
    let param = error.get("param").and_then(Value::as_str).map(str::to_owned);
    (message, param)
}

/// At most 500 characters of `text`, for messages built from an upstream's output.
fn clip(text: &str) -> String {
    match text.char_indices().nth(500) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ChatMessage, SamplingParams};

    fn spec(prompt: Prompt) -> GenerateSpec {
        GenerateSpec {
            prompt,
            max_tokens: None,
            cap: 100,
            stop: Vec::new(),
            ignore_eos: false,
            sampling: SamplingParams::default(),
            response_format: None,
            continuous_usage: false,
            tools: Default::default(),
        }
    }

    #[test]
    fn only_what_the_client_set_goes_upstream_and_always_as_a_stream() {
        let chat = Prompt::Chat(vec![ChatMessage { role: "user".into(), content: "hi".into() }]);
        let (path, body) = generation_request("org/model", spec(chat));
        assert_eq!(path, "/chat/completions");
        assert_eq!(
            body,
            json!({"model": "org/model", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                "stream_options": {"include_usage": true}})
        );
        let mut full = spec(Prompt::Tokens(vec![1, 2]));
        full.max_tokens = Some(("max_completion_tokens", 7));
        full.stop = vec!["\n".into()];
        full.ignore_eos = true;
        full.continuous_usage = true;
        full.sampling = SamplingParams {
            temperature: Some(0.0),
            top_k: Some(-1),
            seed: Some(3),
            logit_bias: Some([("5".to_owned(), -100.0)].into()),
            grammar: Some("root ::= \"x\"".into()),
            logprobs: Some(2),
            ..SamplingParams::default()
        };
        full.response_format = Some(json!({"type": "json_object"}));
        let (path, body) = generation_request("m", full);
        assert_eq!(path, "/completions");
        assert_eq!(body["prompt"], json!([1, 2]));
        assert_eq!(body["max_tokens"], 7, "sent as max_tokens, which every OpenAI-compatible server takes");
        assert_eq!((body["temperature"].as_f64(), body["top_k"].as_i64(), body["seed"].as_i64()), (Some(0.0), Some(-1), Some(3)));
        assert_eq!(body["logit_bias"], json!({"5": -100.0}));
        assert_eq!((body["stop"].clone(), body["ignore_eos"].clone()), (json!(["\n"]), json!(true)));
        assert_eq!(body["stream_options"], json!({"include_usage": true, "continuous_usage_stats": true}));
        assert_eq!(body["response_format"], json!({"type": "json_object"}), "as sent: the upstream converts it itself");
        assert!(body.get("top_p").is_none() && body.get("min_p").is_none());
        assert!(body.get("grammar").is_none() && body.get("logprobs").is_none(), "what hearth derives stays home");
    }

    #[test]
    fn a_chat_stream_becomes_text_then_done_with_the_upstreams_usage() {
        let mut r = ChunkReader::default();
        let chunk = |delta: Value, finish: Value| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string();
        assert_eq!(r.read(&chunk(json!({"role": "assistant", "content": ""}), Value::Null)), Ok(None));
        assert_eq!(r.read(&chunk(json!({"content": "Hel"}), Value::Null)), Ok(Some(Chunk::Text { text: "Hel".into(), completion_tokens: 1 })));
        assert_eq!(r.read(&chunk(json!({"content": "lo"}), Value::Null)), Ok(Some(Chunk::Text { text: "lo".into(), completion_tokens: 2 })));
        assert_eq!(r.read(&chunk(json!({}), json!("length"))), Ok(None));
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 4}}});
        assert_eq!(r.read(&usage.to_string()), Ok(None));
        let done = r.read("[DONE]");
        assert_eq!(done, Ok(Some(Chunk::Done { reason: FinishReason::Length, usage: Usage { prompt_tokens: 9, completion_tokens: 3, cached_tokens: 4 } })));
        assert_eq!(r.at_eof(), None, "already done");
    }

    #[test]
    fn completions_chunks_running_usage_and_unknown_finish_reasons() {
        let mut r = ChunkReader::default();
        let text = json!({"choices": [{"text": "abc", "finish_reason": null}], "usage": {"prompt_tokens": 5, "completion_tokens": 4}});
        assert_eq!(r.read(&text.to_string()), Ok(Some(Chunk::Text { text: "abc".into(), completion_tokens: 4 })));
        assert_eq!(r.prompt_tokens(), Some(5));
        let end = json!({"choices": [{"text": "", "finish_reason": "content_filter"}]});
        assert_eq!(r.read(&end.to_string()), Ok(None));
        // No [DONE]: the end of the bytes after a finish reason is the end.
        assert_eq!(r.at_eof(), Some(Chunk::Done { reason: FinishReason::Stop, usage: Usage { prompt_tokens: 5, completion_tokens: 4, cached_tokens: 0 } }));
        assert_eq!(r.at_eof(), None);
    }

    #[test]
    fn a_stream_cut_short_or_carrying_an_error_is_a_failure() {
        let mut r = ChunkReader::default();
        assert_eq!(r.read(&json!({"choices": [{"delta": {"content": "x"}}]}).to_string()).map(|c| c.is_some()), Ok(true));
        assert_eq!(r.at_eof(), None, "no finish reason: broken off");
        let err = r.read(&json!({"error": {"message": "engine died", "type": "server_error"}}).to_string());
        assert!(err.is_err_and(|e| e.contains("engine died")));
        assert!(ChunkReader::default().read("{not json").is_err_and(|e| e.contains("not JSON")));
    }

    #[test]
    fn embeddings_come_back_in_input_order_from_floats_or_base64() {
        let b64 = {
            use base64::Engine as _;
            let bytes: Vec<u8> = [0.5f32, -1.0].iter().flat_map(|f| f.to_le_bytes()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let body = json!({"data": [{"index": 1, "embedding": b64}, {"index": 0, "embedding": [1.0, 2.0]}], "usage": {"prompt_tokens": 6}});
        let e = parse_embeddings(body.to_string().as_bytes(), 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e, Embedded { vectors: vec![vec![1.0, 2.0], vec![0.5, -1.0]], prompt_tokens: 6 });
        assert!(parse_embeddings(body.to_string().as_bytes(), 3).is_err_and(|e| e.contains("2 embeddings for 3 inputs")));
        let dup = json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]});
        assert!(parse_embeddings(dup.to_string().as_bytes(), 2).is_err_and(|e| e.contains("duplicate")));
        assert_eq!(
            embedding_request("m", &EmbedInput::Tokens(vec![vec![1, 2]]), Some(64)),
            json!({"model": "m", "input": [[1, 2]], "encoding_format": "float", "dimensions": 64})
        );
    }

    #[test]
    fn error_bodies_in_every_common_shape() {
        let openai = json!({"error": {"message": "too long", "type": "invalid_request_error", "param": "messages", "code": null}});
        assert_eq!(error_body(openai.to_string().as_bytes()), ("too long".into(), Some("messages".into())));
        let vllm = json!({"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404});
        assert_eq!(error_body(vllm.to_string().as_bytes()).0, "The model `x` does not exist.");
        assert_eq!(error_body(br#"{"detail": "Not Found"}"#).0, "Not Found");
        assert_eq!(error_body(b"  upstream connect error  ").0, "upstream connect error");
        assert_eq!(error_body(b"").0, "(no message)");
        assert_eq!(clip(&"é".repeat(600)).chars().count(), 501);
    }
}
