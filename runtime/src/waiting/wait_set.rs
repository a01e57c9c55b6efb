//! `WaitSet`: the mailbox through which futures tell a waiter which of them are done.

use std::collections::VecDeque;
use std::time::Instant;

use crate::sync::{Condvar, Mutex, lock};

/// Receives the keys of futures as they complete, in completion order. One per `wait` or
/// `as_completed` call; every watched future holds it until it completes or is unwatched.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WaitSet {
    ready: Mutex<VecDeque<usize>>,
    changed: Condvar,
}

impl WaitSet {
    /// Records that the future registered under `key` is done.
    pub(crate) fn push(&self, key: usize) {
        lock(&self.ready).push_back(key);
        self.changed.notify_one();
    }

    /// The next completed key, blocking until one arrives or `deadline` passes.
    pub(crate) fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut ready = lock(&self.ready);
        loop {
            if let Some(key) = ready.pop_front() {
                return Some(key);
            }
            ready = match deadline {
                None => self
                    .changed
                    .wait(ready)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.changed
                        .wait_timeout(ready, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }
}
