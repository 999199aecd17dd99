//! The engine's error type. Variants separate the caller's mistakes (an input that is too long, a
//! queue that is full) from the engine's own faults, so the daemon can map them to 4xx or 5xx.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine or at its boundary.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file is missing or unreadable.
    #[error("model file {path} cannot be read: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    /// llama.cpp refused to load the model (corrupt or unsupported file).
    #[error("model {path} could not be loaded by llama.cpp (corrupt or unsupported GGUF)")]
    ModelLoad { path: PathBuf },
    /// llama.cpp could not create a context with the configured sizes.
    #[error("could not create a llama.cpp context for model {model}: {reason}")]
    Context { model: String, reason: String },
    /// The llama.cpp backend could not be initialised.
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    /// The input has more tokens than the model accepts.
    #[error("input has {tokens} tokens, more than this model's limit of {limit}")]
    InputTooLong { tokens: usize, limit: usize },
    /// An input was empty where at least one token is needed.
    #[error("input is empty")]
    EmptyInput,
    /// The chat template could not be rendered for these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The request does not apply to this kind of model (embedding on a chat model, say).
    #[error("model {model} does not support {operation}")]
    WrongKind { model: String, operation: &'static str },
    /// The waiting queue is full: try again later.
    #[error("model {model} is overloaded: {waiting} requests already queued")]
    Overloaded { model: String, waiting: usize },
    /// The engine thread has stopped (shut down or crashed).
    #[error("engine for model {0} is not running")]
    Stopped(String),
    /// llama.cpp failed while computing a batch.
    #[error("inference failed: {0}")]
    Inference(String),
}
