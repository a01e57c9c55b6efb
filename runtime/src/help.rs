//! Help before blocking: a thread about to block on a future may first do, itself, the work
//! that completes it, and save the wake-up of the thread that would have done it.
//!
//! The process pool uses it for a lone call written straight to an idle worker: the caller
//! that then blocks in `result()` reads the worker's answer from the socket itself, instead of
//! sleeping until the worker's connection thread has read it and woken it (two wake-ups on
//! the caller's side of a round trip, where one does).
//!
//! The offer is a thread-local hint, left by the submitting thread for the future it just
//! got: the common case (submit, then block on the result, on one thread) costs no lookup
//! in any shared table, and a future waited on elsewhere simply gets no help.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Work a blocking thread may do toward a future's outcome.
pub(crate) trait Help: Send + Sync {
    /// Does what it can toward the completion of `job`, until that is done, `deadline`
    /// passes, or it cannot go on (another thread took the work over, the worker ended);
    /// the caller then checks the future and blocks as usual.
    fn help(&self, job: u64, deadline: Option<Instant>);
}

/// An offer of help for one future.
struct Offer {
    /// The future's identity (`Future::id`).
    future: usize,
    /// What the helper knows the work by.
    job: u64,
    /// Weak, so that a pool is not kept alive (nor its descriptors open) by a hint left on a
    /// thread that never waited.
    helper: Weak<dyn Help>,
}

thread_local! {
    /// The last offer made on this thread; a newer one replaces it.
    static OFFER: RefCell<Option<Offer>> = const { RefCell::new(None) };
}

/// Leaves an offer of help for the future `future` on this thread.
pub(crate) fn offer(future: usize, job: u64, helper: Weak<dyn Help>) {
    // A thread being torn down has no use for the hint.
    let _ = OFFER.try_with(|offer| {
        *offer.borrow_mut() = Some(Offer {
            future,
            job,
            helper,
        });
    });
}

/// The help offered on this thread for the future `future`, taken (it is good once), if any
/// and if its helper still exists; `help` it once no lock is held.
pub(crate) fn take(future: usize) -> Option<Taken> {
    let offer = OFFER
        .try_with(|offer| {
            let mut offer = offer.borrow_mut();
            if offer.as_ref().is_some_and(|o| o.future == future) {
                offer.take()
            } else {
                None
            }
        })
        .ok()
        .flatten()?;
    Some(Taken {
        job: offer.job,
        helper: offer.helper.upgrade()?,
    })
}

/// An offer taken up by the thread about to block.
pub(crate) struct Taken {
    job: u64,
    helper: Arc<dyn Help>,
}

impl Taken {
    /// Helps; returns once the work is done or the helper cannot go on. The caller then
    /// checks the future and blocks as usual.
    pub(crate) fn help(self, deadline: Option<Instant>) {
        self.helper.help(self.job, deadline);
    }
}
