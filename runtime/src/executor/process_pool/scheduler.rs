//! The process pool's shared state: the queue of jobs, the live workers and what each has in
//! flight, and the rules for starting, replacing and giving up on workers.

use std::collections::{HashMap, VecDeque};
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Config;
use super::connection::Doorbell;
use super::link::Link;
use crate::error::Error;
use crate::executor::cancellations::Cancellations;
use crate::future::Future;
use crate::process::call;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard, lock};
use crate::task::Task;

/// After this many workers in a row die before their handshake, the pool stops starting more:
/// the program is almost certainly missing `init()`, and respawning would fork-bomb.
const HANDSHAKE_FAILURES_BEFORE_BROKEN: usize = 3;

/// How many workers in a row may die holding work they never started before the pool breaks
/// (Python breaks it at the first): their jobs go to the next worker, which may do the same.
const LOST_BEFORE_START_BEFORE_BROKEN: usize = 3;

/// A task that ran longer than this is not pipelined behind: see [`Scheduler::credit`].
const SLOW_TASK: Duration = Duration::from_millis(1);

thread_local! {
    /// The scheduler whose thread this is, by address; 0 on other threads.
    static POOL_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One submitted call, encoded and waiting for (or sent to) a worker.
pub(super) struct Job {
    pub(super) id: u64,
    /// `wire::RUN`, or `wire::RUN_BATCH` for a `map` chunk.
    pub(super) kind: u8,
    /// Shared, so that a large payload goes from here to the socket without another copy.
    pub(super) payload: Arc<Vec<u8>>,
    pub(super) timeout: Option<Duration>,
    pub(super) future: Box<dyn Completion>,
}

/// The future of a job, with its output type erased: the scheduler completes it from bytes.
///
/// As in Python, a job's future is running from the moment it is sent to a worker (Python's
/// call queue): from then on `cancel()` returns false, because the worker will run it.
pub(super) trait Completion: Send {
    /// About to be sent: Python's `set_running_or_notify_cancel`. False if the user cancelled
    /// it, and the job is dropped. A job sent before, to a worker that died without starting
    /// it, is already running and goes again.
    fn send(&self) -> bool;
    /// Decodes the worker's output, `body[at..]`, and completes the future with it.
    fn succeed(&self, body: Vec<u8>, at: usize);
    fn fail(&self, error: Error);
    fn cancel(&self);
    /// Whether it was sent before (it is running): it can no longer be cancelled.
    fn sent(&self) -> bool;
    /// The future's identity (`Future::id`), for the help its submitter is offered.
    fn future_id(&self) -> usize;
}

/// [`Completion::send`] for one future: Python's `set_running_or_notify_cancel`, except that a
/// future already running (sent before, to a worker that died without starting it) goes again.
pub(super) fn mark_sent<T>(future: &Future<T>) -> bool {
    was_sent(future) || future.set_running_or_notify_cancel().unwrap_or(false)
}

/// [`Completion::sent`] for one future.
pub(super) fn was_sent<T>(future: &Future<T>) -> bool {
    future.state() == crate::future::State::Running
}

/// The future of one call of task type `T`, which knows how to read its output.
pub(super) struct TaskFuture<T: Task>(pub(super) Future<T::Output>);

impl<T: Task> Completion for TaskFuture<T> {
    fn send(&self) -> bool {
        mark_sent(&self.0)
    }

    fn succeed(&self, body: Vec<u8>, at: usize) {
        let decoded = T::__decode_output_owned(body, at).map_err(decode_error::<T>);
        let _ = match decoded {
            Ok(value) => self.0.set_result(value),
            Err(error) => self.0.set_exception(error),
        };
    }

    fn fail(&self, error: Error) {
        let _ = self.0.set_exception(error);
    }

    fn cancel(&self) {
        self.0.cancel_unsent();
    }

    fn sent(&self) -> bool {
        was_sent(&self.0)
    }

    fn future_id(&self) -> usize {
        self.0.id()
    }
}

/// Why a call's output could not be decoded as its task's output type.
fn decode_error<T: Task>(error: postcard::Error) -> Error {
    Error::Serialization {
        message: format!(
            "cannot decode the result of task `{}` as `{}`: {error}",
            T::NAME,
            std::any::type_name::<T::Output>()
        ),
    }
}

/// The future of a `map` chunk: one frame out, one frame back, one future holding each
/// call's outcome in order. Calls that could not be encoded were not sent; their errors are
/// put back in their places.
pub(super) struct Chunk<T: Task> {
    pub(super) future: Future<Vec<Result<T::Output, Error>>>,
    pub(super) calls: usize,
    /// Position and error of each call that was not sent, in order.
    pub(super) unsent: Vec<(usize, Error)>,
}

impl<T: Task> Chunk<T> {
    /// Completes the future from the outcomes of the calls that were sent.
    fn complete(&self, mut sent: impl Iterator<Item = Result<T::Output, Error>>) {
        let mut unsent = self.unsent.iter().peekable();
        let outcomes = (0..self.calls)
            .map(|at| match unsent.next_if(|(failed, _)| *failed == at) {
                Some((_, error)) => Err(error.clone()),
                None => sent.next().unwrap_or_else(|| {
                    Err(Error::Serialization {
                        message: "malformed answer to a chunk of calls".to_owned(),
                    })
                }),
            })
            .collect();
        let _ = self.future.set_result(outcomes);
    }
}

impl<T: Task> Completion for Chunk<T> {
    fn send(&self) -> bool {
        mark_sent(&self.future)
    }

    fn succeed(&self, body: Vec<u8>, at: usize) {
        let sent = self.calls - self.unsent.len();
        let answer = body.get(at..).unwrap_or_default();
        let Some(outcomes) = call::chunk_answer(answer).filter(|o| o.len() == sent) else {
            return self.fail(Error::Serialization {
                message: "malformed answer to a chunk of calls".to_owned(),
            });
        };
        self.complete(outcomes.into_iter().map(|outcome| {
            outcome.and_then(|bytes| T::__decode_output(bytes).map_err(decode_error::<T>))
        }));
    }

    fn fail(&self, error: Error) {
        // A shut-down pool refuses the chunk as a whole, so that `map` sees the refusal and
        // stops pulling inputs, even from a chunk with calls that could not be encoded.
        if self.unsent.is_empty() || matches!(error, Error::ShutDown) {
            let _ = self.future.set_exception(error);
        } else {
            // The calls that were not sent keep their own errors.
            self.complete(std::iter::repeat_with(|| Err(error.clone())));
        }
    }

    fn cancel(&self) {
        self.future.cancel_unsent();
    }

    fn sent(&self) -> bool {
        was_sent(&self.future)
    }

    fn future_id(&self) -> usize {
        self.future.id()
    }
}

/// Why the pool killed a worker, so that its running task fails with the right error.
#[derive(Clone, Copy, Debug)]
pub(super) enum Doom {
    /// Killed because job `job` outlived `timeout`.
    TimedOut {
        job: u64,
        timeout: Duration,
    },
    Killed,
    /// Killed because it did not complete its handshake in time.
    NoHandshake,
}

/// A live worker, as the scheduler sees it.
pub(super) struct Slot {
    pub(super) pid: u32,
    pub(super) started_at: Instant,
    /// Sent and not yet answered, oldest first; the worker runs them in this order.
    pub(super) in_flight: VecDeque<Job>,
    /// The worker reported that it started `in_flight[0]`.
    pub(super) front_started: bool,
    /// When `in_flight[0]` runs out of time, if it has a timeout.
    pub(super) deadline: Option<(Instant, Duration)>,
    /// How long the last task ran, as the worker measured it: decides whether to pipeline.
    pub(super) last_task_time: Duration,
    pub(super) ready: bool,
    /// The initializer (if any) has succeeded in this worker.
    pub(super) initialized: bool,
    /// Jobs sent over this worker's life, against `max_tasks_per_child`.
    pub(super) sent: usize,
    pub(super) exit_sent: bool,
    pub(super) doom: Option<Doom>,
    /// Wakes its connection thread.
    pub(super) doorbell: Arc<Doorbell>,
    /// Its connection thread sleeps and nobody has rung since: it had no credit or nothing to
    /// send when it went to sleep, and is rung whenever either may have changed (its own
    /// results it handles itself, awake).
    pub(super) io_sleeping: bool,
    /// The worker's socket, for a submitter to write a job to directly while the connection
    /// thread sleeps (see `connection::hand_over`).
    pub(super) socket: UnixStream,
    /// The socket's reading end, which that submitter may lead while it waits (see `link`).
    pub(super) link: Arc<Link>,
    /// The unwritten end of such a job's frame, for the connection thread to write first.
    pub(super) leftover: Vec<u8>,
}

impl Slot {
    /// Wakes this worker's connection thread if it sleeps; a ring costs a system call.
    pub(super) fn wake(&mut self) {
        if std::mem::take(&mut self.io_sleeping) {
            self.doorbell.ring();
        }
    }
}

pub(super) struct State {
    pub(super) pending: VecDeque<Job>,
    pub(super) workers: HashMap<u64, Slot>,
    /// Workers being spawned, counted so that a burst of submits does not overshoot.
    pub(super) starting: usize,
    pub(super) next_worker: u64,
    pub(super) shut_down: bool,
    /// Shut down by `terminate_workers` or `kill_workers`: nothing more runs.
    pub(super) forced: bool,
    pub(super) broken: Option<String>,
    /// Workers that died before their handshake since the last one that completed it.
    pub(super) handshake_failures: usize,
    /// Workers that died after being sent work and before starting any of it, since a worker
    /// last reported a start: no task can be blamed, and each would be sent again forever.
    pub(super) lost_before_start: usize,
    pub(super) threads: Vec<JoinHandle<()>>,
    pub(super) supervisor_running: bool,
}

impl State {
    /// Wakes every sleeping connection thread: the pool changed in a way that may give any of
    /// them credit or something to send (a worker started or left, shutdown).
    pub(super) fn wake_all(&mut self) {
        for slot in self.workers.values_mut() {
            slot.wake();
        }
    }
}

/// What the executor handle and the worker threads share.
pub(super) struct Scheduler {
    pub(super) config: Config,
    pub(super) state: Mutex<State>,
    /// The timeout supervisor waits here for the next deadline.
    pub(super) deadlines: Condvar,
    /// Held while joining the pool's threads, so that every `shutdown(wait = true)` caller
    /// returns only once they are gone.
    pub(super) joining: Mutex<()>,
    /// Callers of `shutdown(cancel_futures = true)` still cancelling, for `wait`.
    pub(super) cancellations: Cancellations,
}

/// What the credit rule needs to know about the whole pool.
struct Load {
    /// Workers in the table, whether or not they take work.
    workers: usize,
    starting: usize,
    /// The shortest in-flight queue among workers that take work.
    least_in_flight: usize,
}

impl Load {
    fn of(state: &State) -> Self {
        Self {
            workers: state.workers.len(),
            starting: state.starting,
            least_in_flight: state
                .workers
                .values()
                .filter(|w| w.doom.is_none() && !w.exit_sent)
                .map(|w| w.in_flight.len())
                .min()
                .unwrap_or(usize::MAX),
        }
    }
}

/// What to do once the lock is released.
#[derive(Default)]
#[must_use]
pub(super) struct Effects {
    pub(super) spawn: usize,
    pub(super) fail: Vec<(Job, Error)>,
    pub(super) cancel: Vec<Job>,
}

impl Scheduler {
    pub(super) fn new(config: Config) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                pending: VecDeque::new(),
                workers: HashMap::new(),
                starting: 0,
                next_worker: 0,
                shut_down: false,
                forced: false,
                broken: None,
                handshake_failures: 0,
                lost_before_start: 0,
                threads: Vec::new(),
                supervisor_running: false,
            }),
            deadlines: Condvar::new(),
            joining: Mutex::new(()),
            cancellations: Cancellations::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues a job, or fails it if the pool takes no more work.
    pub(super) fn enqueue(self: &Arc<Self>, job: Job) {
        let mut state = self.lock();
        let refusal = if state.shut_down {
            Some(Error::ShutDown)
        } else {
            state.broken.as_ref().map(|reason| Error::Broken {
                reason: reason.clone(),
            })
        };
        if let Some(error) = refusal {
            drop(state);
            return job.future.fail(error);
        }
        let was_empty = state.pending.is_empty();
        let job = if was_empty {
            match super::connection::hand_over(self, &mut state, job) {
                Ok(()) => return,
                Err(job) => job,
            }
        } else {
            job
        };
        state.pending.push_back(job);
        let effects = Effects {
            spawn: self.workers_to_start(&mut state),
            ..Effects::default()
        };
        if was_empty {
            // A connection asleep with credit slept for want of jobs. With jobs already queued,
            // a sleeping one took jobs until it ran out of credit; it may have gained some
            // since (pipelining credit, when another worker's queue grew), but its worker is
            // busy and it takes more at its next report. One more job changes nothing: a
            // burst of submits rings nobody.
            self.wake_those_with_credit(&mut state);
        }
        drop(state);
        self.apply(effects);
    }

    fn wake_those_with_credit(&self, state: &mut State) {
        let load = Load::of(state);
        for slot in state.workers.values_mut() {
            if slot.io_sleeping && self.credit_under(&load, slot) {
                slot.wake();
            }
        }
    }

    /// Python's rule, with pipelining in mind: start a worker while there are more queued jobs
    /// than idle or starting workers to take them, up to `max_workers`.
    pub(super) fn workers_to_start(&self, state: &mut State) -> usize {
        if state.broken.is_some() {
            return 0;
        }
        let idle = state
            .workers
            .values()
            .filter(|w| w.in_flight.is_empty() && w.doom.is_none() && !w.exit_sent)
            .count();
        let live = state.workers.len() + state.starting;
        let wanted = state.pending.len().saturating_sub(idle + state.starting);
        let room = self.config.max_workers.saturating_sub(live);
        let spawn = wanted.min(room);
        state.starting += spawn;
        spawn
    }

    /// May the writer of `slot` send it another job now? A worker with nothing takes work;
    /// a busy one takes more (pipelining) only while no idle or starting worker could, so that
    /// long tasks spread out and tiny ones are not bound by one round trip each.
    pub(super) fn credit(&self, state: &State, slot: &Slot) -> bool {
        self.credit_under(&Load::of(state), slot)
    }

    fn credit_under(&self, load: &Load, slot: &Slot) -> bool {
        if slot.doom.is_some() || slot.exit_sent {
            return false;
        }
        if let Some(max) = self.config.max_tasks_per_child {
            if slot.sent >= max {
                return false;
            }
        }
        if slot.in_flight.is_empty() {
            return true;
        }
        // A task long enough to dwarf a round trip gains nothing from a queue behind it, and
        // a queued task could wait there while another worker idles.
        if slot.in_flight.len() >= self.config.pipeline_depth || slot.last_task_time > SLOW_TASK {
            return false;
        }
        let full = load.workers + load.starting >= self.config.max_workers;
        // The least loaded worker takes the next job, so that queues stay even.
        let least_loaded = load.starting == 0 && slot.in_flight.len() <= load.least_in_flight;
        full && least_loaded
    }

    /// Marks the pool broken and hands back every queued job to fail.
    pub(super) fn break_pool(&self, state: &mut State, reason: String) -> Vec<(Job, Error)> {
        tracing::error!(target: "concurrent_futures", %reason, "process pool is broken");
        let reason = state.broken.get_or_insert(reason).clone();
        state
            .pending
            .drain(..)
            .map(|job| {
                (
                    job,
                    Error::Broken {
                        reason: reason.clone(),
                    },
                )
            })
            .collect()
    }

    /// Takes a worker whose stream ended out of the table, before it is reaped: from then on
    /// nothing signals its pid, which the system may reuse once it is reaped.
    pub(super) fn detach(&self, worker: u64) -> Option<Slot> {
        self.lock().workers.remove(&worker)
    }

    /// A detached worker has been reaped with `status`: fail the task it was running, put back
    /// the ones it had not started, and decide whether to replace it.
    pub(super) fn worker_exited(
        self: &Arc<Self>,
        mut slot: Slot,
        status: Option<ExitStatus>,
        refused: Option<String>,
    ) {
        use std::os::unix::process::ExitStatusExt;

        let mut state = self.lock();
        let mut effects = Effects::default();
        // Sent work, started none of it, and neither asked to exit nor killed by the pool.
        let lost_before_start = slot.ready
            && !slot.front_started
            && !slot.in_flight.is_empty()
            && slot.doom.is_none()
            && !slot.exit_sent
            && !state.forced;
        if let Some(job) = slot
            .front_started
            .then(|| slot.in_flight.pop_front())
            .flatten()
        {
            let error = match slot.doom {
                // The job that ran out of time, not one the worker started after it finished
                // in the instant before the kill landed.
                Some(Doom::TimedOut { job: late, timeout }) if late == job.id => {
                    Error::TaskTimedOut { timeout }
                }
                _ => Error::WorkerDied {
                    pid: slot.pid,
                    exit_code: status.and_then(|s| s.code()),
                    signal: status.and_then(|s| s.signal()),
                },
            };
            effects.fail.push((job, error));
        }
        if state.forced {
            // terminate_workers / kill_workers: what the worker had been sent but not started
            // never runs; its future, already running, fails as cancelled.
            effects
                .fail
                .extend(slot.in_flight.drain(..).map(|job| (job, Error::Cancelled)));
        } else {
            // Not started: they run elsewhere, ahead of newer work.
            while let Some(job) = slot.in_flight.pop_back() {
                state.pending.push_front(job);
            }
        }

        let how = status.map_or_else(|| "ended".to_owned(), |s| s.to_string());
        if let Some(reason) = refused {
            effects.fail.extend(self.break_pool(&mut state, reason));
        } else if slot.ready && !slot.initialized && slot.doom.is_none() {
            // Python breaks the pool when an initializer fails; one that takes its worker
            // down would otherwise be retried forever.
            let reason = format!(
                "the worker initializer took its worker (pid {}) down: {how}",
                slot.pid
            );
            effects.fail.extend(self.break_pool(&mut state, reason));
        } else if lost_before_start {
            state.lost_before_start += 1;
            if state.lost_before_start >= LOST_BEFORE_START_BEFORE_BROKEN {
                let reason = format!(
                    "{} worker processes in a row exited after being sent work and before \
                     starting any of it (the last, pid {}, {how}): something kills them, or \
                     they do not serve this pool",
                    state.lost_before_start, slot.pid
                );
                effects.fail.extend(self.break_pool(&mut state, reason));
            }
        } else if !slot.ready {
            state.handshake_failures += 1;
            if state.handshake_failures >= HANDSHAKE_FAILURES_BEFORE_BROKEN
                && state.workers.values().all(|w| !w.ready)
            {
                let reason = format!(
                    "{} worker processes in a row exited before their handshake (the last, pid \
                     {}, {how}); call concurrent_futures::init() first in main, or \
                     concurrent_futures::enable_test_support!() in a test crate",
                    state.handshake_failures, slot.pid
                );
                effects.fail.extend(self.break_pool(&mut state, reason));
            }
        }
        if let Some(reason) = state.broken.clone() {
            // Jobs this worker had not started, back from a pool that will not run them.
            let error = Error::Broken { reason };
            effects
                .fail
                .extend(state.pending.drain(..).map(|job| (job, error.clone())));
        } else if !state.pending.is_empty() && !state.forced {
            effects.spawn = self.workers_to_start(&mut state);
        }
        state.wake_all();
        drop(state);
        self.deadlines.notify_all();
        self.apply(effects);
    }

    /// Does what a decision under the lock asked for, outside it: user callbacks run when
    /// futures complete, and spawning a process takes a while.
    pub(super) fn apply(self: &Arc<Self>, effects: Effects) {
        for (job, error) in effects.fail {
            job.future.fail(error);
        }
        for job in effects.cancel {
            job.future.cancel();
        }
        for _ in 0..effects.spawn {
            super::worker::spawn(self);
        }
    }

    /// Marks the calling thread as one of this pool's, so that a `shutdown(wait = true)` made
    /// from it (in a done callback, say) does not wait for itself and its siblings.
    pub(super) fn mark_current_thread(self: &Arc<Self>) {
        POOL_THREAD.with(|pool| pool.set(Arc::as_ptr(self) as usize));
    }

    /// Whether the calling thread is one of this pool's.
    pub(super) fn on_pool_thread(self: &Arc<Self>) -> bool {
        POOL_THREAD.with(|pool| pool.get() == Arc::as_ptr(self) as usize)
    }

    /// Starts the thread that enforces deadlines, unless it runs.
    pub(super) fn ensure_supervisor(self: &Arc<Self>, state: &mut State) {
        if state.supervisor_running {
            return;
        }
        let scheduler = Arc::clone(self);
        match std::thread::Builder::new()
            .name("cf-pool-deadlines".to_owned())
            .spawn(move || {
                scheduler.mark_current_thread();
                scheduler.supervise();
            }) {
            Ok(handle) => {
                state.supervisor_running = true;
                state.threads.push(handle);
            }
            Err(error) => {
                tracing::error!(target: "concurrent_futures", %error, "cannot start the deadline thread; task timeouts and handshake deadlines are not enforced");
            }
        }
    }

    /// Kills the worker whose running task outlived its timeout; runs on its own thread while
    /// any worker may run a task with a deadline.
    pub(super) fn supervise(self: &Arc<Self>) {
        let mut state = self.lock();
        loop {
            if state.shut_down && state.workers.is_empty() && state.starting == 0 {
                state.supervisor_running = false;
                return;
            }
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for slot in state.workers.values_mut() {
                if slot.doom.is_some() {
                    continue;
                }
                if !slot.ready {
                    let deadline = slot.started_at + self.config.handshake_timeout;
                    if deadline <= now {
                        // A copy stuck before init() (reading stdin, say): no fork bomb, no hang.
                        slot.doom = Some(Doom::NoHandshake);
                        signal(slot.pid, libc::SIGKILL);
                    } else {
                        next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    }
                    continue;
                }
                let Some((deadline, timeout)) = slot.deadline else {
                    continue;
                };
                if deadline <= now {
                    let job = slot.in_flight.front().map_or(0, |job| job.id);
                    slot.doom = Some(Doom::TimedOut { job, timeout });
                    signal(slot.pid, libc::SIGKILL);
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
            state = match next {
                Some(next) => {
                    self.deadlines
                        .wait_timeout(state, next.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self
                    .deadlines
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

/// Sends `signal` to a worker still in the table. Its pid cannot have been reused: a worker
/// is reaped only after [`Scheduler::detach`] took it out.
pub(super) fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid and a signal number touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}
