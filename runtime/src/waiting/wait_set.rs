//! `WaitSet`: the mailbox through which futures tell a waiter which of them are done.

use std::collections::VecDeque;
use std::time::Instant;

use super::call_mark::CallMark;
use crate::sync::{Condvar, Mutex, lock};

/// Receives the keys of futures as they complete, in completion order. One per `wait` or
/// `as_completed` call; every watched future holds it until it completes or is unwatched.
#[doc(hidden)]
#[derive(Debug)]
pub struct WaitSet {
    ready: Mutex<Ready>,
    changed: Condvar,
    /// The call's mark, which futures keep to tell this call its duplicates.
    call: CallMark,
}

impl Default for WaitSet {
    fn default() -> Self {
        Self {
            ready: Mutex::default(),
            changed: Condvar::default(),
            call: CallMark::begin(),
        }
    }
}

#[derive(Debug, Default)]
struct Ready {
    keys: VecDeque<usize>,
    /// Whether the waiter is blocked: a push signals only then, since a signal costs a system
    /// call and an `as_completed` over finished work never blocks.
    sleeping: bool,
}

impl WaitSet {
    /// The mark this call leaves on the futures it sees.
    pub(crate) fn call(&self) -> &CallMark {
        &self.call
    }

    /// Records that the future registered under `key` is done.
    pub(crate) fn push(&self, key: usize) {
        let mut ready = lock(&self.ready);
        ready.keys.push_back(key);
        // Only the first completion after the waiter fell asleep signals it: the ones that
        // land before it runs again are taken in the same batch, and each signal is a system
        // call.
        let wake = std::mem::take(&mut ready.sleeping);
        drop(ready);
        if wake {
            self.changed.notify_one();
        }
    }

    /// Moves every completed key into `into`, blocking until there is at least one or
    /// `deadline` passes (then returns false). One lock for a whole batch of completions.
    pub(crate) fn take_all(&self, into: &mut VecDeque<usize>, deadline: Option<Instant>) -> bool {
        let mut ready = lock(&self.ready);
        loop {
            if !ready.keys.is_empty() {
                into.append(&mut ready.keys);
                return true;
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
                        return false;
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
