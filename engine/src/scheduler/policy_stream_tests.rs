//! The scheduler in llama.cpp's per-sequence KV layout (a stream per id), over the simulation of
//! `policy_tests.rs`: ids are taken lowest first, a cached prefix is the id's own stream or a copy,
//! a step's work goes in id order, and nothing is preempted for space.

use super::*;

/// `streams` streams of 4 blocks (16 tokens, max_model_len 16), one per running sequence.
fn per_sequence(streams: usize) -> SchedulerConfig {
    SchedulerConfig { per_sequence: true, max_model_len: 4 * BS, ..config(streams * 4, streams, streams as i32, 64) }
}

#[test]
fn new_sequences_take_the_lowest_idle_id() {
    let mut sim = Sim::new(per_sequence(3));
    let a = sim.push(prompt(0, 6), 8);
    let b = sim.push(prompt(100, 6), 8);
    let ids: Vec<i32> = sim.admit().iter().map(|x| x.llama_id).collect();
    assert_eq!(ids, vec![0, 1]);
    sim.cancel(a);
    sim.push(prompt(200, 6), 8);
    let ids: Vec<i32> = sim.admit().iter().map(|x| x.llama_id).collect();
    assert_eq!(ids, vec![0], "the gap is filled, so running ids stay consecutive");
    assert_eq!(sim.running_keys()[0], b);
}

#[test]
fn a_steps_work_goes_in_id_order() {
    let mut sim = Sim::new(per_sequence(3));
    for first in [0, 100, 200] {
        sim.push(prompt(first, 6), 8);
    }
    sim.step();
    // Running in admission order 0, 1, 2; the first leaves, a new one takes id 0 and prefills.
    sim.cancel(sim.running_keys()[0]);
    sim.push(prompt(300, 6), 8);
    let plan = sim.step();
    let ids: Vec<i32> = plan.work.iter().map(|w| sim.s.running.iter().find(|e| e.key == w.key).and_then(|e| e.llama_id).unwrap_or(-1)).collect();
    assert_eq!(ids, vec![0, 1, 2], "one run of consecutive ids, one llama.cpp ubatch: {:?}", plan.work);
}

#[test]
fn a_repeated_prompt_reuses_its_own_stream_without_a_copy() {
    let mut sim = Sim::new(per_sequence(2));
    sim.push(prompt(0, 10), 1);
    sim.run_until_idle(10);
    sim.push(prompt(0, 10), 1);
    let before = sim.free_ids();
    let step = sim.s.admit_next(|_, _| None::<()>);
    sim.apply(&step.ops, &before);
    let admitted = step.admitted.unwrap_or_else(|| panic!("not admitted"));
    assert_eq!((admitted.llama_id, admitted.cached), (0, 8));
    assert_eq!(step.ops, vec![KvOp::Untag { seq: 0, p0: 8, p1: 16 }], "its own cells up to the match, no copy");
    sim.check();
}

#[test]
fn a_prefix_held_by_a_running_sequence_is_copied_into_the_new_stream() {
    let mut sim = Sim::new(per_sequence(2));
    let mut long = prompt(0, 8);
    long.extend(prompt(500, 4));
    sim.push(long, 8);
    sim.step(); // computed and registered: id 0 holds two blocks and keeps decoding
    let mut q = prompt(0, 8);
    q.extend(prompt(900, 3));
    sim.push(q, 4);
    let before = sim.free_ids();
    let step = sim.s.admit_next(|_, _| None::<()>);
    sim.apply(&step.ops, &before);
    let admitted = step.admitted.unwrap_or_else(|| panic!("not admitted"));
    assert_eq!((admitted.llama_id, admitted.cached), (1, 8));
    assert_eq!(step.ops, vec![KvOp::CopyStream { from: 0, to: 1, keep: 8 }]);
    sim.check();
    assert!(sim.run_until_idle(20) > 0);
}

#[test]
fn a_sequence_reaches_max_model_len_without_preempting_anyone() {
    let mut sim = Sim::new(per_sequence(2));
    sim.push(prompt(0, 5), 100);
    sim.push(prompt(100, 5), 100);
    for _ in 0..20 {
        let plan = sim.step();
        assert!(plan.preempted.is_empty(), "nothing is preempted: each stream holds max_model_len");
    }
    assert!(sim.is_idle());
    assert!(sim.done.iter().all(|d| d.1 == Outcome::Length));
}

#[test]
fn a_prefix_restored_from_below_replaces_the_ids_old_cells() {
    let mut sim = Sim::new(per_sequence(1));
    sim.push(prompt(0, 10), 1);
    sim.run_until_idle(10);
    assert!(sim.s.blocks.is_holding(0));
    let p = prompt(500, 14);
    sim.push(p.clone(), 1);
    let before = sim.free_ids();
    let step = sim.s.admit_next(|_, hot| (hot == 0).then_some("entry"));
    sim.apply(&step.ops, &before);
    let admitted = step.admitted.unwrap_or_else(|| panic!("not admitted"));
    assert_eq!((admitted.llama_id, admitted.cached, admitted.restore), (0, 0, Some("entry")));
    assert_eq!(step.ops, vec![KvOp::Untag { seq: 0, p0: 0, p1: 16 }], "the old prompt's cells go before the restore");
    // The caller restored 12 tokens: simulate the cells, then they are registered.
    for pos in 0..12 {
        sim.cells.insert((0, pos), 9_000 + pos as u64);
    }
    sim.s.restored(admitted.key, 12);
    assert_eq!(sim.s.blocks.registered_tokens(admitted.key), 12);
    sim.check();
}
