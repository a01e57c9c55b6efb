//! `Completions`: a set of watched futures handed back one by one as they complete.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use super::{WaitSet, Waitable, Watch};
use crate::sync::Arc;

/// Registers `set` with each of `items`, keyed by position in the returned list, and returns
/// that list and the keys of those already done, in input order. With `dedup`, keeps only the
/// first of each future (Python converts to a set): each future remembers the last call that
/// saw it, so no hash set is needed unless two calls watch the same future at once.
pub(crate) fn watch_all<I>(
    items: I,
    set: &Arc<WaitSet>,
    dedup: bool,
) -> (Vec<I::Item>, VecDeque<usize>)
where
    I: IntoIterator,
    I::Item: Waitable,
{
    let items = items.into_iter();
    let mut kept = Unwatch {
        items: Vec::with_capacity(items.size_hint().0),
        set,
    };
    let mut ready = VecDeque::new();
    // Futures another call had marked: checked here instead, for the rest of this call.
    let mut unmarked: Option<HashSet<usize, IdHasher>> = None;
    for item in items {
        let key = kept.items.len();
        if unmarked
            .as_ref()
            .is_some_and(|seen| seen.contains(&item.__id()))
        {
            continue;
        }
        let watch = match item.__watch(set, key, dedup) {
            Watch::Seen => continue,
            Watch::Foreign => {
                unmarked
                    .get_or_insert_with(HashSet::default)
                    .insert(item.__id());
                item.__watch(set, key, false)
            }
            watch => watch,
        };
        if watch == Watch::Done {
            ready.push_back(key);
        }
        kept.items.push(item);
    }
    (std::mem::take(&mut kept.items), ready)
}

/// What `watch_all` registered so far. If the input panics part-way, no call exists to
/// unwatch them: dropping this does, so that no future keeps a waiter for nobody.
struct Unwatch<'a, W: Waitable> {
    items: Vec<W>,
    set: &'a Arc<WaitSet>,
}

impl<W: Waitable> Drop for Unwatch<'_, W> {
    fn drop(&mut self) {
        // Empty once `watch_all` handed its list over.
        for item in &self.items {
            item.__unsubscribe(self.set);
        }
    }
}

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
    /// Watches `items`; with `dedup`, the first of each future only.
    pub(crate) fn new<I>(items: I, dedup: bool) -> Self
    where
        I: IntoIterator<Item = W>,
    {
        let set = Arc::new(WaitSet::default());
        let (items, ready) = watch_all(items, &set, dedup);
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

/// Hashes a future's identity (the address of its shared state) with one multiplication:
/// SipHash costs more than the rest of `as_completed`'s work per future.
type IdHasher = BuildHasherDefault<AddressHasher>;

#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, address: usize) {
        // Allocations are 16-byte aligned: the low bits carry nothing.
        self.0 = ((address as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{self, AssertUnwindSafe};

    use super::*;
    use crate::future::Future;

    /// An input that panics part-way leaves no waiter on the futures it had yielded: the call
    /// never started, so nothing would ever unwatch them (Python builds its set of futures
    /// before it installs a waiter on any).
    #[test]
    fn a_panicking_input_leaves_no_waiter_behind() {
        let set = Arc::new(WaitSet::default());
        let (a, b): (Future<u8>, Future<u8>) = (Future::new(), Future::new());
        let items = [&a, &b, &a]
            .into_iter()
            .chain(std::iter::from_fn(|| panic!("the input fails")));
        let watched = panic::catch_unwind(AssertUnwindSafe(|| watch_all(items, &set, true)));
        assert!(watched.is_err());
        assert_eq!(Arc::strong_count(&set), 1, "a future still holds the set");
    }
}
