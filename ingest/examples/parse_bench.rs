//! PDF pages per second: hearth's parser in-process, hearth's parser through the sandbox (one
//! child process per file, as the daemon runs it), and pypdf on the same files, in one run.
//!
//! ```sh
//! cargo build --release -p hearth-ingest --bins --examples
//! target/release/examples/parse_bench --rounds 3 --python .venv/bin/python /tmp/corpus/*.pdf
//! ```
//!
//! Each round parses every file once per tool (tools interleaved, so load changes hit all three);
//! the summary gives each tool's pages, total wall seconds and pages/s for its fastest and its
//! median round, and the CPU seconds of its fastest round (from /proc/self/stat for hearth: the
//! process for in-process, the children plus the parent for the sandbox; `time.process_time()`
//! for pypdf, without the interpreter's start-up). CPU time is the fairer figure on a shared,
//! loaded machine. Pages count only for files a tool read; time counts for every file.
//! `--per-file` lists each file's pages, characters and outcome from the first round.

use ingest::{parse_bytes, Format, Limits, Sandbox};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// CPU seconds used so far by this process and by its waited-for children (USER_HZ = 100).
fn proc_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields after the command: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
    let f: Vec<f64> = after_comm
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / 100.0;
    (tick(14) + tick(15), tick(16) + tick(17))
}

/// One tool's round: every file's outcome and the round's CPU seconds.
struct Round {
    outcomes: Vec<Outcome>,
    cpu: f64,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    pages: usize,
    chars: usize,
    seconds: f64,
    cpu_seconds: f64,
    error: Option<String>,
}

struct Args {
    rounds: usize,
    python: Option<PathBuf>,
    worker: PathBuf,
    per_file: bool,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/examples/parse_bench → target/release/hearth-parse-worker
    let default_worker = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hearth-parse-worker"))
        .ok_or("cannot locate the worker")?;
    let mut args = Args {
        rounds: 3,
        python: None,
        worker: default_worker,
        per_file: false,
        files: Vec::new(),
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--rounds") => {
                let v = it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or("--rounds N")?;
                args.rounds = v.parse().map_err(|_| format!("bad --rounds {v}"))?;
            }
            Some("--python") => args.python = Some(it.next().ok_or("--python PATH")?.into()),
            Some("--worker") => args.worker = it.next().ok_or("--worker PATH")?.into(),
            Some("--per-file") => args.per_file = true,
            _ => args.files.push(a.into()),
        }
    }
    if args.files.is_empty() {
        return Err("usage: parse_bench [--rounds N] [--python PY] [--worker PATH] [--per-file] FILE.pdf...".into());
    }
    args.files.sort();
    Ok(args)
}

fn in_process(path: &Path) -> Outcome {
    let started = Instant::now();
    let result = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            catch_unwind(AssertUnwindSafe(|| parse_bytes(&bytes, Format::Pdf)))
                .map_err(|_| "panic".to_owned())?
                .map_err(|e| e.to_string())
        });
    finish(started, result.map(|doc| count(&doc)))
}

async fn sandboxed(sandbox: &Sandbox, path: &Path) -> Outcome {
    let started = Instant::now();
    let result = sandbox
        .parse(path, Format::Pdf)
        .await
        .map_err(|e| e.to_string());
    finish(started, result.map(|doc| count(&doc)))
}

fn count(doc: &ingest::ParsedDocument) -> (usize, usize) {
    (doc.pages.len(), doc.char_count())
}

fn finish(started: Instant, result: Result<(usize, usize), String>) -> Outcome {
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok((pages, chars)) => Outcome {
            pages,
            chars,
            seconds,
            ..Outcome::default()
        },
        Err(e) => Outcome {
            seconds,
            error: Some(e),
            ..Outcome::default()
        },
    }
}

fn pypdf(python: &Path, files: &[PathBuf]) -> Result<Vec<Outcome>, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pypdf_bench.py");
    let out = Command::new(python)
        .arg(script)
        .args(files)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut outcomes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        outcomes.push(Outcome {
            pages: v["pages"].as_u64().unwrap_or(0) as usize,
            chars: v["chars"].as_u64().unwrap_or(0) as usize,
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            cpu_seconds: v["cpu_seconds"].as_f64().unwrap_or(0.0),
            error: v["error"].as_str().map(str::to_owned),
        });
    }
    if outcomes.len() != files.len() {
        return Err(format!(
            "pypdf answered for {} of {} files",
            outcomes.len(),
            files.len()
        ));
    }
    Ok(outcomes)
}

/// One tool's totals for one round: (pages read, wall seconds).
fn totals(outcomes: &[Outcome]) -> (usize, f64) {
    let pages = outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.pages)
        .sum();
    (pages, outcomes.iter().map(|o| o.seconds).sum())
}

fn summary(name: &str, rounds: &[Round]) {
    let mut runs: Vec<(usize, f64, f64)> = rounds
        .iter()
        .map(|r| {
            let (pages, wall) = totals(&r.outcomes);
            (pages, wall, r.cpu)
        })
        .collect();
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (pages, best, cpu) = runs[0];
    let median = runs[runs.len() / 2].1;
    let failed = rounds[0]
        .outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .count();
    let chars: usize = rounds[0].outcomes.iter().map(|o| o.chars).sum();
    println!(
        "| {name} | {pages} | {failed} | {chars} | {best:.2} | {:.1} | {median:.2} | {:.1} | {cpu:.2} | {:.1} |",
        pages as f64 / best,
        pages as f64 / median,
        pages as f64 / cpu
    );
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // pdf-extract panics by design on what it does not support; the outcome records it.
    std::panic::set_hook(Box::new(|_| {}));
    let sandbox = Sandbox::new(args.worker.clone(), Vec::new(), Limits::default());
    let (mut local, mut boxed, mut py) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        let (self0, _) = proc_cpu();
        let outcomes = args.files.iter().map(|f| in_process(f)).collect::<Vec<_>>();
        let (self1, children1) = proc_cpu();
        local.push(Round {
            outcomes,
            cpu: self1 - self0,
        });
        let outcomes = runtime.block_on(async {
            let mut v = Vec::new();
            for f in &args.files {
                v.push(sandboxed(&sandbox, f).await);
            }
            v
        });
        let (self2, children2) = proc_cpu();
        boxed.push(Round {
            outcomes,
            cpu: (self2 - self1) + (children2 - children1),
        });
        if let Some(python) = &args.python {
            match pypdf(python, &args.files) {
                Ok(v) => {
                    let cpu = v.iter().map(|o| o.cpu_seconds).sum();
                    py.push(Round { outcomes: v, cpu })
                }
                Err(e) => {
                    eprintln!("pypdf: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    if args.per_file {
        println!("| file | hearth pages | hearth chars | hearth outcome | pypdf pages | pypdf chars | pypdf outcome |");
        println!("|---|---|---|---|---|---|---|");
        for (i, f) in args.files.iter().enumerate() {
            let h = &boxed[0].outcomes[i];
            let p = py
                .first()
                .map(|r| r.outcomes[i].clone())
                .unwrap_or_default();
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let outcome = |o: &Outcome| o.error.clone().unwrap_or_else(|| "ok".into());
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} |",
                h.pages,
                h.chars,
                outcome(h),
                p.pages,
                p.chars,
                outcome(&p)
            );
        }
        println!();
    }
    println!(
        "{} files, {} rounds\n\n| parser | pages read | files failed | chars | best round s | pages/s | median round s | pages/s | CPU s (best round) | pages per CPU-s |",
        args.files.len(),
        args.rounds
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    summary("hearth in-process (pdf-extract 0.12.1)", &local);
    summary("hearth sandbox (a child per file)", &boxed);
    if !py.is_empty() {
        summary("pypdf", &py);
    }
    std::process::ExitCode::SUCCESS
}
