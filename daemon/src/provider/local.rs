//! A local model: tokenizing (on the caller's thread, as the engine allows), the chat template,
//! the checks that need the vocabulary or the context length, and submission to the engine.
//!
//! Special tokens: only text the caller wrote as a whole prompt is parsed for them. A chat
//! conversation is tokenized by [`engine::Engine::tokenize_chat`]: the template's own markers are
//! special tokens, every message's content (the user's words, retrieved document chunks placed in
//! the prompt by RAG, tool output) is plain text, so `<|im_start|>system` inside it cannot open a
//! role. Embedding inputs are plain text too (BOS/CLS/SEP are still added). A `/v1/completions`
//! prompt is the caller's own raw prompt, template and all, and is parsed as llama.cpp's server
//! parses it, so a client can write a chat prompt by hand.

use engine::{Engine, GenerateRequest};

use super::{EmbedInput, Embedded, Events, GenerateSpec, Prompt, Submitted};
use crate::fault::ServiceError;

/// Tokenize, size `max_tokens` against the context, and submit.
pub fn generate(engine: &Engine, spec: GenerateSpec) -> Result<Submitted, ServiceError> {
    let n_vocab = engine.info().n_vocab;
    spec.sampling.check_vocabulary(n_vocab).map_err(|e| ServiceError::invalid(e.param, e.message))?;
    let tokens = match spec.prompt {
        Prompt::Chat(messages) if spec.tools.is_empty() => engine.tokenize_chat(&messages)?,
        Prompt::Chat(messages) => match engine.tool_support() {
            // The template lays out the tools and the calls itself.
            Some((true, _)) => engine.tokenize_chat_with_tools(&messages, Some(&spec.tools.template_tools()))?,
            _ => engine.tokenize_chat(&super::tools::plain_messages(&messages, &spec.tools))?,
        },
        Prompt::Text(text) => engine.tokenize(&text, true),
        Prompt::Tokens(tokens) => {
            if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t as u32 >= n_vocab) {
                return Err(ServiceError::invalid("prompt", format!("token id {bad} is outside the vocabulary 0..{n_vocab}")));
            }
            tokens
        }
    };
    let max_tokens = max_tokens(engine, spec.max_tokens, spec.cap, tokens.len())?;
    let prompt_tokens = tokens.len() as u32;
    let request = GenerateRequest { prompt: tokens, max_tokens, stop: spec.stop, ignore_eos: spec.ignore_eos, sampling: spec.sampling };
    let events = engine.generate(request)?;
    Ok(Submitted { events: Events(super::EventSource::Local(events), None), prompt_tokens })
}

/// Tokenize (or check token ids) and embed.
pub async fn embed(engine: &Engine, input: EmbedInput, dimensions: Option<i64>) -> Result<Embedded, ServiceError> {
    let n_embd = engine.info().n_embd;
    if let Some(d) = dimensions {
        if d != i64::from(n_embd) {
            return Err(ServiceError::invalid("dimensions", format!("this model returns {n_embd} dimensions and cannot return {d}")));
        }
    }
    let n_vocab = i64::from(engine.info().n_vocab);
    let inputs: Vec<Vec<i32>> = match input {
        EmbedInput::Texts(texts) => texts.iter().map(|t| engine.tokenize_text(t, true)).collect(),
        EmbedInput::Tokens(lists) => lists
            .into_iter()
            .map(|tokens| {
                tokens
                    .into_iter()
                    .map(|t| {
                        if (0..n_vocab).contains(&t) {
                            Ok(t as i32)
                        } else {
                            Err(ServiceError::invalid("input", format!("token id {t} is outside the vocabulary 0..{n_vocab}")))
                        }
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(i) = inputs.iter().position(Vec::is_empty) {
        return Err(ServiceError::invalid("input", format!("input[{i}] has no tokens")));
    }
    let prompt_tokens = inputs.iter().map(Vec::len).sum();
    let vectors = engine.embed(inputs).await?;
    Ok(Embedded { vectors, prompt_tokens })
}

/// The number of tokens to generate: the client's (already within the server's limit), checked
/// against the room the context leaves, or as many as the room and the server's limit allow.
fn max_tokens(engine: &Engine, asked: Option<(&'static str, u32)>, cap: u32, prompt_len: usize) -> Result<u32, ServiceError> {
    let context = engine.info().max_model_len as usize;
    if prompt_len >= context {
        return Err(ServiceError::Invalid {
            message: format!("the prompt has {prompt_len} tokens, but this model's maximum context length is {context} tokens"),
            field: Some("messages".into()),
            code: "context_length_exceeded",
        });
    }
    let room = context - prompt_len;
    let Some((param, asked)) = asked else { return Ok(room.min(cap as usize) as u32) };
    if asked as usize > room {
        return Err(ServiceError::Invalid {
            message: format!(
                "this model's maximum context length is {context} tokens; the prompt has {prompt_len} tokens and {param} asks for {asked} more"
            ),
            field: Some(param.into()),
            code: "context_length_exceeded",
        });
    }
    Ok(asked)
}
