//! The concurrency primitives the state machines use, swapped for loom's under `--cfg loom`
//! so that the future's state machine can be model-checked.
//!
//! `Arc` stays std's under loom: its reference count is std's to get right, not ours, and
//! loom's `Arc` supports neither `self: &Arc<Self>` receivers nor unsized coercion, which the
//! executors use.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
pub(crate) use std::sync::{Arc, Weak};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks, ignoring poison: no user code runs while these locks are held, so a poisoned lock
/// still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
