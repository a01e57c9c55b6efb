//! `ProcessPoolExecutor`: tasks run in worker processes that are this program started again.

mod connection;
mod link;
mod raw;
mod scheduler;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scheduler::{Chunk, Completion, Effects, Job, Scheduler, TaskFuture};

use super::{__Submitted, Executor};
use crate::error::Error;
use crate::future::Future;
use crate::process::call;
use crate::process::wire::{self, MAX_FRAME};
use crate::sync::Arc;
use crate::task::Task;

/// How many jobs a busy worker may hold beyond the one it runs, once every worker is busy:
/// enough that tiny tasks are not bound by one round trip each.
const DEFAULT_PIPELINE_DEPTH: usize = 128;

/// How long a worker that answered a lone call watches its socket before it sleeps: several
/// times what a caller takes to get a result and submit again (about 20 µs on a 2-core VM),
/// so that a noisy machine's slower turns are caught too; the worker backs off from callers
/// that do not come back this soon.
const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(100);

/// Runs `#[task]` values in up to `max_workers` worker processes, each this program started
/// again and entering through [`init`](crate::init).
///
/// Python's `ProcessPoolExecutor`, and better where it counts:
///
/// - a worker that dies (abort, segfault, `process::exit`, kill, out of memory) fails only
///   the task it was running, with [`Error::WorkerDied`]; it is replaced and the tasks it had
///   not started run elsewhere (Python breaks the whole pool);
/// - a task's own timeout (`#[task(timeout = "10s")]`, [`submit_with_timeout`](Self::submit_with_timeout)
///   or the builder's default) kills and replaces its worker and fails it with
///   [`Error::TaskTimedOut`];
/// - a panic comes back as [`Error::Panicked`] with its message and location, the worker
///   lives on;
/// - `terminate_workers`/`kill_workers` never let a replacement worker run what the killed
///   ones had been sent but not started: those futures fail with [`Error::Cancelled`];
/// - a worker that answered a lone small call watches its socket briefly for the next one
///   before sleeping ([`ProcessPoolBuilder::idle_spin`]), so `submit(..).result()` in a
///   loop does not pay for waking a sleeping process on every call (Python's workers sleep
///   at once), and the thread blocked in `result()` reads that call's answer from the
///   worker's socket itself, with no hand-off from the pool's thread.
///
/// As in Python, a future is running from the moment it is sent to a worker (Python's call
/// queue), so `cancel()` returns false from then on; queued work is sent only while a worker
/// is idle or the tasks are short (under a millisecond), up to `pipeline_depth` per worker.
///
/// Tasks, arguments and results travel as postcard frames on a socket each worker inherits,
/// never on stdout or stderr, so a task's `println!` reaches the terminal untouched.
///
/// ```no_run
/// use concurrent_futures::{ProcessPoolExecutor, as_completed, task};
///
/// #[task]
/// fn square_number(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     concurrent_futures::init(); // workers enter here and never return
///     let executor = ProcessPoolExecutor::new(2);
///     let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
///     for future in as_completed(&futures) {
///         println!("{}", future.result().unwrap());
///     }
/// }
/// ```
pub struct ProcessPoolExecutor {
    scheduler: Arc<Scheduler>,
    next_id: AtomicU64,
}

/// What every part of the pool reads and nothing changes.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) max_workers: usize,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) pipeline_depth: usize,
    /// The encoded initializer task, run first in every worker.
    pub(crate) initializer: Option<Vec<u8>>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) executable: Option<PathBuf>,
    /// A worker that has not completed its handshake this long after it was started is
    /// killed, and counts as a failed handshake.
    pub(crate) handshake_timeout: Duration,
    /// How long a worker that ran out of work polls its socket before it blocks.
    pub(crate) idle_spin: Duration,
}

/// Builds a [`ProcessPoolExecutor`] with Python's options and a default task timeout.
///
/// ```no_run
/// use std::time::Duration;
/// use concurrent_futures::{ProcessPoolExecutor, task};
///
/// #[task]
/// fn warm_cache() {}
///
/// let executor = ProcessPoolExecutor::builder()
///     .max_workers(4)
///     .max_tasks_per_child(1000)
///     .initializer(warm_cache())
///     .task_timeout(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// # drop(executor);
/// ```
#[must_use = "call build() to get the executor"]
#[derive(Debug, Default)]
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    max_tasks_per_child: Option<usize>,
    pipeline_depth: Option<usize>,
    initializer: Option<Result<Vec<u8>, Error>>,
    task_timeout: Option<Duration>,
    executable: Option<PathBuf>,
    handshake_timeout: Option<Duration>,
    idle_spin: Option<Duration>,
}

/// How long a new worker may take to reach `init()` and answer the handshake.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ProcessPoolBuilder {
    /// The most worker processes; default: the available parallelism.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// A worker exits after this many tasks and a fresh one replaces it (Python's
    /// `max_tasks_per_child`): a bound on what a leaky task can accumulate.
    pub fn max_tasks_per_child(mut self, max_tasks: usize) -> Self {
        self.max_tasks_per_child = Some(max_tasks);
        self
    }

    /// A `#[task]` value run first in every new worker. If it fails (panics), the pool is
    /// broken: queued and later futures fail with [`Error::Broken`] naming the reason.
    pub fn initializer<T: Task>(mut self, initializer: T) -> Self {
        self.initializer = Some(encode_task(&initializer));
        self
    }

    /// The timeout of tasks that have none of their own (`#[task(timeout = ...)]`).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// How many tasks a busy worker may hold queued once every worker is busy; default 128.
    /// Higher favours throughput of tiny tasks, 1 favours spreading long ones.
    pub fn pipeline_depth(mut self, depth: usize) -> Self {
        self.pipeline_depth = Some(depth);
        self
    }

    /// Starts workers from this executable instead of the current one. It must be the same
    /// build: a worker from another build refuses the handshake and the pool is broken.
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }

    /// How long a new worker may take to reach `init()` and answer the parent's hello;
    /// default 10 s. A worker that does not (a program whose `main` blocks, on stdin say,
    /// before `init()`) is killed; three in a row break the pool with a message naming the
    /// fix.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// How long a worker that has just answered a lone call (nothing else queued, nothing
    /// else in flight to it, small arguments) keeps polling its socket before it goes to
    /// sleep; default 100 µs, at most 10 ms, zero to sleep at once (as Python's workers do).
    ///
    /// Waking a sleeping process costs tens of microseconds on many machines, virtual ones
    /// most: a caller that submits its next task within this window (`submit(..).result()`
    /// in a loop) finds the worker awake, which roughly halves that loop's round trip. The
    /// price is up to this long of one core's time per lone call; a worker whose watches
    /// catch nothing backs off (skipping 1, 2, 4, ... up to 64 lone calls), and a busy pool,
    /// whose workers have jobs queued, does not pay it at all.
    ///
    /// The same setting bounds the other side: a thread blocked in `result()` on a lone call
    /// reads the answer from the worker's socket itself, and polls for it up to 20 µs (or
    /// this setting, if shorter; zero: not at all) before it sleeps, backing off the same way.
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = Some(spin);
        self
    }

    /// The executor; no worker starts until the first submit.
    ///
    /// Fails with [`Error::InvalidArgument`] for zero workers, a zero `max_tasks_per_child` or
    /// pipeline depth, or an `idle_spin` over 10 ms, and with [`Error::Serialization`] if the
    /// initializer cannot be encoded.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
        let invalid = |message: &str| {
            Err(Error::InvalidArgument {
                message: message.to_owned(),
            })
        };
        let max_workers = self.max_workers.unwrap_or_else(default_max_workers);
        if max_workers == 0 {
            return invalid("max_workers must be greater than 0");
        }
        if self.max_tasks_per_child == Some(0) {
            return invalid("max_tasks_per_child must be >= 1");
        }
        let pipeline_depth = self.pipeline_depth.unwrap_or(DEFAULT_PIPELINE_DEPTH);
        if pipeline_depth == 0 {
            return invalid("pipeline_depth must be >= 1");
        }
        let idle_spin = self.idle_spin.unwrap_or(DEFAULT_IDLE_SPIN);
        if idle_spin > wire::MAX_IDLE_SPIN {
            return invalid("idle_spin must be at most 10 ms");
        }
        let initializer = self.initializer.transpose()?;
        Ok(ProcessPoolExecutor {
            scheduler: Arc::new(Scheduler::new(Config {
                max_workers,
                max_tasks_per_child: self.max_tasks_per_child,
                pipeline_depth,
                initializer,
                task_timeout: self.task_timeout,
                executable: self.executable,
                handshake_timeout: self.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
                idle_spin,
            })),
            next_id: AtomicU64::new(wire::INITIALIZER_ID + 1),
        })
    }
}

fn default_max_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A call of `task`, as a worker decodes it, within the frame size limit.
fn encode_task<T: Task>(task: &T) -> Result<Vec<u8>, Error> {
    let mut payload = Vec::new();
    call::encode(task, &mut payload)?;
    check_size(
        payload.len(),
        format_args!("the arguments of task `{}`", T::NAME),
    )?;
    Ok(payload)
}

/// Room for the frame header: the frame, not just the payload, must fit.
fn check_size(len: usize, what: std::fmt::Arguments<'_>) -> Result<(), Error> {
    if len > MAX_FRAME - 64 {
        return Err(Error::Serialization {
            message: format!("{what} take {len} bytes, over the {MAX_FRAME}-byte frame limit"),
        });
    }
    Ok(())
}

impl ProcessPoolExecutor {
    /// A pool of at most `max_workers` worker processes.
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
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// The most worker processes this pool runs.
    pub fn max_workers(&self) -> usize {
        self.scheduler.config.max_workers
    }

    /// The process ids of the live workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .scheduler
            .lock()
            .workers
            .values()
            .map(|w| w.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Schedules a `#[task]` value in a worker process; see [`Executor::submit`]. Its timeout
    /// is the task's own (`#[task(timeout = ...)]`), else the pool's default.
    pub fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        let timeout = task.timeout().or(self.scheduler.config.task_timeout);
        self.submit_job(&task, timeout)
    }

    /// Like [`submit`](Self::submit), with this call's own timeout: once the task has run
    /// this long, its worker is killed and replaced and the future fails with
    /// [`Error::TaskTimedOut`].
    pub fn submit_with_timeout<T: Task>(&self, task: T, timeout: Duration) -> Future<T::Output> {
        self.submit_job(&task, Some(timeout))
    }

    fn submit_job<T: Task>(&self, task: &T, timeout: Option<Duration>) -> Future<T::Output> {
        let payload = match encode_task(task) {
            Ok(payload) => payload,
            Err(error) => return Future::failed(error),
        };
        let future = Future::new();
        self.enqueue(
            wire::RUN,
            payload,
            timeout,
            Box::new(TaskFuture::<T>(future.clone())),
        );
        future
    }

    fn enqueue(
        &self,
        kind: u8,
        payload: Vec<u8>,
        timeout: Option<Duration>,
        future: Box<dyn Completion>,
    ) {
        self.scheduler.enqueue(Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            payload: Arc::new(payload),
            timeout,
            future,
        });
    }

    /// One frame for many calls: what `map` with a `chunksize` uses. The chunk's timeout is
    /// the sum of its tasks' timeouts (none if any has none); a worker that dies while running
    /// a chunk fails every call of it (the answer comes back as one frame).
    fn submit_chunk<T: Task>(&self, tasks: Vec<T>, into: &mut Vec<__Submitted<T::Output>>) {
        let calls = tasks.len();
        let future = Future::new();
        into.push(__Submitted::Chunk {
            future: future.clone(),
            calls,
        });
        let mut body = Vec::new();
        if let Err(error) = call::begin_chunk::<T>(&mut body) {
            let _ = future.set_exception(error);
            return;
        }
        let mut timeout = Some(Duration::ZERO);
        // Calls that cannot be encoded fail alone; the rest of the chunk goes.
        let mut unsent = Vec::new();
        for (at, task) in tasks.iter().enumerate() {
            match call::encode_in_chunk(task, &mut body) {
                Ok(()) => {
                    let own = task.timeout().or(self.scheduler.config.task_timeout);
                    timeout = timeout.zip(own).map(|(sum, own)| sum.saturating_add(own));
                }
                Err(error) => unsent.push((at, error)),
            }
        }
        let chunk = Chunk::<T> {
            future,
            calls,
            unsent,
        };
        if chunk.unsent.len() == calls {
            return chunk.succeed(Vec::new(), 0);
        }
        let what = format_args!(
            "a chunk of {} calls (use a smaller chunksize)",
            calls - chunk.unsent.len()
        );
        if let Err(error) = check_size(body.len(), what) {
            return chunk.fail(error);
        }
        self.enqueue(wire::RUN_BATCH, body, timeout, Box::new(chunk));
    }

    crate::executor::inherent_map!();

    /// See [`Executor::shutdown`]. With `wait`, returns once every worker has exited and been
    /// reaped and every thread of the pool has ended; called from a done callback (which runs
    /// on a thread of the pool), it does not wait.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut state = self.scheduler.lock();
        state.shut_down = true;
        let mut effects = Effects::default();
        let mut cancelling = None;
        if cancel_futures {
            cancelling = Some(self.scheduler.cancellations.begin());
            // A queued job already marked running was sent once (to a worker that died before
            // starting it, or whose socket refused a hand-over): `cancel()` has told its user
            // it will run, so it is not cancelled. It stays queued and runs elsewhere, unless
            // nothing more runs (`terminate_workers`/`kill_workers`): then it fails as
            // `Cancelled`, like what a killed worker had been sent but not started. Dropped
            // instead, its future would never resolve.
            let (sent, unsent): (VecDeque<Job>, VecDeque<Job>) =
                state.pending.drain(..).partition(|job| job.future.sent());
            effects.cancel = unsent.into();
            if state.forced {
                effects
                    .fail
                    .extend(sent.into_iter().map(|job| (job, Error::Cancelled)));
            } else {
                state.pending = sent;
            }
        }
        state.wake_all();
        drop(state);
        self.scheduler.deadlines.notify_all();
        self.scheduler.apply(effects);
        drop(cancelling);
        if wait {
            self.join_threads();
        }
    }

    /// Joins the pool's threads until none is left: a worker replaced during shutdown adds
    /// threads of its own.
    fn join_threads(&self) {
        if self.scheduler.on_pool_thread() {
            // Called from a done callback, on a thread of this very pool: waiting here would
            // wait for ourselves. The threads finish once the work is done.
            return;
        }
        // Python cancels under its lock: a concurrent caller returns only once all is done.
        self.scheduler.cancellations.wait_for_others();
        let _joining = crate::sync::lock(&self.scheduler.joining);
        loop {
            let threads = std::mem::take(&mut self.scheduler.lock().threads);
            if threads.is_empty() {
                return;
            }
            let me = std::thread::current().id();
            for handle in threads {
                if handle.thread().id() != me {
                    let _ = handle.join();
                }
            }
        }
    }

    /// Python 3.14's `terminate_workers`: shuts down without waiting, cancels what has not
    /// started, and sends SIGTERM to every worker. Running tasks fail with
    /// [`Error::WorkerDied`].
    pub fn terminate_workers(&self) {
        self.signal_workers(libc::SIGTERM);
    }

    /// Python 3.14's `kill_workers`: like [`terminate_workers`](Self::terminate_workers) with
    /// SIGKILL, which a task cannot ignore.
    pub fn kill_workers(&self) {
        self.signal_workers(libc::SIGKILL);
    }

    fn signal_workers(&self, signal: libc::c_int) {
        self.scheduler.lock().forced = true;
        self.shutdown(false, true);
        let mut state = self.scheduler.lock();
        for slot in state.workers.values_mut() {
            slot.doom.get_or_insert(scheduler::Doom::Killed);
            scheduler::signal(slot.pid, signal);
        }
    }
}

impl Executor for ProcessPoolExecutor {
    fn submit<T: Task>(&self, task: T) -> Future<T::Output> {
        ProcessPoolExecutor::submit(self, task)
    }

    fn __submit_chunk<T: Task>(&self, tasks: Vec<T>, into: &mut Vec<__Submitted<T::Output>>) {
        self.submit_chunk(tasks, into);
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ProcessPoolExecutor::shutdown(self, wait, cancel_futures);
    }
}

impl Default for ProcessPoolExecutor {
    /// A pool with one worker per available core.
    fn default() -> Self {
        Self::builder()
            .build()
            .expect("the default options are valid")
    }
}

/// Leaving scope waits for the submitted work and reaps every worker: `shutdown(wait = true)`.
impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.scheduler.lock();
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.scheduler.config.max_workers)
            .field("workers", &state.workers.len())
            .field("pending", &state.pending.len())
            .field("shut_down", &state.shut_down)
            .field("broken", &state.broken)
            .finish()
    }
}
