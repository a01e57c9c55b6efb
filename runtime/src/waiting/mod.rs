//! Waiting on many futures at once: `as_completed`, `wait`, and what `join_completed!` uses.

mod as_completed;
mod call_mark;
mod completions;
pub(crate) mod join;
mod wait;
mod wait_set;

pub use as_completed::{AsCompleted, AsCompletedTimeout, as_completed, as_completed_timeout};
pub(crate) use call_mark::{MARK_BITS, Verdict};
pub(crate) use completions::watch_all;
pub use wait::{DoneAndNotDone, ReturnWhen, wait};
pub use wait_set::WaitSet;

use crate::sync::Arc;

use crate::future::{Future, State};

/// Something [`wait`] and [`as_completed`] can wait on: a [`Future`] of any type, a reference
/// to one, or a boxed or shared one.
///
/// Sealed: it is implemented for [`Future`] and for references, boxes and `Arc`s of anything
/// waitable, and cannot be implemented outside this crate, since waiting on a value means
/// registering with its state machine.
///
/// Futures of different types mix as `&dyn Waitable`:
///
/// ```
/// use concurrent_futures::{ThreadPoolExecutor, Waitable, as_completed};
///
/// let executor = ThreadPoolExecutor::new(2);
/// let number = executor.spawn(|| 7_u64);
/// let text = executor.spawn(|| String::from("seven"));
/// let both: [&dyn Waitable; 2] = [&number, &text];
/// assert_eq!(as_completed(both).count(), 2);
/// assert_eq!(text.result().unwrap(), "seven");
/// ```
pub trait Waitable: sealed::Sealed {
    /// The future's current state.
    fn state(&self) -> State;

    /// True if the future finished or was cancelled.
    fn done(&self) -> bool {
        matches!(self.state(), State::Finished | State::Cancelled)
    }

    /// True if the future finished with an error (a cancelled one has not failed).
    fn failed(&self) -> bool;

    #[doc(hidden)]
    fn __id(&self) -> usize;

    /// Registers `set` for `key`, and with `mark` notes that `set`'s call has seen it.
    #[doc(hidden)]
    fn __watch(&self, set: &Arc<WaitSet>, key: usize, mark: bool) -> Watch;

    #[doc(hidden)]
    fn __unsubscribe(&self, set: &Arc<WaitSet>);
}

/// What keeps [`Waitable`] implemented here only.
mod sealed {
    pub trait Sealed {}
}

impl<T> sealed::Sealed for Future<T> {}

impl<T> Waitable for Future<T> {
    fn state(&self) -> State {
        Future::state(self)
    }

    fn done(&self) -> bool {
        Future::done(self)
    }

    fn failed(&self) -> bool {
        self.has_error()
    }

    fn __id(&self) -> usize {
        self.id()
    }

    fn __watch(&self, set: &Arc<WaitSet>, key: usize, mark: bool) -> Watch {
        self.watch(set, key, mark)
    }

    fn __unsubscribe(&self, set: &Arc<WaitSet>) {
        self.unsubscribe(set);
    }
}

macro_rules! forward_waitable {
    ($($pointer:ty),*) => {$(
        impl<W: Waitable + ?Sized> sealed::Sealed for $pointer {}

        impl<W: Waitable + ?Sized> Waitable for $pointer {
            fn state(&self) -> State {
                (**self).state()
            }

            fn done(&self) -> bool {
                (**self).done()
            }

            fn failed(&self) -> bool {
                (**self).failed()
            }

            fn __id(&self) -> usize {
                (**self).__id()
            }

            fn __watch(&self, set: &Arc<WaitSet>, key: usize, mark: bool) -> Watch {
                (**self).__watch(set, key, mark)
            }

            fn __unsubscribe(&self, set: &Arc<WaitSet>) {
                (**self).__unsubscribe(set);
            }
        }
    )*};
}

forward_waitable!(&W, &mut W, Box<W>, Arc<W>);

/// What registering a waiter with a future found.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// This call has seen the future already (a duplicate, or a clone): nothing registered.
    Seen,
    /// Already done: nothing registered; the caller counts it as ready at once.
    Done,
    /// Registered: the set receives the key when the future is done.
    Watching,
    /// Another call still going has marked the future: nothing registered. The caller checks
    /// for a duplicate itself, then registers without a mark.
    Foreign,
}
