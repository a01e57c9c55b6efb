//! `ThreadPoolExecutor`: tasks run on a lazily grown set of threads in this process.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_utils::CachePadded;

use super::Executor;
use super::batch::Batch;
use super::cancellations::Cancellations;
use super::job_queue::JobQueue;
use crate::error::Error;
use crate::future::{Core, Future};
use crate::sync::{Arc, Mutex, lock};
use crate::task::Task;
use crate::unwind;

/// Runs tasks on up to `max_workers` threads of this process.
///
/// Python's `ThreadPoolExecutor`. Threads start lazily: a submit starts a new thread only when
/// no thread is idle and fewer than `max_workers` exist. A panicking task leaves its thread
/// alive; its future holds [`Error::Panicked`]. Dropping the executor waits for the submitted
/// work, like leaving Python's `with` block. [`map`](Self::map) runs its calls as one batch
/// shared by the threads, with no future per call (see [`Executor::map`]).
///
/// ```
/// use concurrent_futures::{ThreadPoolExecutor, task};
///
/// #[task]
/// fn square_number(x: u64) -> u64 {
///     x * x
/// }
///
/// let executor = ThreadPoolExecutor::new(2);
/// let squared = executor.submit(square_number(7));
/// let greeting = executor.spawn(|| format!("hello from {}", std::thread::current().name().unwrap()));
/// assert_eq!(squared.result(), Ok(49));
/// assert!(greeting.result().unwrap().starts_with("hello from ThreadPoolExecutor-"));
/// ```
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
}

/// What the executor handle and its threads share.
struct Shared {
    /// False once shut down. Held while submitting, as Python's shutdown lock is. On a cache
    /// line of its own: every submit writes it, and the threads read the fields around it on
    /// every task.
    open: CachePadded<Mutex<bool>>,
    /// Jobs in submission order; `None` tells a thread to exit. Shutting down appends one for
    /// each thread, so that each finishes what was queued before it, then exits.
    queue: JobQueue<Option<Job>>,
    /// Exit markers in `queue`, so that `Debug` counts tasks only: counted before they are
    /// queued, uncounted once a thread took one. A thread that exited early (its initializer
    /// failed) leaves its marker, and the count, for good.
    exits: AtomicUsize,
    /// Threads that finished a job and have not been handed another by `submit`: Python's
    /// idle semaphore. `submit` takes one instead of starting a thread.
    idle: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// How many threads were started: lets a saturated pool's submit skip the lock above.
    started: AtomicUsize,
    /// Held while joining, so that a second `shutdown(wait = true)` (or a `Drop` racing one)
    /// returns only once the threads are gone, as in Python, not when the list is empty.
    joining: Mutex<()>,
    /// Other callers' `shutdown(cancel_futures = true)` still cancelling, for `wait`.
    cancellations: Cancellations,
    /// Set by `shutdown(cancel_futures = true)`: a running `map` batch starts no more calls.
    cancelled: AtomicBool,
    max_workers: usize,
    thread_name_prefix: String,
    initializer: Option<Initializer>,
    /// Set once, by the first failed initializer; the reason every later task fails with.
    broken: OnceLock<String>,
}

type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// One submitted call, type-erased: run it, fail it, or cancel it. It points into its
/// future's allocation, where the call waits to be taken (see [`Future::with_job`]).
struct Job(Arc<dyn Runnable>);

enum Directive<'a> {
    /// Run the task; call `mark_idle` after it ran and before its future completes, so that
    /// whoever wakes up on the result and submits again finds this thread idle.
    Run {
        mark_idle: &'a dyn Fn(),
    },
    Fail(Error),
    Cancel,
}

/// A future's shared state with its call, as the queue sees it. `self: Arc<Self>`: the queue's
/// handle is consumed, so the call is taken exactly once.
trait Runnable: Send + Sync {
    fn follow(self: Arc<Self>, directive: Directive<'_>);
}

/// The largest call kept inside its future's allocation, in bytes; a larger one is boxed. A
/// call's captures are dropped when it runs, but their bytes stay as long as the future:
/// a closure of a few arguments fits, an array captured by value does not.
const INLINE_CALL: usize = 128;

/// The call inside a future's allocation, until its job is followed. No lock and no atomic:
/// the pool makes one [`Job`] per future and follows it once (`follow` consumes it), and that
/// is the only code that reads the cell. A mutex here added 8 bytes to every future a pool
/// keeps, and crossbeam's `AtomicCell` (the call is wider than a word) a global striped lock.
struct Call<F>(std::cell::UnsafeCell<Option<F>>);

// SAFETY: the cell is only reached through `take`, whose caller is the one thread following
// the future's one job; handles to the future never read it. Moving `F` to that thread is
// what `F: Send` allows.
#[allow(unsafe_code)]
unsafe impl<F: Send> Sync for Call<F> {}

// Nothing reads the cell after a panic but the job that owns it, which is gone by then.
impl<F> std::panic::RefUnwindSafe for Call<F> {}

impl<F> Call<F> {
    fn new(f: F) -> Self {
        Self(std::cell::UnsafeCell::new(Some(f)))
    }

    /// The call, the first time; `None` after.
    ///
    /// # Safety
    ///
    /// Only the follower of this future's one job may call this, and no one else may touch
    /// the cell meanwhile.
    #[allow(unsafe_code)]
    unsafe fn take(&self) -> Option<F> {
        // SAFETY: the caller guarantees exclusive access.
        unsafe { (*self.0.get()).take() }
    }
}

impl<R, F> Runnable for Core<R, Call<F>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    fn follow(self: Arc<Self>, directive: Directive<'_>) {
        // Taken in every case, so that a cancelled or failed call's captures are dropped now,
        // not when the last handle to its future is.
        // SAFETY: this is the future's one job, consumed here; nothing else reads the call.
        #[allow(unsafe_code)]
        let call = unsafe { self.job.take() };
        let future = Future::from_shared(self);
        match (directive, call) {
            (Directive::Run { mark_idle }, Some(f)) => {
                if future.set_running_or_notify_cancel() == Ok(true) {
                    let outcome = unwind::catch(f);
                    mark_idle();
                    // Cannot fail: only this job completes a running future.
                    let _ = match outcome {
                        Ok(value) => future.set_result(value),
                        Err(error) => future.set_exception(error),
                    };
                } else {
                    mark_idle();
                }
            }
            (Directive::Run { mark_idle }, None) => mark_idle(),
            (Directive::Fail(error), _) => {
                // A cancelled future keeps its cancellation.
                let _ = future.set_exception(error);
            }
            (Directive::Cancel, _) => {
                future.cancel();
                let _ = future.set_running_or_notify_cancel();
            }
        }
    }
}

/// One of the runners of a `map`'s batch, as the queue sees it: runs the batch's calls until
/// none is left, or until the pool is broken or `shutdown(cancel_futures)` cancels what has
/// not started. Failed or cancelled unrun, it stops the batch: the calls no runner started
/// get the reason.
struct BatchRunner<T: Task> {
    batch: Arc<Batch<T>>,
    runner: usize,
    shared: Arc<Shared>,
}

impl<T: Task> Runnable for BatchRunner<T> {
    fn follow(self: Arc<Self>, directive: Directive<'_>) {
        match directive {
            Directive::Run { mark_idle } => {
                self.batch.run(self.runner, &|| self.shared.stop_reason());
                mark_idle();
            }
            Directive::Fail(error) => self.batch.abandon(error),
            Directive::Cancel => self.batch.abandon(Error::Cancelled),
        }
    }
}

impl Job {
    /// The future of `f`, and the job that completes it: one allocation, unless `f` is
    /// larger than [`INLINE_CALL`].
    fn new<F, R>(f: F) -> (Future<R>, Self)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if std::mem::size_of::<F>() <= INLINE_CALL {
            Self::inline(f)
        } else {
            // The future's allocation outlives the call, as long as any handle to it does:
            // only a pointer to a large call stays in it, and the call's memory goes with it.
            Self::inline(Box::new(f))
        }
    }

    fn inline<F, R>(f: F) -> (Future<R>, Self)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (future, shared) = Future::with_job(Call::new(f));
        (future, Job(shared))
    }

    fn run(self, mark_idle: &dyn Fn()) {
        self.0.follow(Directive::Run { mark_idle });
    }

    fn fail(self, error: Error) {
        self.0.follow(Directive::Fail(error));
    }

    fn cancel(self) {
        self.0.follow(Directive::Cancel);
    }
}

/// What an initializer may return: `()`, or a `Result` whose error says why it failed.
pub trait InitResult {
    /// `Err(reason)` if the initializer failed.
    fn into_init_result(self) -> Result<(), String>;
}

impl InitResult for () {
    fn into_init_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> InitResult for Result<(), E> {
    fn into_init_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Builds a [`ThreadPoolExecutor`] with Python's options.
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let executor = ThreadPoolExecutor::builder()
///     .max_workers(4)
///     .thread_name_prefix("resizer")
///     .initializer(|| println!("thread {:?} ready", std::thread::current().name()))
///     .build()
///     .unwrap();
/// let name = executor.spawn(|| std::thread::current().name().map(str::to_owned));
/// assert_eq!(name.result().unwrap().as_deref(), Some("resizer_0"));
/// ```
#[must_use = "call build() to get the executor"]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Initializer>,
}

impl ThreadPoolBuilder {
    /// The most threads the pool runs; default `min(32, available cores + 4)`, Python's.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// Threads are named `{prefix}_{i}`; default prefix `ThreadPoolExecutor-{n}`.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs once at the start of each thread, before any task. If it panics or returns
    /// `Err`, the pool is broken: the failure is logged, queued and later futures fail with
    /// [`Error::Broken`] carrying the reason.
    pub fn initializer<F, R>(mut self, initializer: F) -> Self
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: InitResult,
    {
        self.initializer = Some(Arc::new(move || initializer().into_init_result()));
        self
    }

    /// The executor; no thread starts until the first submit.
    ///
    /// Fails with [`Error::InvalidArgument`] if `max_workers` is zero.
    pub fn build(self) -> Result<ThreadPoolExecutor, Error> {
        let max_workers = self.max_workers.unwrap_or_else(default_max_workers);
        if max_workers == 0 {
            return Err(Error::InvalidArgument {
                message: "max_workers must be greater than 0".to_owned(),
            });
        }
        let thread_name_prefix = self.thread_name_prefix.unwrap_or_else(|| {
            static POOLS: AtomicUsize = AtomicUsize::new(0);
            format!(
                "ThreadPoolExecutor-{}",
                POOLS.fetch_add(1, Ordering::Relaxed)
            )
        });
        Ok(ThreadPoolExecutor {
            shared: Arc::new(Shared {
                open: CachePadded::new(Mutex::new(true)),
                queue: JobQueue::new(),
                exits: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
                threads: Mutex::new(Vec::new()),
                started: AtomicUsize::new(0),
                joining: Mutex::new(()),
                cancellations: Cancellations::default(),
                cancelled: AtomicBool::new(false),
                max_workers,
                thread_name_prefix,
                initializer: self.initializer,
                broken: OnceLock::new(),
            }),
        })
    }
}

/// Python 3.13's default: `min(32, cpus + 4)`, enough threads for I/O-bound work.
fn default_max_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    32.min(cpus + 4)
}

impl ThreadPoolExecutor {
    /// A pool of at most `max_workers` threads.
    ///
    /// # Panics
    ///
    /// If `max_workers` is zero; [`builder`](Self::builder) returns the error instead.
    pub fn new(max_workers: usize) -> Self {
        Self::builder()
            .max_workers(max_workers)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A builder for the other options.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            max_workers: None,
            thread_name_prefix: None,
            initializer: None,
        }
    }

    /// The most threads this pool runs.
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    /// How many threads it has started so far.
    pub fn thread_count(&self) -> usize {
        self.shared.started.load(Ordering::Acquire)
    }

    /// Schedules a `#[task]` value; see [`Executor::submit`].
    pub fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        self.spawn(move || task.run())
    }

    /// Schedules a closure. Nothing crosses a process here, so any `Send` closure will do.
    pub fn spawn<F, R>(&self, f: F) -> Future<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (future, job) = Job::new(f);
        self.schedule(job);
        future
    }

    crate::executor::inherent_map!();

    /// See [`Executor::shutdown`]. With `wait`, joins every thread (except the calling one,
    /// if a task shuts down its own pool).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut open = lock(&self.shared.open);
        let mut cancelled = Vec::new();
        let mut cancelling = None;
        if cancel_futures {
            self.shared.cancelled.store(true, Ordering::Relaxed);
            self.shared.take_queued(|job| cancelled.push(job));
            cancelling = Some(self.shared.cancellations.begin());
        }
        if std::mem::replace(&mut *open, false) {
            // Each thread finishes what is queued, then takes one of these and exits. No
            // thread starts after this: starting one needs the pool open.
            let threads = lock(&self.shared.threads).len();
            self.shared.exits.fetch_add(threads, Ordering::Relaxed);
            for _ in 0..threads {
                self.shared.queue.push(None);
            }
        }
        drop(open);
        // Out of the queue, so no thread runs them; cancelled outside the lock, because a
        // cancelled future runs its done callbacks here, and they (or the dropped calls'
        // captures) may use this pool: submit to it, show it, shut it down.
        for job in cancelled {
            job.cancel();
        }
        drop(cancelling);
        if wait {
            // Python cancels under its lock: a concurrent caller returns only once all is done.
            self.shared.cancellations.wait_for_others();
            let _joining = lock(&self.shared.joining);
            let threads = std::mem::take(&mut *lock(&self.shared.threads));
            let me = thread::current().id();
            for handle in threads {
                if handle.thread().id() != me {
                    // A thread never panics out of its loop: tasks and initializers are caught.
                    let _ = handle.join();
                }
            }
        }
    }

    fn schedule(&self, job: Job) {
        if let Some(reason) = self.shared.broken.get() {
            return job.fail(Error::Broken {
                reason: reason.clone(),
            });
        }
        let open = lock(&self.shared.open);
        if !*open {
            // Outside the lock: failing drops the call, whose captures may use this pool.
            drop(open);
            return job.fail(Error::ShutDown);
        }
        self.shared.queue.push(Some(job));
        if self.shared.broken.get().is_some() {
            drop(open);
            // Broken between the check and the push; no thread may be left to fail the job.
            self.shared.fail_queued();
            return;
        }
        // Still under the lock, as Python's submit holds its shutdown lock: a concurrent
        // shutdown then sees the thread this job needs, and tells it to exit after the job.
        self.adjust_thread_count();
        drop(open);
    }

    /// Starts a thread unless one is idle or the pool is full.
    fn adjust_thread_count(&self) {
        // A full pool never starts another thread: skip the idle count, which every finished
        // task writes, so that submit and the threads do not pass its cache line back and forth.
        if self.shared.is_full() {
            return;
        }
        let took_idle = self
            .shared
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if took_idle {
            return;
        }
        let mut threads = lock(&self.shared.threads);
        if threads.len() >= self.shared.max_workers {
            return;
        }
        let name = format!("{}_{}", self.shared.thread_name_prefix, threads.len());
        let shared = Arc::clone(&self.shared);
        match thread::Builder::new()
            .name(name)
            .spawn(move || shared.work())
        {
            Ok(handle) => {
                threads.push(handle);
                self.shared.started.fetch_add(1, Ordering::Release);
            }
            Err(error) if threads.is_empty() => {
                drop(threads);
                self.shared
                    .mark_broken(format!("cannot start a pool thread: {error}"));
            }
            Err(error) => {
                tracing::warn!(target: "concurrent_futures", %error, "cannot start another pool thread; the running ones go on");
            }
        }
    }
}

impl Shared {
    /// A pool thread: initializer, then jobs until it takes an exit marker.
    fn work(&self) {
        if let Some(initializer) = &self.initializer {
            let reason = match unwind::catch(|| initializer()) {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(panic) => Some(panic.to_string()),
            };
            if let Some(reason) = reason {
                tracing::error!(target: "concurrent_futures", %reason, "thread pool initializer failed; the pool is broken");
                self.mark_broken(format!("a thread initializer failed: {reason}"));
                return;
            }
        }
        let mark_idle = || {
            if !self.is_full() {
                self.idle.fetch_add(1, Ordering::AcqRel);
            }
        };
        while let Some(job) = self.queue.pop() {
            match self.broken.get() {
                Some(reason) => job.fail(Error::Broken {
                    reason: reason.clone(),
                }),
                None => job.run(&mark_idle),
            }
        }
        // Took its exit marker.
        self.exits.fetch_sub(1, Ordering::Relaxed);
    }

    /// Why a running `map` batch must start no more calls: `shutdown(cancel_futures)`, or a
    /// broken pool.
    fn stop_reason(&self) -> Option<Error> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Some(Error::Cancelled);
        }
        self.broken.get().map(|reason| Error::Broken {
            reason: reason.clone(),
        })
    }

    /// All `max_workers` threads started: none will be again, and idleness no longer matters.
    fn is_full(&self) -> bool {
        self.started.load(Ordering::Acquire) >= self.max_workers
    }

    fn mark_broken(&self, reason: String) {
        let _ = self.broken.set(reason);
        self.fail_queued();
    }

    fn fail_queued(&self) {
        let reason = self.broken.get().cloned().unwrap_or_default();
        self.take_queued(|job| {
            job.fail(Error::Broken {
                reason: reason.clone(),
            });
        });
    }

    /// Jobs waiting to run, for `Debug`: what the queue holds less the exit markers. Read
    /// while threads take jobs, so a snapshot.
    fn queued(&self) -> usize {
        let exits = self.exits.load(Ordering::Relaxed);
        self.queue.len().saturating_sub(exits)
    }

    /// Takes every queued job and hands it to `each`, keeping the threads' exit markers.
    fn take_queued(&self, mut each: impl FnMut(Job)) {
        let mut exits = 0;
        while let Some(item) = self.queue.try_pop() {
            match item {
                Some(job) => each(job),
                None => exits += 1,
            }
        }
        for _ in 0..exits {
            self.queue.push(None);
        }
    }
}

impl Executor for ThreadPoolExecutor {
    fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        ThreadPoolExecutor::submit(self, task)
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ThreadPoolExecutor::shutdown(self, wait, cancel_futures);
    }

    /// One runner per thread the pool may start (at most one per call), each a job in the
    /// queue like any task's. A shut-down pool takes nothing, so that `map` submits the first
    /// call alone and yields its refusal, as on any executor.
    fn __submit_batch<T: Task>(
        &self,
        calls: &mut dyn Iterator<Item = T>,
    ) -> Option<super::__BatchReader<T>> {
        if !*lock(&self.shared.open) {
            return None;
        }
        let batch = Batch::new(calls, self.shared.max_workers);
        if batch.len() > 0 {
            for runner in 0..batch.runners() {
                self.schedule(Job(Arc::new(BatchRunner {
                    batch: Arc::clone(&batch),
                    runner,
                    shared: Arc::clone(&self.shared),
                })));
            }
        }
        Some(super::__BatchReader::new(batch))
    }

    /// A refused job is failed and dropped before `spawn` returns its future.
    fn __refusal_is_sole_handle(&self) -> bool {
        true
    }
}

impl Default for ThreadPoolExecutor {
    /// A pool with Python's default `max_workers`.
    fn default() -> Self {
        Self::builder()
            .build()
            .expect("the default max_workers is never zero")
    }
}

/// Leaving scope waits for the submitted work: `shutdown(wait = true)`.
impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.shared.max_workers)
            .field("threads", &self.thread_count())
            .field("queued", &self.shared.queued())
            .field("shut_down", &!*lock(&self.shared.open))
            .field("broken", &self.shared.broken.get())
            .finish()
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future lives as long as any handle to it, and its allocation with it: a closure too
    /// large to be worth keeping there after it ran (a big array captured by value) waits
    /// outside it, and the future keeps a pointer's worth.
    #[test]
    fn a_large_closure_is_not_kept_inside_its_future() {
        let big = [7_u8; 64 * 1024];
        let (future, job) = Job::new(move || big.iter().map(|&b| u64::from(b)).sum::<u64>());
        let size = std::mem::size_of_val(&*job.0);
        assert!(size < 1024, "the future's allocation is {size} bytes");
        job.run(&|| {});
        assert_eq!(future.result(), Ok(7 * 64 * 1024));
    }

    /// A pool keeps one future per pending task: for a `u64` task of one `u64` argument, the
    /// future's state and its call take 40 bytes, 56 with the `Arc`'s counts, which glibc's
    /// malloc serves from its 64-byte chunks (one cache line).
    #[test]
    fn a_small_task_s_future_and_call_fit_a_cache_line() {
        let x = 7_u64;
        let (future, job) = Job::new(move || x * x);
        let size = std::mem::size_of_val(&*job.0);
        assert!(size <= 40, "the future's allocation is {size} + 16 bytes");
        job.run(&|| {});
        assert_eq!(future.result(), Ok(49));
    }
}
