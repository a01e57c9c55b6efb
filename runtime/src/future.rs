//! `Future<T>`: the handle to one submitted task, and its state machine.

use std::fmt;
use std::future::IntoFuture;
use std::panic::RefUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::help;
use crate::sync::{
    Arc, AtomicU64, CellMut, Ordering, Thread, UnsafeCell, back_off, current_thread, park,
    park_timeout,
};
use crate::unwind;
use crate::waiting::{MARK_BITS, Verdict, WaitSet, Watch};

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
/// `Future` stays unwind safe: a job that needs interior mutability keeps it behind a lock.
pub(crate) trait Job: Send + Sync + RefUnwindSafe {}

impl<J: Send + Sync + RefUnwindSafe + ?Sized> Job for J {}

/// A future's shared state, followed by the job that completes it: an executor that runs the
/// job in this process (the thread pool) allocates one block per task, not one for the state
/// and another for the job, and the worker that runs it frees nothing (the last handle does).
///
/// The state is one atomic word (phase, flags, a lock bit, and the mark of the last wait call
/// that saw the future), so that reading it takes no lock and a future of a `u64` with a small
/// job takes 56 bytes with the `Arc`'s counts (a 64-byte malloc chunk): a pool keeps one per
/// pending task, and their size is most of its memory traffic.
pub(crate) struct Core<T, J: ?Sized> {
    state: AtomicU64,
    /// Under loom only, the lock bit is taken under a blocking mutex: in loom's models two
    /// spinning threads can hand the core to each other without end (a yield goes to the other
    /// spinner, not to the holder), a schedule no real scheduler keeps up. The bit's protocol,
    /// which is what the models check, is the same.
    #[cfg(loom)]
    serial: crate::sync::Mutex<()>,
    /// The outcome and who waits for it; only touched while `state` holds [`LOCKED`].
    locked: UnsafeCell<Locked<T>>,
    /// The executor's job, `()` for a future made by [`Future::new`]. Unsized last, so that a
    /// `Future<T>` does not name the job's type.
    pub(crate) job: J,
}

// SAFETY: `locked` is only reached through a `Guard`, which exists only while this thread
// holds the lock bit, so at most one thread touches `T` at a time: `T: Send` is enough, as for
// a `Mutex<T>`. The job is shared as it is.
#[allow(unsafe_code)]
unsafe impl<T: Send, J: ?Sized + Send> Send for Core<T, J> {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl<T: Send, J: ?Sized + Sync> Sync for Core<T, J> {}

// A panic while the lock is held (a `Clone` of the value, the only user code run under it)
// changes nothing before it unwinds, and the guard releases the lock: what other handles see
// after a caught panic is consistent.
impl<T, J: ?Sized + RefUnwindSafe> RefUnwindSafe for Core<T, J> {}

/// The phase, in the state word's low bits.
const PHASE: u64 = 0b111;
const PENDING: u64 = 0;
const RUNNING: u64 = 1;
const CANCELLED: u64 = 2;
/// Python's CANCELLED_AND_NOTIFIED: the executor has seen the cancellation.
const CANCELLED_NOTIFIED: u64 = 3;
const FINISHED: u64 = 4;
/// Finished with an error: `FirstException` and `Debug` tell it without the lock.
const FAILED: u64 = 1 << 3;
/// Held while `locked` is in use: the outcome is written, read or taken, or a waiter comes or
/// goes. Held for a few instructions (or a `Clone` of the value), so waiting for it spins.
const LOCKED: u64 = 1 << 4;
/// The mark of the last `wait`/`as_completed` call that saw the future (see `CallMark`) sits
/// above the phase and flags.
const MARK_SHIFT: u32 = 64 - MARK_BITS;

fn is_done(word: u64) -> bool {
    word & PHASE >= CANCELLED
}

impl<T, J> Core<T, J> {
    fn new(job: J) -> Self {
        Self::with_state(PENDING, Locked::Waiting(None), job)
    }

    fn with_state(state: u64, locked: Locked<T>, job: J) -> Self {
        Self {
            state: AtomicU64::new(state),
            #[cfg(loom)]
            serial: crate::sync::Mutex::new(()),
            locked: UnsafeCell::new(locked),
            job,
        }
    }
}

impl<T, J: ?Sized> Core<T, J> {
    /// The state word, without the lock.
    fn load(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Takes the lock bit, spinning while another thread holds it.
    fn lock(&self) -> Guard<'_, T> {
        // Each attempt is a compare-exchange, which reads the word's latest value, where a
        // plain load may read an older one for a while (and does, without end, in loom's
        // models). The lock is rarely contended, so spinning on the load would save little.
        #[cfg(loom)]
        let serial = crate::sync::lock(&self.serial);
        #[cfg(not(loom))]
        let serial = std::marker::PhantomData;
        let mut word = self.state.load(Ordering::Relaxed) & !LOCKED;
        let mut step = 0;
        loop {
            match self.state.compare_exchange(
                word,
                word | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.guard(word, serial),
                Err(now) => {
                    if now & LOCKED != 0 {
                        back_off(&mut step);
                    }
                    word = now & !LOCKED;
                }
            }
        }
    }

    /// Takes the lock bit if it is free now.
    fn try_lock(&self) -> Option<Guard<'_, T>> {
        #[cfg(loom)]
        let serial = self.serial.try_lock().ok()?;
        #[cfg(not(loom))]
        let serial = std::marker::PhantomData;
        let word = self.state.load(Ordering::Relaxed);
        if word & LOCKED != 0 {
            return None;
        }
        self.state
            .compare_exchange(word, word | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.guard(word, serial))
    }

    #[allow(unsafe_code)]
    fn guard<'a>(&'a self, word: u64, serial: Serial<'a>) -> Guard<'a, T> {
        Guard {
            state: &self.state,
            word,
            _serial: serial,
            // SAFETY: this thread has just set the lock bit, and every borrow of `locked` is
            // made this way: none other exists until the guard clears the bit.
            locked: unsafe { self.locked.borrow_mut() },
        }
    }
}

/// What the lock bit guards: who waits while the future is not done, then its outcome. One
/// field, not two, so that a future of a `u64` keeps 16 bytes here, not 24.
enum Locked<T> {
    /// Pending, running or cancelled: who waits, allocated by the first of them, so that a
    /// future nobody waits on stays small. `None` once done.
    Waiting(Option<Box<Watchers<T>>>),
    /// Finished with a value.
    Value(T),
    /// Finished with an error, boxed: it is large and rare, and the value's slot should not
    /// pay for it.
    Failed(Box<Error>),
    /// Finished, and the value moved out by `into_result`.
    Taken,
}

/// The lock bit held, with the state word as it will be written back when dropped.
struct Guard<'a, T> {
    state: &'a AtomicU64,
    word: u64,
    locked: CellMut<'a, Locked<T>>,
    /// Released after the bit (fields drop after `Drop::drop`).
    _serial: Serial<'a>,
}

#[cfg(not(loom))]
type Serial<'a> = std::marker::PhantomData<&'a ()>;
#[cfg(loom)]
type Serial<'a> = crate::sync::MutexGuard<'a, ()>;

impl<T> Guard<'_, T> {
    fn phase(&self) -> u64 {
        self.word & PHASE
    }

    fn is_done(&self) -> bool {
        is_done(self.word)
    }

    fn set_phase(&mut self, phase: u64) {
        self.word = self.word & !PHASE | phase;
    }

    fn mark(&self) -> u64 {
        self.word >> MARK_SHIFT
    }

    fn set_mark(&mut self, mark: u64) {
        self.word = self.word & !(u64::MAX << MARK_SHIFT) | mark << MARK_SHIFT;
    }

    /// Who waits; only for a future that is not done, as every caller checks first.
    fn watchers(&mut self) -> &mut Watchers<T> {
        match &mut *self.locked {
            Locked::Waiting(watchers) => watchers.get_or_insert_with(Box::default),
            _ => unreachable!("a finished future has no watchers"),
        }
    }

    /// Finishes or cancels: the new phase, and everyone to tell, to be told after unlocking.
    fn complete(&mut self, phase: u64) -> Option<Box<Watchers<T>>> {
        self.set_phase(phase);
        match &mut *self.locked {
            Locked::Waiting(watchers) => watchers.take(),
            _ => None,
        }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // Every change to the word is made under the lock, so writing it whole loses nothing.
        self.state.store(self.word & !LOCKED, Ordering::Release);
    }
}

/// Who to tell when a pending future is done. The common cases (one `wait`/`as_completed`
/// call, one thread blocked in `result`) are inline; the rest is out of line.
struct Watchers<T> {
    waiter: Option<(Arc<WaitSet>, usize)>,
    sleeper: Option<Thread>,
    rare: Option<Box<Rare<T>>>,
}

impl<T> Default for Watchers<T> {
    fn default() -> Self {
        Self {
            waiter: None,
            sleeper: None,
            rare: None,
        }
    }
}

/// Done callbacks, async wakers, and waiters and sleepers beyond the first.
struct Rare<T> {
    callbacks: Vec<Callback<T>>,
    wakers: Vec<Waker>,
    waiters: Vec<(Arc<WaitSet>, usize)>,
    sleepers: Vec<Thread>,
}

impl<T> Watchers<T> {
    fn rare(&mut self) -> &mut Rare<T> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                callbacks: Vec::new(),
                wakers: Vec::new(),
                waiters: Vec::new(),
                sleepers: Vec::new(),
            })
        })
    }

    fn add_sleeper(&mut self, thread: Thread) {
        if self.sleeper.is_none() {
            self.sleeper = Some(thread);
        } else {
            self.rare().sleepers.push(thread);
        }
    }

    /// Forgets the sleeper that is `thread`, when it stops waiting before the future is done.
    fn remove_sleeper(&mut self, thread: &Thread) {
        if self.sleeper.as_ref().is_some_and(|t| t.id() == thread.id()) {
            self.sleeper = None;
        } else if let Some(rare) = &mut self.rare
            && let Some(at) = rare.sleepers.iter().position(|t| t.id() == thread.id())
        {
            rare.sleepers.swap_remove(at);
        }
    }
}

type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

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
        Self {
            inner: Arc::new(Core::with_state(
                FINISHED | FAILED,
                Locked::Failed(Box::new(error)),
                (),
            )),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        match self.inner.load() & PHASE {
            PENDING => State::Pending,
            RUNNING => State::Running,
            CANCELLED | CANCELLED_NOTIFIED => State::Cancelled,
            _ => State::Finished,
        }
    }

    /// Cancels the future if it has not started.
    ///
    /// Returns `false` if it is running or finished; `true` if it was pending (it is now
    /// cancelled) or was already cancelled. Cancelling wakes every waiter at once, including
    /// [`wait`](crate::wait) and [`as_completed`](crate::as_completed), and runs the done
    /// callbacks in this thread.
    pub fn cancel(&self) -> bool {
        self.cancel_as(CANCELLED)
    }

    /// Cancels, entering `phase` (cancelled, or cancelled and seen by the executor).
    fn cancel_as(&self, phase: u64) -> bool {
        let mut guard = self.inner.lock();
        match guard.phase() {
            CANCELLED | CANCELLED_NOTIFIED => {
                if phase == CANCELLED_NOTIFIED {
                    guard.set_phase(phase);
                }
                true
            }
            RUNNING | FINISHED => false,
            _ => {
                let watchers = guard.complete(phase);
                drop(guard);
                self.notify(watchers);
                true
            }
        }
    }

    /// Cancels a future that was never handed to a worker and marks the cancellation seen, in
    /// one step, without the "unexpected state" log of a second notify. For executors that
    /// drop queued work.
    pub(crate) fn cancel_unsent(&self) {
        self.cancel_as(CANCELLED_NOTIFIED);
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
        is_done(self.inner.load())
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
        let guard = self.wait_until(None).unwrap_or_else(|_| unreachable!());
        outcome(&guard, T::clone)
    }

    /// Like [`result`](Self::result), but gives up after `timeout` with [`Error::Timeout`];
    /// the task goes on. A zero timeout polls.
    pub fn result_timeout(&self, timeout: Duration) -> Result<T, Error>
    where
        T: Clone,
    {
        match self.wait_until(deadline(timeout)) {
            Ok(guard) => outcome(&guard, T::clone),
            Err(TimedOut) => Err(timed_out()),
        }
    }

    /// Blocks until the future is done and moves its value out; no `Clone` needed.
    ///
    /// Another handle to the same future that asks for the value afterwards gets
    /// [`Error::InvalidState`].
    pub fn into_result(self) -> Result<T, Error> {
        let mut guard = self.wait_until(None).unwrap_or_else(|_| unreachable!());
        take_outcome(&mut guard)
    }

    /// Another name for [`into_result`](Self::into_result), as threads and tasks say it.
    pub fn join(self) -> Result<T, Error> {
        self.into_result()
    }

    /// Blocks until the future is done; `None` if it succeeded, else its error
    /// ([`Error::Cancelled`] if it was cancelled). Python's `exception()`.
    pub fn error(&self) -> Option<Error> {
        let guard = self.wait_until(None).unwrap_or_else(|_| unreachable!());
        outcome(&guard, |_| ()).err()
    }

    /// Like [`error`](Self::error), but gives `Some(Error::Timeout { .. })` if the future is
    /// not done within `timeout`.
    pub fn error_timeout(&self, timeout: Duration) -> Option<Error> {
        match self.wait_until(deadline(timeout)) {
            Ok(guard) => outcome(&guard, |_| ()).err(),
            Err(TimedOut) => Some(timed_out()),
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
        let mut guard = self.inner.lock();
        if guard.is_done() {
            drop(guard);
            self.run_callback(Box::new(callback));
        } else {
            guard.watchers().rare().callbacks.push(Box::new(callback));
        }
    }

    /// For executors: marks the future running before starting its task.
    ///
    /// Returns `Ok(true)` if it was pending (now running: run the task), `Ok(false)` if it was
    /// cancelled (skip the task). Any other state, including a second call, is
    /// [`Error::InvalidState`].
    pub fn set_running_or_notify_cancel(&self) -> Result<bool, Error> {
        let mut guard = self.inner.lock();
        match guard.phase() {
            PENDING => {
                guard.set_phase(RUNNING);
                Ok(true)
            }
            CANCELLED => {
                guard.set_phase(CANCELLED_NOTIFIED);
                Ok(false)
            }
            _ => {
                drop(guard);
                tracing::error!(target: "concurrent_futures", future = ?self, "future in unexpected state");
                Err(Error::InvalidState)
            }
        }
    }

    /// For executors and tests: completes the future with `value`. A future that is already
    /// finished or cancelled gives [`Error::InvalidState`] and keeps its outcome.
    pub fn set_result(&self, value: T) -> Result<(), Error> {
        self.finish(Ok(value))
    }

    /// For executors and tests: completes the future with `error` (Python's
    /// `set_exception`). A future that is already finished or cancelled gives
    /// [`Error::InvalidState`] and keeps its outcome.
    pub fn set_exception(&self, error: Error) -> Result<(), Error> {
        self.finish(Err(Box::new(error)))
    }

    fn finish(&self, outcome: Result<T, Box<Error>>) -> Result<(), Error> {
        let mut guard = self.inner.lock();
        if guard.is_done() {
            return Err(Error::InvalidState);
        }
        let failed = if outcome.is_err() { FAILED } else { 0 };
        let watchers = guard.complete(FINISHED | failed);
        *guard.locked = match outcome {
            Ok(value) => Locked::Value(value),
            Err(error) => Locked::Failed(error),
        };
        drop(guard);
        self.notify(watchers);
        Ok(())
    }

    /// Wakes everyone waiting on this future, then runs the callbacks: after unlocking, so
    /// that they find the future done and its lock free.
    fn notify(&self, watchers: Option<Box<Watchers<T>>>) {
        let Some(watchers) = watchers else {
            return;
        };
        if let Some(thread) = watchers.sleeper {
            thread.unpark();
        }
        if let Some((set, key)) = watchers.waiter {
            set.push(key);
        }
        let Some(rare) = watchers.rare else {
            return;
        };
        for thread in rare.sleepers {
            thread.unpark();
        }
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

    /// Blocks until done or until `deadline`, and gives the lock of the done future.
    fn wait_until(&self, deadline: Option<Instant>) -> Result<Guard<'_, T>, TimedOut> {
        let mut guard = self.inner.lock();
        if guard.is_done() {
            return Ok(guard);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(TimedOut);
        }
        // The executor may have left this thread the work that completes the future.
        if let Some(help) = help::take(self.id()) {
            drop(guard);
            help.help(deadline);
            guard = self.inner.lock();
            if guard.is_done() {
                return Ok(guard);
            }
        }
        let me = current_thread();
        guard.watchers().add_sleeper(me.clone());
        drop(guard);
        loop {
            // Completion unparks after publishing the new phase: a wake-up that finds the
            // future still pending is spurious (parking allows those) or a timeout.
            match deadline {
                None => park(),
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => park_timeout(left),
                    _ => {
                        let mut guard = self.inner.lock();
                        if guard.is_done() {
                            return Ok(guard);
                        }
                        guard.watchers().remove_sleeper(&me);
                        return Err(TimedOut);
                    }
                },
            }
            if is_done(self.inner.load()) {
                return Ok(self.inner.lock());
            }
        }
    }

    /// Moves the outcome out once done, or gives the future back if `deadline` passes first:
    /// `map`'s one lock per result.
    pub(crate) fn into_result_by(
        self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, Error>, Self> {
        let outcome = match self.wait_until(deadline) {
            Ok(mut guard) => Some(take_outcome(&mut guard)),
            Err(TimedOut) => None,
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
        let guard = self.inner.lock();
        let Locked::Waiting(Some(watchers)) = &*guard.locked else {
            return true;
        };
        watchers.waiter.is_none()
            && watchers.sleeper.is_none()
            && watchers.rare.as_ref().is_none_or(|rare| {
                rare.callbacks.is_empty()
                    && rare.wakers.is_empty()
                    && rare.waiters.is_empty()
                    && rare.sleepers.is_empty()
            })
    }

    /// True if finished with an error (not cancelled): what `FirstException` looks for.
    pub(crate) fn has_error(&self) -> bool {
        self.inner.load() & (PHASE | FAILED) == FINISHED | FAILED
    }

    /// Identity of the shared state, so that `wait` and `as_completed` count clones once.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner).cast::<()>() as usize
    }

    /// Registers `set` to receive `key` when this future is done, checked and registered under
    /// one lock so that no completion is missed; see [`Watch`] for the outcomes. With `mark`,
    /// also records that `set`'s call has seen this future, or finds that it had.
    pub(crate) fn watch(&self, set: &Arc<WaitSet>, key: usize, mark: bool) -> Watch {
        let mut guard = self.inner.lock();
        if mark {
            let call = set.call();
            match call.judge(guard.mark()) {
                Verdict::Seen => return Watch::Seen,
                Verdict::Foreign => return Watch::Foreign,
                Verdict::Claim => guard.set_mark(call.id()),
            }
        }
        if guard.is_done() {
            return Watch::Done;
        }
        let watchers = guard.watchers();
        if watchers.waiter.is_none() {
            watchers.waiter = Some((Arc::clone(set), key));
        } else {
            watchers.rare().waiters.push((Arc::clone(set), key));
        }
        Watch::Watching
    }

    /// Removes `set`'s registration, when its waiter stops waiting.
    pub(crate) fn unsubscribe(&self, set: &Arc<WaitSet>) {
        let mut guard = self.inner.lock();
        let Locked::Waiting(Some(watchers)) = &mut *guard.locked else {
            return;
        };
        if watchers
            .waiter
            .as_ref()
            .is_some_and(|(s, _)| Arc::ptr_eq(s, set))
        {
            watchers.waiter = None;
        }
        if let Some(rare) = &mut watchers.rare {
            rare.waiters.retain(|(s, _)| !Arc::ptr_eq(s, set));
        }
    }
}

/// A timed wait ran out before the future was done.
struct TimedOut;

/// The outcome of a done future, the value produced by `value`.
fn outcome<T, R>(guard: &Guard<'_, T>, value: impl FnOnce(&T) -> R) -> Result<R, Error> {
    match guard.phase() {
        CANCELLED | CANCELLED_NOTIFIED => Err(Error::Cancelled),
        _ => match &*guard.locked {
            Locked::Value(v) => Ok(value(v)),
            Locked::Failed(e) => Err(Error::clone(e)),
            // Finished, and the value moved out by `into_result`.
            Locked::Taken | Locked::Waiting(_) => Err(Error::InvalidState),
        },
    }
}

/// The outcome of a done future, its value moved out.
fn take_outcome<T>(guard: &mut Guard<'_, T>) -> Result<T, Error> {
    if matches!(*guard.locked, Locked::Value(_))
        && let Locked::Value(value) = std::mem::replace(&mut *guard.locked, Locked::Taken)
    {
        return Ok(value);
    }
    outcome(guard, |_| unreachable!("a value is taken, not cloned"))
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
        let word = self.inner.load();
        let state = match word & PHASE {
            PENDING => "pending".to_owned(),
            RUNNING => "running".to_owned(),
            CANCELLED | CANCELLED_NOTIFIED => "cancelled".to_owned(),
            _ if word & FAILED == 0 => format!("finished returned {}", short_type_name::<T>()),
            // try_lock: Debug may run from a tracing call made while this thread holds the lock.
            _ => match self.inner.try_lock() {
                Some(guard) => match &*guard.locked {
                    Locked::Failed(e) => format!("finished raised {}", e.kind_name()),
                    _ => "finished raised".to_owned(),
                },
                None => "finished raised (locked)".to_owned(),
            },
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
        let mut guard = self.future.inner.lock();
        if guard.is_done() {
            return Poll::Ready(take_outcome(&mut guard));
        }
        let wakers = &mut guard.watchers().rare().wakers;
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Unpin for AwaitFuture<T> {}
