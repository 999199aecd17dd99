//! The `hearth` binary. Reads top to bottom: arguments, configuration, tracing, the command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hearth::config::{ProviderSetting, Settings, Sources};
use hearth::{compute, server, telemetry};
use hearth_client::{bench, eval};

/// hearth: a chat and an embedding model, a vector store and a watched folder, on one machine.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about)]
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
    Serve,
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
    /// Internal: parse one document in a sandboxed child process (hearth runs this itself).
    #[command(hide = true)]
    ParseWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ParseWorker { args } = &cli.command {
        // Before the configuration: the worker reads nothing but the file it is given.
        return ingest::worker_main(args);
    }
    let settings = match Settings::load(&Sources::standard(cli.config.clone())) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("hearth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Validate => validate(&settings),
        Command::Info => info(&settings),
        Command::Routes => {
            for r in hearth::api::routes() {
                println!("{:<7} {:<58} {:<7} {}", r.method.as_str(), r.path, r.access.to_string(), r.body.name());
            }
            ExitCode::SUCCESS
        }
        Command::Bench(args) => bench::main(args),
        Command::Eval(args) => eval::main(args),
        Command::ParseWorker { .. } => ExitCode::FAILURE, // handled above
        Command::Serve => {
            telemetry::init();
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
    ExitCode::SUCCESS
}
