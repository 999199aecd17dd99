//! The [`Engine`] handle: start-up, admission and the caller-side work (tokenizing, templating).
//!
//! `Engine::start` loads the model, spawns the engine thread and waits on a ready channel, so a bad
//! model path or a corrupt file is a clean start-up error rather than a thread that died alone.
//! Admission is a semaphore of `max_num_seqs + max_queue` permits: a request holds one from
//! submission until it leaves the engine, and a failed `try_acquire` is [`EngineError::Overloaded`].

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::backend::{backend, backend_report};
use crate::chat_template::{ChatTemplate, Segment, ToolFormat, ToolPrompt};
use crate::embedding::{EmbedJob, EmbeddingWorker};
use crate::request::Submitted;
use crate::gpu::{cuda_memory, kv_bytes_per_token, kv_tokens_for_memory};
use crate::scheduler::{ChatWorker, MAX_LLAMA_SEQS};
use crate::telemetry::{EngineStats, Telemetry};
use crate::{BatchMixing, ChatMessage, EngineError, FlashAttention, GenerateRequest, KvCacheDtype, KvLayout, ModelConfig, ModelKind, TokenStream};

/// Events buffered per request before the engine holds that sequence back (client backpressure).
const EVENTS_PER_REQUEST: usize = 256;
/// How long dropping the last handle waits for the engine thread to free its context.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Facts about a loaded model, for `/v1/models` and start-up logs.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The served name.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Longest prompt + output hearth accepts for this model.
    pub max_model_len: u32,
    /// Width of the embedding (hidden size, or pooled output for embedding models).
    pub n_embd: u32,
    /// Vocabulary size (valid token ids are 0..n_vocab).
    pub n_vocab: u32,
    /// Parameter count.
    pub n_params: u64,
    /// The GGUF's `general.architecture` (`llama`, `bert`), empty when it has none.
    pub architecture: String,
    /// Size of the weights in bytes.
    pub size_bytes: u64,
    /// KV cache capacity in tokens (chat models), as configured or sized from GPU memory.
    pub kv_cache_tokens: u32,
    /// Layers asked to be offloaded (`n_gpu_layers`); they are offloaded only where `on_gpu`.
    pub n_gpu_layers: u32,
    /// True when a GPU was found and the model's layers were offloaded to it.
    pub on_gpu: bool,
    /// Unix time the model was loaded.
    pub loaded_at: u64,
}

/// A command for an engine thread.
pub(crate) enum Command {
    /// Boxed: a request (its sampling parameters included) is several times an embedding job.
    Generate(Box<Submitted>),
    Embed(EmbedJob),
}

struct Inner {
    info: ModelInfo,
    model: Arc<LlamaModel>,
    template: Option<ChatTemplate>,
    commands: SyncSender<Command>,
    admission: Arc<Semaphore>,
    max_queue: usize,
    telemetry: Arc<Telemetry>,
    /// Disconnects when the engine thread has finished (its context freed). In a mutex only so
    /// that the handle is `Sync`; it is used in `stop` and `drop`.
    stopped: Mutex<Receiver<()>>,
    /// Asks a chat engine thread to end once it has nothing to do ([`Engine::stop`]).
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    /// The last handle is gone: close the command channel and wait (bounded) for the engine thread
    /// to free its llama.cpp context. Without the wait, a process that returns from `main` can
    /// tear down the CUDA runtime while the thread still frees device memory, and ggml aborts.
    fn drop(&mut self) {
        let (closed, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.commands, closed));
        let stopped = self.stopped.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stopped.recv_timeout(STOP_WAIT).is_ok() {
            tracing::warn!(model = %self.info.name, "Engine thread sent on its stop channel; ignoring.");
        }
    }
}

/// A cheap, cloneable handle to one model's engine thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("model", &self.inner.info.name).finish_non_exhaustive()
    }
}

/// Whether `n_gpu_layers` puts layers on a GPU: one was found and some layers are asked for.
fn offloads(n_gpu_layers: u32) -> bool {
    n_gpu_layers > 0 && backend_report().is_some_and(crate::BackendReport::has_gpu)
}

/// Whether every layer of `model` runs on a GPU (then a llama.cpp batch computes on the device
/// after `llama_decode` returns). llama.cpp's `n_gpu_layers` counts the output layer too:
/// `n_layer + 1` places the whole model.
pub(crate) fn whole_model_on_gpu(n_gpu_layers: u32, model: &LlamaModel) -> bool {
    offloads(n_gpu_layers) && n_gpu_layers > model.n_layer()
}

impl Engine {
    /// Load the model and start its engine thread. Blocks until the thread reports ready or failed.
    pub fn start(config: ModelConfig) -> Result<Engine, EngineError> {
        check_readable(&config.path)?;
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(config.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend, &config.path, &params)
            .map_err(|_| EngineError::ModelLoad { path: config.path.clone() })?;
        let model = Arc::new(model);

        let n_ctx_train = model.n_ctx_train();
        let max_model_len = match config.max_model_len {
            0 => n_ctx_train,
            n => n.min(n_ctx_train),
        };
        let on_gpu = offloads(config.n_gpu_layers);
        let kv_cache_tokens = resolve_kv_tokens(&config, &model, max_model_len, on_gpu)?;
        let info = ModelInfo {
            name: config.name.clone(),
            kind: config.kind,
            n_ctx_train,
            max_model_len,
            n_embd: u32::try_from(model.n_embd()).unwrap_or(0),
            n_vocab: u32::try_from(model.n_vocab()).unwrap_or(0),
            n_params: model.n_params(),
            architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
            size_bytes: model.size(),
            kv_cache_tokens,
            n_gpu_layers: config.n_gpu_layers,
            on_gpu,
            loaded_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let template = match config.kind {
            ModelKind::Chat => Some(load_template(&model)?),
            ModelKind::Embedding => None,
        };

        // The admission semaphore is the real bound; the channel holds as many as it admits, so a
        // busy engine thread never turns an admitted request into a 429.
        let permits = config.max_queue + config.max_num_seqs as usize;
        let (commands, inbox) = sync_channel(permits);
        let (ready_tx, ready_rx) = sync_channel(1);
        let (stopped_tx, stopped) = sync_channel::<()>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let telemetry = Arc::new(Telemetry::default());
        let thread_model = Arc::clone(&model);
        let thread_telemetry = Arc::clone(&telemetry);
        let flash_attention = resolve_flash_attention(config.flash_attention, config.kv_cache_dtype);
        let batch_mixing = resolve_batch_mixing(config.batch_mixing, on_gpu);
        let whole_on_gpu = whole_model_on_gpu(config.n_gpu_layers, &model);
        let kv_layout = resolve_kv_layout(config.kv_layout, whole_on_gpu);
        let thread_config = ModelConfig { max_model_len, kv_cache_tokens, flash_attention, batch_mixing, kv_layout, ..config.clone() };
        let thread_name = config.name.clone();
        std::thread::Builder::new()
            .name(format!("engine-{}", config.name))
            .spawn(move || {
                // A panic ends the thread (a context mid-batch is not trusted again), but it is
                // recorded: the handle reports it, `/ready` turns 503, and the daemon decides.
                let telemetry = Arc::clone(&thread_telemetry);
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| match config.kind {
                    ModelKind::Chat => ChatWorker::run(&thread_model, thread_config, inbox, ready_tx, thread_telemetry, &thread_stop),
                    ModelKind::Embedding => {
                        EmbeddingWorker::run(&thread_model, thread_config, inbox, ready_tx, thread_telemetry)
                    }
                }));
                match ran {
                    Ok(()) => telemetry.thread_stopped("it returned".into()),
                    Err(payload) => {
                        let message = panic_message(payload.as_ref());
                        tracing::error!(model = %thread_name, panic = %message, "Engine thread panicked; the model no longer serves.");
                        telemetry.thread_stopped(format!("it panicked: {message}"));
                    }
                }
                drop(thread_model);
                drop(stopped_tx); // the context and this thread's share of the model are gone
            })
            .map_err(|e| EngineError::Context { model: config.name.clone(), reason: e.to_string() })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(EngineError::Stopped(config.name.clone())),
        }
        tracing::info!(model = %info.name, n_ctx_train, max_model_len, params = info.n_params, on_gpu, kv_cache_tokens, "Model loaded.");
        Ok(Engine {
            inner: Arc::new(Inner {
                info,
                model,
                template,
                commands,
                admission: Arc::new(Semaphore::new(permits)),
                max_queue: config.max_queue,
                telemetry,
                stopped: Mutex::new(stopped),
                stop,
            }),
        })
    }

    /// Ask the engine thread to end once it has nothing running or waiting, and wait (bounded)
    /// until it has freed its context: a chat model's prefix cache then finishes its file writes.
    /// For a clean stop after the HTTP drain; other handles to this engine stop working. Returns
    /// whether the thread ended in time.
    pub fn stop(&self) -> bool {
        self.inner.stop.store(true, Ordering::Relaxed);
        let stopped = self.inner.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(stopped.recv_timeout(STOP_WAIT), Err(RecvTimeoutError::Disconnected))
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Time since the engine thread last proved progress: once a loop when idle (every 500 ms),
    /// once a step or an embedding batch when busy. Grows without bound if the thread hangs.
    pub fn heartbeat_age(&self) -> Duration {
        self.inner.telemetry.heartbeat_age()
    }

    /// Why the engine thread is gone (`"it panicked: ..."`), or `None` while it runs. While any
    /// handle lives the thread only stops by panicking; requests then fail with
    /// [`EngineError::Stopped`].
    pub fn thread_stopped(&self) -> Option<&str> {
        self.inner.telemetry.stop_reason()
    }

    /// Live counters: running and waiting requests, KV usage, prefix cache, preemptions.
    pub fn stats(&self) -> EngineStats {
        self.inner.telemetry.snapshot()
    }

    /// Token ids of a prompt the caller wrote whole (`/v1/completions`, `/tokenize`): special-token
    /// text such as `<|im_start|>` becomes the special token, as in llama.cpp's server. Never for
    /// text from anyone else (message contents, documents, tool output): see [`Engine::tokenize_text`].
    /// `add_special` adds the model's BOS (or CLS/SEP) tokens.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<i32> {
        self.tokens(text, add_special, true)
    }

    /// Token ids of untrusted text: special-token text stays text (`<|im_start|>` is several
    /// ordinary tokens). `add_special` still adds the model's BOS (or CLS/SEP) tokens.
    pub fn tokenize_text(&self, text: &str, add_special: bool) -> Vec<i32> {
        self.tokens(text, add_special, false)
    }

    /// Token ids of a conversation: the chat template's own text with its special tokens, each
    /// message's content as plain text (see `chat_template`), and the model's BOS first.
    pub fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Vec<i32>, EngineError> {
        self.tokenize_chat_with_tools(messages, None)
    }

    /// [`Engine::tokenize_chat`] with tools, for a template that renders them
    /// ([`Engine::tool_support`]).
    pub fn tokenize_chat_with_tools(&self, messages: &[ChatMessage], tools: Option<&ToolPrompt>) -> Result<Vec<i32>, EngineError> {
        let template = self.inner.template.as_ref().ok_or_else(|| self.wrong_kind("chat"))?;
        let mut ids = Vec::new();
        for (i, segment) in template.segments(messages, tools)?.into_iter().enumerate() {
            let first = i == 0;
            match segment {
                Segment::Template(text) => ids.extend(self.tokens(&text, first, true)),
                Segment::Content(text) => ids.extend(self.tokens(text, first, false)),
            }
        }
        Ok(ids)
    }

    fn tokens(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<i32> {
        self.inner.model.vocab().tokenize(text.as_bytes(), add_special, parse_special).into_iter().map(|t| t.0).collect()
    }

    /// The text of token ids, as llama.cpp's server's `/detokenize` renders it: special tokens as
    /// their text, invalid UTF-8 as U+FFFD. Fails with the position of the first id outside the
    /// vocabulary (llama.cpp would read out of bounds).
    pub fn detokenize(&self, tokens: &[i32]) -> Result<String, usize> {
        let n_vocab = i64::from(self.inner.info.n_vocab);
        if let Some(index) = tokens.iter().position(|&t| !(0..n_vocab).contains(&i64::from(t))) {
            return Err(index);
        }
        if tokens.is_empty() {
            return Ok(String::new());
        }
        let ids: Vec<llama_cpp_2::token::LlamaToken> = tokens.iter().map(|&t| llama_cpp_2::token::LlamaToken(t)).collect();
        let bytes = self.inner.model.vocab().detokenize(&ids, false, true);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the chat template renders tools itself, and how the model writes calls; `None`
    /// for an embedding model.
    pub fn tool_support(&self) -> Option<(bool, ToolFormat)> {
        self.inner.template.as_ref().map(|t| (t.native_tools(), t.tool_format()))
    }

    /// Render a conversation with the model's chat template, as one string (for display and
    /// tests; prompts are tokenized with [`Engine::tokenize_chat`]).
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        match &self.inner.template {
            Some(t) => t.render(messages),
            None => Err(self.wrong_kind("chat")),
        }
    }

    /// Submit a generation request. Fails at once when the input is invalid or the queue is full.
    pub fn generate(&self, request: GenerateRequest) -> Result<TokenStream, EngineError> {
        if self.inner.info.kind != ModelKind::Chat {
            return Err(self.wrong_kind("text generation"));
        }
        if request.prompt.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let limit = self.inner.info.max_model_len as usize;
        if request.prompt.len() >= limit {
            return Err(EngineError::InputTooLong { tokens: request.prompt.len(), limit });
        }
        let permit = self.admit()?;
        let (events, rx) = mpsc::channel(EVENTS_PER_REQUEST);
        let submitted = Submitted {
            request,
            events,
            span: tracing::Span::current(),
            submitted_at: std::time::Instant::now(),
            _permit: permit,
        };
        self.send(Command::Generate(Box::new(submitted)))?;
        Ok(TokenStream { events: rx })
    }

    /// Embed already-tokenized inputs; returns one L2-normalised vector per input.
    pub async fn embed(&self, inputs: Vec<Vec<i32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        if self.inner.info.kind != ModelKind::Embedding {
            return Err(self.wrong_kind("embeddings"));
        }
        let limit = self.inner.info.max_model_len as usize;
        if let Some(long) = inputs.iter().find(|t| t.len() > limit) {
            return Err(EngineError::InputTooLong { tokens: long.len(), limit });
        }
        if inputs.iter().any(Vec::is_empty) {
            return Err(EngineError::EmptyInput);
        }
        let permit = self.admit()?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Embed(EmbedJob { inputs, reply, span: tracing::Span::current(), _permit: permit }))?;
        rx.await.map_err(|_| EngineError::Stopped(self.inner.info.name.clone()))?
    }

    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EngineError> {
        Arc::clone(&self.inner.admission).try_acquire_owned().map_err(|_| EngineError::Overloaded {
            model: self.inner.info.name.clone(),
            waiting: self.inner.max_queue,
        })
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.inner.commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => {
                EngineError::Overloaded { model: self.inner.info.name.clone(), waiting: self.inner.max_queue }
            }
            TrySendError::Disconnected(_) => EngineError::Stopped(self.inner.info.name.clone()),
        })
    }

    fn wrong_kind(&self, operation: &'static str) -> EngineError {
        EngineError::WrongKind { model: self.inner.info.name.clone(), operation }
    }
}

/// Report a worker's creation on the ready channel; the worker when it was created.
pub(crate) fn report_ready<W>(created: Result<W, EngineError>, ready: &SyncSender<Result<(), EngineError>>) -> Option<W> {
    match created {
        Ok(worker) => {
            let _ = ready.send(Ok(()));
            Some(worker)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// What `flash_attention = auto` means: llama.cpp's own per-device choice, which turns it on for
/// the CPU too. On the CPU it made decoding over long shared contexts several times faster (RAG
/// load, BENCHMARKS.md). It once made a prompt computed in one batch and the same prompt computed
/// after a cached prefix disagree (the `zen4` backend picks kernels by batch size); the scheduler
/// now cuts cold prefill where a cached copy would resume (`prefill_chunk`), so both compute the
/// same tail in the same shape.
fn resolve_flash_attention(policy: FlashAttention, kv: KvCacheDtype) -> FlashAttention {
    match policy {
        FlashAttention::Auto if kv != KvCacheDtype::F16 => FlashAttention::On, // a quantized V cache needs it
        explicit => explicit,
    }
}

/// What `kv_layout = auto` means: a stream per sequence when the whole model is on a GPU, one
/// unified cache otherwise (see `kv/layout.rs`; measured in BENCHMARKS.md). A model split between
/// GPU and CPU stays unified: the per-sequence layout was measured only with every layer on the
/// GPU, and a split run of it once failed in CUDA at 128 streams.
fn resolve_kv_layout(layout: KvLayout, whole_model_on_gpu: bool) -> KvLayout {
    match layout {
        KvLayout::Auto if whole_model_on_gpu => KvLayout::PerSequence,
        KvLayout::Auto => KvLayout::Unified,
        other => other,
    }
}

/// What `batch_mixing = auto` means: one batch a step on a GPU, decode and prefill apart on the CPU
/// (see [`BatchMixing`]; measured in BENCHMARKS.md).
fn resolve_batch_mixing(policy: BatchMixing, on_gpu: bool) -> BatchMixing {
    match policy {
        BatchMixing::Auto if on_gpu => BatchMixing::Mixed,
        BatchMixing::Auto => BatchMixing::Split,
        explicit => explicit,
    }
}

/// The KV capacity to create: the configured one, or (`0` on a GPU) what `gpu_memory_utilization`
/// leaves after the weights, capped where more could never be used (every running sequence at
/// `max_model_len` plus the bounded prefix cache) and rounded down to whole blocks. `0` stays `0` for the CPU and for embedding
/// models: the worker then uses `max_model_len`.
fn resolve_kv_tokens(config: &ModelConfig, model: &LlamaModel, max_model_len: u32, on_gpu: bool) -> Result<u32, EngineError> {
    if config.kv_cache_tokens != 0 || !on_gpu || config.kind != ModelKind::Chat {
        return Ok(config.kv_cache_tokens);
    }
    let memory = cuda_memory().or_else(|| {
        let gpus: Vec<_> = crate::backend::devices().into_iter().filter(|d| d.kind.is_gpu()).collect();
        (!gpus.is_empty()).then(|| gpus.iter().fold((0, 0), |(f, t), d| (f + d.memory_free, t + d.memory_total)))
    });
    let Some((free, total)) = memory else { return Ok(0) };
    let per_token = kv_bytes_per_token(model, config.kv_cache_dtype);
    let block = u64::from(config.block_size.max(1));
    let every_id = u64::from(MAX_LLAMA_SEQS) * u64::from(max_model_len);
    let cap = match (config.enable_prefix_caching, config.prefix_cache_max_tokens) {
        // Running sequences at full length plus the bounded prefix cache: more is never used.
        (true, n) if n > 0 => every_id.min(u64::from(config.max_num_seqs) * u64::from(max_model_len) + u64::from(n)),
        (true, _) => every_id,
        (false, _) => u64::from(config.max_num_seqs) * u64::from(max_model_len),
    };
    let tokens = kv_tokens_for_memory(free, total, config.gpu_memory_utilization, per_token).min(cap) / block * block;
    if tokens < u64::from(max_model_len) {
        return Err(EngineError::Context {
            model: config.name.clone(),
            reason: format!(
                "GPU memory left after the weights ({:.1} GiB free of {:.1} GiB, gpu_memory_utilization {}) holds {tokens} KV tokens, \
                 fewer than max_model_len {max_model_len}: lower max_model_len, raise gpu_memory_utilization or set kv_cache_tokens",
                free as f64 / f64::from(1u32 << 30),
                total as f64 / f64::from(1u32 << 30),
                config.gpu_memory_utilization
            ),
        });
    }
    tracing::info!(
        model = %config.name,
        kv_tokens = tokens,
        kv_gib = format!("{:.2}", (tokens * per_token) as f64 / f64::from(1u32 << 30)),
        free_gib = format!("{:.2}", free as f64 / f64::from(1u32 << 30)),
        utilization = config.gpu_memory_utilization,
        "KV cache sized from GPU memory."
    );
    Ok(u32::try_from(tokens).unwrap_or(u32::MAX / 2))
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into())
}

fn check_readable(path: &Path) -> Result<(), EngineError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| EngineError::ModelFile { path: path.to_path_buf(), reason: e.to_string() })
}

fn load_template(model: &LlamaModel) -> Result<ChatTemplate, EngineError> {
    let source = model.meta_val_str("tokenizer.chat_template").ok();
    let vocab = model.vocab();
    let piece = |t: llama_cpp_2::token::LlamaToken| {
        if t.0 < 0 {
            String::new() // the model has no such token
        } else {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        }
    };
    ChatTemplate::new(source, piece(vocab.bos()), piece(vocab.eos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_message_is_read_from_either_payload_type() {
        let literal = std::panic::catch_unwind(|| panic!("literal")).err().unwrap_or_else(|| Box::new(0));
        assert_eq!(panic_message(literal.as_ref()), "literal");
        let n = 7;
        let formatted = std::panic::catch_unwind(|| panic!("formatted {n}")).err().unwrap_or_else(|| Box::new(0));
        assert_eq!(panic_message(formatted.as_ref()), "formatted 7");
        assert_eq!(panic_message(&42_u8), "a non-text panic payload");
    }

    #[test]
    fn auto_kv_layout_is_per_sequence_on_a_gpu_and_unified_on_the_cpu() {
        assert_eq!(resolve_kv_layout(KvLayout::Auto, true), KvLayout::PerSequence);
        assert_eq!(resolve_kv_layout(KvLayout::Auto, false), KvLayout::Unified);
        assert_eq!(resolve_kv_layout(KvLayout::PerSequence, false), KvLayout::PerSequence);
        assert_eq!(resolve_kv_layout(KvLayout::Unified, true), KvLayout::Unified);
    }

    #[test]
    fn auto_batch_mixing_mixes_on_a_gpu_and_splits_on_the_cpu() {
        assert_eq!(resolve_batch_mixing(BatchMixing::Auto, true), BatchMixing::Mixed);
        assert_eq!(resolve_batch_mixing(BatchMixing::Auto, false), BatchMixing::Split);
        assert_eq!(resolve_batch_mixing(BatchMixing::Mixed, false), BatchMixing::Mixed);
        assert_eq!(resolve_batch_mixing(BatchMixing::Split, true), BatchMixing::Split);
    }

    #[test]
    fn auto_flash_attention_is_the_devices_choice_unless_the_kv_is_quantized() {
        use FlashAttention::{Auto, Off, On};
        assert_eq!(resolve_flash_attention(Auto, KvCacheDtype::F16), Auto);
        assert_eq!(resolve_flash_attention(Auto, KvCacheDtype::Q8_0), On);
        assert_eq!(resolve_flash_attention(On, KvCacheDtype::F16), On);
        assert_eq!(resolve_flash_attention(Off, KvCacheDtype::F16), Off);
        assert_eq!(resolve_flash_attention(Off, KvCacheDtype::Q8_0), Off);
    }
}
