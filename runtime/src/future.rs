//! `Future<T>`: the handle to one submitted task, and its state machine.

use std::fmt;
use std::future::IntoFuture;
use std::panic::RefUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard, Weak, lock};
use crate::unwind;
use crate::waiting::{WaitSet, Watch};

/// Where a future is in its life, as Python's `concurrent.futures` states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Submitted, not started; can still be cancelled.
    Pending,
    /// Started; can no longer be cancelled.
    Running,
    /// Cancelled before it started.
    Cancelled,
    /// Finished with a value or an error.
    Finished,
}

/// The handle to one submitted task: its state, and its result once it has one.
///
/// Python's `concurrent.futures.Future`, typed. Cloning is cheap and gives another handle to the
/// same future, as Python's references do; executors keep a clone to complete it.
///
/// ```
/// use concurrent_futures::{Future, State};
///
/// let future = Future::new();
/// assert_eq!(future.state(), State::Pending);
/// assert_eq!(future.set_running_or_notify_cancel(), Ok(true));
/// assert!(!future.cancel()); // running: too late
/// future.set_result(42).unwrap();
/// assert_eq!(future.result(), Ok(42));
/// assert!(future.set_result(43).unwrap_err().is_invalid_state());
/// assert_eq!(format!("{future:?}").contains("state=finished returned i32"), true);
/// ```
pub struct Future<T> {
    inner: Arc<Core<T, dyn Job>>,
}

/// What a future's allocation may carry for its executor. `RefUnwindSafe` too, so that a
/// `Future` stays unwind safe, as it was while its state held no job: the state sits behind
/// a mutex, and a job that needs interior mutability keeps it behind one as well.
pub(crate) trait Job: Send + Sync + RefUnwindSafe {}

impl<J: Send + Sync + RefUnwindSafe + ?Sized> Job for J {}

/// A future's shared state, followed by the job that completes it: an executor that runs the
/// job in this process (the thread pool) allocates one block per task, not one for the state
/// and another for the job, and the worker that runs it frees nothing (the last handle does).
pub(crate) struct Core<T, J: ?Sized> {
    slot: Mutex<Slot<T>>,
    /// Wakes threads blocked in `result` and friends.
    done: Condvar,
    /// The executor's job, `()` for a future made by [`Future::new`]. Unsized last, so that a
    /// `Future<T>` does not name the job's type.
    pub(crate) job: J,
}

impl<T, J> Core<T, J> {
    fn new(job: J) -> Self {
        Self {
            slot: Mutex::new(Slot {
                phase: Phase::Pending,
                sleepers: 0,
                waiter: None,
                rare: None,
                seen_by: Weak::new(),
            }),
            done: Condvar::new(),
            job,
        }
    }
}

struct Slot<T> {
    phase: Phase<T>,
    /// Threads blocked on `done`: completion signals the condvar only if there are any, since
    /// a signal costs a system call and most futures are never waited on while running.
    sleepers: u32,
    /// The one `wait`/`as_completed` call watching this future, with its key: the common case
    /// needs no allocation.
    waiter: Option<(Arc<WaitSet>, usize)>,
    /// What most futures never have, kept out of line so that a pending future stays small.
    rare: Option<Box<Rare<T>>>,
    /// The `wait`/`as_completed` call that last saw this future, so that a call finds its
    /// duplicates without a hash set. Weak: it says nothing once that call has ended.
    seen_by: Weak<WaitSet>,
}

/// Done callbacks, async wakers, and waiters beyond the first.
struct Rare<T> {
    callbacks: Vec<Callback<T>>,
    wakers: Vec<Waker>,
    waiters: Vec<(Arc<WaitSet>, usize)>,
}

impl<T> Slot<T> {
    fn rare(&mut self) -> &mut Rare<T> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                callbacks: Vec::new(),
                wakers: Vec::new(),
                waiters: Vec::new(),
            })
        })
    }
}

type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

enum Phase<T> {
    Pending,
    Running,
    /// `notified` is Python's CANCELLED_AND_NOTIFIED: the executor has seen the cancellation.
    Cancelled {
        notified: bool,
    },
    /// `Ok(None)`: the value was moved out by `into_result`. The error is boxed: it is large
    /// and rare, and the value's slot should not pay for it.
    Finished(Result<Option<T>, Box<Error>>),
}

impl<T> Phase<T> {
    fn state(&self) -> State {
        match self {
            Phase::Pending => State::Pending,
            Phase::Running => State::Running,
            Phase::Cancelled { .. } => State::Cancelled,
            Phase::Finished(_) => State::Finished,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Phase::Cancelled { .. } | Phase::Finished(_))
    }
}

/// Everything to notify once a future is done, collected under the lock and used after it.
struct Notifications<T> {
    wake_sleepers: bool,
    waiter: Option<(Arc<WaitSet>, usize)>,
    rare: Option<Box<Rare<T>>>,
}

impl<T> Future<T> {
    /// A pending future. Executors create these; so may tests and custom executors.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Core::new(())),
        }
    }

    /// A pending future sharing one allocation with `job`, and a second handle to that
    /// allocation typed by the job, for the executor that runs it.
    pub(crate) fn with_job<J>(job: J) -> (Self, Arc<Core<T, J>>)
    where
        J: Job + 'static,
        T: 'static,
    {
        let shared = Arc::new(Core::new(job));
        let future = Self {
            inner: Arc::clone(&shared) as Arc<Core<T, dyn Job>>,
        };
        (future, shared)
    }

    /// The future of an executor's typed handle from [`with_job`](Self::with_job).
    pub(crate) fn from_shared<J>(shared: Arc<Core<T, J>>) -> Self
    where
        J: Job + 'static,
        T: 'static,
    {
        Self { inner: shared }
    }

    /// A future already failed with `error`: what `submit` returns when a task cannot be
    /// scheduled (shut down, broken pool, unserializable argument).
    pub fn failed(error: Error) -> Self {
        let future = Self::new();
        lock(&future.inner.slot).phase = Phase::Finished(Err(Box::new(error)));
        future
    }

    /// The current state.
    pub fn state(&self) -> State {
        lock(&self.inner.slot).phase.state()
    }

    /// Cancels the future if it has not started.
    ///
    /// Returns `false` if it is running or finished; `true` if it was pending (it is now
    /// cancelled) or was already cancelled. Cancelling wakes every waiter at once, including
    /// [`wait`](crate::wait) and [`as_completed`](crate::as_completed), and runs the done
    /// callbacks in this thread.
    pub fn cancel(&self) -> bool {
        let mut slot = lock(&self.inner.slot);
        match slot.phase {
            Phase::Cancelled { .. } => true,
            Phase::Running | Phase::Finished(_) => false,
            Phase::Pending => {
                slot.phase = Phase::Cancelled { notified: false };
                let notifications = take_notifications(&mut slot);
                drop(slot);
                self.notify(notifications);
                true
            }
        }
    }

    /// Cancels a future that was never handed to a worker and marks the cancellation seen, in
    /// one step, without the "unexpected state" log of a second notify. For executors that
    /// drop queued work.
    pub(crate) fn cancel_unsent(&self) {
        if self.cancel() {
            let mut slot = lock(&self.inner.slot);
            if let Phase::Cancelled { notified } = &mut slot.phase {
                *notified = true;
            }
        }
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    /// True while the task runs.
    pub fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// True if the future finished or was cancelled.
    pub fn done(&self) -> bool {
        lock(&self.inner.slot).phase.is_done()
    }

    /// Blocks until the future is done and returns its outcome: the value, the task's
    /// [`Error`], or [`Error::Cancelled`].
    ///
    /// Clones the value so that every caller gets it; [`into_result`](Self::into_result)
    /// moves it out instead and needs no `Clone`.
    pub fn result(&self) -> Result<T, Error>
    where
        T: Clone,
    {
        let slot = self.wait_until(None).unwrap_or_else(|slot| slot);
        outcome(&slot.phase, |value| value.clone())
    }

    /// Like [`result`](Self::result), but gives up after `timeout` with [`Error::Timeout`];
    /// the task goes on. A zero timeout polls.
    pub fn result_timeout(&self, timeout: Duration) -> Result<T, Error>
    where
        T: Clone,
    {
        match self.wait_until(deadline(timeout)) {
            Ok(slot) => outcome(&slot.phase, |value| value.clone()),
            Err(_) => Err(timed_out()),
        }
    }

    /// Blocks until the future is done and moves its value out; no `Clone` needed.
    ///
    /// Another handle to the same future that asks for the value afterwards gets
    /// [`Error::InvalidState`].
    pub fn into_result(self) -> Result<T, Error> {
        let mut slot = self.wait_until(None).unwrap_or_else(|slot| slot);
        take_outcome(&mut slot.phase)
    }

    /// Another name for [`into_result`](Self::into_result), as threads and tasks say it.
    pub fn join(self) -> Result<T, Error> {
        self.into_result()
    }

    /// Blocks until the future is done; `None` if it succeeded, else its error
    /// ([`Error::Cancelled`] if it was cancelled). Python's `exception()`.
    pub fn error(&self) -> Option<Error> {
        let slot = self.wait_until(None).unwrap_or_else(|slot| slot);
        outcome(&slot.phase, |_| ()).err()
    }

    /// Like [`error`](Self::error), but gives `Some(Error::Timeout { .. })` if the future is
    /// not done within `timeout`.
    pub fn error_timeout(&self, timeout: Duration) -> Option<Error> {
        match self.wait_until(deadline(timeout)) {
            Ok(slot) => outcome(&slot.phase, |_| ()).err(),
            Err(_) => Some(timed_out()),
        }
    }

    /// Calls `callback` with this future once it is done or cancelled.
    ///
    /// If the future is already done, the callback runs at once in this thread; otherwise in
    /// the thread that completes or cancels it. Callbacks run in the order they were added. A
    /// panicking callback is logged (`tracing`, target `concurrent_futures`) and the next one
    /// still runs.
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&Future<T>) + Send + 'static,
    {
        let mut slot = lock(&self.inner.slot);
        if slot.phase.is_done() {
            drop(slot);
            self.run_callback(Box::new(callback));
        } else {
            slot.rare().callbacks.push(Box::new(callback));
        }
    }

    /// For executors: marks the future running before starting its task.
    ///
    /// Returns `Ok(true)` if it was pending (now running: run the task), `Ok(false)` if it was
    /// cancelled (skip the task). Any other state, including a second call, is
    /// [`Error::InvalidState`].
    pub fn set_running_or_notify_cancel(&self) -> Result<bool, Error> {
        let mut slot = lock(&self.inner.slot);
        match slot.phase {
            Phase::Pending => {
                slot.phase = Phase::Running;
                Ok(true)
            }
            Phase::Cancelled { notified: false } => {
                slot.phase = Phase::Cancelled { notified: true };
                Ok(false)
            }
            _ => {
                drop(slot);
                tracing::error!(target: "concurrent_futures", future = ?self, "future in unexpected state");
                Err(Error::InvalidState)
            }
        }
    }

    /// For executors and tests: completes the future with `value`. A future that is already
    /// finished or cancelled gives [`Error::InvalidState`] and keeps its outcome.
    pub fn set_result(&self, value: T) -> Result<(), Error> {
        self.finish(Ok(Some(value)))
    }

    /// For executors and tests: completes the future with `error` (Python's
    /// `set_exception`). A future that is already finished or cancelled gives
    /// [`Error::InvalidState`] and keeps its outcome.
    pub fn set_exception(&self, error: Error) -> Result<(), Error> {
        self.finish(Err(Box::new(error)))
    }

    fn finish(&self, outcome: Result<Option<T>, Box<Error>>) -> Result<(), Error> {
        let mut slot = lock(&self.inner.slot);
        if slot.phase.is_done() {
            return Err(Error::InvalidState);
        }
        slot.phase = Phase::Finished(outcome);
        let notifications = take_notifications(&mut slot);
        drop(slot);
        self.notify(notifications);
        Ok(())
    }

    /// Wakes everyone waiting on this future, then runs the callbacks, outside the lock.
    fn notify(&self, notifications: Notifications<T>) {
        if notifications.wake_sleepers {
            self.inner.done.notify_all();
        }
        if let Some((set, key)) = notifications.waiter {
            set.push(key);
        }
        let Some(rare) = notifications.rare else {
            return;
        };
        for (set, key) in rare.waiters {
            set.push(key);
        }
        for waker in rare.wakers {
            waker.wake();
        }
        for callback in rare.callbacks {
            self.run_callback(callback);
        }
    }

    fn run_callback(&self, callback: Callback<T>) {
        if let Err(error) = unwind::catch(|| callback(self)) {
            tracing::error!(target: "concurrent_futures", future = ?self, %error, "exception calling callback");
        }
    }

    /// Blocks until done or until `deadline`; `Err` carries the guard when time ran out.
    fn wait_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'_, Slot<T>>, MutexGuard<'_, Slot<T>>> {
        let mut slot = lock(&self.inner.slot);
        while !slot.phase.is_done() {
            match deadline {
                None => {
                    slot.sleepers += 1;
                    slot = self
                        .inner
                        .done
                        .wait(slot)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    slot.sleepers -= 1;
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(slot);
                    }
                    slot.sleepers += 1;
                    slot = self
                        .inner
                        .done
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                    slot.sleepers -= 1;
                }
            }
        }
        Ok(slot)
    }

    /// Moves the outcome out once done, or gives the future back if `deadline` passes first:
    /// `map`'s one lock per result.
    pub(crate) fn into_result_by(
        self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, Error>, Self> {
        let outcome = match self.wait_until(deadline) {
            Ok(mut slot) => Some(take_outcome(&mut slot.phase)),
            Err(_) => None,
        };
        outcome.ok_or(self)
    }

    /// True if no other handle to this future exists, executors' included. No lock.
    pub(crate) fn is_only_handle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// True if nothing can see this future complete any more: no other handle to it exists
    /// (executors' included), and no done callback, waker or waiter waits on it. An executor
    /// holding the last handle may stop working for it. No new handle can appear meanwhile:
    /// one is made only by cloning an existing one.
    #[cfg(feature = "redis")]
    pub(crate) fn is_abandoned(&self) -> bool {
        if !self.is_only_handle() {
            return false;
        }
        let slot = lock(&self.inner.slot);
        slot.waiter.is_none()
            && slot.rare.as_ref().is_none_or(|rare| {
                rare.callbacks.is_empty() && rare.wakers.is_empty() && rare.waiters.is_empty()
            })
    }

    /// True if finished with an error (not cancelled): what `FirstException` looks for.
    pub(crate) fn has_error(&self) -> bool {
        matches!(lock(&self.inner.slot).phase, Phase::Finished(Err(_)))
    }

    /// Identity of the shared state, so that `wait` and `as_completed` count clones once.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner).cast::<()>() as usize
    }

    /// Registers `set` to receive `key` when this future is done, checked and registered under
    /// one lock so that no completion is missed; see [`Watch`] for the outcomes. With `mark`,
    /// also records that `set`'s call has seen this future, or finds that it had.
    pub(crate) fn watch(&self, set: &Arc<WaitSet>, key: usize, mark: bool) -> Watch {
        let mut slot = lock(&self.inner.slot);
        if mark {
            if std::ptr::eq(slot.seen_by.as_ptr(), Arc::as_ptr(set)) {
                return Watch::Seen;
            }
            if slot.seen_by.strong_count() > 0 {
                // Another call, still going, has marked it: keep its mark, or it could not
                // tell its own duplicates.
                return Watch::Foreign;
            }
            slot.seen_by = Arc::downgrade(set);
        }
        if slot.phase.is_done() {
            return Watch::Done;
        }
        if slot.waiter.is_none() {
            slot.waiter = Some((Arc::clone(set), key));
        } else {
            slot.rare().waiters.push((Arc::clone(set), key));
        }
        Watch::Watching
    }

    /// Removes `set`'s registration, when its waiter stops waiting.
    pub(crate) fn unsubscribe(&self, set: &Arc<WaitSet>) {
        let mut slot = lock(&self.inner.slot);
        if slot
            .waiter
            .as_ref()
            .is_some_and(|(s, _)| Arc::ptr_eq(s, set))
        {
            slot.waiter = None;
        }
        if let Some(rare) = &mut slot.rare {
            rare.waiters.retain(|(s, _)| !Arc::ptr_eq(s, set));
        }
    }
}

fn take_notifications<T>(slot: &mut Slot<T>) -> Notifications<T> {
    Notifications {
        wake_sleepers: slot.sleepers > 0,
        waiter: slot.waiter.take(),
        rare: slot.rare.take(),
    }
}

/// The outcome of a done future, the value produced by `value`.
fn outcome<T, R>(phase: &Phase<T>, value: impl FnOnce(&T) -> R) -> Result<R, Error> {
    match phase {
        Phase::Finished(Ok(Some(v))) => Ok(value(v)),
        Phase::Finished(Ok(None)) => Err(Error::InvalidState),
        Phase::Finished(Err(e)) => Err(Error::clone(e)),
        Phase::Cancelled { .. } => Err(Error::Cancelled),
        Phase::Pending | Phase::Running => unreachable!("outcome of a future that is not done"),
    }
}

/// The outcome of a done future, its value moved out.
fn take_outcome<T>(phase: &mut Phase<T>) -> Result<T, Error> {
    match phase {
        Phase::Finished(Ok(value)) => value.take().ok_or(Error::InvalidState),
        _ => outcome(phase, |_| unreachable!()),
    }
}

fn deadline(timeout: Duration) -> Option<Instant> {
    // A timeout too large to add is as good as none.
    Instant::now().checked_add(timeout)
}

fn timed_out() -> Error {
    Error::Timeout {
        unfinished: 1,
        total: 1,
    }
}

impl<T> Default for Future<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Python's repr: `<Future at 0x… state=finished returned u64>`.
impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: Debug may run from a tracing call made while this thread holds the lock.
        let state = match self.inner.slot.try_lock() {
            Ok(slot) => match &slot.phase {
                Phase::Pending => "pending".to_owned(),
                Phase::Running => "running".to_owned(),
                Phase::Cancelled { .. } => "cancelled".to_owned(),
                Phase::Finished(Ok(_)) => {
                    format!("finished returned {}", short_type_name::<T>())
                }
                Phase::Finished(Err(e)) => format!("finished raised {}", e.kind_name()),
            },
            Err(_) => "locked".to_owned(),
        };
        write!(f, "<Future at {:#x} state={state}>", self.id())
    }
}

/// `alloc::string::String` → `String`, `core::option::Option<u64>` → `Option<u64>`.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut short = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (i, c) in full.char_indices() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            continue;
        }
        short.push_str(last_segment(&full[segment_start..i]));
        short.push(c);
        segment_start = i + c.len_utf8();
    }
    short.push_str(last_segment(&full[segment_start..]));
    short
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// `future.await` in async code: resolves to the same outcome as
/// [`into_result`](Future::into_result), without blocking a thread.
impl<T> IntoFuture for Future<T> {
    type Output = Result<T, Error>;
    type IntoFuture = AwaitFuture<T>;

    fn into_future(self) -> AwaitFuture<T> {
        AwaitFuture { future: self }
    }
}

/// The `std::future::Future` behind `.await` on a [`Future`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AwaitFuture<T> {
    future: Future<T>,
}

impl<T> std::future::Future for AwaitFuture<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.future.inner.slot);
        if slot.phase.is_done() {
            return Poll::Ready(take_outcome(&mut slot.phase));
        }
        let wakers = &mut slot.rare().wakers;
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Unpin for AwaitFuture<T> {}
