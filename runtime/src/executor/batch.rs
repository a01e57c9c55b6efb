//! The thread pool's eager `map`: all the calls in one shared array, run by as many pool jobs
//! ("runners") as the pool has threads, which take the calls in input order, in blocks sized
//! to their speed; a runner with nothing left takes the lowest unstarted call of another's
//! block, so that no call waits behind a slow one while a thread is free. Each outcome lands
//! in its call's slot, where the map reads them in input order.
//!
//! Why not a future per call: for short calls the future's allocation, its first touch and
//! the queue's push and pop cost more than the call itself. The slots keep what `map`
//! promises: results in input order, an error at its own position, slow calls started in
//! input order and as many at once as the pool has threads, and a stop (the iterator
//! dropped or timed out, `shutdown(cancel_futures)`, a refused or broken pool) that cancels
//! the calls not started.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::Error;
use crate::task::Task;
use crate::unwind;

/// How long a runner's block of calls should take. A runner claims one call at a time while
/// calls take this long or more, so that slow calls start in input order, one per thread,
/// as a future per call would; it doubles its block while blocks take less than half of it,
/// so that short calls cost one shared counter update per block, not per call. The rest of
/// a block stays open to the other runners (see [`Batch::steal`]).
const BLOCK_TIME: Duration = Duration::from_micros(100);

/// The largest block, whatever the calls' speed.
const MAX_BLOCK: usize = 4096;

/// The most calls one batch holds: a runner's block is two `u32` halves of one atomic word,
/// and `cursor` may run past the end by a block per runner without wrapping (on 32-bit
/// targets too). `map` splits a longer input into several batches.
pub(crate) const MAX_CALLS: usize = (u32::MAX / 2) as usize;

/// Slot states. Only the runner that claimed a slot (through `cursor` or a block) touches a
/// `QUEUED` slot's value, until every runner has ended; only the reader touches a `DONE` one.
const QUEUED: u8 = 0;
const DONE: u8 = 1;
const TAKEN: u8 = 2;
/// Never ran: the batch stopped first. Its call was dropped; the reader gets the stop reason.
const SKIPPED: u8 = 3;

/// One call of the map: the call until it runs, then its outcome until the reader takes it.
struct Slot<T: Task> {
    state: AtomicU8,
    value: UnsafeCell<Value<T>>,
}

enum Value<T: Task> {
    Call(T),
    /// Boxed error: the slot stays two words for a word-sized output.
    Outcome(Result<T::Output, Box<Error>>),
    Empty,
}

/// What a map's runners and its reader share.
pub(crate) struct Batch<T: Task> {
    slots: Box<[Slot<T>]>,
    /// The first call not yet in any runner's block (past the end once all are).
    cursor: CachePadded<AtomicUsize>,
    /// Runner `k`'s block: the calls it took from `cursor` and has not started, `lo | hi <<
    /// 32`. Its runner starts `lo`; a runner with nothing left takes `lo` too.
    blocks: Box<[CachePadded<AtomicU64>]>,
    /// Read before every call by every runner, written once: a line of its own.
    stopping: CachePadded<AtomicBool>,
    /// `1 +` the index of the call the reader sleeps on; 0 while it does not sleep. Read
    /// after every call, written around each of the reader's sleeps.
    awaited: CachePadded<AtomicUsize>,
    /// Runners between taking a block from `cursor` and publishing it in `blocks`: a runner
    /// that finds nothing to take waits for them, since the calls in transit may be what a
    /// running call waits for.
    in_transit: AtomicUsize,
    /// Runners not yet ended (ran out of calls, stopped, or abandoned unrun).
    live: AtomicUsize,
    /// Why the batch stopped: the first reason given wins.
    stop_reason: OnceLock<Error>,
    /// Where the reader sleeps.
    sleep: Mutex<()>,
    wake: Condvar,
}

// SAFETY: a slot's value is reached by one thread at a time, as the state protocol above
// says: the runner that claimed it (each index is handed out once, by `cursor` then by its
// block), then the reader once it has seen `DONE` (Acquire, after that runner's SeqCst store),
// or the last runner once every other has ended. Calls move to a pool thread and outputs back
// to the reader: `T: Send` and `T::Output: Send`, which `Task` requires.
#[allow(unsafe_code)]
unsafe impl<T: Task> Sync for Slot<T> {}

impl<T: Task> Slot<T> {
    /// Moves the value out, leaving `Empty`.
    ///
    /// # Safety
    ///
    /// The caller has the slot to itself, as the state protocol above says.
    #[allow(unsafe_code)]
    unsafe fn take(&self) -> Value<T> {
        // SAFETY: the caller has the slot to itself.
        unsafe { std::mem::replace(&mut *self.value.get(), Value::Empty) }
    }

    /// Replaces the value.
    ///
    /// # Safety
    ///
    /// As for [`take`](Self::take).
    #[allow(unsafe_code)]
    unsafe fn put(&self, value: Value<T>) {
        // SAFETY: the caller has the slot to itself.
        unsafe { *self.value.get() = value }
    }
}

fn pack(lo: usize, hi: usize) -> u64 {
    lo as u64 | (hi as u64) << 32
}

fn unpack(block: u64) -> (usize, usize) {
    (
        (block & u64::from(u32::MAX)) as usize,
        (block >> 32) as usize,
    )
}

impl<T: Task> Batch<T> {
    /// The first [`MAX_CALLS`] of `calls`, for up to `runners` runners (at least one, at most
    /// one per call).
    pub(crate) fn new(calls: &mut dyn Iterator<Item = T>, runners: usize) -> Arc<Self> {
        // Straight into the slots: no vector of calls to copy them from.
        let slots: Box<[Slot<T>]> = calls
            .take(MAX_CALLS)
            .map(|call| Slot {
                state: AtomicU8::new(QUEUED),
                value: UnsafeCell::new(Value::Call(call)),
            })
            .collect();
        let n = slots.len();
        let runners = runners.clamp(1, n.max(1));
        Arc::new(Self {
            slots,
            cursor: CachePadded::new(AtomicUsize::new(0)),
            blocks: (0..runners)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            stopping: CachePadded::new(AtomicBool::new(false)),
            awaited: CachePadded::new(AtomicUsize::new(0)),
            in_transit: AtomicUsize::new(0),
            live: AtomicUsize::new(runners),
            stop_reason: OnceLock::new(),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// How many runners to schedule, numbered from 0.
    pub(crate) fn runners(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Runner `runner`, on a pool thread: runs calls until none is left or the batch stops.
    /// `stop` is asked before each call whether the pool wants the batch stopped, and why.
    pub(crate) fn run(&self, runner: usize, stop: &dyn Fn() -> Option<Error>) {
        let mut pace = Pace {
            size: 1,
            started: None,
        };
        while let Some(index) = self.claim(runner, &mut pace) {
            if self.stopping.load(Ordering::Relaxed) {
                // Claimed but not started: left queued, for the last runner to skip.
                break;
            }
            if let Some(reason) = stop() {
                self.stop(reason);
                break;
            }
            self.run_call(index);
        }
        self.runner_ended(None);
    }

    /// A runner that will never run (its job was cancelled or refused). If it is the last to
    /// end, the calls left (if any) get `reason`; while another runner is live, that one
    /// takes this one's share.
    pub(crate) fn abandon(&self, reason: Error) {
        self.runner_ended(Some(reason));
    }

    /// No call starts after this; the ones not started get `reason` (unless an earlier stop
    /// gave another).
    pub(crate) fn stop(&self, reason: Error) {
        let _ = self.stop_reason.set(reason);
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The next call for `runner`: the lowest of its block; else a new block from `cursor`,
    /// sized by `pace`; else the lowest call left in the fullest other block. `None` once
    /// there is none.
    fn claim(&self, runner: usize, pace: &mut Pace) -> Option<usize> {
        let own = &self.blocks[runner];
        if let Some(index) = take_lowest(own) {
            return Some(index);
        }
        let n = self.slots.len();
        if self.cursor.load(Ordering::Acquire) < n {
            let size = pace.next_size();
            // Announced before the block is taken: whoever sees the cursor moved sees this.
            self.in_transit.fetch_add(1, Ordering::AcqRel);
            let lo = self.cursor.fetch_add(size, Ordering::AcqRel);
            if lo < n {
                // Empty, so no other runner writes it (they only take from a non-empty one),
                // and a value it held before cannot come back: indices are handed out once.
                own.store(pack(lo + 1, (lo + size).min(n)), Ordering::Release);
                self.in_transit.fetch_sub(1, Ordering::Release);
                return Some(lo);
            }
            self.in_transit.fetch_sub(1, Ordering::Release);
        }
        self.steal(runner)
    }

    /// The lowest call left in the fullest other runner's block, one at a time: a call held
    /// up in a block leaves the rest of it to whichever thread is free. `None` once `cursor`
    /// is spent and every block is empty, with no block in transit (the window holds no user
    /// code, so waiting it out is short).
    fn steal(&self, runner: usize) -> Option<usize> {
        loop {
            // Before the blocks: a runner seen out of transit has published its block.
            let in_transit = self.in_transit.load(Ordering::Acquire);
            let fullest = self
                .blocks
                .iter()
                .enumerate()
                .filter(|&(k, _)| k != runner)
                .map(|(_, block)| (block, unpack(block.load(Ordering::Acquire))))
                .filter(|(_, (lo, hi))| lo < hi)
                .max_by_key(|(_, (lo, hi))| hi - lo);
            match fullest {
                Some((block, _)) => {
                    if let Some(index) = take_lowest(block) {
                        return Some(index);
                    }
                }
                None if in_transit == 0 => return None,
                None => std::thread::yield_now(),
            }
        }
    }

    fn run_call(&self, index: usize) {
        let slot = &self.slots[index];
        // SAFETY: `index` was claimed by this runner alone, and the slot is `QUEUED`.
        #[allow(unsafe_code)]
        let Value::Call(call) = (unsafe { slot.take() }) else {
            unreachable!("a claimed slot holds its call");
        };
        let outcome = unwind::catch(move || call.run()).map_err(Box::new);
        // SAFETY: still claimed by this runner alone; nobody reads it before `DONE` below.
        #[allow(unsafe_code)]
        unsafe {
            slot.put(Value::Outcome(outcome));
        }
        // SeqCst, with the load of `awaited` after it: the reader stores `awaited` then loads
        // the state, so either it sees `DONE` or this sees it waiting.
        slot.state.store(DONE, Ordering::SeqCst);
        if self.awaited.load(Ordering::SeqCst) == index + 1 {
            self.wake_reader();
        }
    }

    fn wake_reader(&self) {
        // Under the reader's lock: it checks the state and sleeps without releasing it.
        let _sleeping = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    /// The last runner to end, after a stop, skips what never ran: it gives those slots to
    /// the reader as stopped, then drops their calls (a call's `Drop` may panic: it is caught,
    /// so that neither the reader nor this pool thread is lost to it).
    fn runner_ended(&self, reason_if_last: Option<Error>) {
        if self.live.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let Some(reason) = reason_if_last {
            // No runner is left to run what remains.
            self.stop(reason);
        }
        if !self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut unrun = Vec::new();
        for slot in self.slots.iter() {
            if slot.state.load(Ordering::Acquire) == QUEUED {
                // SAFETY: every runner has ended, so none holds a claim; the reader does not
                // touch a `QUEUED` slot's value.
                #[allow(unsafe_code)]
                unrun.push(unsafe { slot.take() });
                slot.state.store(SKIPPED, Ordering::SeqCst);
            }
        }
        self.wake_reader();
        if let Err(error) = unwind::catch(move || drop(unrun)) {
            tracing::error!(target: "concurrent_futures", %error, "dropping a map call that never ran panicked");
        }
    }

    fn stop_reason(&self) -> Error {
        self.stop_reason.get().cloned().unwrap_or(Error::Cancelled)
    }
}

/// A map's side of a batch: takes the outcomes in input order. One reader per batch, so
/// `&mut self`. Dropping it stops the batch: calls not started are cancelled. Public only
/// for [`Executor::__submit_batch`](super::Executor::__submit_batch).
#[doc(hidden)]
pub struct Reader<T: Task> {
    batch: Arc<Batch<T>>,
    next: usize,
}

impl<T: Task> Reader<T> {
    pub(crate) fn new(batch: Arc<Batch<T>>) -> Self {
        Self { batch, next: 0 }
    }

    /// Calls whose outcome has not been taken.
    pub(crate) fn remaining(&self) -> usize {
        self.batch.len() - self.next
    }

    /// The next outcome in input order, waiting for it until `deadline`: `None` once all were
    /// taken, `Some(Err(Late))` if the deadline passed first.
    pub(crate) fn next_by(
        &mut self,
        deadline: Option<Instant>,
    ) -> Option<Result<Result<T::Output, Error>, Late>> {
        let index = self.next;
        let slot = self.batch.slots.get(index)?;
        if slot.state.load(Ordering::Acquire) == QUEUED && !self.wait(index, deadline) {
            return Some(Err(Late));
        }
        self.next += 1;
        let outcome = if slot.state.load(Ordering::Acquire) == SKIPPED {
            Err(self.batch.stop_reason())
        } else {
            // SAFETY: the slot is `DONE` (seen with Acquire above): its runner is done with it,
            // and this reader, the only one, takes it once (`next` moved past it).
            #[allow(unsafe_code)]
            let Value::Outcome(outcome) = (unsafe { slot.take() }) else {
                unreachable!("a done slot holds its outcome");
            };
            slot.state.store(TAKEN, Ordering::Relaxed);
            outcome.map_err(|error| *error)
        };
        Some(Ok(outcome))
    }

    /// Sleeps until call `index` is no longer queued; false if `deadline` passed first.
    fn wait(&self, index: usize, deadline: Option<Instant>) -> bool {
        let batch = &*self.batch;
        let state = &batch.slots[index].state;
        let mut sleeping = batch.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        batch.awaited.store(index + 1, Ordering::SeqCst);
        let done = loop {
            if state.load(Ordering::SeqCst) != QUEUED {
                break true;
            }
            sleeping = match deadline {
                None => batch
                    .wake
                    .wait(sleeping)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    batch
                        .wake
                        .wait_timeout(sleeping, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        };
        batch.awaited.store(0, Ordering::Relaxed);
        done
    }

    /// Stops the batch: calls not started are cancelled. Returns how many of the calls not
    /// yet taken had not finished.
    pub(crate) fn cancel(&self) -> usize {
        let unfinished = self.batch.slots[self.next..]
            .iter()
            .filter(|slot| slot.state.load(Ordering::Acquire) == QUEUED)
            .count();
        self.batch.stop(Error::Cancelled);
        unfinished
    }
}

impl<T: Task> Drop for Reader<T> {
    /// Stops the batch, and drops the outcomes already there on this thread, as dropping
    /// their futures would have: a pool thread that ends up with the batch drops only what
    /// finished later.
    fn drop(&mut self) {
        self.batch.stop(Error::Cancelled);
        let mut finished = Vec::new();
        for slot in &self.batch.slots[self.next..] {
            if slot.state.load(Ordering::Acquire) == DONE {
                // SAFETY: `DONE` (seen with Acquire): its runner is done with it, and this
                // reader, the only one, takes it once.
                #[allow(unsafe_code)]
                finished.push(unsafe { slot.take() });
                slot.state.store(TAKEN, Ordering::Relaxed);
            }
        }
        drop(finished);
    }
}

impl<T: Task> Drop for Batch<T> {
    /// Where the last handle goes, often a pool thread: a panicking `Drop` of an output that
    /// finished after its map was dropped is caught and logged, not left to end the thread.
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        if let Err(error) = unwind::catch(move || drop(slots)) {
            tracing::error!(target: "concurrent_futures", %error, "dropping a map's outcome panicked");
        }
    }
}

/// A runner's block size, and when its current block began: doubles while blocks take less
/// than half of [`BLOCK_TIME`], halves while they take more than it.
struct Pace {
    size: usize,
    started: Option<Instant>,
}

impl Pace {
    fn next_size(&mut self) -> usize {
        let now = Instant::now();
        if let Some(started) = self.started.replace(now) {
            let took = now - started;
            if took < BLOCK_TIME / 2 {
                self.size = (self.size * 2).min(MAX_BLOCK);
            } else if took > BLOCK_TIME {
                self.size = (self.size / 2).max(1);
            }
        }
        self.size
    }
}

/// Takes the lowest index of `block`, if it holds any.
fn take_lowest(block: &AtomicU64) -> Option<usize> {
    let mut current = block.load(Ordering::Acquire);
    loop {
        let (lo, hi) = unpack(current);
        if lo >= hi {
            return None;
        }
        match block.compare_exchange_weak(
            current,
            pack(lo + 1, hi),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(lo),
            Err(now) => current = now,
        }
    }
}

/// The outcome the reader waited for was not ready by the deadline.
#[derive(Debug)]
pub(crate) struct Late;

impl<T: Task> std::fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("calls", &self.batch.len())
            .field("taken", &self.next)
            .finish_non_exhaustive()
    }
}
