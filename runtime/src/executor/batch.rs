//! The thread pool's eager `map`: all the calls in one shared array, run by as many pool jobs
//! ("runners") as the pool has threads, which take the calls in input order, in blocks sized
//! to their speed; each outcome lands in its call's slot, where the map reads them in input
//! order.
//!
//! Why not a future per call: for short calls the future's allocation, its first touch and
//! the queue's push and pop cost more than the call itself. The slots keep what `map`
//! promises: input order, an error at its own position, calls started in input order and as
//! many at once as the pool has threads, and a stop (the iterator dropped or timed out,
//! `shutdown(cancel_futures)`, a refused or broken pool) that cancels the calls not started.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::Error;
use crate::task::Task;
use crate::unwind;

/// How long a runner's block of calls should take. A runner claims one call at a time while
/// calls take this long or more, so that slow calls start in input order, one per thread,
/// as a future per call would; it doubles its block while blocks take less than half of it,
/// so that short calls cost one shared counter update per block, not per call. A block that
/// turns out slow holds back at most about this much of other calls' work behind it.
const BLOCK_TIME: Duration = Duration::from_micros(100);

/// The largest block, whatever the calls' speed.
const MAX_BLOCK: usize = 4096;

/// Slot states. Only the runner that claimed a slot (through `cursor`) touches a `QUEUED`
/// slot's value, until every runner has ended; only the reader touches a `DONE` one.
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
    /// The first call no runner has claimed (past the end once all are).
    cursor: CachePadded<AtomicUsize>,
    /// How many runners share the calls.
    runners: usize,
    /// Read after every call by every runner, written rarely: a line of its own.
    signals: CachePadded<Signals>,
    /// Runners not yet ended (ran out of calls, stopped, or abandoned unrun).
    live: AtomicUsize,
    /// Why the batch stopped: the first reason given wins.
    stop_reason: OnceLock<Error>,
    /// Where the reader sleeps.
    sleep: Mutex<()>,
    wake: Condvar,
}

struct Signals {
    stopping: AtomicBool,
    /// `1 +` the index of the call the reader sleeps on; 0 while it does not sleep.
    awaited: AtomicUsize,
}

// SAFETY: each slot's value is reached by one thread at a time, as the state protocol above
// says: the claiming runner (`cursor` hands each index to one runner), then the reader once it
// has seen `DONE` (Acquire, after the runner's release of it), or the last runner once every
// other has ended. Calls move to a pool thread and outputs back to the reader: `T: Send` and
// `T::Output: Send`, which `Task` requires.
#[allow(unsafe_code)]
unsafe impl<T: Task> Sync for Batch<T> {}

impl<T: Task> Batch<T> {
    /// `calls`, for up to `runners` runners (at least one, at most one per call).
    pub(crate) fn new(calls: &mut dyn Iterator<Item = T>, runners: usize) -> Arc<Self> {
        // Straight into the slots: no vector of calls to copy them from.
        let slots: Box<[Slot<T>]> = calls
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
            runners,
            signals: CachePadded::new(Signals {
                stopping: AtomicBool::new(false),
                awaited: AtomicUsize::new(0),
            }),
            live: AtomicUsize::new(runners),
            stop_reason: OnceLock::new(),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// How many runners to schedule, each with its index.
    pub(crate) fn runners(&self) -> usize {
        self.runners
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A runner, on a pool thread: runs calls until none is left or the batch stops. `stop`
    /// is asked before each call whether the pool wants the batch stopped, and why.
    pub(crate) fn run(&self, stop: &dyn Fn() -> Option<Error>) {
        let n = self.slots.len();
        let mut block = 1;
        'claiming: loop {
            // Relaxed: the calls were written before the batch was shared with the pool's
            // threads, and each index is handed out once whatever the order.
            let lo = self.cursor.fetch_add(block, Ordering::Relaxed);
            if lo >= n {
                break;
            }
            let started = Instant::now();
            for index in lo..(lo + block).min(n) {
                if self.signals.stopping.load(Ordering::Relaxed) {
                    // Claimed but not started: left queued, for the last runner to skip.
                    break 'claiming;
                }
                if let Some(reason) = stop() {
                    self.stop(reason);
                    break 'claiming;
                }
                self.run_call(index);
            }
            let took = started.elapsed();
            if took < BLOCK_TIME / 2 {
                block = (block * 2).min(MAX_BLOCK);
            } else if took > BLOCK_TIME {
                block = (block / 2).max(1);
            }
        }
        self.runner_ended();
    }

    /// A runner that will never run (its job was cancelled or failed): the batch stops with
    /// `reason`, which every call that has not started gets.
    pub(crate) fn abandon(&self, reason: Error) {
        self.stop(reason);
        self.runner_ended();
    }

    /// No call starts after this; the ones not started get `reason` (unless an earlier stop
    /// gave another).
    pub(crate) fn stop(&self, reason: Error) {
        let _ = self.stop_reason.set(reason);
        self.signals.stopping.store(true, Ordering::SeqCst);
    }

    fn run_call(&self, index: usize) {
        let slot = &self.slots[index];
        // SAFETY: `index` was claimed by this runner alone, and the slot is `QUEUED`.
        #[allow(unsafe_code)]
        let value = unsafe { &mut *slot.value.get() };
        let Value::Call(call) = std::mem::replace(value, Value::Empty) else {
            unreachable!("a claimed slot holds its call");
        };
        let outcome = unwind::catch(move || call.run()).map_err(Box::new);
        *value = Value::Outcome(outcome);
        // SeqCst, with the load of `awaited` after it: the reader stores `awaited` then loads
        // the state, so either it sees `DONE` or this sees it waiting.
        slot.state.store(DONE, Ordering::SeqCst);
        if self.signals.awaited.load(Ordering::SeqCst) == index + 1 {
            self.wake_reader();
        }
    }

    fn wake_reader(&self) {
        // Under the reader's lock: it checks the state and sleeps without releasing it.
        let _sleeping = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    /// The last runner to end, after a stop, skips what never ran: it drops those calls and
    /// gives their slots to the reader as stopped.
    fn runner_ended(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) != 1
            || !self.signals.stopping.load(Ordering::SeqCst)
        {
            return;
        }
        for slot in self.slots.iter() {
            if slot.state.load(Ordering::Acquire) == QUEUED {
                // SAFETY: every runner has ended, so none holds a claim; the reader does not
                // touch a `QUEUED` slot's value.
                #[allow(unsafe_code)]
                let value = unsafe { &mut *slot.value.get() };
                *value = Value::Empty;
                slot.state.store(SKIPPED, Ordering::SeqCst);
            }
        }
        self.wake_reader();
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
            let value = unsafe { &mut *slot.value.get() };
            let Value::Outcome(outcome) = std::mem::replace(value, Value::Empty) else {
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
        batch.signals.awaited.store(index + 1, Ordering::SeqCst);
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
        batch.signals.awaited.store(0, Ordering::Relaxed);
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
    fn drop(&mut self) {
        self.batch.stop(Error::Cancelled);
    }
}

/// The outcome the reader waited for was not ready by the deadline.
#[derive(Debug)]
pub(crate) struct Late;

impl<T: Task> std::fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("calls", &self.batch.len())
            .field("taken", &self.next)
            .finish_non_exhaustive()
    }
}
