//! The concurrency primitives the state machines use, swapped for loom's under `--cfg loom`
//! so that the future's state machine can be model-checked.
//!
//! `Arc` stays std's under loom: its reference count is std's to get right, not ours, and
//! loom's `Arc` supports neither `self: &Arc<Self>` receivers nor unsized coercion, which the
//! executors use.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current as current_thread, park};
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current as current_thread, park, park_timeout};

/// Locks, ignoring poison: no user code runs while these locks are held, so a poisoned lock
/// still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Loom has no timed park: a timed wait there parks until woken, which the models (they use
/// no timeouts) never reach without a wake.
#[cfg(loom)]
pub(crate) fn park_timeout(_: std::time::Duration) {
    park();
}

/// One step of waiting for a lock held for a few instructions: spin a little, then give the
/// core away, since on a machine with fewer cores than threads the holder may be the one
/// waiting to run. `step` counts the calls so far.
pub(crate) fn back_off(step: &mut u32) {
    #[cfg(loom)]
    {
        *step += 1;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *step < 6 {
            for _ in 0..1 << *step {
                std::hint::spin_loop();
            }
            *step += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// An `UnsafeCell` that loom tracks: every access goes through [`borrow_mut`], whose caller
/// promises exclusivity, and loom checks that promise in the models.
///
/// [`borrow_mut`]: UnsafeCell::borrow_mut
#[derive(Debug)]
pub(crate) struct UnsafeCell<T> {
    #[cfg(not(loom))]
    cell: std::cell::UnsafeCell<T>,
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<T>,
}

#[allow(unsafe_code)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            cell: std::cell::UnsafeCell::new(value),
            #[cfg(loom)]
            cell: loom::cell::UnsafeCell::new(value),
        }
    }

    /// The contents, for as long as the returned borrow lives.
    ///
    /// # Safety
    ///
    /// No other borrow of the contents may exist until the returned one is dropped.
    pub(crate) unsafe fn borrow_mut(&self) -> CellMut<'_, T> {
        #[cfg(not(loom))]
        {
            // SAFETY: the caller guarantees exclusive access for the borrow's lifetime.
            CellMut(unsafe { &mut *self.cell.get() })
        }
        #[cfg(loom)]
        {
            CellMut(self.cell.get_mut(), std::marker::PhantomData)
        }
    }
}

/// An exclusive borrow of an [`UnsafeCell`]'s contents.
#[cfg(not(loom))]
pub(crate) struct CellMut<'a, T>(&'a mut T);

/// An exclusive borrow of an [`UnsafeCell`]'s contents, tracked by loom until dropped.
#[cfg(loom)]
pub(crate) struct CellMut<'a, T>(loom::cell::MutPtr<T>, std::marker::PhantomData<&'a mut T>);

#[allow(unsafe_code)]
impl<T> std::ops::Deref for CellMut<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        {
            self.0
        }
        // SAFETY: `borrow_mut`'s caller guaranteed exclusivity while this borrow lives.
        #[cfg(loom)]
        unsafe {
            self.0.deref()
        }
    }
}

#[allow(unsafe_code)]
impl<T> std::ops::DerefMut for CellMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            self.0
        }
        // SAFETY: as for `deref`.
        #[cfg(loom)]
        unsafe {
            self.0.deref()
        }
    }
}
