//! Tests of the tier index: lookups, replacement of shorter entries, eviction order, and a property
//! test that runs random saves, serves, finished and failed writes and unreadable files against
//! byte bounds, checking the accounting after every call.

use proptest::prelude::*;

use super::*;
use crate::kv::hash::chain;

const BS: usize = 4;

fn tokens(seed: i32, blocks: usize) -> Vec<i32> {
    (0..(blocks * BS) as i32).map(|i| seed * 1000 + i).collect()
}

fn save(index: &mut TierIndex, toks: &[i32], bytes: usize, disk: bool) -> Vec<Action> {
    index.insert(chain(7, toks, BS), toks.to_vec(), Arc::new(vec![0; bytes]), disk)
}

fn deleted(actions: &[Action]) -> Vec<EntryId> {
    actions.iter().filter_map(|a| if let Action::Delete { id } = a { Some(*id) } else { None }).collect()
}

#[test]
fn a_saved_prefix_serves_every_prompt_that_starts_with_part_of_it() {
    let mut index = TierIndex::new(BS, 1000, 0);
    let a = tokens(1, 3);
    assert!(save(&mut index, &a, 100, false).is_empty());
    // The same three blocks and more: three blocks; one block then different tokens: one block.
    let mut longer = a.clone();
    longer.extend([5, 5, 5, 5, 5]);
    let found = index.lookup(&chain(7, &longer, BS), &longer, usize::MAX).unwrap_or_else(|| panic!("no hit"));
    assert_eq!((found.blocks, found.tier), (3, Tier::Ram));
    let mut other = a[..BS].to_vec();
    other.extend(tokens(2, 2));
    assert_eq!(index.lookup(&chain(7, &other, BS), &other, usize::MAX).map(|f| f.blocks), Some(1));
    // At most `max_blocks`, and nothing for another salt (another model or KV setting).
    assert_eq!(index.lookup(&chain(7, &longer, BS), &longer, 2).map(|f| f.blocks), Some(2));
    assert_eq!(index.lookup(&chain(8, &longer, BS), &longer, usize::MAX), None);
    assert!(index.covers(&chain(7, &a[..2 * BS], BS), &a[..2 * BS]));
    index.check_invariants();
}

#[test]
fn a_hash_collision_is_caught_by_the_tokens() {
    let mut index = TierIndex::new(BS, 1000, 0);
    let a = tokens(1, 2);
    save(&mut index, &a, 10, false);
    // Same hashes (forged) over different tokens: no hit.
    let b = tokens(2, 2);
    assert_eq!(index.lookup(&chain(7, &a, BS), &b, usize::MAX), None);
}

#[test]
fn a_longer_entry_replaces_its_prefixes_and_a_covered_one_is_not_saved() {
    let mut index = TierIndex::new(BS, 1000, 1000);
    let long = tokens(1, 4);
    let first = save(&mut index, &long[..2 * BS], 10, true);
    assert!(matches!(first[..], [Action::Write { id: 1, .. }]));
    let second = save(&mut index, &long, 20, true);
    // Entry 1 goes (its file too), entry 2 is written.
    assert_eq!(deleted(&second), vec![1]);
    assert!(second.iter().any(|a| matches!(a, Action::Write { id: 2, .. })));
    assert!(save(&mut index, &long[..3 * BS], 15, true).is_empty(), "covered: nothing to do");
    assert_eq!(index.usage(), Usage { ram_bytes: 20, disk_bytes: 20, ram_entries: 1, disk_entries: 1 });
    index.check_invariants();
}

#[test]
fn ram_drops_the_oldest_never_reused_copy_and_keeps_the_disk_one() {
    let mut index = TierIndex::new(BS, 250, 10_000);
    for seed in 1..=3 {
        save(&mut index, &tokens(seed, 2), 100, true);
        index.written(seed as EntryId, true);
    }
    // 300 bytes over 250: entry 1 (oldest) leaves RAM but stays on disk.
    let a = tokens(1, 2);
    let found = index.lookup(&chain(7, &a, BS), &a, usize::MAX).unwrap_or_else(|| panic!("no hit"));
    assert_eq!((found.id, found.tier), (1, Tier::Disk));
    // Served from disk and promoted: now it is reused and recent, so the next save pushes entry 2 out.
    index.touch(1);
    index.promote(1, Arc::new(vec![0; 100]));
    let b = tokens(2, 2);
    assert_eq!(index.lookup(&chain(7, &b, BS), &b, usize::MAX).map(|f| f.tier), Some(Tier::Disk));
    assert_eq!(index.usage().ram_bytes, 200);
    index.check_invariants();
}

#[test]
fn reused_entries_outlive_a_stream_of_one_off_prompts() {
    let mut index = TierIndex::new(BS, 400, 0);
    let shared = tokens(1, 2);
    save(&mut index, &shared, 100, false);
    index.touch(1);
    for seed in 2..40 {
        save(&mut index, &tokens(seed, 2), 100, false);
        index.check_invariants();
    }
    assert!(index.lookup(&chain(7, &shared, BS), &shared, usize::MAX).is_some());
}

#[test]
fn a_failed_write_or_an_unreadable_file_forgets_a_disk_only_entry() {
    let mut index = TierIndex::new(BS, 0, 1000);
    save(&mut index, &tokens(1, 2), 100, true);
    let a = tokens(1, 2);
    // While the write is in flight there is no readable copy.
    assert_eq!(index.lookup(&chain(7, &a, BS), &a, usize::MAX), None);
    assert!(index.written(1, false).is_empty());
    assert_eq!(index.usage(), Usage::default());
    save(&mut index, &tokens(2, 2), 100, true);
    index.written(2, true);
    assert_eq!(deleted(&index.drop_disk_copy(2)), vec![2]);
    assert_eq!(index.usage(), Usage::default());
    index.check_invariants();
}

#[test]
fn entries_found_on_disk_are_served_and_bounded() {
    let mut index = TierIndex::new(BS, 1000, 250);
    for id in [5, 9, 7] {
        let t = tokens(id as i32, 2);
        index.insert_stored(id, chain(7, &t, BS), t, 100);
    }
    // 300 bytes over 250: the first found (oldest) goes.
    let t = tokens(5, 2);
    assert_eq!(index.lookup(&chain(7, &t, BS), &t, usize::MAX), None);
    let t = tokens(7, 2);
    assert_eq!(index.lookup(&chain(7, &t, BS), &t, usize::MAX).map(|f| (f.id, f.tier)), Some((7, Tier::Disk)));
    // New ids never reuse a file name.
    let actions = save(&mut index, &tokens(11, 1), 10, true);
    assert!(actions.iter().any(|a| matches!(a, Action::Write { id: 10, .. })));
    index.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Save { seed: i32, blocks: usize, bytes: usize, disk: bool },
    Serve { seed: i32, blocks: usize },
    Written { nth: usize, ok: bool },
    Unreadable { nth: usize },
    Refused { nth: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6i32, 1..5usize, 1..400usize, any::<bool>()).prop_map(|(seed, blocks, bytes, disk)| Op::Save { seed, blocks, bytes, disk }),
        2 => (0..6i32, 1..6usize).prop_map(|(seed, blocks)| Op::Serve { seed, blocks }),
        2 => (0..8usize, any::<bool>()).prop_map(|(nth, ok)| Op::Written { nth, ok }),
        1 => (0..8usize).prop_map(|nth| Op::Unreadable { nth }),
        1 => (0..8usize).prop_map(|nth| Op::Refused { nth }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn byte_bounds_hold_and_every_write_is_matched(ram in 0..1000u64, disk in 0..1000u64, ops in prop::collection::vec(op(), 1..80)) {
        let mut index = TierIndex::new(BS, ram, disk);
        // Files as the writer would leave them, by id: written, then maybe deleted.
        let mut files: std::collections::BTreeSet<EntryId> = Default::default();
        let mut writing: Vec<EntryId> = Vec::new();
        let apply = |actions: Vec<Action>, files: &mut std::collections::BTreeSet<EntryId>, writing: &mut Vec<EntryId>| {
            for a in actions {
                match a {
                    Action::Write { id, payload, tokens } => {
                        assert_eq!(tokens.len() % BS, 0);
                        assert!(payload.len() as u64 <= disk);
                        files.insert(id);
                        writing.push(id);
                    }
                    Action::Delete { id } => { files.remove(&id); }
                }
            }
        };
        for op in ops {
            let actions = match op {
                Op::Save { seed, blocks, bytes, disk } => save(&mut index, &tokens(seed, blocks), bytes, disk),
                Op::Serve { seed, blocks } => {
                    let t = tokens(seed, blocks);
                    match index.lookup(&chain(7, &t, BS), &t, usize::MAX) {
                        Some(f) => {
                            prop_assert!(f.blocks <= blocks);
                            index.touch(f.id);
                            if f.tier == Tier::Disk { index.promote(f.id, Arc::new(vec![0; 1])) } else { Vec::new() }
                        }
                        None => Vec::new(),
                    }
                }
                Op::Written { nth, ok } if !writing.is_empty() => {
                    let id = writing.remove(nth % writing.len());
                    if !ok {
                        files.remove(&id); // the writer removes what it could not finish
                    }
                    index.written(id, ok)
                }
                Op::Unreadable { nth } | Op::Refused { nth } if !files.is_empty() => {
                    let id = *files.iter().nth(nth % files.len()).unwrap_or(&0);
                    if matches!(op, Op::Refused { .. }) { index.remove(id) } else { index.drop_disk_copy(id) }
                }
                _ => Vec::new(),
            };
            apply(actions, &mut files, &mut writing);
            index.check_invariants();
            // Every entry with a disk copy has its file; no file outlives its entry's disk copy.
            let on_disk: std::collections::BTreeSet<EntryId> =
                index.entries.iter().filter(|(_, e)| e.disk != Disk::Absent).map(|(&id, _)| id).collect();
            prop_assert_eq!(&on_disk, &files);
        }
    }
}
