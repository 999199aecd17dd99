//! Quantize a GGUF with llama.cpp's own `llama_model_quantize`, through hearth's build of
//! llama.cpp: a thin wrapper over `engine::quantize` (`hearth quantize` is the user's command; the
//! GPU benchmark scripts call this example).
//!
//! cargo run --release -p hearth-engine --example quantize -- IN.gguf OUT.gguf [q4_k_m|q8_0|q4_0|f16|...] [--threads N] [--allow-requantize]

use engine::quantize::{quantize, QuantizeJob, TargetType};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: quantize IN.gguf OUT.gguf [q4_k_m|q8_0|q4_0|f16|q6_k|q5_k_m|q4_k_s] [--threads N] [--allow-requantize]";
    let (input, output) = match (args.first(), args.get(1)) {
        (Some(i), Some(o)) => (i.clone(), o.clone()),
        _ => return Err(usage.into()),
    };
    let kind = args.get(2).filter(|a| !a.starts_with("--")).map_or("q4_k_m", String::as_str);
    let target = TargetType::parse(kind).ok_or_else(|| format!("unknown type {kind}; {usage}"))?;
    let threads = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(0);
    engine::init_backend(&engine::BackendOptions::default()).map_err(|e| e.to_string())?;
    let job = QuantizeJob {
        input: input.clone().into(),
        output: output.clone().into(),
        target,
        threads,
        allow_requantize: args.iter().any(|a| a == "--allow-requantize"),
    };
    let done = quantize(&job).map_err(|e| e.to_string())?;
    println!("quantized {input} -> {output} ({}) in {:.1} s", target.name(), done.seconds);
    Ok(())
}
