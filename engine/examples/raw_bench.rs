//! The raw ceiling: the engine driven in-process, no HTTP. N sequences with a fixed prompt length
//! and a fixed output length (`ignore_eos`) run concurrently — `--waves W` runs N×W requests, N at
//! a time, as a load generator's concurrent profile does; the aggregate output tokens per second
//! is what hearth's HTTP server can at best deliver for the same shape. Each run also prints where
//! the engine's steps spent their time (from the engine's own counters): scheduling, llama.cpp's
//! decode (with the wait for the device), sampling, and emitting text to the clients.
//!
//! cargo run --release -p hearth-engine --example raw_bench -- MODEL.gguf [--streams 1,4,8,16]
//!     [--prompt 128] [--output 64] [--threads 0] [--rounds 2] [--waves 1] [--temperature 0]
//!     [--max-batch 512] [--kv-tokens 0] [--gpu-util 0.9] [--backend-dir DIR] [--csv FILE]
//!     [--no-prefix-caching] [--prefix-cache-tokens 8192] [--flash-attention auto|on|off]
//!     [--batch-mixing auto|mixed|split] [--kv-layout auto|unified|per_sequence]
//!
//! `--kv-tokens 0` sizes the KV cache as `hearth serve` does (from GPU memory, or enough for the
//! largest run on the CPU). Prefix caching is on, as in `hearth serve`'s default; the prompts are
//! distinct, so it only keeps finished sequences' cells until their ids are reused.

use std::io::Write;
use std::time::Instant;

use engine::{BackendOptions, BatchMixing, Engine, EngineStats, Event, FlashAttention, GenerateRequest, KvCacheDtype, KvLayout, ModelConfig, ModelKind, SamplingParams};

struct Args {
    model: String,
    streams: Vec<usize>,
    prompt: usize,
    output: u32,
    threads: u32,
    rounds: usize,
    waves: usize,
    temperature: f32,
    max_batch: u32,
    kv_tokens: Option<u32>,
    gpu_util: f32,
    backend_dir: Option<String>,
    csv: Option<String>,
    prefix_caching: bool,
    prefix_cache_tokens: u32,
    flash_attention: FlashAttention,
    batch_mixing: BatchMixing,
    kv_layout: KvLayout,
    max_decode_slowdown: f32,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        model: String::new(),
        streams: vec![1, 4, 8, 16],
        prompt: 128,
        output: 64,
        threads: 0,
        rounds: 2,
        waves: 1,
        temperature: 0.0,
        max_batch: 512,
        kv_tokens: None,
        gpu_util: 0.9,
        backend_dir: None,
        csv: None,
        prefix_caching: true,
        prefix_cache_tokens: 8192,
        flash_attention: FlashAttention::Auto,
        batch_mixing: BatchMixing::Auto,
        kv_layout: KvLayout::Auto,
        max_decode_slowdown: 0.0,
    };
    let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--streams" => a.streams = value()?.split(',').map(|s| s.parse().map_err(|e| format!("{e}"))).collect::<Result<_, _>>()?,
            "--prompt" => a.prompt = num(value()?)? as usize,
            "--output" => a.output = num(value()?)? as u32,
            "--threads" => a.threads = num(value()?)? as u32,
            "--rounds" => a.rounds = num(value()?)? as usize,
            "--waves" => a.waves = (num(value()?)? as usize).max(1),
            "--temperature" => a.temperature = num(value()?)? as f32,
            "--max-batch" => a.max_batch = num(value()?)? as u32,
            "--kv-tokens" => a.kv_tokens = Some(num(value()?)? as u32),
            "--gpu-util" => a.gpu_util = num(value()?)? as f32,
            "--backend-dir" => a.backend_dir = Some(value()?),
            "--csv" => a.csv = Some(value()?),
            "--no-prefix-caching" => a.prefix_caching = false,
            "--prefix-cache-tokens" => a.prefix_cache_tokens = num(value()?)? as u32,
            "--flash-attention" => {
                a.flash_attention = match value()?.as_str() {
                    "on" => FlashAttention::On,
                    "off" => FlashAttention::Off,
                    "auto" => FlashAttention::Auto,
                    other => return Err(format!("--flash-attention {other}: use on, off or auto")),
                }
            }
            "--batch-mixing" => {
                a.batch_mixing = match value()?.as_str() {
                    "mixed" => BatchMixing::Mixed,
                    "split" => BatchMixing::Split,
                    "auto" => BatchMixing::Auto,
                    other => return Err(format!("--batch-mixing {other}: use mixed, split or auto")),
                }
            }
            "--kv-layout" => {
                a.kv_layout = match value()?.as_str() {
                    "unified" => KvLayout::Unified,
                    "per_sequence" => KvLayout::PerSequence,
                    "auto" => KvLayout::Auto,
                    other => return Err(format!("--kv-layout {other}: use unified, per_sequence or auto")),
                }
            }
            "--max-decode-slowdown" => a.max_decode_slowdown = num(value()?)? as f32,
            _ if a.model.is_empty() => a.model = arg,
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if a.model.is_empty() {
        return Err("usage: raw_bench MODEL.gguf [--streams 1,4,8,16] [--prompt N] [--output M] [--threads T] [--rounds R] [--waves W] \
                    [--temperature T] [--max-batch N] [--kv-tokens N] [--gpu-util F] [--backend-dir DIR] [--csv FILE] [--no-prefix-caching] \
                    [--prefix-cache-tokens N] [--flash-attention auto|on|off] [--batch-mixing auto|mixed|split] [--kv-layout auto|unified|per_sequence] [--max-decode-slowdown F]"
            .into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse()?;
    engine::init_backend(&BackendOptions { log_to_tracing: false, backend_dir: args.backend_dir.clone().map(Into::into), cpu_amx: false }).map_err(|e| e.to_string())?;
    let report = engine::backend_report().ok_or("no backend report")?;
    for d in &report.devices {
        eprintln!("device {} ({}): {}, {} MiB", d.name, d.kind.as_str(), d.description, d.memory_total >> 20);
    }
    for f in &report.failures {
        eprintln!("backend not used: {} ({}): {}", f.backend, f.file.display(), f.reason);
    }
    let max_streams = args.streams.iter().copied().max().unwrap_or(1) as u32;
    let needed = (max_streams * (args.prompt as u32 + args.output + 32)).max(4096);
    let kv_cache_tokens = match args.kv_tokens {
        Some(0) if report.has_gpu() => 0,
        Some(0) | None if args.kv_layout == KvLayout::PerSequence => 0, // a stream of max_model_len per sequence
        Some(0) | None => needed,
        Some(n) => n,
    };
    let engine = Engine::start(ModelConfig {
        name: "bench".into(),
        kind: ModelKind::Chat,
        path: args.model.clone().into(),
        max_model_len: 2048,
        max_num_seqs: max_streams,
        max_num_batched_tokens: args.max_batch.max(max_streams),
        max_queue: 1024 + max_streams as usize * args.waves,
        kv_cache_tokens,
        block_size: 16,
        enable_prefix_caching: args.prefix_caching,
        prefix_cache_max_tokens: args.prefix_cache_tokens,
        prefix_tiers: Default::default(),
        kv_cache_dtype: KvCacheDtype::F16,
        threads: args.threads,
        n_gpu_layers: 999,
        gpu_memory_utilization: args.gpu_util,
        flash_attention: args.flash_attention,
        batch_mixing: args.batch_mixing,
        kv_layout: args.kv_layout,
        max_decode_slowdown: args.max_decode_slowdown,
        stall_timeout: std::time::Duration::ZERO,
    })
    .map_err(|e| e.to_string())?;
    let info = engine.info();
    eprintln!("model loaded: on_gpu {}, kv_cache_tokens {}", info.on_gpu, info.kv_cache_tokens);
    let header = "streams,round,output_tokens,seconds,output_tok_per_s,steps,avg_batch,schedule_ms_per_step,decode_ms_per_step,sample_ms_per_step,emit_ms_per_step";
    println!("{header}");
    let mut csv = args.csv.as_ref().map(std::fs::File::create).transpose().map_err(|e| e.to_string())?;
    if let Some(f) = csv.as_mut() {
        writeln!(f, "{header}").map_err(|e| e.to_string())?;
    }
    for &n in &args.streams {
        for round in 0..args.rounds {
            let before = engine.stats();
            let start = Instant::now();
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(n));
            let runs = (0..n * args.waves).map(|i| {
                // Distinct prompts (no prefix sharing): token ids cycle through a safe range.
                let prompt: Vec<i32> = (0..args.prompt).map(|t| 1000 + ((t * 7 + i * 131 + round * 977) % 20000) as i32).collect();
                let request = GenerateRequest {
                    prompt,
                    max_tokens: args.output,
                    stop: Vec::new(),
                    ignore_eos: true,
                    sampling: SamplingParams { temperature: Some(f64::from(args.temperature)), ..SamplingParams::default() },
                };
                let engine = engine.clone();
                let slots = slots.clone();
                async move {
                    let _slot = slots.acquire_owned().await.map_err(|e| e.to_string())?;
                    let mut stream = engine.generate(request).map_err(|e| e.to_string())?;
                    while let Some(event) = stream.next().await {
                        match event {
                            Event::Finished { usage, .. } => return Ok(usage.completion_tokens as u64),
                            Event::Failed(e) => return Err(e),
                            Event::Delta { .. } => {}
                        }
                    }
                    Err("stream ended early".to_string())
                }
            });
            let tokens: u64 = futures_sum(runs).await?;
            let secs = start.elapsed().as_secs_f64();
            let line = format!("{n},{round},{tokens},{secs:.3},{:.1},{}", tokens as f64 / secs, phases(&before, &engine.stats()));
            println!("{line}");
            if let Some(f) = csv.as_mut() {
                writeln!(f, "{line}").map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Steps, mean batch size and milliseconds per step in each phase between two snapshots.
fn phases(a: &EngineStats, b: &EngineStats) -> String {
    let steps = b.steps.saturating_sub(a.steps).max(1);
    let per_step = |x: u64, y: u64| y.saturating_sub(x) as f64 / steps as f64 / 1e6;
    format!(
        "{},{:.1},{:.3},{:.3},{:.3},{:.3}",
        b.steps - a.steps,
        b.batch_tokens.saturating_sub(a.batch_tokens) as f64 / steps as f64,
        per_step(a.schedule_ns, b.schedule_ns),
        per_step(a.decode_ns, b.decode_ns),
        per_step(a.sample_ns, b.sample_ns),
        per_step(a.emit_ns, b.emit_ns)
    )
}

async fn futures_sum<F: std::future::Future<Output = Result<u64, String>> + Send + 'static>(runs: impl Iterator<Item = F>) -> Result<u64, String> {
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    let mut total = 0;
    for h in handles {
        total += h.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}
