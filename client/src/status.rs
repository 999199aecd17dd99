//! `hearth status`: what a running daemon serves and where its ingestion stands — readiness, the
//! models and the devices they run on, each vector store with its files (status, chunks, the
//! stage and progress of a file being ingested, the error of a failed one), the ingestion queue
//! (files in progress, all stores together), and whether the watched folder can work (it needs an
//! embedding model; without one the daemon serves chat only, and this says so).
//!
//! Everything comes from the public API (`/ready`, `/v1/models`, `/v1/vector_stores`, and each
//! store's files), so it needs no access to the daemon's configuration or state directory.
//! `--json` prints the same as one object ([`Status`]). `--wait-for NAME` polls until a file of
//! that name is ingested in any store, for scripts and the README's quickstart: exit 0 when it is
//! `completed`, 1 when it `failed` (with the reason) or the time runs out.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::api::{self, ApiError, Device, FileCounts, Progress, WatchedFolderConfig};
use crate::target::{Target, TargetArgs};

/// `hearth status`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Wait until a file of this name (as dropped into the watched folder or uploaded) is ingested
    /// in some vector store, then print the status: exit 0 when completed, 1 when it failed.
    #[arg(long, value_name = "FILENAME")]
    pub wait_for: Option<String>,
    /// Longest wait for `--wait-for`, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

/// The whole status, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The base URL asked.
    pub target: String,
    /// Whether `/ready` answered 200.
    pub ready: bool,
    /// Why not, when it did not.
    pub not_ready_reason: Option<String>,
    pub models: Vec<ModelStatus>,
    /// The devices the local models run on (each once).
    pub devices: Vec<Device>,
    pub vector_stores: Vec<StoreStatus>,
    /// Files being ingested or failed, all stores together.
    pub ingestion: Ingestion,
    pub watched_folder: WatchedFolder,
}

/// One model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub id: String,
    /// `chat`, `embedding`, or `null` where the server does not say.
    pub kind: Option<String>,
    /// `local` or `remote`.
    pub provider: Option<String>,
    pub max_model_len: Option<u64>,
    pub on_gpu: Option<bool>,
}

/// One vector store and its files.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub id: String,
    pub name: Option<String>,
    pub file_counts: FileCounts,
    pub files: Vec<FileStatus>,
}

/// One file of a vector store.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub id: String,
    pub filename: Option<String>,
    /// `in_progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub chunk_count: Option<u64>,
    /// The stage of a file being ingested (`parsing`, `embedding` with chunks done and total).
    pub progress: Option<Progress>,
    /// Why a failed file failed.
    pub error: Option<String>,
}

/// The ingestion queue, all stores together.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ingestion {
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Whether files dropped into a watched folder can be ingested.
#[derive(Debug, Clone, Serialize)]
pub struct WatchedFolder {
    /// An embedding model is served, so configured watched folders are watched.
    pub on: bool,
    /// Why, in a sentence.
    pub reason: String,
    /// The configured folders and their stores, where the server says (`/v1/console/session`).
    pub folders: Vec<WatchedFolderConfig>,
}

/// Run `hearth status`.
pub fn main(args: StatusArgs) -> ExitCode {
    let target = Target::new(&args.target);
    crate::runtime::block_on("hearth", run(&args, &target)).unwrap_or(ExitCode::FAILURE)
}

async fn run(args: &StatusArgs, target: &Target) -> Result<ExitCode, ApiError> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| ApiError::Unreachable { url: target.base().to_owned(), reason: e.to_string() })?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let status = collect(target, &http).await?;
        let waited = args.wait_for.as_deref().map(|name| find(&status, name));
        let done = match waited {
            None => Some(ExitCode::SUCCESS),
            Some(Some(file)) if file.status == "completed" => Some(ExitCode::SUCCESS),
            Some(Some(file)) if file.status == "failed" || file.status == "cancelled" => {
                eprintln!("hearth: {} {}: {}", file.filename.as_deref().unwrap_or(&file.id), file.status, file.error.as_deref().unwrap_or("no reason given"));
                Some(ExitCode::FAILURE)
            }
            Some(_) if Instant::now() >= deadline => {
                eprintln!("hearth: {} is not ingested after {} s", args.wait_for.as_deref().unwrap_or_default(), args.timeout);
                Some(ExitCode::FAILURE)
            }
            Some(_) => None,
        };
        if let Some(code) = done {
            print(&status, args.json);
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The newest file named `name`, in any store.
fn find<'a>(status: &'a Status, name: &str) -> Option<&'a FileStatus> {
    status.vector_stores.iter().flat_map(|s| &s.files).rfind(|f| f.filename.as_deref() == Some(name))
}

/// Whether the watched folders work, and why: they need an embedding model.
fn watched_folder(loading: bool, embedding: &[&str], configured: Option<Vec<WatchedFolderConfig>>) -> WatchedFolder {
    let listed = configured.as_ref().map(|folders| folders.iter().map(|f| format!("{} -> vector store {}", f.path, f.vector_store)).collect::<Vec<_>>().join(", "));
    let folders = configured.unwrap_or_default();
    let (on, reason) = match (loading, embedding.is_empty(), listed) {
        (true, _, _) => (false, "unknown until the models are loaded".to_owned()),
        (false, _, Some(listed)) if listed.is_empty() => (false, "off: no [[ingest.watch]] folder is configured".to_owned()),
        (false, true, listed) => {
            let configured = listed.map(|l| format!(" (configured: {l})")).unwrap_or_default();
            (false, format!("off{configured}: the server serves no embedding model, so watched folders, vector stores and file_search are off; add an embedding model to [[models]] (or drop replace_default_models = true)"))
        }
        (false, false, listed) => {
            let which = listed.unwrap_or_else(|| "a watched folder".to_owned());
            (true, format!("on: files dropped into {which} are embedded with {}", embedding.join(", ")))
        }
    };
    WatchedFolder { on, reason, folders }
}

/// Ask the server for everything [`Status`] holds.
pub async fn collect(target: &Target, http: &reqwest::Client) -> Result<Status, ApiError> {
    let not_ready_reason = match api::get::<serde_json::Value>(target, http, "/ready").await {
        Ok(_) => None,
        Err(ApiError::Status { message, .. }) => Some(message),
        Err(e) => return Err(e),
    };
    // A daemon still loading its models answers 503 here: report it as not ready, not as an error.
    let models: Vec<api::Model> = match api::list_all(target, http, "/v1/models").await {
        Err(ApiError::Status { status: 503, .. }) if not_ready_reason.is_some() => Vec::new(),
        other => other?,
    };
    let mut devices: Vec<Device> = Vec::new();
    for device in models.iter().filter_map(|m| m.meta.as_ref()).flat_map(|m| &m.devices) {
        if !devices.iter().any(|d| d.name == device.name) {
            devices.push(device.clone());
        }
    }
    let embedding: Vec<&str> = models.iter().filter(|m| m.kind() == Some("embedding")).map(|m| m.id.as_str()).collect();
    // The configured folders: `None` where the server has no such route (an older hearth, another server).
    let configured = api::get::<api::Session>(target, http, "/v1/console/session").await.ok().map(|s| s.watched_folders);
    let watched_folder = watched_folder(not_ready_reason.is_some() && models.is_empty(), &embedding, configured);
    let mut vector_stores = Vec::new();
    let mut ingestion = Ingestion::default();
    // A server without vector stores (no embedding model, or not hearth) lists none.
    let stores: Vec<api::VectorStore> = if embedding.is_empty() {
        Vec::new()
    } else {
        match api::list_all(target, http, "/v1/vector_stores").await {
            Err(ApiError::Status { status: 503, .. }) if not_ready_reason.is_some() => Vec::new(),
            other => other?,
        }
    };
    for store in stores {
        let files: Vec<api::VectorStoreFile> = api::list_all(target, http, &format!("/v1/vector_stores/{}/files", store.id)).await?;
        let files: Vec<FileStatus> = files
            .into_iter()
            .map(|f| FileStatus {
                id: f.id,
                filename: f.filename,
                status: f.status,
                chunk_count: f.chunk_count,
                progress: f.progress,
                error: f.last_error.map(|e| e.message),
            })
            .collect();
        ingestion.in_progress += files.iter().filter(|f| f.status == "in_progress").count() as u64;
        ingestion.completed += files.iter().filter(|f| f.status == "completed").count() as u64;
        ingestion.failed += files.iter().filter(|f| f.status == "failed").count() as u64;
        vector_stores.push(StoreStatus { id: store.id, name: store.name, file_counts: store.file_counts, files });
    }
    let models = models
        .into_iter()
        .map(|m| {
            let meta = m.meta.clone().unwrap_or_default();
            ModelStatus { id: m.id, kind: meta.kind, provider: meta.provider, max_model_len: m.max_model_len, on_gpu: meta.on_gpu }
        })
        .collect();
    Ok(Status { target: target.base().to_owned(), ready: not_ready_reason.is_none(), not_ready_reason, models, devices, vector_stores, ingestion, watched_folder })
}

fn print(status: &Status, json: bool) {
    if json {
        match serde_json::to_string_pretty(status) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("hearth: {e}"),
        }
        return;
    }
    print!("{}", render(status));
}

/// The text form.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let ready = match &status.not_ready_reason {
        None => "ready".to_owned(),
        Some(reason) => format!("NOT READY: {reason}"),
    };
    out.push_str(&format!("hearth at {}: {ready}\n", status.target));
    out.push_str("models:\n");
    for m in &status.models {
        let place = match m.on_gpu {
            Some(true) => "GPU",
            Some(false) => "CPU",
            None => "-",
        };
        let context = m.max_model_len.map_or_else(|| "-".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "  {:<28} {:<10} {:<7} context {:<7} on {place}\n",
            m.id,
            m.kind.as_deref().unwrap_or("-"),
            m.provider.as_deref().unwrap_or("-"),
            context
        ));
    }
    out.push_str("devices:\n");
    if status.devices.is_empty() {
        out.push_str("  (none reported)\n");
    }
    for d in &status.devices {
        let memory = if d.memory_total > 0 { format!(", {} MiB free of {} MiB", d.memory_free >> 20, d.memory_total >> 20) } else { String::new() };
        out.push_str(&format!("  {} ({}): {}{memory}\n", d.name, d.kind, d.description));
    }
    out.push_str(&format!("watched folder: {}\n", status.watched_folder.reason));
    let i = status.ingestion;
    out.push_str(&format!("ingestion: {} in progress, {} completed, {} failed\n", i.in_progress, i.completed, i.failed));
    out.push_str("vector stores:\n");
    if status.vector_stores.is_empty() {
        out.push_str("  (none)\n");
    }
    for s in &status.vector_stores {
        let c = s.file_counts;
        out.push_str(&format!(
            "  {} ({}): {} files, {} completed, {} in progress, {} failed\n",
            s.name.as_deref().unwrap_or("-"),
            s.id,
            c.total,
            c.completed,
            c.in_progress,
            c.failed
        ));
        for f in &s.files {
            let detail = match (&f.progress, &f.error, f.chunk_count) {
                (Some(p), _, _) => match (p.chunks_embedded, p.chunks_total) {
                    (Some(done), Some(total)) => format!("{}: {done}/{total} chunks", p.stage),
                    _ => p.stage.clone(),
                },
                (None, Some(error), _) => error.clone(),
                (None, None, Some(chunks)) => format!("{chunks} chunks"),
                (None, None, None) => String::new(),
            };
            out.push_str(&format!("    {:<40} {:<12} {detail}\n", f.filename.as_deref().unwrap_or(&f.id), f.status));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> Option<Vec<WatchedFolderConfig>> {
        Some(vec![WatchedFolderConfig { path: "./inbox".into(), vector_store: "inbox".into() }])
    }

    #[test]
    fn the_watched_folder_is_on_only_with_an_embedding_model_and_a_folder() {
        let on = watched_folder(false, &["minilm"], inbox());
        assert!(on.on && on.reason == "on: files dropped into ./inbox -> vector store inbox are embedded with minilm", "{}", on.reason);
        let off = watched_folder(false, &[], inbox());
        assert!(!off.on && off.reason.starts_with("off (configured: ./inbox -> vector store inbox): the server serves no embedding model"), "{}", off.reason);
        let none = watched_folder(false, &["minilm"], Some(Vec::new()));
        assert!(!none.on && none.reason.contains("no [[ingest.watch]] folder"), "{}", none.reason);
        let unknown_folders = watched_folder(false, &["minilm"], None);
        assert!(unknown_folders.on && unknown_folders.folders.is_empty() && unknown_folders.reason.contains("a watched folder"), "{}", unknown_folders.reason);
        assert!(!watched_folder(true, &[], None).on);
    }
}
