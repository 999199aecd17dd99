//! Watched folders: files dropped into a folder become searchable in a vector store.
//!
//! Design: one thread per folder compares a scan of the folder with what it has ingested
//! (`known`: path → size, modification time, inode, content hash, file id). File-system events
//! (the notify crate) only wake it early; a full rescan every `rescan_seconds` catches lost
//! events and queue overflows, so correctness never depends on events.
//! - A new or changed path is a *candidate* until its size and modification time have stayed the
//!   same for `stable_seconds` (a copy in progress is not read half-written); then it is hashed.
//! - Identity is the content hash: content the vector store already has is not embedded again.
//!   A path that vanished while a new one with the same inode, size and time appeared is a
//!   rename: the document is renamed, nothing is re-read.
//! - An edited file replaces its old document; a deleted file's document goes, unless another
//!   path still has the same content.
//! - Symbolic links are never followed and nothing outside the folder is opened: a settled file is
//!   opened beneath the folder's descriptor with no link allowed on the way, without blocking, and
//!   `fstat` on that descriptor must say "regular file" with the signature the scan saw (`open.rs`);
//!   it is then hashed and copied in one pass from that same descriptor. A symbolic link, FIFO or
//!   device swapped in after the scan is skipped with a log line, never read, and never blocks the
//!   watcher.
//! - `known` is saved atomically after every change; after a restart the first scan reconciles
//!   the folder with it (files added, edited or removed while hearth was down).

mod open;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use store::{Attributes, NewCollection};

use super::Ingestion;
use crate::library::Library;
use crate::config::{IngestSettings, WatchSettings};
use crate::files::{FileError, Upload};
use crate::provider::Backend;

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Signature {
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

/// A path that has been ingested (or has failed: it is not retried until it changes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    signature: Signature,
    sha256: String,
    file_id: String,
}

/// One watched folder's state.
struct Folder {
    root: PathBuf,
    /// The folder itself, opened once: every file is opened beneath it.
    dir: OwnedFd,
    vector_store_id: String,
    state_path: PathBuf,
    known: HashMap<String, Known>,
    candidates: HashMap<String, (Signature, Instant)>,
    too_large: HashMap<String, Signature>,
    ingestion: Arc<Ingestion>,
    stable: Duration,
}

/// Start a thread per `[[ingest.watch]]` entry. A folder that cannot be set up stops start-up
/// with the reason.
pub async fn start(ingestion: &Arc<Ingestion>, settings: &IngestSettings, state_dir: &Path) -> anyhow::Result<()> {
    for (i, watch) in settings.watch.iter().enumerate() {
        let library = ingestion.library();
        let Some(embedder) = library.default_embedder().cloned() else {
            tracing::warn!(folder = %watch.path.display(), "Not watching: no embedding model is configured in [[models]].");
            continue;
        };
        let exists = library.store().collections().iter().any(|c| c.name == watch.vector_store);
        let dimension = if exists { 0 } else {
            match Library::dimension(&embedder).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(folder = %watch.path.display(), error = %e, "Not watching: cannot learn the embedding model's dimension.");
                    continue;
                }
            }
        };
        let folder = Folder::open(ingestion.clone(), watch, settings, &state_dir.join("ingest").join(format!("watch-{i}.json")), &embedder, dimension)?;
        let rescan = Duration::from_secs_f64(settings.rescan_seconds);
        std::thread::Builder::new().name(format!("hearth-watch-{i}")).spawn(move || folder.run(rescan))?;
    }
    Ok(())
}

impl Folder {
    fn open(ingestion: Arc<Ingestion>, watch: &WatchSettings, settings: &IngestSettings, state_path: &Path, embedder: &Backend, dimension: usize) -> anyhow::Result<Folder> {
        use anyhow::Context;
        std::fs::create_dir_all(&watch.path).with_context(|| format!("cannot create watched folder {}", watch.path.display()))?;
        let root = watch.path.canonicalize().with_context(|| format!("cannot resolve watched folder {}", watch.path.display()))?;
        let dir = open::folder(&root).with_context(|| format!("cannot open watched folder {}", root.display()))?;
        let vector_store_id = ensure_vector_store(ingestion.library(), &watch.vector_store, &root, embedder, dimension)?;
        let known = std::fs::read(state_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        tracing::info!(folder = %root.display(), vector_store = %vector_store_id, "Watching folder.");
        Ok(Folder {
            root,
            dir,
            vector_store_id,
            state_path: state_path.to_path_buf(),
            known,
            candidates: HashMap::new(),
            too_large: HashMap::new(),
            ingestion,
            stable: Duration::from_secs_f64(settings.stable_seconds),
        })
    }

    /// The library the folder's files go into.
    fn library(&self) -> &Library {
        self.ingestion.library()
    }

    fn run(mut self, rescan: Duration) {
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Only changes wake the scanner: the scan's own directory reads and file hashing
            // raise access events, and waking on those would rescan forever.
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = tx.try_send(()); // a wake-up is already pending when full
            }
        })
        .and_then(|mut w| notify::Watcher::watch(&mut w, &self.root, notify::RecursiveMode::Recursive).map(|()| w));
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(folder = %self.root.display(), error = %e, "No file-system events; relying on rescans.");
                None
            }
        };
        loop {
            self.scan();
            // While a candidate is settling, look again soon; otherwise wait for an event or the rescan.
            let wait = if self.candidates.is_empty() { rescan } else { (self.stable / 2).clamp(Duration::from_millis(100), rescan) };
            match rx.recv_timeout(wait) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }

    /// One pass: compare the folder with `known` and act on the differences.
    fn scan(&mut self) {
        let seen = list_files(&self.root);
        let now = Instant::now();
        let mut changed = false;
        let missing: Vec<String> = self.known.keys().filter(|p| !seen.contains_key(*p)).cloned().collect();
        let mut missing_by_signature: HashMap<Signature, String> =
            missing.iter().filter_map(|p| Some((self.known.get(p)?.signature, p.clone()))).collect();

        for (rel, sig) in &seen {
            if self.known.get(rel).is_some_and(|k| k.signature == *sig) || self.too_large.get(rel) == Some(sig) {
                continue;
            }
            if let Some(old_path) = missing_by_signature.remove(sig) {
                self.rename(&old_path, rel);
                changed = true;
                continue;
            }
            match self.candidates.get(rel) {
                Some((s, since)) if s == sig && now.duration_since(*since) >= self.stable => {
                    self.candidates.remove(rel);
                    changed |= self.ingest(rel, *sig);
                }
                Some((s, _)) if s == sig => {}
                _ => {
                    self.candidates.insert(rel.clone(), (*sig, now));
                }
            }
        }
        self.candidates.retain(|rel, _| seen.contains_key(rel));
        for rel in missing_by_signature.into_values() {
            if let Some(gone) = self.known.remove(&rel) {
                tracing::info!(path = %rel, "Watched file removed.");
                self.release(&gone.file_id);
                changed = true;
            }
        }
        if changed {
            self.save();
            self.ingestion.report_queue();
        }
    }

    fn rename(&mut self, old: &str, new: &str) {
        let Some(entry) = self.known.remove(old) else { return };
        tracing::info!(from = %old, to = %new, "Watched file renamed; keeping its chunks.");
        if let Err(e) = self.library().store().update_document(&self.vector_store_id, &entry.file_id, Some(new.to_owned()), Some(path_attributes(new))) {
            tracing::warn!(path = %new, error = %e, "Could not rename the document.");
        }
        self.known.insert(new.to_owned(), entry);
    }

    /// Read a settled file once, from a descriptor checked to be the regular file the scan saw:
    /// the bytes hashed are the bytes copied. Attach new content, reuse content the store has.
    /// True when `known` changed.
    fn ingest(&mut self, rel: &str, sig: Signature) -> bool {
        if sig.size > self.library().files().max_bytes() {
            tracing::warn!(path = %rel, bytes = sig.size, limit = self.library().files().max_bytes(), "Watched file is larger than ingest.max_file_bytes; skipped.");
            self.too_large.insert(rel.to_owned(), sig);
            return false;
        }
        let (mut file, meta) = match open::regular_beneath(self.dir.as_fd(), Path::new(rel)) {
            Ok(opened) => opened,
            Err(e) if e.is_swap() => {
                tracing::warn!(path = %rel, found = %e, "Watched path is no longer the regular file the scan saw; skipped, not read.");
                return false;
            }
            Err(e) => {
                tracing::debug!(path = %rel, error = %e, "Watched file could not be opened; the next scan decides.");
                return false;
            }
        };
        if signature(&meta) != sig {
            return false; // replaced or written since the scan: it settles again
        }
        let upload = match self.library().files().upload_from(&mut file) {
            Ok(upload) => upload,
            Err(FileError::TooLarge { limit }) => {
                tracing::warn!(path = %rel, limit, "Watched file grew past ingest.max_file_bytes while read; skipped.");
                return false;
            }
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "Could not copy a watched file.");
                return false;
            }
        };
        if file.metadata().map(|m| signature(&m)).ok() != Some(sig) {
            return false; // written while read: the copy is no one version of it; it settles again
        }
        let sha256 = upload.sha256();
        let previous = self.known.get(rel).cloned();
        if previous.as_ref().is_some_and(|p| p.sha256 == sha256) {
            self.known.insert(rel.to_owned(), Known { signature: sig, sha256, file_id: previous.map(|p| p.file_id).unwrap_or_default() });
            return true;
        }
        let file_id = match self.library().store().find_by_hash(&self.vector_store_id, &sha256) {
            Ok(Some(doc)) => doc.id,
            _ => match self.add(rel, upload) {
                Some(id) => id,
                None => return false,
            },
        };
        tracing::info!(path = %rel, file = %file_id, "Watched file queued for ingestion.");
        self.known.insert(rel.to_owned(), Known { signature: sig, sha256, file_id });
        if let Some(old) = previous {
            self.release(&old.file_id); // an edit: the old content goes
        }
        true
    }

    fn add(&self, rel: &str, upload: Upload) -> Option<String> {
        let record = match self.library().files().commit(upload, rel, "assistants") {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "Could not store a watched file.");
                return None;
            }
        };
        match self.ingestion.attach(&self.vector_store_id, &record, None, path_attributes(rel)) {
            Ok(_) => Some(record.id),
            Err(e) => {
                tracing::warn!(path = %rel, error = %e, "Could not queue a watched file.");
                let _ = self.library().files().delete(&record.id);
                None
            }
        }
    }

    /// Remove a document and its file unless another watched path still has that content.
    fn release(&self, file_id: &str) {
        if self.known.values().any(|k| k.file_id == file_id) {
            return;
        }
        if let Err(e) = self.library().store().delete_document(&self.vector_store_id, file_id) {
            tracing::warn!(file = %file_id, error = %e, "Could not delete a removed file's document.");
        }
        let _ = self.library().files().delete(file_id);
    }

    fn save(&self) {
        let write = || crate::durable::write_atomic(&self.state_path, &serde_json::to_vec(&self.known).map_err(std::io::Error::other)?);
        if let Err(e) = write() {
            tracing::error!(path = %self.state_path.display(), error = %e, "Could not save the watched folder's state.");
        }
    }
}

/// The vector store named `name`, created for this folder when missing.
fn ensure_vector_store(library: &Library, name: &str, root: &Path, embedder: &Backend, dimension: usize) -> anyhow::Result<String> {
    if let Some(existing) = library.store().collections().into_iter().find(|c| c.name == name) {
        return Ok(existing.id);
    }
    let mut metadata = Attributes::new();
    metadata.insert("watched_folder".into(), root.display().to_string().into());
    let created = library.store().create_collection(NewCollection {
        name: name.to_owned(),
        embedding_model: embedder.name().to_owned(),
        dimension,
        metadata,
        index: library.vector_index(),
    })?;
    Ok(created.id)
}

fn path_attributes(rel: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert("path".into(), rel.into());
    a
}

/// Regular files under `root` by relative path, without following links; hidden files and the
/// usual partial-download names are left alone.
fn list_files(root: &Path) -> HashMap<String, Signature> {
    let mut out = HashMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || name.ends_with('~') || [".part", ".tmp", ".crdownload", ".swp"].iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
            if meta.file_type().is_dir() {
                dirs.push(entry.path());
            } else if meta.file_type().is_file() {
                let Ok(rel) = entry.path().strip_prefix(root).map(|p| p.to_string_lossy().into_owned()) else { continue };
                out.insert(rel, signature(&meta));
            } // symbolic links, sockets, devices: never opened (and refused again at the open)
        }
    }
    out
}

fn signature(meta: &std::fs::Metadata) -> Signature {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Signature { size: meta.len(), mtime_ns, inode: meta.ino() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn listing_skips_links_hidden_and_partial_files_and_sees_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("b.md"), "b").unwrap();
        std::fs::write(dir.path().join(".hidden"), "h").unwrap();
        std::fs::write(dir.path().join("c.pdf.part"), "p").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        let mut names: Vec<String> = list_files(dir.path()).into_keys().collect();
        names.sort();
        assert_eq!(names, ["b.md", "sub/a.txt"]);
    }
}
