//! Turns between embedding jobs: a long request is computed a batch at a time, in turn with every
//! other job, instead of as one block of work.
//!
//! Each batch is filled from the jobs in turn order: the first job's next inputs while they fit
//! (sequences and tokens), then the next job's, and so on; inputs of one job stay in order, since
//! their vectors are appended in order. After each batch the jobs that had a share go last, and a
//! new job goes before them, so the least recently served go first: a small request that arrives
//! while a 1,000-input one runs is in the next batch, not 30 batches later, no job waits more than
//! one batch for a share, and the heartbeat beats between batches. A job whose client went
//! away is dropped before its next batch, so an abandoned request stops costing compute.
//!
//! Pure bookkeeping over token counts, tested without a model.

use std::collections::VecDeque;

/// What one batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Inputs (llama.cpp sequences) in one batch.
    pub max_seqs: usize,
    /// Tokens in one batch; every input must fit alone (checked when a job arrives).
    pub max_tokens: usize,
}

/// A job as the rota sees it.
pub(crate) trait Turn {
    /// Token counts of the inputs not yet computed, in order.
    fn pending(&self) -> &[usize];
    /// The client went away: nothing more is computed for it.
    fn abandoned(&self) -> bool;
}

/// One job's share of a batch: `count` inputs of the job at `index` in turn order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    pub index: usize,
    pub count: usize,
}

/// The jobs in progress, in turn order.
#[derive(Debug)]
pub(crate) struct Rota<J> {
    jobs: VecDeque<Entry<J>>,
    limits: Limits,
}

#[derive(Debug)]
struct Entry<J> {
    job: J,
    /// Had a share of the last batch: such jobs come after those still waiting for one.
    served: bool,
}

impl<J: Turn> Rota<J> {
    pub(crate) fn new(limits: Limits) -> Self {
        Self { jobs: VecDeque::new(), limits }
    }

    /// A new job goes after the jobs waiting for a share and before those that just had one.
    pub(crate) fn push(&mut self, job: J) {
        let at = self.jobs.iter().position(|e| e.served).unwrap_or(self.jobs.len());
        self.jobs.insert(at, Entry { job, served: false });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs in progress.
    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// The job at `index` in turn order.
    pub(crate) fn job(&self, index: usize) -> Option<&J> {
        self.jobs.get(index).map(|e| &e.job)
    }

    /// The job at `index` in turn order, to record a batch's results.
    pub(crate) fn job_mut(&mut self, index: usize) -> Option<&mut J> {
        self.jobs.get_mut(index).map(|e| &mut e.job)
    }

    /// The jobs, in turn order.
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &J> {
        self.jobs.iter().map(|e| &e.job)
    }

    /// Forget jobs whose client went away; returns how many.
    pub(crate) fn drop_abandoned(&mut self) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|e| !e.job.abandoned());
        before - self.jobs.len()
    }

    /// The next batch: each job's share, in turn order, jobs with no share left out. Empty only
    /// when no job has inputs pending.
    pub(crate) fn next_batch(&self) -> Vec<Share> {
        let (mut seqs, mut tokens) = (0, 0);
        let mut shares = Vec::new();
        for (index, entry) in self.jobs.iter().enumerate() {
            let mut count = 0;
            for &len in entry.job.pending() {
                if seqs == self.limits.max_seqs || tokens + len > self.limits.max_tokens {
                    break;
                }
                seqs += 1;
                tokens += len;
                count += 1;
            }
            if count > 0 {
                shares.push(Share { index, count });
            }
            if seqs == self.limits.max_seqs {
                break;
            }
        }
        shares
    }

    /// After a batch that computed `served`: take out the jobs with nothing pending (in turn
    /// order) and pass the turn on: the jobs that had a share go last, the one that went first
    /// last of all, so a job that had none (it arrived while the batch was full) goes first next
    /// time and jobs that share every batch take turns at its front.
    pub(crate) fn end_turn(&mut self, served: &[Share]) -> Vec<J> {
        let mut done = Vec::new();
        let (mut waited, mut went) = (VecDeque::with_capacity(self.jobs.len()), Vec::with_capacity(served.len()));
        for (i, mut entry) in self.jobs.drain(..).enumerate() {
            entry.served = served.iter().any(|s| s.index == i);
            if entry.job.pending().is_empty() {
                done.push(entry.job);
            } else if entry.served {
                went.push(entry);
            } else {
                waited.push_back(entry);
            }
        }
        let first = went.len().min(1);
        went.rotate_left(first);
        waited.extend(went);
        self.jobs = waited;
        done
    }

    /// Take out the jobs at `indices` (after a failed batch).
    pub(crate) fn remove(&mut self, indices: &[usize]) -> Vec<J> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.jobs.len());
        for (i, entry) in self.jobs.drain(..).enumerate() {
            if indices.contains(&i) {
                removed.push(entry.job);
            } else {
                kept.push_back(entry);
            }
        }
        self.jobs = kept;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job of input lengths, of which `done` are computed.
    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        lens: Vec<usize>,
        done: usize,
        gone: bool,
    }

    impl Fake {
        fn new(name: &'static str, inputs: usize, len: usize) -> Fake {
            Fake { name, lens: vec![len; inputs], done: 0, gone: false }
        }
    }

    impl Turn for Fake {
        fn pending(&self) -> &[usize] {
            &self.lens[self.done..]
        }
        fn abandoned(&self) -> bool {
            self.gone
        }
    }

    const LIMITS: Limits = Limits { max_seqs: 32, max_tokens: 2048 };

    /// What the worker does for one batch; returns the names finished by it.
    fn run_batch(rota: &mut Rota<Fake>) -> Vec<&'static str> {
        rota.drop_abandoned();
        let shares = rota.next_batch();
        for share in &shares {
            if let Some(job) = rota.job_mut(share.index) {
                job.done += share.count;
            }
        }
        rota.end_turn(&shares).into_iter().map(|j| j.name).collect()
    }

    #[test]
    fn a_small_request_behind_a_big_one_finishes_within_two_batches() {
        let mut rota = Rota::new(LIMITS);
        rota.push(Fake::new("big", 1000, 12));
        rota.push(Fake::new("small", 1, 12));
        let mut finished = Vec::new();
        let mut batches = 0;
        while !rota.is_empty() {
            batches += 1;
            for name in run_batch(&mut rota) {
                finished.push((name, batches));
            }
        }
        assert_eq!(finished[0], ("small", 2), "{finished:?}");
        // Nothing is lost or computed twice: 1,001 inputs in batches of 32.
        assert_eq!(finished[1], ("big", 1001_usize.div_ceil(32)), "{finished:?}");
    }

    #[test]
    fn jobs_arriving_while_a_big_one_runs_join_the_next_batch_and_the_big_one_keeps_going() {
        let mut rota = Rota::new(LIMITS);
        rota.push(Fake::new("big", 1000, 12));
        assert!(run_batch(&mut rota).is_empty());
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut finished_at = Vec::new();
        for (batch, name) in names.iter().enumerate() {
            rota.push(Fake::new(name, 3, 12));
            finished_at.extend(run_batch(&mut rota).into_iter().map(|n| (n, batch)));
        }
        for (arrived, name) in names.iter().enumerate() {
            let at = finished_at.iter().find(|(n, _)| n == name).map(|&(_, b)| b);
            assert_eq!(at, Some(arrived), "{name} arrived before batch {arrived}: {finished_at:?}");
        }
        let big = rota.iter().find(|j| j.name == "big").map_or(0, |j| j.done);
        assert!(big >= 32 + 8 * 20, "the big job had a share of every batch: {big}");
    }

    #[test]
    fn a_job_that_had_no_share_goes_first_next_time() {
        let mut rota = Rota::new(Limits { max_seqs: 2, max_tokens: 2048 });
        for name in ["a", "b", "c"] {
            rota.push(Fake::new(name, 4, 12));
        }
        let shares = rota.next_batch();
        assert_eq!(shares, vec![Share { index: 0, count: 2 }]);
        if let Some(job) = rota.job_mut(0) {
            job.done += 2;
        }
        assert!(rota.end_turn(&shares).is_empty());
        assert_eq!(rota.iter().map(|j| j.name).collect::<Vec<_>>(), ["b", "c", "a"]);
    }

    #[test]
    fn a_batch_respects_both_limits_and_keeps_each_jobs_inputs_in_order() {
        let mut rota = Rota::new(Limits { max_seqs: 4, max_tokens: 100 });
        rota.push(Fake { name: "a", lens: vec![60, 30, 20], done: 0, gone: false });
        rota.push(Fake { name: "b", lens: vec![5, 5, 5, 5], done: 0, gone: false });
        // a: 60 + 30 fit, its 20 would not; b's inputs fill the rest up to 4 sequences.
        assert_eq!(rota.next_batch(), vec![Share { index: 0, count: 2 }, Share { index: 1, count: 2 }]);
        let shares = rota.next_batch();
        for i in 0..2 {
            if let Some(job) = rota.job_mut(i) {
                job.done = 2;
            }
        }
        assert!(rota.end_turn(&shares).is_empty());
        // Both had a share: b goes first now, with its last 2, then a's 20.
        assert_eq!(rota.iter().map(|j| j.name).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(rota.next_batch(), vec![Share { index: 0, count: 2 }, Share { index: 1, count: 1 }]);
        // One input that fills the budget alone.
        let mut alone = Rota::new(Limits { max_seqs: 4, max_tokens: 100 });
        alone.push(Fake { name: "x", lens: vec![100, 1], done: 0, gone: false });
        assert_eq!(alone.next_batch(), vec![Share { index: 0, count: 1 }]);
    }

    #[test]
    fn an_abandoned_job_costs_no_further_batch() {
        let mut rota = Rota::new(LIMITS);
        rota.push(Fake::new("big", 1000, 12));
        rota.push(Fake::new("other", 40, 12));
        run_batch(&mut rota);
        let big_done = rota.iter().find(|j| j.name == "big").map_or(0, |j| j.done);
        for i in 0..rota.len() {
            if let Some(job) = rota.job_mut(i) {
                job.gone = job.name == "big";
            }
        }
        assert_eq!(rota.drop_abandoned(), 1);
        let mut batches = 0;
        while !rota.is_empty() {
            batches += 1;
            run_batch(&mut rota);
        }
        assert_eq!(batches, 2, "only the other job's 40 inputs are left: two batches");
        assert_eq!(big_done, 32);
    }

    #[test]
    fn a_failed_batch_takes_out_only_its_jobs() {
        let mut rota = Rota::new(LIMITS);
        for name in ["a", "b", "c"] {
            rota.push(Fake::new(name, 1, 12));
        }
        let removed: Vec<_> = rota.remove(&[0, 2]).into_iter().map(|j| j.name).collect();
        assert_eq!(removed, ["a", "c"]);
        assert_eq!(rota.iter().map(|j| j.name).collect::<Vec<_>>(), ["b"]);
    }
}
