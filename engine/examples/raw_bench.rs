//! The raw ceiling: the engine driven in-process, no HTTP. N sequences with a fixed prompt length
//! and a fixed output length (`ignore_eos`) run concurrently; the aggregate output tokens per second
//! is what hearth's HTTP server can at best deliver for the same shape.
//!
//! cargo run --release -p hearth-engine --example raw_bench -- MODEL.gguf [--streams 1,4,8,16]
//!     [--prompt 128] [--output 64] [--threads 2] [--rounds 2]

use std::time::Instant;

use engine::{Engine, Event, GenerateRequest, KvCacheDtype, ModelConfig, ModelKind, SamplingParams};

struct Args {
    model: String,
    streams: Vec<usize>,
    prompt: usize,
    output: u32,
    threads: u32,
    rounds: usize,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args { model: String::new(), streams: vec![1, 4, 8, 16], prompt: 128, output: 64, threads: 0, rounds: 2 };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--streams" => a.streams = value()?.split(',').map(|s| s.parse().map_err(|e| format!("{e}"))).collect::<Result<_, _>>()?,
            "--prompt" => a.prompt = value()?.parse().map_err(|e| format!("{e}"))?,
            "--output" => a.output = value()?.parse().map_err(|e| format!("{e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("{e}"))?,
            _ if a.model.is_empty() => a.model = arg,
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if a.model.is_empty() {
        return Err("usage: raw_bench MODEL.gguf [--streams 1,4,8,16] [--prompt N] [--output M] [--threads T] [--rounds R]".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse()?;
    let max_streams = args.streams.iter().copied().max().unwrap_or(1) as u32;
    let engine = Engine::start(ModelConfig {
        name: "bench".into(),
        kind: ModelKind::Chat,
        path: args.model.clone().into(),
        max_model_len: 2048,
        max_num_seqs: max_streams,
        max_num_batched_tokens: 512.max(max_streams),
        max_queue: 1024,
        kv_cache_tokens: (max_streams * (args.prompt as u32 + args.output + 32)).max(4096),
        block_size: 16,
        enable_prefix_caching: false,
        kv_cache_dtype: KvCacheDtype::F16,
        threads: args.threads,
        n_gpu_layers: 999,
    })
    .map_err(|e| e.to_string())?;
    println!("streams,round,output_tokens,seconds,output_tok_per_s");
    for &n in &args.streams {
        for round in 0..args.rounds {
            let start = Instant::now();
            let runs = (0..n).map(|i| {
                // Distinct prompts (no prefix sharing): token ids cycle through a safe range.
                let prompt: Vec<i32> = (0..args.prompt).map(|t| 1000 + ((t * 7 + i * 131) % 20000) as i32).collect();
                let request = GenerateRequest {
                    prompt,
                    max_tokens: args.output,
                    stop: Vec::new(),
                    ignore_eos: true,
                    sampling: SamplingParams { temperature: 0.0, ..SamplingParams::default() },
                };
                let engine = engine.clone();
                async move {
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
            println!("{n},{round},{tokens},{secs:.3},{:.1}", tokens as f64 / secs);
        }
    }
    Ok(())
}

async fn futures_sum<F: std::future::Future<Output = Result<u64, String>> + Send + 'static>(runs: impl Iterator<Item = F>) -> Result<u64, String> {
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    let mut total = 0;
    for h in handles {
        total += h.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}
