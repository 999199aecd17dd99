//! The tiers' bookkeeping, without any I/O: which saved prefixes exist, where their KV lives (host
//! RAM, a file, or both), how many bytes each tier holds, and what to evict.
//!
//! An *entry* is the KV state of one finished sequence's registered blocks: positions
//! `0..tokens.len()`, a whole number of blocks. It can serve any prompt that starts with one of its
//! block chains (a prefix of it): the engine restores the entry and truncates it to the match.
//! Entries are found through the hash chain of their blocks (the same chain the block manager
//! uses), and every match is confirmed by comparing tokens, so a hash collision never serves a
//! wrong prefix.
//!
//! Each entry is in RAM, on disk, or both. The disk copy is written through when the entry is
//! saved (so a restart keeps it), and RAM is a cache above it. Bounds are in bytes, per tier:
//! when a tier is over its bound it drops copies, never-reused entries first while they hold more
//! than a quarter of the tier, then least recently used; an entry with no copy left is forgotten.
//! The index never does I/O itself: it returns [`Action`]s (write this entry, delete that file),
//! which the caller performs in order.
//!
//! Invariants (checked by the property test): `ram_bytes` and `disk_bytes` equal the sums over
//! the entries' copies and stay within their bounds after every call; every chain hash of every
//! entry is indexed, and the index names no forgotten entry.

use std::collections::HashMap;
use std::sync::Arc;

/// Names an entry (and its file, `{id:016x}.kv`).
pub(crate) type EntryId = u64;

/// What the caller must do on disk, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Write entry `id` (its tokens and `payload`) to its file, then report with
    /// [`TierIndex::written`].
    Write { id: EntryId, tokens: Vec<i32>, payload: Arc<Vec<u8>> },
    /// Delete entry `id`'s file (after any write of it queued before).
    Delete { id: EntryId },
}

/// Where an entry's disk copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// No file.
    Absent,
    /// A write is queued or running; its bytes are already counted.
    Writing,
    /// The file is complete.
    Stored,
}

#[derive(Debug)]
struct Entry {
    /// Hashes of the entry's blocks, in order.
    chain: Vec<u64>,
    /// The tokens at positions `0..tokens.len()`.
    tokens: Vec<i32>,
    /// Size of the KV state, which is what each tier holds of it.
    bytes: u64,
    /// The KV state, while in the RAM tier.
    ram: Option<Arc<Vec<u8>>>,
    disk: Disk,
    /// Last saved or served, on the index's clock.
    stamp: u64,
    /// Served at least once.
    reused: bool,
}

/// Which tier a copy is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Host RAM.
    Ram,
    /// A file in the state directory.
    Disk,
}

/// The longest saved prefix of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub id: EntryId,
    /// Blocks of the prompt the entry covers.
    pub blocks: usize,
    /// Where the copy to restore is (RAM when both).
    pub tier: Tier,
    /// Tokens the whole entry holds (a restore places all of them before truncating).
    pub entry_tokens: usize,
}

/// Bytes and entries per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub ram_bytes: u64,
    pub disk_bytes: u64,
    pub ram_entries: usize,
    pub disk_entries: usize,
}

/// Index of saved prefixes and their copies.
#[derive(Debug)]
pub(crate) struct TierIndex {
    block_size: usize,
    ram_limit: u64,
    disk_limit: u64,
    entries: HashMap<EntryId, Entry>,
    /// Block hash -> entries containing that block, most recently added last.
    by_hash: HashMap<u64, Vec<EntryId>>,
    ram_bytes: u64,
    disk_bytes: u64,
    clock: u64,
    next_id: EntryId,
}

impl TierIndex {
    /// An empty index of `block_size`-token blocks; a limit of 0 turns that tier off.
    pub(crate) fn new(block_size: usize, ram_limit: u64, disk_limit: u64) -> Self {
        Self {
            block_size: block_size.max(1),
            ram_limit,
            disk_limit,
            entries: HashMap::new(),
            by_hash: HashMap::new(),
            ram_bytes: 0,
            disk_bytes: 0,
            clock: 0,
            next_id: 1,
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            ram_bytes: self.ram_bytes,
            disk_bytes: self.disk_bytes,
            ram_entries: self.entries.values().filter(|e| e.ram.is_some()).count(),
            disk_entries: self.entries.values().filter(|e| e.disk != Disk::Absent).count(),
        }
    }

    /// The entry covering the most of `chain` (the prompt's block hashes, at most `max_blocks` of
    /// them), confirmed against `tokens`.
    pub(crate) fn lookup(&self, chain: &[u64], tokens: &[i32], max_blocks: usize) -> Option<Found> {
        let n = chain.len().min(max_blocks).min(tokens.len() / self.block_size);
        for i in (0..n).rev() {
            let Some(ids) = self.by_hash.get(&chain[i]) else { continue };
            let covered = (i + 1) * self.block_size;
            for &id in ids.iter().rev() {
                let Some(e) = self.entries.get(&id) else { continue };
                let tier = match (&e.ram, e.disk) {
                    (Some(_), _) => Tier::Ram,
                    (None, Disk::Stored) => Tier::Disk,
                    (None, _) => continue, // only a write in flight: not readable yet
                };
                if e.chain.get(i) == Some(&chain[i]) && e.tokens.get(..covered) == tokens.get(..covered) {
                    return Some(Found { id, blocks: i + 1, tier, entry_tokens: e.tokens.len() });
                }
            }
        }
        None
    }

    /// Whether an entry already holds all of `chain` (saving it again would add nothing).
    pub(crate) fn covers(&self, chain: &[u64], tokens: &[i32]) -> bool {
        !chain.is_empty() && self.lookup(chain, tokens, chain.len()).is_some_and(|f| f.blocks == chain.len())
    }

    /// Entry `id` was served: it counts as reused and recent.
    pub(crate) fn touch(&mut self, id: EntryId) {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(&id) {
            e.stamp = self.clock;
            e.reused = true;
        }
    }

    /// The RAM copy of `id`, if it has one.
    pub(crate) fn ram_copy(&self, id: EntryId) -> Option<Arc<Vec<u8>>> {
        self.entries.get(&id).and_then(|e| e.ram.clone())
    }

    /// The tokens of entry `id` (to check a file against).
    pub(crate) fn tokens(&self, id: EntryId) -> Option<&[i32]> {
        self.entries.get(&id).map(|e| e.tokens.as_slice())
    }

    /// Save the KV `payload` of positions `0..tokens.len()` whose block hashes are `chain`. Entries
    /// that are prefixes of it are replaced; `disk` says whether a write may be queued now.
    pub(crate) fn insert(&mut self, chain: Vec<u64>, tokens: Vec<i32>, payload: Arc<Vec<u8>>, disk: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        if chain.is_empty() || tokens.len() != chain.len() * self.block_size || self.covers(&chain, &tokens) {
            return actions;
        }
        let bytes = payload.len() as u64;
        let in_ram = bytes <= self.ram_limit;
        let on_disk = disk && bytes <= self.disk_limit;
        if !in_ram && !on_disk {
            return actions;
        }
        // Shorter entries along the same chain are covered by this one from now on.
        let shorter: Vec<EntryId> = chain
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.by_hash.get(h).map(|ids| (i, ids)))
            .flat_map(|(i, ids)| ids.iter().map(move |&id| (i, id)))
            .filter(|&(i, id)| self.entries.get(&id).is_some_and(|e| e.chain.len() == i + 1 && e.tokens[..] == tokens[..e.tokens.len()]))
            .map(|(_, id)| id)
            .collect();
        for id in shorter {
            self.forget(id, &mut actions);
        }
        self.clock += 1;
        let id = self.next_id;
        self.next_id += 1;
        for h in &chain {
            self.by_hash.entry(*h).or_default().push(id);
        }
        if in_ram {
            self.ram_bytes += bytes;
        }
        if on_disk {
            self.disk_bytes += bytes;
            actions.push(Action::Write { id, tokens: tokens.clone(), payload: Arc::clone(&payload) });
        }
        let disk = if on_disk { Disk::Writing } else { Disk::Absent };
        self.entries.insert(id, Entry { chain, tokens, bytes, ram: in_ram.then_some(payload), disk, stamp: self.clock, reused: false });
        self.enforce(&mut actions);
        actions
    }

    /// An entry found on disk at start-up (`order`: older files first).
    pub(crate) fn insert_stored(&mut self, id: EntryId, chain: Vec<u64>, tokens: Vec<i32>, bytes: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.entries.contains_key(&id) || chain.is_empty() {
            return actions;
        }
        self.clock += 1;
        self.next_id = self.next_id.max(id + 1);
        for h in &chain {
            self.by_hash.entry(*h).or_default().push(id);
        }
        self.disk_bytes += bytes;
        self.entries.insert(id, Entry { chain, tokens, bytes, ram: None, disk: Disk::Stored, stamp: self.clock, reused: false });
        self.enforce(&mut actions);
        actions
    }

    /// A file read of `id` gave `payload`: keep it in RAM too, if it fits.
    pub(crate) fn promote(&mut self, id: EntryId, payload: Arc<Vec<u8>>) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(e) = self.entries.get_mut(&id) else { return actions };
        if e.ram.is_none() && e.bytes <= self.ram_limit {
            e.ram = Some(payload);
            self.ram_bytes += e.bytes;
            self.enforce(&mut actions);
        }
        actions
    }

    /// The write of `id` finished (`ok`) or failed.
    pub(crate) fn written(&mut self, id: EntryId, ok: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(e) = self.entries.get_mut(&id) else { return actions }; // forgotten: its delete is queued
        if e.disk != Disk::Writing {
            return actions;
        }
        if ok {
            e.disk = Disk::Stored;
        } else {
            e.disk = Disk::Absent;
            self.disk_bytes -= e.bytes;
            if e.ram.is_none() {
                self.forget(id, &mut actions);
            }
        }
        actions
    }

    /// Entry `id`'s file could not be read back (missing, truncated, corrupt): delete it.
    pub(crate) fn drop_disk_copy(&mut self, id: EntryId) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(e) = self.entries.get_mut(&id) else { return actions };
        if e.disk != Disk::Absent {
            e.disk = Disk::Absent;
            self.disk_bytes -= e.bytes;
            actions.push(Action::Delete { id });
        }
        if e.ram.is_none() {
            self.forget(id, &mut actions);
        }
        actions
    }

    /// Entry `id` cannot be restored at all (llama.cpp refused it): forget every copy.
    pub(crate) fn remove(&mut self, id: EntryId) -> Vec<Action> {
        let mut actions = Vec::new();
        self.forget(id, &mut actions);
        actions
    }

    /// Drop copies until both tiers are within their bounds.
    fn enforce(&mut self, actions: &mut Vec<Action>) {
        while self.ram_bytes > self.ram_limit {
            let Some(id) = self.victim(self.ram_limit, |e| e.ram.is_some()) else { break };
            let Some(e) = self.entries.get_mut(&id) else { break };
            e.ram = None;
            self.ram_bytes -= e.bytes;
            if e.disk == Disk::Absent {
                self.forget(id, actions);
            }
        }
        while self.disk_bytes > self.disk_limit {
            let Some(id) = self.victim(self.disk_limit, |e| e.disk != Disk::Absent) else { break };
            let Some(e) = self.entries.get_mut(&id) else { break };
            e.disk = Disk::Absent;
            self.disk_bytes -= e.bytes;
            actions.push(Action::Delete { id });
            if e.ram.is_none() {
                self.forget(id, actions);
            }
        }
    }

    /// The copy to drop from a tier of `limit` bytes (`in_tier` picks its entries): the oldest
    /// never-reused one while those hold more than a quarter of the tier, else the oldest.
    fn victim(&self, limit: u64, in_tier: impl Fn(&Entry) -> bool) -> Option<EntryId> {
        let tier = || self.entries.iter().filter(|(_, e)| in_tier(e));
        let unreused: u64 = tier().filter(|(_, e)| !e.reused).map(|(_, e)| e.bytes).sum();
        let pick = |only_unreused: bool| tier().filter(|(_, e)| !only_unreused || !e.reused).min_by_key(|(_, e)| e.stamp).map(|(&id, _)| id);
        if unreused > limit / 4 {
            pick(true)
        } else {
            pick(false)
        }
    }

    /// Forget `id`: unindex it, uncount its copies, delete its file.
    fn forget(&mut self, id: EntryId, actions: &mut Vec<Action>) {
        let Some(e) = self.entries.remove(&id) else { return };
        for h in &e.chain {
            if let Some(ids) = self.by_hash.get_mut(h) {
                ids.retain(|&x| x != id);
                if ids.is_empty() {
                    self.by_hash.remove(h);
                }
            }
        }
        if e.ram.is_some() {
            self.ram_bytes -= e.bytes;
        }
        if e.disk != Disk::Absent {
            self.disk_bytes -= e.bytes;
            actions.push(Action::Delete { id });
        }
    }

    /// Every invariant in the module header.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let ram: u64 = self.entries.values().filter(|e| e.ram.is_some()).map(|e| e.bytes).sum();
        let disk: u64 = self.entries.values().filter(|e| e.disk != Disk::Absent).map(|e| e.bytes).sum();
        assert_eq!((ram, disk), (self.ram_bytes, self.disk_bytes), "byte accounting");
        assert!(self.ram_bytes <= self.ram_limit, "RAM {} over {}", self.ram_bytes, self.ram_limit);
        assert!(self.disk_bytes <= self.disk_limit, "disk {} over {}", self.disk_bytes, self.disk_limit);
        for (id, e) in &self.entries {
            assert!(e.ram.is_some() || e.disk != Disk::Absent, "entry {id} has no copy");
            for h in &e.chain {
                assert!(self.by_hash.get(h).is_some_and(|ids| ids.contains(id)), "entry {id} not indexed");
            }
        }
        for ids in self.by_hash.values() {
            assert!(ids.iter().all(|id| self.entries.contains_key(id)), "index names a forgotten entry");
        }
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
