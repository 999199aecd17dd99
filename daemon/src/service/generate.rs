//! Text generation shared by `/v1/chat/completions` and `/v1/completions`: validating OpenAI's
//! sampling fields ([`engine::SamplingParams`], read and range-checked as they are, the one type
//! from here to the sampler) and hearth's limits, then submitting to the model's backend, local or remote
//! (which tokenizes and sizes `max_tokens` against the context, or forwards; see
//! [`crate::provider`]). Each submitted generation carries a [`RequestTimer`] that whoever
//! consumes its events (here for plain responses, `api::sse` for streams) feeds, so the metrics
//! see every request.
//!
//! For a local model the submission (the `response_format` grammar within `[limits]`' budgets,
//! the chat template, tokenizing a prompt of up to `server.max_body_bytes`) runs on a blocking
//! thread: it is CPU work proportional to what the client sent, and an HTTP worker busy with it
//! would stall every other request, `/health` included.

use engine::{FinishReason, SamplingParams, TokenLogprob, ToolFormat, Usage, MAX_TOP_LOGPROBS};
use serde::Deserialize;

use crate::config::LimitSettings;
use crate::fault::ServiceError;
use crate::metrics::RequestTimer;
use crate::provider::{Backend, Event, Events, GenerateSpec, Submitted};
use crate::service::structured::{self, Budget};
use crate::service::tools::{self, ChatTools};
use crate::state::AppState;

pub use crate::provider::Prompt;

/// The OpenAI fields common to chat and completions, beside the sampling fields
/// (`SamplingParams`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct GenerationParams {
    pub model: String,
    #[schema(minimum = 1)]
    pub max_tokens: Option<i64>,
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<StopSpec>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is supported.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<i64>,
    #[serde(default)]
    pub ignore_eos: bool,
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    /// Chat: `true` for each token's log-probability (`top_logprobs` alternatives); completions:
    /// the number of alternatives, 0 to 20.
    pub logprobs: Option<LogprobsSpec>,
    /// Chat, with `logprobs: true`: alternatives per token, 0 to 20.
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
    /// The sampling fields, read from the same body by [`GenerationParams::from_body`] (serde's
    /// `flatten` would lose the field names in type errors); the OpenAPI document lists them as
    /// their own schema beside this one.
    #[serde(skip)]
    pub sampling: SamplingParams,
}

impl GenerationParams {
    /// The generation fields and the sampling fields of a request body (as parsed JSON), a type
    /// error naming its field. Ranges are checked later, in [`start`].
    pub fn from_body(body: &serde_json::Value) -> Result<GenerationParams, ServiceError> {
        let params: GenerationParams = crate::wire::fields(body)?;
        Ok(GenerationParams { sampling: crate::wire::fields(body)?, ..params })
    }
}

/// `logprobs`: a flag (chat) or a count of alternatives (completions).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LogprobsSpec {
    Flag(bool),
    Count(i64),
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    #[serde(default)]
    pub continuous_usage_stats: bool,
}

/// A submitted generation.
#[derive(Debug)]
pub struct Generation {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub stream: bool,
    pub options: StreamOptions,
    /// How to read tool calls out of the output, when tools were offered.
    pub tools: Option<ToolOutput>,
    /// Log-probabilities asked for (alternatives per token), or `None`: answers then carry
    /// `"logprobs": null`.
    pub logprobs: Option<u8>,
    /// Prompt tokens as counted when it was submitted (0 for a remote model, whose upstream
    /// reports them at the end).
    pub prompt_tokens: u32,
    pub events: Events,
    /// Metrics of this request: feed it every event taken from `events`.
    pub timer: RequestTimer,
}

/// How a generation offered tools writes its calls.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub format: ToolFormat,
    /// The offered functions' names: a call to any other is not a call.
    pub names: Vec<String>,
}

/// The tools' part of a generation: how to read calls, or `None` when no tool is offered. A
/// remote model is not sent tools (yet): refused rather than ignored.
fn tool_output(backend: &Backend, tools: &ChatTools, params: &GenerationParams) -> Result<Option<ToolOutput>, ServiceError> {
    let offered = tools.offered();
    if offered.is_empty() {
        return Ok(None);
    }
    let Some((_, format)) = backend.as_local().and_then(engine::Engine::tool_support) else {
        return Err(ServiceError::invalid("tools", format!("`{}` is a remote model; hearth offers tools to local chat models only", params.model)));
    };
    if params.response_format.as_ref().is_some_and(|f| f.get("type").and_then(serde_json::Value::as_str).is_some_and(|t| t != "text")) {
        return Err(ServiceError::invalid("response_format", "response_format and tools in one request are not supported; send one of them (or tool_choice: \"none\")"));
    }
    Ok(Some(ToolOutput { format, names: offered.iter().map(|f| f.name.clone()).collect() }))
}

/// The whole output of a non-streamed generation.
#[derive(Debug)]
pub struct Completed {
    pub text: String,
    /// Every reported token's log-probabilities, when the request asked for them.
    pub logprobs: Vec<TokenLogprob>,
    pub reason: FinishReason,
    pub usage: Usage,
}

/// Validate and submit to the model's backend.
pub async fn start(state: &AppState, params: &GenerationParams, prompt: Prompt, id_prefix: &str) -> Result<Generation, ServiceError> {
    start_with_tools(state, params, prompt, ChatTools::default(), id_prefix).await
}

/// [`start`] for a conversation with tools (offered, or in its history).
pub async fn start_with_tools(state: &AppState, params: &GenerationParams, prompt: Prompt, tools: ChatTools, id_prefix: &str) -> Result<Generation, ServiceError> {
    let arrived = std::time::Instant::now();
    let backend = state.models()?.acquire(&params.model).await?;
    let tool_output = tool_output(&backend, &tools, params)?;
    let limits = &state.settings().limits;
    let cap = limits.max_tokens;
    let logprobs = logprobs_asked(params, matches!(prompt, Prompt::Chat(_)))?;
    if logprobs.is_some() && backend.as_local().is_none() {
        return Err(ServiceError::invalid("logprobs", format!("`{}` is a remote model; hearth reports log-probabilities for local models only", params.model)));
    }
    let spec = GenerateSpec {
        prompt,
        max_tokens: requested_max_tokens(params, cap)?,
        cap,
        stop: stop_strings(params.stop.as_ref(), limits)?,
        ignore_eos: params.ignore_eos,
        sampling: with_model_defaults(SamplingParams { logprobs, ..checked(&params.sampling)? }, state.settings().models.iter().find(|m| m.name == params.model)),
        response_format: params.response_format.clone(),
        continuous_usage: params.stream_options.is_some_and(|o| o.continuous_usage_stats),
        tools,
    };
    check_unsupported(params)?;
    let submitted = submit(&backend, spec, schema_budget(limits)).await?;
    let (events, prompt_tokens) = (submitted.events, submitted.prompt_tokens);
    let timer = state.metrics().generation(&params.model, arrived, prompt_tokens);
    Ok(Generation {
        id: super::new_id(id_prefix),
        created: super::unix_now(),
        model: params.model.clone(),
        stream: params.stream,
        options: params.stream_options.unwrap_or_default(),
        tools: tool_output,
        logprobs,
        prompt_tokens,
        events,
        timer,
    })
}

/// `[limits]`' budget for a `response_format` schema.
pub fn schema_budget(limits: &LimitSettings) -> Budget {
    Budget {
        max_nodes: limits.max_schema_nodes,
        max_grammar_bytes: limits.max_grammar_bytes,
        max_time: std::time::Duration::from_millis(limits.schema_time_budget_ms),
    }
}

/// Hand `spec` to its backend. A local model's part (the grammar within `budget`, the template,
/// tokenizing) runs on a blocking thread, in the request's span.
async fn submit(backend: &Backend, mut spec: GenerateSpec, budget: Budget) -> Result<Submitted, ServiceError> {
    let Some(engine) = backend.as_local().cloned() else {
        // A remote upstream converts `response_format` itself, with its own keywords and limits.
        return backend.generate(spec).await;
    };
    let span = tracing::Span::current();
    let lease = backend.lease();
    super::blocking(move || {
        let _entered = span.enter();
        spec.sampling.grammar = match (&spec.tools.tools, &spec.response_format) {
            (Some(tools), _) if !tools.offered().is_empty() => {
                let format = engine.tool_support().map_or(engine::ToolFormat::Hermes, |(_, f)| f);
                tools::grammar(tools, format, &budget)?
            }
            (_, Some(format)) => structured::checked_grammar_for(format, &budget).map_err(|e| ServiceError::invalid("response_format", e.to_string()))?,
            _ => None,
        };
        Ok(crate::provider::local::generate(&engine, spec)?.leased(lease))
    })
    .await
}

impl Generation {
    /// Wait for the whole output (non-streamed requests).
    pub async fn collect(mut self) -> Result<Completed, ServiceError> {
        let mut text = String::new();
        let mut logprobs = Vec::new();
        loop {
            match self.events.next().await {
                Some(Event::Delta { text: delta, completion_tokens, logprobs: tokens }) => {
                    self.timer.delta(completion_tokens);
                    text.push_str(&delta);
                    logprobs.extend(tokens);
                }
                Some(Event::Finished { reason, usage, queued }) => {
                    self.timer.finished(reason, &usage, queued);
                    return Ok(Completed { text, logprobs, reason, usage });
                }
                Some(Event::Failed(error)) => return Err(error),
                None => return Err(ServiceError::Unavailable("the engine stopped before the request finished".into())),
            }
        }
    }
}


/// The alternatives per token the client asked log-probabilities for: chat takes `logprobs: true`
/// and `top_logprobs` (0..=20), completions `logprobs: N` (0..=20), as OpenAI and vLLM do.
fn logprobs_asked(p: &GenerationParams, chat: bool) -> Result<Option<u8>, ServiceError> {
    let max = i64::from(MAX_TOP_LOGPROBS);
    let count = |param: &str, n: i64| {
        u8::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_TOP_LOGPROBS)
            .ok_or_else(|| ServiceError::invalid(param, format!("{param} must be between 0 and {max}, got {n}")))
    };
    match (chat, p.logprobs, p.top_logprobs) {
        (true, Some(LogprobsSpec::Flag(true)), top) => count("top_logprobs", top.unwrap_or(0)).map(Some),
        (true, Some(LogprobsSpec::Count(_)), _) => Err(ServiceError::invalid("logprobs", "on chat completions logprobs is true or false; top_logprobs sets the alternatives")),
        (true, _, Some(_)) => Err(ServiceError::invalid("top_logprobs", "top_logprobs needs logprobs: true")),
        (true, _, None) => Ok(None),
        (false, _, Some(_)) => Err(ServiceError::invalid("top_logprobs", "completions take logprobs: N (the alternatives per token), not top_logprobs")),
        (false, Some(LogprobsSpec::Count(n)), None) => count("logprobs", n).map(Some),
        (false, Some(LogprobsSpec::Flag(_)), None) => Err(ServiceError::invalid("logprobs", format!("on completions logprobs is a number of alternatives, 0 to {max}"))),
        (false, None, None) => Ok(None),
    }
}

/// The client's sampling fields, each within OpenAI's range (a 400 naming the first that is not).
fn checked(sampling: &SamplingParams) -> Result<SamplingParams, ServiceError> {
    sampling.check().map_err(|e| ServiceError::invalid(e.param, e.message))?;
    Ok(sampling.clone())
}

/// `[[models]]`' sampling defaults for the fields the request left out (the config already checked
/// their ranges); a remote upstream is then sent them as the request's own.
fn with_model_defaults(mut s: SamplingParams, model: Option<&crate::config::ModelSettings>) -> SamplingParams {
    let Some(m) = model else { return s };
    s.temperature = s.temperature.or(m.temperature);
    s.top_p = s.top_p.or(m.top_p);
    s.top_k = s.top_k.or(m.top_k);
    s.min_p = s.min_p.or(m.min_p);
    s.repetition_penalty = s.repetition_penalty.or(m.repeat_penalty);
    s
}

/// The non-empty stop strings, within `limits.max_stop_strings` and `limits.max_stop_bytes`.
fn stop_strings(stop: Option<&StopSpec>, limits: &LimitSettings) -> Result<Vec<String>, ServiceError> {
    let stops = match stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(v)) => v.clone(),
    };
    let max = limits.max_stop_strings;
    if stops.len() > max {
        return Err(ServiceError::invalid("stop", format!("at most {max} stop strings (limits.max_stop_strings), got {}", stops.len())));
    }
    let bytes: usize = stops.iter().map(String::len).sum();
    if bytes > limits.max_stop_bytes {
        return Err(ServiceError::invalid(
            "stop",
            format!("the stop strings have {bytes} bytes together, more than limits.max_stop_bytes = {}", limits.max_stop_bytes),
        ));
    }
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

fn check_unsupported(p: &GenerationParams) -> Result<(), ServiceError> {
    if let Some(n) = p.n {
        if n != 1 {
            return Err(ServiceError::invalid("n", format!("only n = 1 is supported, got {n}")));
        }
    }
    Ok(())
}

/// The client's limit on new tokens and the field it came in, checked against the server's
/// limit; the backend checks it against the context.
fn requested_max_tokens(p: &GenerationParams, cap: u32) -> Result<Option<(&'static str, u32)>, ServiceError> {
    let (param, asked) = match (p.max_completion_tokens, p.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", m),
        (None, Some(m)) => ("max_tokens", m),
        (None, None) => return Ok(None),
    };
    if asked < 1 {
        return Err(ServiceError::invalid(param, format!("{param} must be at least 1, got {asked}")));
    }
    if asked > i64::from(cap) {
        return Err(ServiceError::invalid(param, format!("{param} is {asked}, more than this server's limit of {cap}")));
    }
    Ok(Some((param, asked as u32)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_bounded_in_number_and_in_bytes() {
        let mut limits = LimitSettings::embedded_default();
        limits.max_stop_strings = 3;
        limits.max_stop_bytes = 10;
        let many = StopSpec::Many(vec!["a".into(), "".into(), "b".into()]);
        assert_eq!(stop_strings(Some(&many), &limits).ok(), Some(vec!["a".to_owned(), "b".to_owned()]), "empty ones are dropped");
        let four = StopSpec::Many(vec!["a".into(); 4]);
        let err = stop_strings(Some(&four), &limits).unwrap_err().to_string();
        assert!(err.contains("at most 3 stop strings (limits.max_stop_strings), got 4"), "{err}");
        let long = StopSpec::One("x".repeat(11));
        let err = stop_strings(Some(&long), &limits).unwrap_err().to_string();
        assert!(err.contains("11 bytes") && err.contains("limits.max_stop_bytes = 10"), "{err}");
        assert_eq!(stop_strings(None, &limits).ok(), Some(Vec::new()));
    }

    #[test]
    fn the_schema_budget_is_the_configured_one() {
        let limits = LimitSettings::embedded_default();
        let b = schema_budget(&limits);
        assert_eq!((b.max_nodes, b.max_grammar_bytes, b.max_time.as_millis()), (5_000, 65_536, 1_000));
    }
}
