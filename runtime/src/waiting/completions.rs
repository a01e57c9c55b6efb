//! `Completions`: a set of watched futures handed back one by one as they complete.

use std::collections::VecDeque;
use std::time::Instant;

use super::{WaitSet, Waitable};
use crate::sync::Arc;

/// Watches `items` and yields each, with its index, once it is done: already-done ones first
/// (in input order), then in completion order. Unwatches whatever is left when dropped.
#[derive(Debug)]
pub(crate) struct Completions<W: Waitable> {
    items: Vec<Option<W>>,
    set: Arc<WaitSet>,
    /// Keys known done and not yet handed back: those done at the start, then each batch
    /// taken from `set`.
    ready: VecDeque<usize>,
    remaining: usize,
}

impl<W: Waitable> Completions<W> {
    pub(crate) fn new(items: Vec<W>) -> Self {
        let set = Arc::new(WaitSet::default());
        let mut ready = VecDeque::new();
        for (key, item) in items.iter().enumerate() {
            if item.__subscribe(&set, key) {
                ready.push_back(key);
            }
        }
        Self {
            remaining: items.len(),
            items: items.into_iter().map(Some).collect(),
            set,
            ready,
        }
    }

    /// How many have not been handed back yet.
    pub(crate) fn remaining(&self) -> usize {
        self.remaining
    }

    /// How many were watched in all.
    pub(crate) fn total(&self) -> usize {
        self.items.len()
    }

    /// The next done item, or `None` if all were handed back or `deadline` passed first.
    pub(crate) fn next_done(&mut self, deadline: Option<Instant>) -> Option<(usize, W)> {
        if self.remaining == 0 {
            return None;
        }
        if self.ready.is_empty() && !self.set.take_all(&mut self.ready, deadline) {
            return None;
        }
        let key = self.ready.pop_front()?;
        let item = self.items[key].take()?;
        self.remaining -= 1;
        Some((key, item))
    }

    /// Stops watching everything not yet handed back.
    pub(crate) fn close(&mut self) {
        for item in self.items.iter_mut().filter_map(Option::take) {
            item.__unsubscribe(&self.set);
        }
        self.remaining = 0;
    }
}

impl<W: Waitable> Drop for Completions<W> {
    fn drop(&mut self) {
        self.close();
    }
}
