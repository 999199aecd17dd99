//! Quantize a GGUF with llama.cpp's own `llama_model_quantize` (the function behind
//! `llama-quantize`), through hearth's build of llama.cpp: no separate llama.cpp build needed.
//!
//! cargo run --release -p hearth-engine --example quantize -- IN.gguf OUT.gguf [q4_k_m|q8_0|q4_0|f16] [--threads N]

use std::ffi::CString;
use std::time::Instant;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: quantize IN.gguf OUT.gguf [q4_k_m|q8_0|q4_0|f16] [--threads N]";
    let (input, output) = match (args.first(), args.get(1)) {
        (Some(i), Some(o)) => (i.clone(), o.clone()),
        _ => return Err(usage.into()),
    };
    let kind = args.get(2).filter(|a| !a.starts_with("--")).map_or("q4_k_m", String::as_str);
    let ftype = match kind.to_ascii_lowercase().as_str() {
        "q4_k_m" => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "q8_0" => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
        "q4_0" => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
        "f16" => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16,
        other => return Err(format!("unknown type {other}; {usage}")),
    };
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i32));
    engine::init_backend(&engine::BackendOptions::default()).map_err(|e| e.to_string())?;
    let c_in = CString::new(input.clone()).map_err(|e| e.to_string())?;
    let c_out = CString::new(output.clone()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    // SAFETY: the default parameters come from llama.cpp; both paths are NUL-terminated strings
    // that outlive the call.
    let status = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.nthread = threads;
        llama_cpp_sys_2::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &params)
    };
    if status != 0 {
        return Err(format!("llama_model_quantize failed with status {status}"));
    }
    println!("quantized {input} -> {output} ({kind}) in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
