//! The binary's own small commands: `--version`'s long form, `completions`, `man` and
//! `migrate --check`, and `models`/`quantize` (the model library from the command line, `models.rs`).
//! The clap definition stays in `main.rs`; these take it (`Cli::command()`) or
//! the loaded settings and print.

pub mod models;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use hearth::config::{layers, Settings, Sources};
use hearth_client::target::DEFAULT_TARGET;

/// `hearth --version`: the release, the commit it was built from and the llama.cpp tree compiled in
/// (daemon/build.rs finds both; `unknown` where it could not).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("HEARTH_GIT_COMMIT"),
    "\nllama.cpp: ",
    env!("HEARTH_LLAMA_CPP")
);

/// The client commands' target without `--target`: `http://` and the configured `server.listen`
/// (an every-interface address as loopback) where the configuration can be read, else
/// [`DEFAULT_TARGET`]. Reads no key file and validates nothing, so it works for any user.
pub fn default_target(config: Option<std::path::PathBuf>) -> String {
    layers::client_listen(&Sources::standard(config)).map_or_else(|| DEFAULT_TARGET.to_owned(), |addr| format!("http://{addr}"))
}

/// `hearth completions SHELL`: the completion script on standard output.
pub fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut command, "hearth", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `hearth man [--out FILE]`: the man page hearth(1), every subcommand included.
pub fn man(command: clap::Command, out: Option<&Path>) -> ExitCode {
    let mut page = Vec::new();
    if let Err(e) = render_man(command, &mut page) {
        eprintln!("hearth: cannot render the man page: {e}");
        return ExitCode::FAILURE;
    }
    let written = match out {
        Some(path) => std::fs::write(path, &page).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => std::io::stdout().write_all(&page).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// hearth(1): the top-level page, then a SUBCOMMANDS section with each visible subcommand's
/// synopsis and options (one page rather than one per subcommand, so `man hearth` has it all).
fn render_man(command: clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let command = command.version(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("hearth {}", sub.get_name());
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(name));
        writeln!(out, ".SH \"HEARTH {}\"", sub.get_name().to_uppercase())?;
        sub_man.render_description_section(out)?;
        sub_man.render_synopsis_section(out)?;
        sub_man.render_options_section(out)?;
    }
    man.render_version_section(out)?;
    Ok(())
}

/// `hearth migrate --check`: the state directory's format and what a start would change.
pub fn migrate(settings: &Settings, check: bool) -> ExitCode {
    if !check {
        eprintln!("hearth: migrate: only --check exists (start-up applies the steps it lists); run `hearth migrate --check`");
        return ExitCode::from(2);
    }
    match hearth::state_format::check_report(&settings.server.state_dir) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::FAILURE
        }
    }
}
