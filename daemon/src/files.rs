//! Uploaded files (OpenAI's Files API), kept under `state_dir/files/`.
//!
//! Design: each file is two entries, `<id>` (the content, exactly as uploaded) and `<id>.json`
//! (its [`FileRecord`]). Content is streamed into `tmp/` while it is hashed and counted against
//! the size limit, fsynced, then renamed into place; the record is written the same way after it,
//! so a file is listed only once both are durable. The stored name is the id, never the client's
//! file name, which is only kept in the record. Ids are checked before they touch a path.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fault::ServiceError;
use crate::ids::{new_id, unix_now};

/// Why a file could not be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The content is larger than `ingest.max_file_bytes`.
    #[error("the file is larger than the limit of {limit} bytes (ingest.max_file_bytes)")]
    TooLarge { limit: u64 },
    /// No file has this id.
    #[error("no file with id `{0}`")]
    NotFound(String),
    /// The disk failed us.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The disk is short of the free-space reserve (`[store] min_free_bytes`).
    #[error(transparent)]
    NoSpace(#[from] store::NoSpace),
}

impl From<FileError> for ServiceError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::TooLarge { .. } => ServiceError::Invalid { message: e.to_string(), field: Some("file".into()), code: "file_too_large" },
            FileError::NotFound(id) => {
                let message = FileError::NotFound(id.clone()).to_string();
                ServiceError::NotFound { what: "file", id, message }
            }
            FileError::Io { .. } => ServiceError::Internal(e.to_string()),
            FileError::NoSpace(no_space) => no_space.into(),
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FileError {
    let context = context.into();
    move |source| FileError::Io { context, source }
}

/// A stored file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `file-` and 32 hex digits.
    pub id: String,
    /// The name the client gave (or the path inside a watched folder).
    pub filename: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// OpenAI's `purpose` (`assistants`, `user_data`, …).
    pub purpose: String,
    /// Hex sha256 of the content.
    pub sha256: String,
}

impl FileRecord {
    /// OpenAI's file object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "expires_at": null, "status_details": null,
        })
    }
}

/// The files directory.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    dir: PathBuf,
    max_bytes: u64,
    /// Refuses new content while the disk is short of its reserve.
    space: Option<store::SpaceGuard>,
}

/// Bytes an upload receives between two looks at the free space.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// Content being received; becomes a file with [`FileRegistry::commit`].
#[derive(Debug)]
pub struct Upload {
    file: std::fs::File,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    limit: u64,
    /// The registry's free-space guard, asked again every [`SPACE_CHECK_EVERY`] bytes, so a large
    /// upload stops at the reserve instead of filling the disk.
    space: Option<store::SpaceGuard>,
    /// `written` at which the guard is asked next.
    next_space_check: u64,
}

impl Upload {
    /// Append bytes; fails once the total passes the limit, or the disk its reserve.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        if let Some(guard) = self.space.as_ref().filter(|_| self.written >= self.next_space_check) {
            guard.check_written(self.written)?; // refused: dropping the upload removes what it wrote
            self.next_space_check = self.written + SPACE_CHECK_EVERY;
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(io("writing an upload"))
    }

    /// Hex sha256 of the bytes written so far.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Committed uploads were renamed away; anything left here is abandoned.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl FileRegistry {
    /// Opens (creates) `dir`, dropping uploads a crash left half-written.
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<Self, FileError> {
        let tmp = dir.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        Ok(FileRegistry { dir, max_bytes, space: None })
    }

    /// Refuse new content while the disk is short of `guard`'s reserve: before an upload starts,
    /// and again, with its size, before it is committed.
    pub fn with_space_guard(mut self, guard: store::SpaceGuard) -> Self {
        self.space = Some(guard);
        self
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Start receiving content.
    pub fn upload(&self) -> Result<Upload, FileError> {
        if let Some(guard) = &self.space {
            guard.check(0)?;
        }
        let path = self.dir.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let file = std::fs::File::create(&path).map_err(io("creating an upload"))?;
        Ok(Upload { file, path, hasher: Sha256::new(), written: 0, limit: self.max_bytes, space: self.space.clone(), next_space_check: SPACE_CHECK_EVERY })
    }

    /// Make a received upload durable and listed (blocking: fsync).
    pub fn commit(&self, mut upload: Upload, filename: &str, purpose: &str) -> Result<FileRecord, FileError> {
        upload.file.flush().and_then(|()| upload.file.sync_all()).map_err(io("syncing an upload"))?;
        if let Some(guard) = &self.space {
            guard.check_written(upload.written)?; // refused: dropping `upload` removes it
        }
        let record = FileRecord {
            id: new_id("file"),
            filename: filename.to_owned(),
            bytes: upload.written,
            created_at: unix_now(),
            purpose: purpose.to_owned(),
            sha256: hex::encode(std::mem::take(&mut upload.hasher).finalize()),
        };
        let content = self.dir.join(&record.id);
        std::fs::rename(&upload.path, &content).map_err(io("storing an upload"))?;
        self.write_record(&record)?;
        Ok(record)
    }

    /// Copy `source`, from its current offset to its end, into a new upload (blocking), hashing the
    /// bytes as they are written: the hash is of exactly the bytes stored. Commit it or drop it.
    /// A watched folder passes the descriptor it checked, never a path.
    pub fn upload_from(&self, source: &mut impl std::io::Read) -> Result<Upload, FileError> {
        let mut upload = self.upload()?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match source.read(&mut buf) {
                Ok(0) => return Ok(upload),
                Ok(n) => upload.write(&buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FileError::Io { context: "reading a file to copy".into(), source: e }),
            }
        }
    }

    fn write_record(&self, record: &FileRecord) -> Result<(), FileError> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| FileError::Io { context: "encoding a file record".into(), source: e.into() })?;
        crate::durable::write_atomic(&self.record_path(&record.id)?, &json).map_err(io("writing a file record"))
    }

    fn record_path(&self, id: &str) -> Result<PathBuf, FileError> {
        Ok(self.dir.join(format!("{}.json", checked_id(id)?)))
    }

    /// The content's path.
    pub fn content_path(&self, id: &str) -> Result<PathBuf, FileError> {
        Ok(self.dir.join(checked_id(id)?))
    }

    /// One file's record.
    pub fn get(&self, id: &str) -> Result<FileRecord, FileError> {
        let bytes = std::fs::read(self.record_path(id)?).map_err(|_| FileError::NotFound(id.to_owned()))?;
        serde_json::from_slice(&bytes).map_err(|e| FileError::Io { context: format!("file record {id} is damaged"), source: e.into() })
    }

    /// Every file, oldest first.
    pub fn list(&self) -> Vec<FileRecord> {
        let mut all: Vec<FileRecord> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .filter_map(|id| self.get(&id).ok())
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Remove a file's record and content.
    pub fn delete(&self, id: &str) -> Result<(), FileError> {
        let record = self.record_path(id)?;
        if !record.is_file() {
            return Err(FileError::NotFound(id.to_owned()));
        }
        std::fs::remove_file(&record).map_err(io("deleting a file record"))?;
        let _ = std::fs::remove_file(self.content_path(id)?);
        Ok(())
    }
}

/// Ids are ours (`file-` + hex); anything else never reaches a path.
fn checked_id(id: &str) -> Result<&str, FileError> {
    let ok = id.strip_prefix("file-").is_some_and(|hex| !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(id)
    } else {
        Err(FileError::NotFound(id.to_owned()))
    }
}

/// The first 4 KiB of a file (fewer for a shorter one), read at offset 0 without moving its offset: what
/// format detection looks at, for ingestion and for page images.
pub fn read_head(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; 4096];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok(head)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn upload_commit_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileRegistry::open(dir.path().join("files"), 10).unwrap();
        let mut up = files.upload().unwrap();
        up.write(b"hello").unwrap();
        let rec = files.commit(up, "../../etc/passwd", "assistants").unwrap();
        assert_eq!(rec.bytes, 5);
        assert_eq!(rec.sha256, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(std::fs::read(files.content_path(&rec.id).unwrap()).unwrap(), b"hello");
        assert!(!dir.path().join("etc").exists());
        assert_eq!(files.list(), vec![rec.clone()]);
        files.delete(&rec.id).unwrap();
        assert!(matches!(files.get(&rec.id), Err(FileError::NotFound(_))));
        assert!(files.list().is_empty());
    }

    #[test]
    fn a_copy_is_hashed_as_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileRegistry::open(dir.path().to_path_buf(), 8).unwrap();
        let up = files.upload_from(&mut &b"hello"[..]).unwrap();
        assert_eq!(up.sha256(), hex::encode(Sha256::digest(b"hello")));
        let rec = files.commit(up, "w/a.txt", "assistants").unwrap();
        assert_eq!(std::fs::read(files.content_path(&rec.id).unwrap()).unwrap(), b"hello");
        assert!(matches!(files.upload_from(&mut &[0u8; 9][..]), Err(FileError::TooLarge { limit: 8 })));
        assert!(matches!(files.upload_from(&mut std::io::repeat(0)), Err(FileError::TooLarge { limit: 8 })), "an endless source stops at the limit");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "refused copies are removed");
    }

    #[test]
    fn too_large_uploads_and_path_like_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileRegistry::open(dir.path().to_path_buf(), 4).unwrap();
        let mut up = files.upload().unwrap();
        assert!(matches!(up.write(b"12345"), Err(FileError::TooLarge { limit: 4 })));
        drop(up);
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "an abandoned upload is removed");
        for id in ["../x", "file-../../x", "file-", "tmp"] {
            assert!(matches!(files.get(id), Err(FileError::NotFound(_))), "{id}");
        }
    }
}
