//! `WaitSet`: the mailbox through which futures tell a waiter which of them are done.

use std::collections::VecDeque;
use std::time::Instant;

use crate::sync::{Condvar, Mutex, lock};

/// Receives the keys of futures as they complete, in completion order. One per `wait` or
/// `as_completed` call; every watched future holds it until it completes or is unwatched.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WaitSet {
    ready: Mutex<Ready>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Ready {
    keys: VecDeque<usize>,
    /// Whether the waiter is blocked: a push signals only then, since a signal costs a system
    /// call and an `as_completed` over finished work never blocks.
    sleeping: bool,
}

impl WaitSet {
    /// Records that the future registered under `key` is done.
    pub(crate) fn push(&self, key: usize) {
        let mut ready = lock(&self.ready);
        ready.keys.push_back(key);
        let wake = ready.sleeping;
        drop(ready);
        if wake {
            self.changed.notify_one();
        }
    }

    /// The next completed key, blocking until one arrives or `deadline` passes.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut ready = lock(&self.ready);
        loop {
            if let Some(key) = ready.keys.pop_front() {
                return Some(key);
            }
            ready.sleeping = true;
            ready = match deadline {
                None => self
                    .changed
                    .wait(ready)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        ready.sleeping = false;
                        return None;
                    }
                    self.changed
                        .wait_timeout(ready, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
            ready.sleeping = false;
        }
    }
}
