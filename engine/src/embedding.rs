//! The embedding engine thread: batches of whole inputs through a pooled, non-causal model.
//!
//! Each input is one llama.cpp sequence; as many inputs as fit in one batch (tokens and sequence
//! ids) are computed together, and the pooled vector of each is L2-normalised, as
//! sentence-transformers and OpenAI return them. Jobs queued together are batched together.

use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::backend::backend;
use crate::handle::{report_ready, Command};
use crate::telemetry::Telemetry;
use crate::{EngineError, ModelConfig};

/// Most inputs computed in one batch.
const MAX_SEQS_PER_BATCH: u32 = 32;
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// A request for embeddings of tokenized inputs.
pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<i32>>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
    pub span: tracing::Span,
    pub _permit: OwnedSemaphorePermit,
}

pub(crate) struct EmbeddingWorker<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    name: String,
}

impl<'m> EmbeddingWorker<'m> {
    pub(crate) fn run(
        model: &'m Arc<LlamaModel>,
        config: ModelConfig,
        inbox: Receiver<Command>,
        ready: SyncSender<Result<(), EngineError>>,
        telemetry: Arc<Telemetry>,
    ) {
        let Some(mut worker) = report_ready(Self::new(model, &config), &ready) else { return };
        loop {
            telemetry.beat();
            match inbox.recv_timeout(IDLE_WAIT) {
                Ok(Command::Embed(job)) => worker.serve(job),
                Ok(Command::Generate(s)) => {
                    let _ = s.events.try_send(crate::Event::Failed(format!("model {} only embeds", config.name)));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        tracing::info!(model = %config.name, "Engine thread stopped.");
    }

    fn new(model: &'m LlamaModel, config: &ModelConfig) -> Result<Self, EngineError> {
        // A non-causal model must see a whole input in one micro-batch: n_ubatch = n_batch.
        let n_batch = config.max_num_batched_tokens.max(config.max_model_len);
        let threads = config.effective_threads();
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_batch))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(MAX_SEQS_PER_BATCH)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model
            .new_context(backend()?, params)
            .map_err(|e| EngineError::Context { model: config.name.clone(), reason: e.to_string() })?;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch as usize, MAX_SEQS_PER_BATCH as i32),
            n_batch: n_batch as usize,
            name: config.name.clone(),
        })
    }

    fn serve(&mut self, job: EmbedJob) {
        if job.reply.is_closed() {
            return; // the caller went away while queued
        }
        let _entered = job.span.enter();
        let result = self.embed_all(&job.inputs);
        let _ = job.reply.send(result);
    }

    /// Embed inputs in as few batches as fit.
    fn embed_all(&mut self, inputs: &[Vec<i32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut out = Vec::with_capacity(inputs.len());
        let mut start = 0;
        while start < inputs.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < inputs.len()
                && end - start < MAX_SEQS_PER_BATCH as usize
                && tokens + inputs[end].len() <= self.n_batch
            {
                tokens += inputs[end].len();
                end += 1;
            }
            if end == start {
                return Err(EngineError::InputTooLong { tokens: inputs[start].len(), limit: self.n_batch });
            }
            out.extend(self.embed_batch(&inputs[start..end])?);
            start = end;
        }
        Ok(out)
    }

    fn embed_batch(&mut self, inputs: &[Vec<i32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let fail = |e: String| EngineError::Inference(format!("{}: {e}", self.name));
        self.batch.clear();
        for (seq, tokens) in inputs.iter().enumerate() {
            for (pos, &t) in tokens.iter().enumerate() {
                self.batch.add(LlamaToken(t), pos as i32, &[seq as i32], true).map_err(|e| fail(e.to_string()))?;
            }
        }
        self.ctx.clear_kv_cache();
        self.ctx.decode(&mut self.batch).map_err(|e| fail(e.to_string()))?;
        (0..inputs.len())
            .map(|seq| {
                let v = self.ctx.embeddings_seq_ith(seq as i32).map_err(|e| fail(e.to_string()))?;
                Ok(l2_normalised(v))
            })
            .collect()
    }
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::l2_normalised;

    #[test]
    fn normalised_has_unit_length() {
        let v = l2_normalised(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn zero_vector_stays_zero() {
        assert_eq!(l2_normalised(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
