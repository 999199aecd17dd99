//! `hearth models ...` and `hearth quantize ...`: the library from the command line. The
//! configuration is read only for `server.state_dir` (and, for `rm`, which models it serves);
//! `--state-dir` overrides it, so an ordinary user can keep a library without reading
//! `/etc/hearth/hearth.toml`. Exit codes: 0 done, 1 failed (I/O, a damaged file, a download), 2 the
//! request was wrong (bad name, no such model, a checksum mismatch).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use hearth::config::{Settings, Sources};
use hearth::models_library::details::details;
use hearth::models_library::import::{import, ImportRequest};
use hearth::models_library::pull::{pull, PullRequest};
use hearth::models_library::quantize::{self, ModelKind, QuantizeRequest};
use hearth::models_library::{recipes, Library, LibraryError};

/// `hearth models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// The state directory holding the library (`<DIR>/models/`); default: `server.state_dir` of the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The library's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// The models in the library.
    List {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One model: architecture, parameters, quantization, context length, chat template, sha256, size, where it fits.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a GGUF file, a directory of (split) GGUFs, or an OCI image layout or archive of a ModelCar image.
    Import {
        path: PathBuf,
        /// The library name (default: from the file name).
        #[arg(long)]
        name: Option<String>,
        /// Which GGUF, when the source holds several models.
        #[arg(long)]
        file: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a GGUF over HTTP(S), resuming an interrupted download; checked against --sha256 before it is added.
    Pull {
        url: String,
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a model (refused while the configuration serves it, unless --force).
    Rm {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Re-hash a model's files (or every model's) against the library's manifest.
    Verify { name: Option<String> },
}

/// `hearth quantize`.
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// A library model (or a GGUF file) to quantize.
    pub source: String,
    /// w4a16 (Q4_K_M), w4a16-q4_0 (Q4_0), w8a8-int8 (Q8_0), fp16 (F16), w3a16 (Q3_K_S), w2a16
    /// (Q2_K), or a recipe .toml file.
    #[arg(long)]
    pub recipe: String,
    /// The new library entry's name (default: SOURCE.RECIPE).
    #[arg(long)]
    pub name: Option<String>,
    /// Calibration text (plain UTF-8, up to 64 MiB): the source model runs over it to collect
    /// llama.cpp's importance matrix, which the quantizer then uses (the GPTQ-like path; low-bit
    /// recipes such as w3a16 and w2a16 gain the most). Must differ from the evaluation text.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Tokens of the calibration text run through the model, at most (whole chunks of 512; 0: the
    /// whole text). 2048 take about 10 s for SmolLM2-135M on 2 idle CPU cores.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub calibration_tokens: u64,
    /// Quantize with this GGUF importance-matrix file (hearth's --save-imatrix or llama.cpp's
    /// llama-imatrix, made for this model) instead of collecting one.
    #[arg(long, value_name = "FILE", conflicts_with = "calibration")]
    pub imatrix: Option<PathBuf>,
    /// Write the matrix collected from --calibration to FILE (llama.cpp's GGUF imatrix format).
    #[arg(long, value_name = "FILE", requires = "calibration")]
    pub save_imatrix: Option<PathBuf>,
    /// Quantize an already quantized source (its loss adds to the new one's).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Held-out text for the accuracy report (default: the README compiled in).
    #[arg(long, value_name = "FILE")]
    pub eval_text: Option<PathBuf>,
    /// Perplexity chunks (512 tokens each) at most.
    #[arg(long, default_value_t = 8)]
    pub max_chunks: usize,
    /// Skip the accuracy report.
    #[arg(long)]
    pub no_report: bool,
    /// Threads (0: every core).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    #[arg(long)]
    pub json: bool,
    /// The state directory holding the library; default: `server.state_dir` of the configuration.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

fn state_dir(flag: Option<&PathBuf>, sources: &Sources) -> Result<PathBuf, String> {
    if let Some(dir) = flag {
        return Ok(dir.clone());
    }
    hearth::config::state_dir_only(sources).map_err(|e| format!("cannot find the state directory ({e}); pass --state-dir DIR"))
}

fn fail(e: &LibraryError) -> ExitCode {
    eprintln!("hearth: {e}");
    match e {
        LibraryError::Io { .. } => ExitCode::FAILURE,
        LibraryError::NotFound(_) | LibraryError::Exists(_) | LibraryError::Invalid(_) => ExitCode::from(2),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Run `hearth models ...`.
pub fn models(args: &ModelsArgs, sources: &Sources) -> ExitCode {
    let dir = match state_dir(args.state_dir.as_ref(), sources) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    let library = Library::new(&dir);
    let result = match &args.command {
        ModelsCommand::List { json } => list(&library, *json),
        ModelsCommand::Show { name, json } => show(&library, name, *json),
        ModelsCommand::Import { path, name, file, json } => {
            import(&library, &ImportRequest { path: path.clone(), name: name.clone(), file: file.clone() }).map(|got| {
                if *json {
                    print_json(&json!({"entry": got.entry, "seconds": got.seconds}));
                } else {
                    println!("imported {} ({}, {} bytes) in {:.2} s", got.entry.name, got.entry.quantization, got.entry.size, got.seconds);
                }
            })
        }
        ModelsCommand::Pull { url, sha256, name, json } => {
            let request = PullRequest { url: url.clone(), sha256: sha256.clone(), name: name.clone() };
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return fail(&LibraryError::io("cannot start an async runtime")(e)),
            };
            runtime.block_on(pull(&library, &request)).map(|got| {
                if *json {
                    print_json(&json!({"entry": got.entry, "seconds": got.seconds, "received": got.received, "resumed": got.resumed}));
                } else {
                    println!(
                        "pulled {} ({} bytes, sha256 {}) in {:.2} s; {} bytes received, {} resumption(s)",
                        got.entry.name, got.entry.size, got.entry.sha256, got.seconds, got.received, got.resumed
                    );
                }
            })
        }
        ModelsCommand::Rm { name, force } => rm(&library, name, *force, sources),
        ModelsCommand::Verify { name } => return verify(&library, name.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn list(library: &Library, json: bool) -> Result<(), LibraryError> {
    let entries = library.list()?;
    if json {
        print_json(&json!({"object": "list", "data": entries}));
        return Ok(());
    }
    if entries.is_empty() {
        println!("the library at {} is empty (`hearth models import PATH` adds a model)", library.root().display());
        return Ok(());
    }
    println!("{:<40} {:<10} {:>14} {:<21} source", "name", "type", "bytes", "added");
    for e in &entries {
        let recipe = e.recipe.as_ref().map(|r| format!(" (recipe {})", r.name)).unwrap_or_default();
        println!("{:<40} {:<10} {:>14} {:<21} {}{recipe}", e.name, e.quantization, e.size, e.added, e.source);
    }
    Ok(())
}

fn show(library: &Library, name: &str, json: bool) -> Result<(), LibraryError> {
    let entry = library.get(name)?;
    let d = details(library, &entry)?;
    if json {
        print_json(&d);
        return Ok(());
    }
    let gib = |v: &serde_json::Value| v.as_u64().map_or_else(|| "unknown".to_owned(), |b| format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30)));
    let fit = |v: &serde_json::Value| match v.as_bool() {
        Some(true) => "fits",
        Some(false) => "does NOT fit",
        None => "unknown",
    };
    println!("name:            {}", entry.name);
    println!("file:            {}", d["path"].as_str().unwrap_or_default());
    println!("architecture:    {}", d["architecture"].as_str().unwrap_or("unknown"));
    println!("kind:            {}", d["kind"].as_str().unwrap_or_default());
    println!("parameters:      {}", d["parameters"]);
    println!("quantization:    {}", entry.quantization);
    println!("context length:  {}", d["context_length"]);
    println!("chat template:   {}", if d["chat_template"].as_bool() == Some(true) { "yes" } else { "no" });
    println!("sha256:          {}", entry.sha256);
    println!("size:            {} bytes ({})", entry.size, gib(&d["size"]));
    println!("source:          {}", entry.source);
    println!("added:           {}", entry.added);
    if let Some(r) = &entry.recipe {
        println!("recipe:          {} -> {} from {}{}", r.name, r.ggml_type, r.source, if r.requantized { " (requantized)" } else { "" });
        if let Some(c) = &r.calibration {
            println!("calibration:     {} {} (sha256 {}), {} tokens, {} weight matrices", format!("{:?}", c.input).to_lowercase(), c.file, c.sha256, c.tokens, c.tensors);
        }
    }
    let f = &d["fits"];
    println!("CPU RAM:         {} available: weights {}", gib(&f["cpu_ram_available"]), fit(&f["fits_cpu_ram"]));
    match f["gpu_free"].as_u64() {
        Some(_) => println!("GPU memory:      {} free: weights {} (KV cache and compute buffers not counted)", gib(&f["gpu_free"]), fit(&f["fits_gpu"])),
        None => println!("GPU memory:      no CUDA device"),
    }
    println!("fit before load: {} (at {})", d["fit"].as_str().unwrap_or("unknown"), d["fit_at"].as_str().unwrap_or_default());
    Ok(())
}


fn rm(library: &Library, name: &str, force: bool, sources: &Sources) -> Result<(), LibraryError> {
    let entry = library.get(name)?;
    let path = library.model_path(&entry);
    if let Ok(settings) = Settings::load(sources) {
        if let Some(m) = settings.models.iter().find(|m| m.path == path) {
            let message = format!("the configuration serves `{name}` as model `{}` (a running daemon has it open)", m.name);
            if !force {
                return Err(LibraryError::Invalid(format!("{message}; change [[models]] first, or pass --force")));
            }
            eprintln!("hearth: WARNING: {message}; removing it anyway (--force)");
        }
    }
    let lock = library.lock()?;
    library.remove(&lock, name)?;
    println!("removed {name}");
    Ok(())
}

fn verify(library: &Library, name: Option<&str>) -> ExitCode {
    let entries = match name {
        Some(n) => library.get(n).map(|e| vec![e]),
        None => library.list(),
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    let mut bad = 0;
    for e in &entries {
        let mismatches = library.verify(e);
        if mismatches.is_empty() {
            println!("{}: ok ({} file(s), {} bytes)", e.name, e.files.len(), e.size);
        } else {
            bad += 1;
            for m in mismatches {
                println!("{}: {} DAMAGED: {}", e.name, m.file, m.reason);
            }
        }
    }
    if bad > 0 {
        eprintln!("hearth: {bad} model(s) do not match the manifest");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Run `hearth quantize ...`.
pub fn quantize(args: &QuantizeArgs, sources: &Sources) -> ExitCode {
    let dir = match state_dir(args.state_dir.as_ref(), sources) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    let recipe = match recipes::find(&args.recipe) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let options = match Settings::load(sources) {
        Ok(s) => {
            // Calibration and the accuracy report run the model: the same wait policy as `serve`.
            hearth::compute::cpu_wait::ensure(s.engine.cpu_wait);
            engine::BackendOptions { log_to_tracing: true, backend_dir: s.engine.backend_dir(), cpu_amx: s.engine.cpu_amx }
        }
        Err(_) => engine::BackendOptions { log_to_tracing: true, ..engine::BackendOptions::default() },
    };
    if let Err(e) = engine::init_backend(&options) {
        eprintln!("hearth: {e}");
        return ExitCode::FAILURE;
    }
    let request = QuantizeRequest {
        source: args.source.clone(),
        recipe,
        name: args.name.clone(),
        calibration: args.calibration.clone(),
        calibration_tokens: args.calibration_tokens,
        imatrix: args.imatrix.clone(),
        save_imatrix: args.save_imatrix.clone(),
        allow_requantize: args.allow_requantize,
        eval_text: args.eval_text.clone(),
        max_chunks: args.max_chunks.max(1),
        no_report: args.no_report,
        threads: args.threads,
    };
    match quantize::run(&Library::new(&dir), &request) {
        Ok(outcome) => {
            if args.json {
                print_json(&serde_json::to_value(&outcome).unwrap_or_default());
            } else {
                print!("{}", quantize::table(&outcome));
                if outcome.report.as_ref().is_some_and(|r| r.kind == ModelKind::Chat) {
                    println!("serve it with: [[models]] path = \"library:{}\"", outcome.entry.name);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
