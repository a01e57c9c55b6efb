//! `Cancellations`: lets `shutdown(wait = true)` wait for the futures another caller's
//! `shutdown(cancel_futures = true)` is still cancelling.
//!
//! A pool takes its queued work out under its lock but cancels it after releasing the lock,
//! because cancelling runs done callbacks, which may submit to the pool or show it. Python
//! cancels under its shutdown lock, so a concurrent `shutdown(wait=True)` returns only once
//! every queued future is cancelled; this keeps that promise without holding the pool's lock
//! through user code.

use std::thread::{self, ThreadId};

use crate::sync::{Condvar, Mutex, lock};

/// The threads cancelling a pool's queued futures now.
#[derive(Debug, Default)]
pub(crate) struct Cancellations {
    cancelling: Mutex<Vec<ThreadId>>,
    ended: Condvar,
}

impl Cancellations {
    /// Records that this thread is cancelling until the returned guard drops. Called under
    /// the pool's lock, with the work taken out, so that a waiter that takes the lock after it
    /// finds the record.
    pub(crate) fn begin(&self) -> Cancelling<'_> {
        lock(&self.cancelling).push(thread::current().id());
        Cancelling {
            cancellations: self,
        }
    }

    /// Blocks until no other thread is cancelling. A thread that is cancelling itself (a done
    /// callback that shuts the pool down) waits for nobody: two such callbacks in two threads
    /// would otherwise wait for each other.
    pub(crate) fn wait_for_others(&self) {
        let me = thread::current().id();
        let mut cancelling = lock(&self.cancelling);
        while !cancelling.is_empty() && !cancelling.contains(&me) {
            cancelling = self
                .ended
                .wait(cancelling)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// A thread's cancellations in progress; dropping it (after them, or on a panic) ends them.
#[derive(Debug)]
pub(crate) struct Cancelling<'a> {
    cancellations: &'a Cancellations,
}

impl Drop for Cancelling<'_> {
    fn drop(&mut self) {
        let me = thread::current().id();
        let mut cancelling = lock(&self.cancellations.cancelling);
        if let Some(at) = cancelling.iter().position(|id| *id == me) {
            cancelling.swap_remove(at);
        }
        drop(cancelling);
        self.cancellations.ended.notify_all();
    }
}
