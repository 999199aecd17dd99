//! The tiered prefix cache: KV of finished sequences kept below llama.cpp's KV cache, in host RAM
//! and in files of the state directory, and restored into a new sequence on a hit.
//!
//! Why tiers: in llama.cpp's unified KV cache every kept cell adds to every decode step's attention
//! and mask work, so the hot cache keeps few unused blocks (the block manager's bounded SLRU pool);
//! a second app's system prompt pushed the first one's out, and rotating prompts never hit. Here a
//! finished sequence's registered blocks are copied out (`llama_state_seq_get_data_ext`, a memcpy
//! on the CPU) before the block manager lets them go, so the hot cache can stay small while
//! hundreds of prefixes stay a restore away (a copy back and a truncation, instead of a prefill).
//! The block manager still decides everything about sharing in the hot cache; the tiers only
//! answer "is a longer prefix saved below it?".
//!
//! The fingerprint ([`fingerprint`]) covers what makes a saved state valid: the model file (size,
//! modification time, and the bytes of its first and last MiB), the model's shape, and the settings
//! that change KV contents or layout (KV element type, flash attention, which transposes V, the
//! KV layout). Files carry it in their header; a file with another fingerprint is deleted at
//! start-up and refused at read, so a changed model or setting never restores stale KV. In memory,
//! entries are keyed by the block manager's hash chain, whose salt covers model and KV type, and
//! matches are confirmed token by token.
//!
//! Crash safety: see [`disk`]; a SIGKILL loses at most the files being written. Files are written
//! by one background thread, so the engine thread never waits for a disk; a write still in flight
//! is simply not served yet. At start-up the index is rebuilt from the directory, reading headers
//! only, at most [`MAX_FILES`] of them.

mod disk;
mod index;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

pub(crate) use self::disk::Fingerprint;
use self::index::{Action, EntryId, TierIndex};
pub(crate) use self::index::{Found, Tier, Usage};
use super::hash::chain;
use crate::config::PrefixTierConfig;

/// Most files read at start-up (further ones are deleted).
pub(crate) const MAX_FILES: usize = 4096;
/// Most writes queued at once; an entry saved while they are all busy stays in RAM only.
const MAX_WRITING: usize = 4;

/// The RAM and disk tiers of one model's prefix cache.
#[derive(Debug)]
pub(crate) struct PrefixTiers {
    index: TierIndex,
    block_size: usize,
    salt: u64,
    fingerprint: Fingerprint,
    disk: Option<DiskTier>,
}

#[derive(Debug)]
struct DiskTier {
    dir: PathBuf,
    /// `None` only while dropping.
    jobs: Option<Sender<Job>>,
    done: Receiver<(EntryId, bool)>,
    /// Writes queued and not reported yet.
    writing: usize,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Job {
    Write { id: EntryId, tokens: Vec<i32>, payload: Arc<Vec<u8>> },
    Delete { id: EntryId },
}

impl PrefixTiers {
    /// Open the tiers of `config` for blocks of `block_size` tokens hashed with `salt`; the disk
    /// tier's directory is scanned and its valid files indexed. `None` when both tiers are off.
    pub(crate) fn open(config: &PrefixTierConfig, block_size: usize, salt: u64, fingerprint: Fingerprint) -> Option<Self> {
        let disk_limit = if config.dir.is_some() { config.disk_bytes } else { 0 };
        if config.ram_bytes == 0 && disk_limit == 0 {
            return None;
        }
        let mut tiers = Self { index: TierIndex::new(block_size, config.ram_bytes, disk_limit), block_size: block_size.max(1), salt, fingerprint, disk: None };
        if let (Some(dir), true) = (&config.dir, disk_limit > 0) {
            match disk::scan(dir, &fingerprint, MAX_FILES) {
                Ok(scan) => {
                    tiers.start_disk(dir);
                    let found = scan.found.len();
                    for meta in scan.found {
                        let blocks = meta.tokens.len() / tiers.block_size;
                        let mut tokens = meta.tokens;
                        tokens.truncate(blocks * tiers.block_size);
                        let actions = tiers.index.insert_stored(meta.id, chain(salt, &tokens, tiers.block_size), tokens, meta.payload_len);
                        tiers.perform(actions);
                    }
                    let usage = tiers.index.usage();
                    tracing::info!(dir = %dir.display(), found, removed = scan.removed, entries = usage.disk_entries, bytes = usage.disk_bytes, "Prefix cache: disk tier indexed.");
                }
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "Prefix cache: the disk tier is off (its directory cannot be read)."),
            }
        }
        Some(tiers)
    }

    fn start_disk(&mut self, dir: &Path) {
        if self.disk.is_some() {
            return;
        }
        let (jobs, inbox) = channel::<Job>();
        let (report, done) = channel();
        let (thread_dir, fingerprint) = (dir.to_path_buf(), self.fingerprint);
        let thread = std::thread::Builder::new()
            .name("prefix-cache-disk".into())
            .spawn(move || writer(&thread_dir, &fingerprint, &inbox, &report))
            .map_err(|e| tracing::warn!(error = %e, "Prefix cache: cannot start the disk writer; the disk tier is off."))
            .ok();
        if thread.is_some() {
            self.disk = Some(DiskTier { dir: dir.to_path_buf(), jobs: Some(jobs), done, writing: 0, thread });
        }
    }

    /// The longest saved prefix of `tokens` below the hot cache, leaving at least one token to
    /// compute.
    pub(crate) fn lookup(&mut self, tokens: &[i32]) -> Option<Found> {
        self.poll();
        let max_blocks = tokens.len().saturating_sub(1) / self.block_size;
        let hashes = chain(self.salt, &tokens[..max_blocks * self.block_size], self.block_size);
        self.index.lookup(&hashes, tokens, max_blocks)
    }

    /// The KV state of a found entry: its RAM copy, or its file read and verified (then kept in
    /// RAM if it fits). `None` when the file is gone or invalid (it is deleted).
    pub(crate) fn load(&mut self, found: &Found) -> Option<Arc<Vec<u8>>> {
        self.index.touch(found.id);
        if let Some(payload) = self.index.ram_copy(found.id) {
            return Some(payload);
        }
        let dir = self.disk.as_ref()?.dir.clone();
        let tokens = self.index.tokens(found.id)?.to_vec();
        match disk::read_payload(&dir, found.id, &self.fingerprint, &tokens) {
            Ok(bytes) => {
                let payload = Arc::new(bytes);
                let actions = self.index.promote(found.id, Arc::clone(&payload));
                self.perform(actions);
                Some(payload)
            }
            Err(e) => {
                tracing::warn!(file = %disk::path(&dir, found.id).display(), reason = %e, "Prefix cache: skipping and deleting a file.");
                let actions = self.index.drop_disk_copy(found.id);
                self.perform(actions);
                None
            }
        }
    }

    /// llama.cpp refused entry `found`'s state: forget it everywhere.
    pub(crate) fn refused(&mut self, found: &Found) {
        let actions = self.index.remove(found.id);
        self.perform(actions);
    }

    /// Whether saving the KV of `tokens` (whole blocks) would add anything.
    pub(crate) fn wants(&self, tokens: &[i32]) -> bool {
        tokens.len() >= self.block_size && !self.index.covers(&chain(self.salt, tokens, self.block_size), tokens)
    }

    /// Save `payload`, the KV state of positions `0..tokens.len()` (whole blocks).
    pub(crate) fn save(&mut self, tokens: Vec<i32>, payload: Vec<u8>) {
        self.poll();
        let can_write = self.disk.as_ref().is_some_and(|d| d.writing < MAX_WRITING);
        let actions = self.index.insert(chain(self.salt, &tokens, self.block_size), tokens, Arc::new(payload), can_write);
        self.perform(actions);
    }

    pub(crate) fn usage(&self) -> Usage {
        self.index.usage()
    }

    /// Take the writer's reports.
    fn poll(&mut self) {
        let Some(disk) = &mut self.disk else { return };
        let reports: Vec<(EntryId, bool)> = disk.done.try_iter().collect();
        disk.writing = disk.writing.saturating_sub(reports.len());
        for (id, ok) in reports {
            let actions = self.index.written(id, ok);
            self.perform(actions);
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        let Some(disk) = &mut self.disk else { return };
        for action in actions {
            let job = match action {
                Action::Write { id, tokens, payload } => {
                    disk.writing += 1;
                    Job::Write { id, tokens, payload }
                }
                Action::Delete { id } => Job::Delete { id },
            };
            if let Some(jobs) = &disk.jobs {
                let _ = jobs.send(job);
            }
        }
    }
}

impl Drop for PrefixTiers {
    /// Let the queued writes finish (at most [`MAX_WRITING`]), so a clean stop keeps them.
    fn drop(&mut self) {
        if let Some(disk) = &mut self.disk {
            disk.jobs = None;
            if let Some(thread) = disk.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The disk writer thread: performs jobs in order and reports each write.
fn writer(dir: &Path, fingerprint: &Fingerprint, inbox: &Receiver<Job>, report: &Sender<(EntryId, bool)>) {
    for job in inbox {
        match job {
            Job::Write { id, tokens, payload } => {
                let ok = match disk::write(dir, id, fingerprint, &tokens, &payload) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "Prefix cache: cannot write an entry; it stays in RAM only.");
                        false
                    }
                };
                let _ = report.send((id, ok));
            }
            Job::Delete { id } => {
                let _ = std::fs::remove_file(disk::path(dir, id));
            }
        }
    }
}

/// Fingerprint of a model file and of `settings` (every setting that changes KV contents or
/// layout, as text): the file's size and modification time and the bytes of its first and last
/// MiB, so a replaced or rewritten model is a different fingerprint without hashing gigabytes.
pub(crate) fn fingerprint(model: &Path, settings: &str) -> std::io::Result<Fingerprint> {
    use std::io::{Read, Seek, SeekFrom};
    const EDGE: u64 = 1 << 20;
    let mut file = std::fs::File::open(model)?;
    let meta = file.metadata()?;
    let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h = Sha256::new();
    h.update(b"hearth prefix cache\0");
    h.update(meta.len().to_le_bytes());
    h.update(mtime.to_le_bytes());
    let mut edge = Vec::with_capacity(EDGE as usize);
    (&mut file).take(EDGE).read_to_end(&mut edge)?;
    h.update(&edge);
    edge.clear();
    file.seek(SeekFrom::Start(meta.len().saturating_sub(EDGE)))?;
    file.take(EDGE).read_to_end(&mut edge)?;
    h.update(&edge);
    h.update(settings.as_bytes());
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, ram_bytes: u64, disk_bytes: u64) -> PrefixTierConfig {
        PrefixTierConfig { ram_bytes, disk_bytes, dir: Some(dir.to_path_buf()) }
    }

    /// Wait until the writer reported every queued write.
    fn settle(tiers: &mut PrefixTiers) {
        for _ in 0..500 {
            tiers.poll();
            if tiers.disk.as_ref().is_none_or(|d| d.writing == 0) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("writes never finished");
    }

    #[test]
    fn a_saved_prefix_survives_a_restart_through_the_disk_tier() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let prompt: Vec<i32> = (0..70).collect();
        {
            let mut tiers = PrefixTiers::open(&config(dir.path(), 1 << 20, 1 << 20), 16, 3, [1; 32]).unwrap_or_else(|| panic!("off"));
            assert!(tiers.wants(&prompt[..64]));
            tiers.save(prompt[..64].to_vec(), vec![42; 5000]);
            assert!(!tiers.wants(&prompt[..48]), "a prefix of a saved entry adds nothing");
            let found = tiers.lookup(&prompt).unwrap_or_else(|| panic!("no hit"));
            assert_eq!((found.blocks, found.tier), (4, Tier::Ram));
            settle(&mut tiers);
        }
        // A new process: the index is rebuilt from the file.
        let mut tiers = PrefixTiers::open(&config(dir.path(), 1 << 20, 1 << 20), 16, 3, [1; 32]).unwrap_or_else(|| panic!("off"));
        let found = tiers.lookup(&prompt).unwrap_or_else(|| panic!("no hit after restart"));
        assert_eq!((found.blocks, found.tier), (4, Tier::Disk));
        assert_eq!(tiers.load(&found).map(|p| p.len()), Some(5000));
        assert_eq!(tiers.lookup(&prompt).map(|f| f.tier), Some(Tier::Ram), "promoted after the read");
        // Another fingerprint (a changed model or setting): nothing, and the file is gone.
        drop(tiers);
        let mut stale = PrefixTiers::open(&config(dir.path(), 1 << 20, 1 << 20), 16, 3, [2; 32]).unwrap_or_else(|| panic!("off"));
        assert_eq!(stale.lookup(&prompt), None);
        assert_eq!(std::fs::read_dir(dir.path()).map(|d| d.count()).ok(), Some(0));
    }

    #[test]
    fn a_corrupt_file_is_skipped_deleted_and_never_loaded() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let prompt: Vec<i32> = (0..40).collect();
        {
            let mut tiers = PrefixTiers::open(&config(dir.path(), 0, 1 << 20), 16, 3, [1; 32]).unwrap_or_else(|| panic!("off"));
            tiers.save(prompt[..32].to_vec(), vec![1; 3000]);
            settle(&mut tiers);
        }
        let file = disk::path(dir.path(), 1);
        let mut bytes = std::fs::read(&file).unwrap_or_default();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
        let mut tiers = PrefixTiers::open(&config(dir.path(), 0, 1 << 20), 16, 3, [1; 32]).unwrap_or_else(|| panic!("off"));
        let found = tiers.lookup(&prompt).unwrap_or_else(|| panic!("the header is fine, so it is listed"));
        assert_eq!(tiers.load(&found), None);
        assert_eq!(tiers.lookup(&prompt), None);
        settle(&mut tiers);
        drop(tiers); // the delete is done by the writer, before it stops
        assert!(!file.exists());
    }

    #[test]
    fn both_tiers_off_is_no_tiers() {
        assert!(PrefixTiers::open(&PrefixTierConfig { ram_bytes: 0, disk_bytes: 1 << 30, dir: None }, 16, 0, [0; 32]).is_none());
        assert!(PrefixTiers::open(&PrefixTierConfig::default(), 16, 0, [0; 32]).is_none());
    }

    #[test]
    fn the_fingerprint_changes_with_the_file_and_the_settings() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, vec![3u8; 3 << 20]).unwrap_or_else(|e| panic!("{e}"));
        let fp = |s: &str| fingerprint(&model, s).unwrap_or_else(|e| panic!("{e}"));
        let first = fp("type_k=f16");
        assert_eq!(fp("type_k=f16"), first);
        assert_ne!(fp("type_k=q8_0"), first);
        // A rewrite that keeps the size and the modification time but changes the first MiB.
        let mtime = std::fs::metadata(&model).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{e}"));
        let mut bytes = vec![3u8; 3 << 20];
        bytes[10] = 4;
        std::fs::write(&model, &bytes).unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::options().write(true).open(&model).and_then(|f| f.set_modified(mtime)).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(fp("type_k=f16"), first);
        // The same bytes with a new modification time (a touched or copied-over file).
        bytes[10] = 3;
        std::fs::write(&model, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let later = mtime + std::time::Duration::from_secs(1);
        std::fs::File::options().write(true).open(&model).and_then(|f| f.set_modified(later)).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(fp("type_k=f16"), first);
        std::fs::File::options().write(true).open(&model).and_then(|f| f.set_modified(mtime)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fp("type_k=f16"), first, "the same file again");
    }
}
