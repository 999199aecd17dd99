//! The disk tier's file format, and the scan that rebuilds the index at start-up.
//!
//! One file per entry, `{id:016x}.kv`:
//!
//! ```text
//! magic "HRTHKVPC" | version u32 | fingerprint [u8; 32] | n_tokens u32 | payload_len u64
//! | tokens i32 x n_tokens | payload (llama.cpp's sequence state) | crc32 of all the above
//! ```
//! (integers little-endian). The fingerprint names the model file and every setting that changes
//! KV contents; a file with another fingerprint is stale and deleted, never restored.
//!
//! Crash safety: a file is written as `{id}.kv.tmp`, fsynced, renamed to its name and the
//! directory fsynced, so a file under its final name is always complete; a SIGKILL during a write
//! leaves only a `.tmp` file, which the next scan deletes. A file that is truncated or corrupt
//! anyway (a bad disk, a hand edit) is caught by its length at the scan and by its checksum before
//! its payload reaches llama.cpp, and deleted.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::index::EntryId;

/// Identifies the model file and KV-relevant settings a payload was computed with.
pub(crate) type Fingerprint = [u8; 32];

const MAGIC: &[u8; 8] = b"HRTHKVPC";
const VERSION: u32 = 1;
/// Magic, version, fingerprint, n_tokens, payload_len.
const FIXED: usize = 8 + 4 + 32 + 4 + 8;
const CHECKSUM: usize = 4;

/// Why a file is not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadFile {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a prefix-cache file (bad magic)")]
    Magic,
    #[error("format version {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("written for another model file or KV setting (fingerprint differs)")]
    Stale,
    #[error("{actual} bytes where the header says {expected} (truncated?)")]
    Length { expected: u64, actual: u64 },
    #[error("checksum mismatch (corrupt)")]
    Checksum,
    #[error("holds other tokens than its index entry")]
    Tokens,
}

/// What the header of a valid file says.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub id: EntryId,
    pub tokens: Vec<i32>,
    pub payload_len: u64,
    pub modified: SystemTime,
}

/// The result of a start-up scan.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Valid files, oldest first.
    pub found: Vec<Meta>,
    /// Files deleted: interrupted writes, stale, truncated or unreadable ones, and those past the limit.
    pub removed: usize,
}

pub(crate) fn path(dir: &Path, id: EntryId) -> PathBuf {
    dir.join(format!("{id:016x}.kv"))
}

fn parse_id(name: &str) -> Option<EntryId> {
    let hex = name.strip_suffix(".kv")?;
    (hex.len() == 16).then(|| EntryId::from_str_radix(hex, 16).ok()).flatten()
}

/// Write entry `id` crash-safely; returns the file's size.
pub(crate) fn write(dir: &Path, id: EntryId, fingerprint: &Fingerprint, tokens: &[i32], payload: &[u8]) -> io::Result<u64> {
    let tmp = dir.join(format!("{id:016x}.kv.tmp"));
    let written = write_file(&tmp, fingerprint, tokens, payload).and_then(|len| {
        std::fs::rename(&tmp, path(dir, id))?;
        File::open(dir)?.sync_all()?;
        Ok(len)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_file(tmp: &Path, fingerprint: &Fingerprint, tokens: &[i32], payload: &[u8]) -> io::Result<u64> {
    let n_tokens = u32::try_from(tokens.len()).map_err(|_| io::Error::other("too many tokens"))?;
    let mut head = Vec::with_capacity(FIXED + tokens.len() * 4);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(fingerprint);
    head.extend_from_slice(&n_tokens.to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    for t in tokens {
        head.extend_from_slice(&t.to_le_bytes());
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(payload);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((head.len() + payload.len() + CHECKSUM) as u64)
}

/// Read a file's header and tokens, checking everything but the checksum (the payload is not read).
pub(crate) fn read_meta(path: &Path, fingerprint: &Fingerprint) -> Result<(Vec<i32>, u64), BadFile> {
    let mut file = File::open(path)?;
    let actual = file.metadata()?.len();
    let mut fixed = [0u8; FIXED];
    file.read_exact(&mut fixed).map_err(|_| BadFile::Length { expected: FIXED as u64, actual })?;
    let (n_tokens, payload_len) = parse_fixed(&fixed, fingerprint)?;
    let expected = (FIXED + n_tokens * 4 + CHECKSUM) as u64 + payload_len;
    if actual != expected {
        return Err(BadFile::Length { expected, actual });
    }
    let mut raw = vec![0u8; n_tokens * 4];
    file.read_exact(&mut raw)?;
    Ok((tokens_of(&raw), payload_len))
}

/// Read entry `id`'s payload, verifying the checksum and that it holds `tokens`.
pub(crate) fn read_payload(dir: &Path, id: EntryId, fingerprint: &Fingerprint, tokens: &[i32]) -> Result<Vec<u8>, BadFile> {
    let mut bytes = std::fs::read(path(dir, id))?;
    let actual = bytes.len() as u64;
    if bytes.len() < FIXED + CHECKSUM {
        return Err(BadFile::Length { expected: (FIXED + CHECKSUM) as u64, actual });
    }
    let body = bytes.len() - CHECKSUM;
    let stored = u32::from_le_bytes([bytes[body], bytes[body + 1], bytes[body + 2], bytes[body + 3]]);
    if crc32fast::hash(&bytes[..body]) != stored {
        return Err(BadFile::Checksum);
    }
    let mut fixed = [0u8; FIXED];
    fixed.copy_from_slice(&bytes[..FIXED]);
    let (n_tokens, payload_len) = parse_fixed(&fixed, fingerprint)?;
    let start = FIXED + n_tokens * 4;
    if (start as u64) + payload_len != body as u64 {
        return Err(BadFile::Length { expected: start as u64 + payload_len + CHECKSUM as u64, actual });
    }
    if tokens_of(&bytes[FIXED..start]) != tokens {
        return Err(BadFile::Tokens);
    }
    bytes.truncate(body);
    bytes.drain(..start);
    Ok(bytes)
}

fn parse_fixed(fixed: &[u8; FIXED], fingerprint: &Fingerprint) -> Result<(usize, u64), BadFile> {
    if &fixed[..8] != MAGIC {
        return Err(BadFile::Magic);
    }
    let le32 = |at: usize| u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]]);
    let version = le32(8);
    if version != VERSION {
        return Err(BadFile::Version(version));
    }
    if &fixed[12..44] != fingerprint {
        return Err(BadFile::Stale);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&fixed[48..56]);
    Ok((le32(44) as usize, u64::from_le_bytes(len)))
}

fn tokens_of(raw: &[u8]) -> Vec<i32> {
    raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// List `dir`'s entries (creating it), deleting interrupted writes and invalid files; at most
/// `max_files` headers are read, so start-up work is bounded; further files are deleted.
pub(crate) fn scan(dir: &Path, fingerprint: &Fingerprint, max_files: usize) -> io::Result<Scan> {
    std::fs::create_dir_all(dir)?;
    let mut scan = Scan::default();
    for dirent in std::fs::read_dir(dir)? {
        let dirent = dirent?;
        let name = dirent.file_name().to_string_lossy().into_owned();
        let path = dirent.path();
        if name.ends_with(".kv.tmp") {
            tracing::debug!(file = %path.display(), "Prefix cache: removing an interrupted write.");
        } else if let Some(id) = parse_id(&name) {
            if scan.found.len() < max_files {
                match read_meta(&path, fingerprint) {
                    Ok((tokens, payload_len)) => {
                        let modified = dirent.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                        scan.found.push(Meta { id, tokens, payload_len, modified });
                        continue;
                    }
                    Err(e) => tracing::warn!(file = %path.display(), reason = %e, "Prefix cache: skipping and deleting a file."),
                }
            }
        } else {
            continue; // not ours
        }
        if std::fs::remove_file(&path).is_ok() {
            scan.removed += 1;
        }
    }
    scan.found.sort_by_key(|m| (m.modified, m.id));
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: Fingerprint = [7; 32];

    fn entry(dir: &Path, id: EntryId) -> (Vec<i32>, Vec<u8>) {
        let tokens: Vec<i32> = (0..32).map(|i| i * 3 - 5).collect();
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        write(dir, id, &FP, &tokens, &payload).unwrap_or_else(|e| panic!("{e}"));
        (tokens, payload)
    }

    #[test]
    fn a_written_file_reads_back_and_is_found_by_the_scan() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (tokens, payload) = entry(dir.path(), 0x2a);
        assert_eq!(read_payload(dir.path(), 0x2a, &FP, &tokens).ok(), Some(payload.clone()));
        let scan = scan(dir.path(), &FP, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scan.removed, 0);
        assert_eq!(scan.found.len(), 1);
        assert_eq!((scan.found[0].id, &scan.found[0].tokens, scan.found[0].payload_len), (0x2a, &tokens, payload.len() as u64));
    }

    #[test]
    fn a_corrupt_payload_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (tokens, _) = entry(dir.path(), 1);
        let file = path(dir.path(), 1);
        let mut bytes = std::fs::read(&file).unwrap_or_default();
        let at = bytes.len() - 100;
        bytes[at] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read_payload(dir.path(), 1, &FP, &tokens), Err(BadFile::Checksum)));
        // Its header is intact, so the scan alone keeps it; the read is what catches it.
        assert_eq!(scan(dir.path(), &FP, 10).map(|s| s.found.len()).ok(), Some(1));
    }

    #[test]
    fn the_scan_deletes_truncated_stale_and_interrupted_files_and_leaves_others_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        entry(dir.path(), 1);
        entry(dir.path(), 2);
        entry(dir.path(), 3);
        // 1 truncated (a crash mid-write outside the rename protocol), 2 stale, 3 fine.
        let one = path(dir.path(), 1);
        let len = std::fs::metadata(&one).map(|m| m.len()).unwrap_or(0);
        File::options().write(true).open(&one).and_then(|f| f.set_len(len / 2)).unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), 2, &[9; 32], &[1, 2], b"old").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("0000000000000004.kv.tmp"), b"half").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap_or_else(|e| panic!("{e}"));
        let scan = scan(dir.path(), &FP, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scan.found.iter().map(|m| m.id).collect::<Vec<_>>(), vec![3]);
        assert_eq!(scan.removed, 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|d| d.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["0000000000000003.kv".to_owned(), "notes.txt".to_owned()]);
    }

    #[test]
    fn a_stale_file_is_never_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (tokens, _) = entry(dir.path(), 5);
        assert!(matches!(read_payload(dir.path(), 5, &[8; 32], &tokens), Err(BadFile::Stale)));
        assert!(matches!(read_payload(dir.path(), 5, &FP, &tokens[1..]), Err(BadFile::Tokens)));
    }

    #[test]
    fn the_scan_reads_at_most_max_files_headers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for id in 1..=5 {
            entry(dir.path(), id);
        }
        let scan = scan(dir.path(), &FP, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((scan.found.len(), scan.removed), (3, 2));
    }
}
