//! `hearth quantize --calibration FILE` as a user meets it, with the real binary and the real
//! SmolLM2-135M: the w3a16 recipe (Q3_K_S) calibrated on this repository's ARCHITECTURE.md
//! publishes an entry whose recipe records the calibration file (name, sha256, tokens, chunks,
//! weight matrices), and the report shows the perplexity on the held-out README of the source and
//! of the recipe without and with the importance matrix (with it, lower); the embedding model's
//! report shows cosine and recall@10 without and with it; bad calibration files
//! (missing, empty, binary, too short for one chunk, the evaluation text itself; a model given as
//! an imatrix) are refused with an error that says what is wrong, and nothing is published. The
//! matrix written by `--save-imatrix` and read back by `--imatrix` quantizes to the same bytes.

use std::path::Path;
use std::time::Instant;

use hearth_tests::cli::{describe, run, sha256_file, stdout_json};
use hearth_tests::repo_root;

const CHAT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const EMBED_MODEL: &str = "models/all-MiniLM-L6-v2.f16.gguf";

#[test]
fn calibrated_low_bit_quantization_records_its_text_and_beats_the_uncalibrated_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(CHAT_MODEL).display().to_string();
    let calibration = repo_root().join("ARCHITECTURE.md");
    let imatrix_file = dir.path().join("smol.imatrix.gguf");
    let imatrix_s = imatrix_file.display().to_string();
    let started = Instant::now();
    let args = [
        "quantize",
        &source,
        "--recipe",
        "w3a16",
        "--calibration",
        "ARCHITECTURE.md",
        "--calibration-tokens",
        "1024",
        "--allow-requantize",
        "--max-chunks",
        "2",
        "--threads",
        "2",
        "--name",
        "smol-w3-cal",
        "--save-imatrix",
        &imatrix_s,
        "--state-dir",
        &state_s,
    ];
    let got = stdout_json(&run(&[&args[..], &["--json"]].concat()));
    println!("hearth quantize (calibrated w3a16): {:.1} s wall\n{}", started.elapsed().as_secs_f64(), serde_json::to_string_pretty(&got).unwrap_or_default());
    let recipe = &got["entry"]["recipe"];
    assert_eq!(got["entry"]["quantization"], "Q3_K_S", "{got}");
    assert_eq!(recipe["name"], "w3a16");
    let cal = &recipe["calibration"];
    assert_eq!(cal["file"], "ARCHITECTURE.md", "{cal}");
    assert_eq!(cal["sha256"].as_str(), Some(sha256_file(&calibration).as_str()), "{cal}");
    assert_eq!((cal["tokens"].as_u64(), cal["chunks"].as_u64()), (Some(1024), Some(2)), "{cal}");
    assert_eq!(cal["tensors"].as_u64(), Some(30 * 7), "every layer's seven projections: {cal}");

    let p = &got["report"]["perplexity"];
    let value = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
    let (src, plain, calibrated) = (value("source"), value("without_imatrix"), value("quantized"));
    assert!(src.is_finite() && src > 1.0, "{p}");
    assert!(plain.is_finite() && calibrated.is_finite() && calibrated > src * 0.95, "{p}");
    assert!(calibrated < plain, "the importance matrix must lower Q3_K_S's perplexity: {p}");
    println!("perplexity on the README, 2 x 512 tokens: source Q4_1 {src:.3}, Q3_K_S without imatrix {plain:.3}, with {calibrated:.3}");

    // The library keeps the record; the table shows the three perplexities.
    let shown = stdout_json(&run(&["models", "show", "smol-w3-cal", "--json", "--state-dir", &state_s]));
    assert_eq!(shown["recipe"]["calibration"], *cal, "{shown}");
    let listed = stdout_json(&run(&["models", "list", "--json", "--state-dir", &state_s]));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "only the calibrated model is published: {listed}");
    assert_eq!(cal["input"], "text");
    let table = run(&["models", "show", "smol-w3-cal", "--state-dir", &state_s]);
    assert!(describe(&table).contains("calibration:     text ARCHITECTURE.md"), "{}", describe(&table));

    // The matrix saved with --save-imatrix quantizes, through --imatrix, to the same bytes.
    assert!(imatrix_file.is_file(), "--save-imatrix wrote nothing");
    let reused = stdout_json(&run(&[
        "quantize",
        &source,
        "--recipe",
        "w3a16",
        "--imatrix",
        &imatrix_file.display().to_string(),
        "--allow-requantize",
        "--no-report",
        "--threads",
        "2",
        "--name",
        "smol-w3-reused",
        "--json",
        "--state-dir",
        &state_s,
    ]));
    let rcal = &reused["entry"]["recipe"]["calibration"];
    assert_eq!((rcal["input"].as_str(), rcal["tokens"].as_u64(), rcal["tensors"].as_u64()), (Some("imatrix"), Some(1024), Some(210)), "{rcal}");
    assert_eq!(rcal["datasets"], serde_json::json!(["ARCHITECTURE.md"]), "{rcal}");
    assert_eq!(rcal["sha256"].as_str(), Some(sha256_file(&imatrix_file).as_str()));
    assert_eq!(reused["entry"]["sha256"], got["entry"]["sha256"], "the reused matrix must quantize to the same file");
}

#[test]
fn calibrated_embedding_model_reports_cosine_and_recall_with_and_without_the_matrix() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(EMBED_MODEL).display().to_string();
    let started = Instant::now();
    let args = ["quantize", &source, "--recipe", "w3a16", "--calibration", "ARCHITECTURE.md", "--calibration-tokens", "1024", "--threads", "2", "--json"];
    let got = stdout_json(&run(&[&args[..], &["--state-dir", &state_s]].concat()));
    println!("hearth quantize (calibrated MiniLM w3a16): {:.1} s wall\n{}", started.elapsed().as_secs_f64(), serde_json::to_string_pretty(&got).unwrap_or_default());
    let cal = &got["entry"]["recipe"]["calibration"];
    // MiniLM-L6: 6 layers of q, k, v, output, up, down; chunks capped at its 512-token context.
    assert_eq!((cal["tensors"].as_u64(), cal["chunks"].as_u64(), cal["tokens"].as_u64()), (Some(36), Some(2), Some(1024)), "{cal}");
    let e = &got["report"]["embedding"];
    let w = &e["without_imatrix"];
    for (k, lo) in [("mean_cosine", 0.85), ("min_cosine", 0.5), ("recall_at_10", 0.5)] {
        let (with, without) = (e[k].as_f64().unwrap_or(f64::NAN), w[k].as_f64().unwrap_or(f64::NAN));
        assert!(with > lo && with <= 1.0 + 1e-9 && without > lo && without <= 1.0 + 1e-9, "{k}: {e}");
    }
    println!(
        "MiniLM w3a16 against F16: mean cosine {} without the matrix, {} with; recall@10 {} / {}",
        w["mean_cosine"], e["mean_cosine"], w["recall_at_10"], e["recall_at_10"]
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("state/models"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".scratch-")).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "the comparison model's scratch directory is removed: {leftovers:?}");
}

#[test]
fn bad_calibration_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(CHAT_MODEL).display().to_string();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap_or_else(|e| panic!("{e}"));
    let binary = dir.path().join("weights.bin");
    std::fs::write(&binary, b"GGUF\x03\x00\x00\x00\x00\x00").unwrap_or_else(|e| panic!("{e}"));
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "A calibration text of one sentence is far shorter than a chunk.").unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.txt");
    let architecture = repo_root().join("ARCHITECTURE.md");
    let architecture_s = architecture.display().to_string();
    let cases: [(&Path, &[&str], &[&str]); 5] = [
        (&missing, &[], &["missing.txt", "cannot read it"]),
        (&empty, &[], &["empty.txt", "the file is empty"]),
        (&binary, &[], &["weights.bin", "binary data (a NUL byte at offset 5)"]),
        (&short, &[], &["short.txt", "one chunk needs 512"]),
        // Calibrating on the evaluation text would measure on the calibration data.
        (&architecture, &["--eval-text", &architecture_s], &["is the evaluation text", "--eval-text"]),
    ];
    let model_flag = ["--imatrix", source.as_str()];
    for (file, extra, expect) in cases {
        let file_s = file.display().to_string();
        let started = Instant::now();
        let args = ["quantize", &source, "--recipe", "w3a16", "--calibration", &file_s, "--allow-requantize", "--threads", "2", "--state-dir", &state_s];
        let out = run(&[&args[..], extra].concat());
        println!("{file_s}: refused in {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for e in expect {
            assert!(stderr.contains(e), "{file_s}: expected {e:?} in\n{}", describe(&out));
        }
    }
    // A model file is not an importance matrix.
    let out = run(&[&["quantize", &source, "--recipe", "w3a16", "--allow-requantize", "--state-dir", &state_s][..], &model_flag].concat());
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a GGUF file but not an imatrix"), "{}", describe(&out));
    let listed = stdout_json(&run(&["models", "list", "--json", "--state-dir", &state_s]));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "nothing published: {listed}");
}
