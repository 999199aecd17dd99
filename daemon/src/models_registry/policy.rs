//! The loading policy, as pure bookkeeping (no engine, no clock, no threads), so it can be proven
//! without a model.
//!
//! Each local model has a [`Slot`]: its [`ModelState`], the requests in flight on it, the requests
//! waiting for it, and when it was last used (a logical clock, ticking at each use). The budget
//! (`[engine] max_loaded_models`, 0 = none) counts the *budgeted* slots (chat models) that are
//! loaded, loading or unloading.
//!
//! Invariants, each tested below:
//! - a slot with requests in flight, or with requests waiting for it, is never chosen to unload;
//! - a pinned slot (a `load = "startup"` model) is never chosen to unload;
//! - budgeted slots loaded + loading + unloading never exceed the budget, except for the one
//!   moment a victim unloads for the model replacing it (the victim is `unloading` and the new
//!   one `loading`; the loader unloads first, then loads, so at most `budget` are ever `loaded`);
//! - the victim is the least recently used idle slot;
//! - a failed load is reported to the requests that waited for it, and retried by the next one.

/// What a model is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Not in memory; the next request (or `POST .../load`) loads it.
    Unloaded,
    /// Being loaded on a blocking thread.
    Loading,
    /// In memory and serving.
    Loaded,
    /// Being freed (its engine thread joined, its context and weights released).
    Unloading,
    /// The last load failed, for this reason; the next request retries it.
    Failed(String),
}

impl ModelState {
    /// The name `/v1/models` and `/ready` show.
    pub fn name(&self) -> &'static str {
        match self {
            ModelState::Unloaded => "unloaded",
            ModelState::Loading => "loading",
            ModelState::Loaded => "loaded",
            ModelState::Unloading => "unloading",
            ModelState::Failed(_) => "failed",
        }
    }
}

/// One model's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Its state.
    pub state: ModelState,
    /// Requests holding it (each through a lease, streaming included).
    pub in_flight: usize,
    /// Requests waiting for it to load.
    pub waiting: usize,
    /// The logical time of its last use (higher is more recent).
    pub last_used: u64,
    /// Must stay loaded (`load = "startup"`): never chosen to unload.
    pub pinned: bool,
    /// Counts against the budget (chat models; embedding models serve the library and stay loaded).
    pub budgeted: bool,
}

/// What a request for a model should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Loaded: the request is counted in flight and may run.
    Ready,
    /// The caller must load it (its state is now `loading`), first unloading `evict` (now
    /// `unloading`) when there is one.
    Load { evict: Option<usize> },
    /// It is loading or unloading, or the budget is full of busy models: wait for a change.
    Wait,
    /// The load this request waited for failed.
    Failed(String),
}

/// Why an unload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Requests are in flight on it (or waiting for it).
    Busy { in_flight: usize, waiting: usize },
    /// It is loading now.
    Loading,
}

/// The slots and the budget.
#[derive(Debug, Clone)]
pub struct Policy {
    slots: Vec<Slot>,
    budget: usize,
    clock: u64,
}

impl Policy {
    /// Every slot unloaded; `budget` 0 means no limit. `slots`: (pinned, budgeted) per model.
    pub fn new(budget: usize, slots: &[(bool, bool)]) -> Policy {
        let slots = slots
            .iter()
            .map(|&(pinned, budgeted)| Slot { state: ModelState::Unloaded, in_flight: 0, waiting: 0, last_used: 0, pinned, budgeted })
            .collect();
        Policy { slots, budget, clock: 0 }
    }

    /// One model's slot.
    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// How many budgeted models are loaded now.
    pub fn loaded_budgeted(&self) -> usize {
        self.slots.iter().filter(|s| s.budgeted && s.state == ModelState::Loaded).count()
    }

    /// A request for model `i`. `retry_failed`: a `failed` model is loaded again (the request did
    /// not wait for that failed load); otherwise its failure is the answer.
    pub fn admit(&mut self, i: usize, retry_failed: bool) -> Admit {
        match &self.slots[i].state {
            ModelState::Loaded => {
                self.clock += 1;
                let slot = &mut self.slots[i];
                slot.in_flight += 1;
                slot.last_used = self.clock;
                Admit::Ready
            }
            ModelState::Loading | ModelState::Unloading => Admit::Wait,
            ModelState::Failed(reason) if !retry_failed => Admit::Failed(reason.clone()),
            ModelState::Unloaded | ModelState::Failed(_) => {
                if !self.slots[i].budgeted || self.budget == 0 || self.occupied() < self.budget {
                    self.slots[i].state = ModelState::Loading;
                    return Admit::Load { evict: None };
                }
                match self.victim(i) {
                    Some(v) => {
                        self.slots[v].state = ModelState::Unloading;
                        self.slots[i].state = ModelState::Loading;
                        Admit::Load { evict: Some(v) }
                    }
                    None => Admit::Wait,
                }
            }
        }
    }

    /// A request starts waiting for model `i` (a waited-for model is not unloaded).
    pub fn wait_begin(&mut self, i: usize) {
        self.slots[i].waiting += 1;
    }

    /// A request stops waiting for model `i`.
    pub fn wait_end(&mut self, i: usize) {
        self.slots[i].waiting = self.slots[i].waiting.saturating_sub(1);
    }

    /// A request on model `i` finished (its lease dropped).
    pub fn release(&mut self, i: usize) {
        self.clock += 1;
        let slot = &mut self.slots[i];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        slot.last_used = self.clock;
    }

    /// The load of model `i` ended.
    pub fn load_finished(&mut self, i: usize, outcome: Result<(), String>) {
        self.clock += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.clock;
        slot.state = match outcome {
            Ok(()) => ModelState::Loaded,
            Err(reason) => ModelState::Failed(reason),
        };
    }

    /// Model `i` is freed.
    pub fn unload_finished(&mut self, i: usize) {
        self.slots[i].state = ModelState::Unloaded;
    }

    /// An operator's unload of model `i`: `Ok(true)` when the caller must now free it (the state
    /// is `unloading`), `Ok(false)` when there is nothing to free. It unpins the model: it loads on
    /// demand from here on.
    pub fn begin_unload(&mut self, i: usize) -> Result<bool, Refusal> {
        let slot = &mut self.slots[i];
        match slot.state {
            ModelState::Loading => Err(Refusal::Loading),
            ModelState::Loaded if slot.in_flight > 0 || slot.waiting > 0 => Err(Refusal::Busy { in_flight: slot.in_flight, waiting: slot.waiting }),
            ModelState::Loaded => {
                slot.state = ModelState::Unloading;
                slot.pinned = false;
                Ok(true)
            }
            ModelState::Unloaded | ModelState::Unloading | ModelState::Failed(_) => {
                slot.pinned = false;
                Ok(false)
            }
        }
    }

    /// Budgeted slots that hold or are about to hold memory.
    fn occupied(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.budgeted && matches!(s.state, ModelState::Loaded | ModelState::Loading | ModelState::Unloading))
            .count()
    }

    /// The least recently used loaded, idle, unpinned budgeted model other than `i`.
    fn victim(&self, i: usize) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(j, s)| j != i && s.budgeted && !s.pinned && s.state == ModelState::Loaded && s.in_flight == 0 && s.waiting == 0)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(j, _)| j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: usize, budget: usize) -> Policy {
        Policy::new(budget, &vec![(false, true); n])
    }

    /// Load `i` to completion (no eviction expected) and leave it idle.
    fn load(p: &mut Policy, i: usize) {
        assert_eq!(p.admit(i, true), Admit::Load { evict: None });
        p.load_finished(i, Ok(()));
    }

    #[test]
    fn a_loaded_model_admits_at_once_and_counts_the_request() {
        let mut p = chat(1, 1);
        load(&mut p, 0);
        assert_eq!(p.admit(0, true), Admit::Ready);
        assert_eq!(p.slot(0).in_flight, 1);
        p.release(0);
        assert_eq!(p.slot(0).in_flight, 0);
    }

    #[test]
    fn a_full_budget_unloads_the_least_recently_used_idle_model_first() {
        let mut p = chat(3, 2);
        load(&mut p, 0);
        load(&mut p, 1);
        // Use 0 after 1: 1 is now the least recently used.
        assert_eq!(p.admit(0, true), Admit::Ready);
        p.release(0);
        assert_eq!(p.admit(2, true), Admit::Load { evict: Some(1) });
        assert_eq!(p.slot(1).state, ModelState::Unloading);
        assert_eq!(p.slot(2).state, ModelState::Loading);
        p.unload_finished(1);
        p.load_finished(2, Ok(()));
        assert_eq!(p.loaded_budgeted(), 2);
    }

    #[test]
    fn a_model_with_a_request_in_flight_or_waiting_is_never_unloaded() {
        let mut p = chat(2, 1);
        load(&mut p, 0);
        assert_eq!(p.admit(0, true), Admit::Ready);
        assert_eq!(p.admit(1, true), Admit::Wait, "0 is busy: 1 waits");
        assert_eq!(p.begin_unload(0), Err(Refusal::Busy { in_flight: 1, waiting: 0 }));
        p.release(0);
        p.wait_begin(0); // a request waiting to claim 0 after its load
        assert_eq!(p.admit(1, true), Admit::Wait, "0 is waited for: 1 still waits");
        p.wait_end(0);
        assert_eq!(p.admit(1, true), Admit::Load { evict: Some(0) });
    }

    #[test]
    fn pinned_models_are_never_chosen_and_an_operator_unload_unpins() {
        let mut p = Policy::new(1, &[(true, true), (false, true)]);
        load(&mut p, 0);
        assert_eq!(p.admit(1, true), Admit::Wait, "the only loaded model is pinned");
        assert_eq!(p.begin_unload(0), Ok(true));
        assert!(!p.slot(0).pinned);
        p.unload_finished(0);
        assert_eq!(p.admit(1, true), Admit::Load { evict: None });
    }

    #[test]
    fn unbudgeted_models_and_a_zero_budget_never_wait_for_room() {
        let mut p = Policy::new(1, &[(false, true), (false, false)]);
        load(&mut p, 0);
        assert_eq!(p.admit(0, true), Admit::Ready);
        assert_eq!(p.admit(1, true), Admit::Load { evict: None }, "an embedding model is outside the budget");
        let mut p = chat(3, 0);
        for i in 0..3 {
            load(&mut p, i);
        }
        assert_eq!(p.loaded_budgeted(), 3);
    }

    #[test]
    fn a_failed_load_answers_its_waiters_and_the_next_request_retries() {
        let mut p = chat(1, 1);
        assert_eq!(p.admit(0, true), Admit::Load { evict: None });
        assert_eq!(p.admit(0, true), Admit::Wait, "one load at a time: a second request waits for it");
        p.load_finished(0, Err("bad file".into()));
        assert_eq!(p.admit(0, false), Admit::Failed("bad file".into()));
        assert_eq!(p.admit(0, true), Admit::Load { evict: None });
        // A failed model holds no memory: it is not counted against the budget.
        p.load_finished(0, Err("bad file".into()));
        let mut two = chat(2, 1);
        assert_eq!(two.admit(0, true), Admit::Load { evict: None });
        two.load_finished(0, Err("bad".into()));
        assert_eq!(two.admit(1, true), Admit::Load { evict: None });
    }

    #[test]
    fn unloading_refuses_a_loading_model_and_is_idempotent() {
        let mut p = chat(1, 1);
        assert_eq!(p.admit(0, true), Admit::Load { evict: None });
        assert_eq!(p.begin_unload(0), Err(Refusal::Loading));
        p.load_finished(0, Ok(()));
        assert_eq!(p.begin_unload(0), Ok(true));
        assert_eq!(p.admit(0, true), Admit::Wait, "unloading: wait, then load again");
        p.unload_finished(0);
        assert_eq!(p.begin_unload(0), Ok(false));
    }

    #[test]
    fn alternating_requests_under_a_budget_of_one_never_load_two() {
        // A, B, A, B... each served to completion; at every step at most one is loaded.
        let mut p = chat(2, 1);
        for round in 0..6 {
            let i = round % 2;
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 5, "round {round} did not converge");
                match p.admit(i, true) {
                    Admit::Ready => break,
                    Admit::Load { evict } => {
                        if let Some(v) = evict {
                            p.unload_finished(v);
                        }
                        p.load_finished(i, Ok(()));
                    }
                    other => panic!("round {round}: {other:?}"),
                }
                assert!(p.loaded_budgeted() <= 1);
            }
            p.release(i);
        }
    }
}
