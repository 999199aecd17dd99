//! The importance matrix of the real SmolLM2-135M (Q4_1, in ./models) over a few hundred tokens of
//! this repository's ARCHITECTURE.md: every layer's seven projections are collected, with one
//! count per token run and finite, non-negative sums (positive for almost every column); a text
//! shorter than one chunk is refused with the numbers; the matrix quantizes the model to Q3_K_S
//! (smaller than the source); saved as a GGUF imatrix and loaded back it holds the same numbers and
//! quantizes to the same bytes.

use std::path::PathBuf;

use calibration::{CalibrationError, CollectOptions, Imatrix};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    engine::init_backend(&engine::BackendOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn text() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn collects_every_projection_of_every_layer() {
    let opts = CollectOptions { chunk_tokens: 128, max_tokens: 384, threads: 2, gpu_layers: 0 };
    let m = Imatrix::collect(&model(), &text(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let s = m.summary();
    assert_eq!((s.chunks, s.tokens), (3, 384), "{s:?}");
    assert!(s.text_tokens > 384, "{s:?}");
    let tensors = m.tensors();
    assert_eq!(tensors.len() as u64, s.tensors);
    // SmolLM2-135M: 30 layers of q, k, v, o, gate, up, down.
    assert_eq!(tensors.len(), 30 * 7, "{:?}", tensors.iter().map(|t| t.name).collect::<Vec<_>>());
    for kind in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] {
        assert!(tensors.iter().any(|t| t.name == format!("blk.29.{kind}.weight")), "no blk.29.{kind}.weight");
    }
    let mut zero = 0usize;
    let mut total = 0usize;
    for t in &tensors {
        assert!(t.name.starts_with("blk.") && t.name.ends_with(".weight"), "{}", t.name);
        assert_eq!(t.counts, &[384], "{}: one count per token", t.name);
        let expect_cols = if t.name.contains("ffn_down") { 1536 } else { 576 };
        assert_eq!(t.columns(), expect_cols, "{}", t.name);
        assert!(t.sums.iter().all(|v| v.is_finite() && *v >= 0.0), "{}", t.name);
        zero += t.sums.iter().filter(|v| **v == 0.0).count();
        total += t.sums.len();
    }
    assert!(zero * 1000 < total, "{zero} of {total} columns never saw a non-zero activation");
    // More tokens, larger sums: the statistics accumulate.
    let two = Imatrix::collect(&model(), &text(), &CollectOptions { max_tokens: 256, ..opts }).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (&tensors[0], &two.tensors()[0]);
    assert_eq!((a.name, b.counts), (b.name, &[256][..]));
    assert!(a.sums.iter().sum::<f32>() > b.sums.iter().sum::<f32>());
}

#[test]
fn a_text_shorter_than_a_chunk_is_refused() {
    let opts = CollectOptions { chunk_tokens: 512, max_tokens: 0, threads: 2, gpu_layers: 0 };
    match Imatrix::collect(&model(), "Too short to calibrate anything.", &opts) {
        Err(CalibrationError::Text(msg)) => assert!(msg.contains("one chunk needs 512"), "{msg}"),
        other => panic!("expected a text error, got {other:?}"),
    }
    match Imatrix::collect(&root().join("models/missing.gguf"), &text(), &opts) {
        Err(CalibrationError::Load(msg)) => assert!(msg.contains("missing.gguf"), "{msg}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn quantizes_with_the_matrix() {
    let opts = CollectOptions { chunk_tokens: 128, max_tokens: 256, threads: 2, gpu_layers: 0 };
    let source = model();
    let m = Imatrix::collect(&source, &text(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let out = dir.join("q3.gguf");
    m.quantize(&source, &out, llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_S, 2, true).unwrap_or_else(|e| panic!("{e}"));
    let (src, new) = (std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0), std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0));
    assert!(new > 0 && new < src, "Q3_K_S {new} bytes against Q4_1 {src}");
    // Without allow_requantize llama.cpp refuses the Q4_1 source, and the error says so.
    let refused = m.quantize(&source, &dir.join("refused.gguf"), llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_S, 2, false);
    assert!(matches!(refused, Err(CalibrationError::Quantize(_))), "{refused:?}");
    assert!(!dir.join("refused.gguf").exists());

    // Saved as a GGUF imatrix and read back: the same sums and counts, chunks and tokens, and the
    // dataset named; the reloaded matrix quantizes to the same bytes.
    let file = dir.join("smol.imatrix.gguf");
    m.save(&file, "ARCHITECTURE.md").unwrap_or_else(|e| panic!("{e}"));
    let back = Imatrix::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.datasets(), ["ARCHITECTURE.md"]);
    let (a, b) = (m.summary(), back.summary());
    assert_eq!((b.chunks, b.tokens, b.tensors, b.text_tokens), (a.chunks, a.tokens, a.tensors, 0));
    for (x, y) in m.tensors().iter().zip(back.tensors()) {
        assert_eq!((x.name, x.sums, x.counts), (y.name, y.sums, y.counts));
    }
    let again = dir.join("q3-again.gguf");
    back.quantize(&source, &again, llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_S, 2, true).unwrap_or_else(|e| panic!("{e}"));
    assert!(std::fs::read(&again).ok() == std::fs::read(&out).ok(), "the reloaded matrix quantizes differently");
    // A model file is not an imatrix; a text file is not GGUF.
    let not = Imatrix::load(&source).map(|_| ()).map_err(|e| e.to_string());
    assert!(not.as_ref().is_err_and(|e| e.contains("not an imatrix")), "{not:?}");
    let text_file = root().join("ARCHITECTURE.md");
    let not = Imatrix::load(&text_file).map(|_| ()).map_err(|e| e.to_string());
    assert!(not.as_ref().is_err_and(|e| e.contains("is not a GGUF file")), "{not:?}");
}
