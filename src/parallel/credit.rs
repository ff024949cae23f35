//! Back-pressure between the decoders and the writer thread: how many bytes of each
//! decoder's output wait to be written, and how far the writer has written.
//!
//! A decoder that has handed over more than its credit (its share of `--max-memory`'s output
//! in flight: [`MemoryLimits::output_credit`](crate::analyzer::budget::MemoryLimits), 4 MiB
//! by default) waits until the writer has
//! written some, or has written everything before the decoder's own progress (then what
//! waits is output that cannot be written before the decoder goes on, and waiting would never
//! end). Without it, a decoder whose output waits for a slower one's word on how far it got
//! keeps making output: streams of tiny frames in JSON held 100 MB and more in flight.
//!
//! No wait can last for ever: every decoder hands over its progress before it blocks
//! (see `Workers::before_waiting` and the workers' loop), so the decoder with the least progress always
//! has all its output written, and goes on.

use std::sync::{Condvar, Mutex, PoisonError};

use super::Mark;

#[derive(Default)]
struct State {
    /// Per decoder: bytes handed over, not yet written.
    held: Vec<usize>,
    /// Every output before this that the writer has received is written.
    written_through: Mark,
    /// The writer stopped (an error): nobody waits for it.
    closed: bool,
}

pub(super) struct Credit {
    state: Mutex<State>,
    written: Condvar,
    /// Bytes of output one decoder may have handed over and not yet written before it waits.
    budget: usize,
}

impl Credit {
    pub(super) fn new(decoders: usize, budget: usize) -> Credit {
        Credit {
            state: Mutex::new(State {
                held: vec![0; decoders],
                ..State::default()
            }),
            written: Condvar::new(),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked holding it: the counts stay usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decoder `source` handed over `bytes`.
    pub(super) fn handed(&self, source: usize, bytes: usize) {
        if let Some(held) = self.lock().held.get_mut(source) {
            *held += bytes;
        }
    }

    /// The writer wrote (or dropped) `bytes` of decoder `source`'s output.
    pub(super) fn written(&self, source: usize, bytes: usize) {
        if let Some(held) = self.lock().held.get_mut(source) {
            *held = held.saturating_sub(bytes);
        }
        self.written.notify_all();
    }

    /// The writer has written everything it received before `bound`.
    pub(super) fn written_through(&self, bound: Mark) {
        let mut state = self.lock();
        if bound > state.written_through {
            state.written_through = bound;
            drop(state);
            self.written.notify_all();
        }
    }

    /// The writer is gone: waiting would never end.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.written.notify_all();
    }

    /// Decoder `source`, which will write nothing more before `progress` (and has said so to
    /// the writer), waits while it has more than its credit in flight.
    pub(super) fn wait(&self, source: usize, progress: Mark) {
        let mut state = self.lock();
        while !state.closed
            && state.written_through < progress
            && state.held.get(source).is_some_and(|&h| h > self.budget)
        {
            state = self
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
