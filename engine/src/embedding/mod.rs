//! The embedding engine thread: batches of whole inputs through a pooled, non-causal model.
//!
//! Each input is one llama.cpp sequence; as many inputs as fit in one batch (tokens and sequence
//! ids) are computed together, and the pooled vector of each is L2-normalised, as
//! sentence-transformers and OpenAI return them. A request is worked through a batch at a time,
//! in turn with every other request ([`rota`]): a batch takes inputs from several requests, a
//! small request is never stuck behind a 1,000-input one, a request whose client went away is
//! dropped before its next batch, and the heartbeat beats after every batch, so a long request is
//! visible progress to the systemd watchdog rather than one silent job. The telemetry counts
//! requests in progress as `running` and each batch as a step.

mod rota;

use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use self::rota::{Limits, Rota, Share, Turn};
use crate::backend::backend;
use crate::handle::{report_ready, Command};
use crate::telemetry::{StepPhases, Telemetry};
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

/// A job in progress: the vectors so far, and its inputs' lengths for the rota.
struct Active {
    job: EmbedJob,
    lens: Vec<usize>,
    vectors: Vec<Vec<f32>>,
}

impl Turn for Active {
    fn pending(&self) -> &[usize] {
        &self.lens[self.vectors.len()..]
    }

    fn abandoned(&self) -> bool {
        self.job.reply.is_closed()
    }
}

pub(crate) struct EmbeddingWorker<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    name: String,
    jobs: Rota<Active>,
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
            if worker.jobs.is_empty() {
                match inbox.recv_timeout(IDLE_WAIT) {
                    Ok(command) => worker.accept(command),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(command) = inbox.try_recv() {
                worker.accept(command);
            }
            let gone = worker.jobs.drop_abandoned();
            if gone > 0 {
                tracing::debug!(model = %worker.name, requests = gone, "Clients went away; their remaining inputs are dropped.");
            }
            telemetry.publish(worker.jobs.len(), 0, 0, 0);
            worker.run_batch(&telemetry);
            telemetry.publish(worker.jobs.len(), 0, 0, 0);
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
            jobs: Rota::new(Limits { max_seqs: MAX_SEQS_PER_BATCH as usize, max_tokens: n_batch as usize }),
        })
    }

    fn accept(&mut self, command: Command) {
        let job = match command {
            Command::Embed(job) => job,
            Command::Generate(s) => {
                let _ = s.events.try_send(crate::Event::Failed(format!("model {} only embeds", self.name)));
                return;
            }
        };
        if job.reply.is_closed() {
            return; // the caller went away while queued
        }
        if let Some(long) = job.inputs.iter().find(|t| t.len() > self.n_batch) {
            let _ = job.reply.send(Err(EngineError::InputTooLong { tokens: long.len(), limit: self.n_batch }));
            return;
        }
        if job.inputs.is_empty() {
            let _ = job.reply.send(Ok(Vec::new()));
            return;
        }
        let lens = job.inputs.iter().map(Vec::len).collect();
        let vectors = Vec::with_capacity(job.inputs.len());
        self.jobs.push(Active { job, lens, vectors });
    }

    /// Compute the next batch of the rota and hand finished jobs their vectors; the batch counts
    /// as an engine step in the telemetry.
    fn run_batch(&mut self, telemetry: &Telemetry) {
        let shares = self.jobs.next_batch();
        if shares.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut inputs: Vec<&[i32]> = Vec::new();
        for &Share { index, count } in &shares {
            let Some(active) = self.jobs.job(index) else { continue }; // next_batch names jobs that exist
            // Inside the request's span on this thread (the debug hooks and per-request logs key on it).
            active.job.span.in_scope(|| tracing::trace!(inputs = count, "Embedding batch."));
            let from = active.vectors.len();
            inputs.extend(active.job.inputs[from..from + count].iter().map(Vec::as_slice));
        }
        let tokens: usize = inputs.iter().map(|i| i.len()).sum();
        let computed = embed_batch(&mut self.ctx, &mut self.batch, &inputs);
        telemetry.step_done(tokens as u64, StepPhases { decode: started.elapsed(), ..StepPhases::default() });
        match computed {
            Ok(mut vectors) => {
                for &Share { index, count } in &shares {
                    let rest = vectors.split_off(count.min(vectors.len()));
                    if let Some(active) = self.jobs.job_mut(index) {
                        active.vectors.extend(vectors);
                    }
                    vectors = rest;
                }
                for done in self.jobs.end_turn(&shares) {
                    let _ = done.job.reply.send(Ok(done.vectors));
                }
            }
            Err(e) => {
                let indices: Vec<usize> = shares.iter().map(|s| s.index).collect();
                tracing::error!(model = %self.name, error = %e, requests = indices.len(), "Embedding batch failed.");
                for failed in self.jobs.remove(&indices) {
                    let _ = failed.job.reply.send(Err(EngineError::Inference(format!("{}: {e}", self.name))));
                }
            }
        }
    }
}

/// One llama.cpp batch: each input a sequence, a pooled and normalised vector each.
fn embed_batch(ctx: &mut LlamaContext<'_>, batch: &mut LlamaBatch<'static>, inputs: &[&[i32]]) -> Result<Vec<Vec<f32>>, String> {
    batch.clear();
    for (seq, tokens) in inputs.iter().enumerate() {
        for (pos, &t) in tokens.iter().enumerate() {
            batch.add(LlamaToken(t), pos as i32, &[seq as i32], true).map_err(|e| e.to_string())?;
        }
    }
    ctx.clear_kv_cache();
    ctx.decode(batch).map_err(|e| e.to_string())?;
    (0..inputs.len())
        .map(|seq| ctx.embeddings_seq_ith(seq as i32).map(l2_normalised).map_err(|e| e.to_string()))
        .collect()
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
