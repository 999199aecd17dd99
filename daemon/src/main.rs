//! The `hearth` binary. Reads top to bottom: arguments, configuration, tracing, the command.
//!
//! Commands that need no configuration (`completions`, `man`, and the client commands, which talk
//! to a running daemon over HTTP) run before it is loaded, so an ordinary user can run them where
//! `/etc/hearth/hearth.toml` is readable by root only.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use hearth::config::{CommandLine, ModelKindSetting, ProviderSetting, Settings, Sources};
use hearth::{compute, server, telemetry};
use hearth_client::{ask, bench, eval, status};

/// hearth: a chat and an embedding model, a vector store and a watched folder, on one machine.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, long_version = cli::LONG_VERSION, about)]
struct Cli {
    /// A configuration file laid over the embedded default and /etc/hearth/hearth.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Check the configuration and exit: 0 when valid, 2 with the reason when not.
    Validate,
    /// List the compute devices (CPU, GPUs) found through the configured backend directory, and why
    /// a backend there was not used; exits 1 when `require_gpu` is set and no GPU is usable.
    Info,
    /// List the HTTP routes: method, path, the API-key scope each needs, and the body it takes.
    Routes,
    /// Load-test an OpenAI-compatible endpoint against SLOs (GuideLLM-style); `bench compare A.json B.json`.
    Bench(bench::BenchArgs),
    /// Score retrieval and answers over a vector store against a question set (RAGAS-style).
    Eval(eval::EvalArgs),
    /// What the running daemon serves and where ingestion stands: readiness, models, devices,
    /// vector stores and each file's progress; `--wait-for FILE` waits for one file (`--json`).
    Status(status::StatusArgs),
    /// Ask the documents a question (`file_search` over `inbox` by default): the answer streamed,
    /// then its citations as `file, page N`.
    Ask(ask::AskArgs),
    /// The model library in the state directory: list, show, import (GGUF, split GGUFs, OCI
    /// ModelCar images), pull (HTTP with resume), rm, verify.
    Models(cli::models::ModelsArgs),
    /// Quantize a library model with a recipe (w4a16, w8a8-int8, fp16, ...) into a new library
    /// model, and report its accuracy against the source.
    Quantize(cli::models::QuantizeArgs),
    /// What a start of this release would change in the state directory (`--check`: report only).
    Migrate {
        /// Report the state directory's format and the migration steps; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Print a shell completion script: `hearth completions bash > /etc/bash_completion.d/hearth`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man page hearth(1): to standard output, or to `--out FILE`.
    Man {
        /// The file to write (`hearth.1`); standard output when left out.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Internal: parse one document in a sandboxed child process (hearth runs this itself).
    #[command(hide = true)]
    ParseWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `hearth serve`'s options, laid over every configuration layer.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Serve this chat model (a GGUF file, named after the file) in place of the configured chat
    /// models; the configured embedding model stays.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Listen on this address (`127.0.0.1:9000`); overrides `server.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Listen on this port, on the configured (or `--listen`) address; 0 picks a free one.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    let config = parsed.config;
    // Before the configuration: the worker reads nothing but the file it is given, and the client
    // commands no more of the configuration than the daemon's address.
    let target = || cli::default_target(config.clone());
    let command = match parsed.command {
        Command::ParseWorker { args } => return ingest::worker_main(&args),
        Command::Completions { shell } => return cli::completions(Cli::command(), shell),
        Command::Man { out } => return cli::man(Cli::command(), out.as_deref()),
        Command::Models(args) => return cli::models::models(&args, &Sources::standard(config.clone())),
        Command::Quantize(args) => return cli::models::quantize(&args, &Sources::standard(config.clone())),
        Command::Status(mut args) => {
            args.target.or_default(target);
            return status::main(args);
        }
        Command::Ask(mut args) => {
            args.target.or_default(target);
            return ask::main(args);
        }
        Command::Bench(mut args) => {
            args.run.target.or_default(target);
            return bench::main(args);
        }
        Command::Eval(mut args) => {
            args.target.or_default(target);
            return eval::main(args);
        }
        command => command,
    };
    let mut sources = Sources::standard(config.clone());
    if let Command::Serve(args) = &command {
        sources.command_line = CommandLine { chat_model: args.model.clone(), listen: args.listen.clone(), port: args.port };
    }
    let settings = match Settings::load(&sources) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("hearth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Validate => validate(&settings),
        Command::Info => info(&settings),
        Command::Routes => {
            for r in hearth::api::routes() {
                println!("{:<7} {:<58} {:<7} {}", r.method.as_str(), r.path, r.access.to_string(), r.body.name());
            }
            ExitCode::SUCCESS
        }
        Command::Migrate { check } => cli::migrate(&settings, check),
        // Handled above.
        Command::ParseWorker { .. } | Command::Completions { .. } | Command::Man { .. } | Command::Models(_) | Command::Quantize(_) => ExitCode::FAILURE,
        Command::Status(_) | Command::Ask(_) | Command::Bench(_) | Command::Eval(_) => ExitCode::FAILURE,
        Command::Serve(_) => {
            compute::cpu_wait::ensure(settings.engine.cpu_wait);
            telemetry::init();
            warn_without_embedding_model(&settings);
            match actix_web::rt::System::new().block_on(server::serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("hearth: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Say loudly, on the terminal and in the log, what a configuration without an embedding model
/// turns off (a user's `replace_default_models = true` list of chat models only, say).
fn warn_without_embedding_model(settings: &Settings) {
    if settings.models.iter().any(|m| m.kind == ModelKindSetting::Embedding) {
        return;
    }
    let folders: Vec<String> = settings.ingest.watch.iter().map(|w| w.path.display().to_string()).collect();
    let watched = if folders.is_empty() { String::new() } else { format!(" and the watched folder ({})", folders.join(", ")) };
    let message = format!(
        "no embedding model is configured (no [[models]] entry has kind = \"embedding\"): vector stores, file_search answers{watched} are OFF. \
         Add an embedding model to [[models]], or drop replace_default_models = true to keep the default one."
    );
    eprintln!("hearth: WARNING: {message}");
    tracing::warn!("{message}");
}

fn validate(settings: &Settings) -> ExitCode {
    let missing: Vec<String> = settings
        .models
        .iter()
        .filter_map(|m| match m.provider {
            ProviderSetting::Local => (!m.path.is_file()).then(|| format!("model `{}`: file {} does not exist", m.name, m.path.display())),
            ProviderSetting::Remote => hearth::models::read_api_key(m).err().map(|e| format!("model `{}`: {e}", m.name)),
        })
        .collect();
    if !missing.is_empty() {
        for line in &missing {
            eprintln!("hearth: configuration error: {line}");
        }
        return ExitCode::from(2);
    }
    println!("configuration is valid: listening on {}, {} model(s), state in {}", settings.server.listen, settings.models.len(), settings.server.state_dir.display());
    warn_without_embedding_model(settings);
    ExitCode::SUCCESS
}

fn info(settings: &Settings) -> ExitCode {
    let report = match compute::init(&settings.engine, true) {
        Ok(report) => report,
        Err(e) => {
            if let Some(report) = engine::backend_report() {
                print!("{}", compute::describe(report, &engine::devices()));
            }
            eprintln!("hearth: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", compute::describe(report, &engine::devices()));
    print_fits(settings);
    ExitCode::SUCCESS
}

/// The fit before load of each configured local model, with the memory free now.
fn print_fits(settings: &Settings) {
    use hearth::models_library::fit::plan;
    for m in settings.models.iter().filter(|m| m.provider == hearth::config::ProviderSetting::Local) {
        let line = match plan(&m.path, hearth::models::kv_ask(m, settings)) {
            Ok(Some(fit)) => fit.to_string(),
            Ok(None) => "fit unknown (the GGUF header lacks the layer shape)".to_owned(),
            Err(reason) => reason,
        };
        println!("model {}: {line}", m.name);
    }
}
