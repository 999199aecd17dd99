//! hearth's inference engine.
//!
//! Design: every llama.cpp context is owned by exactly one engine thread, and nothing else touches it.
//! Callers hold an [`Engine`], a cheap cloneable handle: requests go in through a bounded command
//! channel, tokens come back through a bounded per-request channel, and a request that is dropped by
//! its caller (a client that went away) is noticed by the engine thread at its next step and freed.
//! Tokenizing and chat templating need only the model, which is shared read-only with the handle, so
//! they run on the caller's thread and never cost engine time.
//!
//! The crate knows nothing about HTTP routes, async runtimes beyond channel types, or the config file
//! format: it takes plain config structs ([`ModelConfig`]). The one request type the API reads as is,
//! [`SamplingParams`], carries its serde names and OpenAPI schema with it, so a sampling field is
//! added in one place.

pub mod accuracy;
mod amx;
mod backend;
mod chat_template;
mod config;
mod detokenize;
mod embedding;
mod error;
pub mod fit;
mod gpu;
mod handle;
mod kv;
mod request;
mod sampling;
mod scheduler;
mod stop;
mod telemetry;
pub mod quantize;

pub use backend::{backend_report, default_backend_dirs, devices, init_backend, BackendFailure, BackendOptions, BackendReport, ComputeDevice, DeviceKind};
pub use chat_template::{ChatMessage, ToolFormat, ToolPrompt};
pub use config::{BatchMixing, FlashAttention, KvCacheDtype, KvLayout, ModelConfig, ModelKind, PrefixTierConfig};
pub use error::EngineError;
pub use gpu::{cuda_memory, COMPUTE_RESERVE_BYTES};
pub use handle::{Engine, ModelInfo};
pub use telemetry::{EngineStats, PrefixTierStats};
pub use request::{Candidate, Event, FinishReason, GenerateRequest, TokenLogprob, TokenStream, Usage};
pub use sampling::{SamplingError, SamplingParams, MAX_TOP_LOGPROBS};
