//! One worker process seen from the parent: starting it, and the two threads that feed it
//! jobs and read back what it reports.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Config;
use super::scheduler::{Effects, Job, Scheduler, Slot, State, signal};
use crate::error::Error;
use crate::process::entry::{
    WORKER_MARKER, started_as_worker_outside_worker_mode, test_entry_name,
};
use crate::process::identity::build_identity;
use crate::process::wire::{self, INITIALIZER_ID};
use crate::sync::Arc;

/// Starts one worker (the caller counted it in `starting`) and its threads.
pub(super) fn spawn(scheduler: &Arc<Scheduler>) {
    let started = start_process(&scheduler.config).and_then(|(child, socket)| {
        let pid = child.id();
        let mut state = scheduler.lock();
        let worker = state.next_worker;
        state.next_worker += 1;
        let threads = start_threads(scheduler, worker, child, socket)?;
        state.threads.extend(threads);
        state.starting -= 1;
        // Enforces the handshake deadline, then task timeouts.
        scheduler.ensure_supervisor(&mut state);
        state.workers.insert(
            worker,
            Slot {
                pid,
                started_at: Instant::now(),
                in_flight: Default::default(),
                front_started: false,
                deadline: None,
                last_task_time: Duration::ZERO,
                ready: false,
                initialized: scheduler.config.initializer.is_none(),
                sent: 0,
                exit_sent: false,
                doom: None,
            },
        );
        Ok(())
    });
    match started {
        Ok(()) => {
            scheduler.work.notify_all();
            // A new handshake deadline to watch.
            scheduler.deadlines.notify_all();
        }
        Err(reason) => {
            let mut state = scheduler.lock();
            state.starting -= 1;
            let effects = if state.workers.is_empty() && state.starting == 0 {
                Effects {
                    fail: scheduler.break_pool(&mut state, reason),
                    ..Effects::default()
                }
            } else {
                tracing::warn!(target: "concurrent_futures", %reason, "cannot start another worker; the running ones go on");
                Effects::default()
            };
            drop(state);
            scheduler.apply(effects);
        }
    }
}

/// The current executable (or the configured one), with the marker naming its end of a
/// fresh socket pair; under `cargo test`, filtered down to the hidden worker test.
fn start_process(config: &Config) -> Result<(Child, UnixStream), String> {
    if started_as_worker_outside_worker_mode() {
        return Err(
            "this process was started as a pool worker but is running main: call \
             concurrent_futures::init() first in main, before creating any pool"
                .to_owned(),
        );
    }
    let executable = match &config.executable {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find the current executable to start workers: {e}"))?,
    };
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create a worker socket: {e}"))?;
    let mut command = Command::new(&executable);
    if config.executable.is_none() {
        if let Some(test) = test_entry_name() {
            command.args([
                test.as_str(),
                "--exact",
                "--nocapture",
                "--quiet",
                "--test-threads=1",
            ]);
        }
    }
    // The worker's end of the socket goes in as its stdin, which the worker moves aside at
    // once (tasks see /dev/null, as Python's workers do): no `pre_exec`, so std can start the
    // worker with posix_spawn instead of copying this process's page tables with fork.
    command
        .env(WORKER_MARKER, "0")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start worker {}: {e}", executable.display()))?;
    Ok((child, ours))
}

fn start_threads(
    scheduler: &Arc<Scheduler>,
    worker: u64,
    child: Child,
    socket: UnixStream,
) -> Result<[thread::JoinHandle<()>; 2], String> {
    let pid = child.id();
    let spawn =
        |name: String, f: Box<dyn FnOnce() + Send>| thread::Builder::new().name(name).spawn(f);
    let reader_socket = socket.try_clone().map_err(|e| e.to_string());
    let threads = reader_socket.and_then(|reader_socket| {
        let s = Arc::clone(scheduler);
        let writer = spawn(
            format!("cf-pool-{pid}-writer"),
            Box::new(move || {
                s.mark_current_thread();
                write_loop(&s, worker, socket);
            }),
        )
        .map_err(|e| e.to_string())?;
        let s = Arc::clone(scheduler);
        match spawn(
            format!("cf-pool-{pid}-reader"),
            Box::new(move || {
                s.mark_current_thread();
                read_loop(&s, worker, reader_socket, child);
            }),
        ) {
            Ok(reader) => Ok([writer, reader]),
            // The writer ends once it finds no slot for this worker.
            Err(e) => Err(e.to_string()),
        }
    });
    threads.map_err(|e| {
        signal(pid, libc::SIGKILL);
        format!("cannot start the threads of worker {pid}: {e}")
    })
}

/// Sends the hello (and the initializer), then jobs as the scheduler grants credit, several
/// to one write; the exit request once there will be no more.
fn write_loop(scheduler: &Arc<Scheduler>, worker: u64, mut socket: UnixStream) {
    let mut out = Outgoing::default();
    wire::encode(&mut out.small, wire::HELLO, build_identity(), &[]).expect("empty frame fits");
    if let Some(initializer) = &scheduler.config.initializer {
        wire::encode(&mut out.small, wire::RUN, INITIALIZER_ID, initializer)
            .expect("checked at build");
    }
    loop {
        if out.write_to(&mut socket).is_err() {
            return; // the worker is gone; its reader reports it
        }
        let mut state = scheduler.lock();
        loop {
            match next_frames(scheduler, &mut state, worker, &mut out) {
                Next::Gone => return,
                Next::Write => break,
                Next::Wait => {
                    state.waiting_writers += 1;
                    state = scheduler
                        .work
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                    state.waiting_writers -= 1;
                }
            }
        }
    }
}

/// Frames to write: small ones copied together into one buffer (one write for many), large
/// payloads written from their shared buffer after their header, never copied.
#[derive(Default)]
struct Outgoing {
    small: Vec<u8>,
    /// Each large frame, with the length of `small` at the point it goes out.
    large: Vec<(usize, [u8; 13], Arc<Vec<u8>>)>,
}

/// A payload above this is written from where it is rather than copied into the batch.
const COPY_LIMIT: usize = 64 * 1024;

impl Outgoing {
    fn push(&mut self, kind: u8, id: u64, payload: &Arc<Vec<u8>>) {
        if payload.len() <= COPY_LIMIT {
            wire::encode(&mut self.small, kind, id, payload).expect("size checked at submit");
        } else {
            let header = wire::header(kind, id, payload.len()).expect("size checked at submit");
            self.large
                .push((self.small.len(), header, Arc::clone(payload)));
        }
    }

    fn is_empty(&self) -> bool {
        self.small.is_empty() && self.large.is_empty()
    }

    /// Writes everything in order and empties the batch.
    fn write_to(&mut self, socket: &mut UnixStream) -> std::io::Result<()> {
        let mut written = 0;
        for (at, header, payload) in self.large.drain(..) {
            socket.write_all(&self.small[written..at])?;
            socket.write_all(&header)?;
            socket.write_all(&payload)?;
            written = at;
        }
        socket.write_all(&self.small[written..])?;
        self.small.clear();
        Ok(())
    }
}

enum Next {
    Gone,
    Write,
    Wait,
}

/// Moves what `worker` may take now from the queue into its in-flight list and `out`.
fn next_frames(scheduler: &Scheduler, state: &mut State, worker: u64, out: &mut Outgoing) -> Next {
    loop {
        let Some(slot) = state.workers.get(&worker) else {
            return Next::Gone;
        };
        if state.pending.is_empty() || !scheduler.credit(state, slot) {
            break;
        }
        let job = state.pending.pop_front().expect("not empty");
        if job.future.send() {
            out.push(job.kind, job.id, &job.payload);
            let slot = state.workers.get_mut(&worker).expect("present");
            slot.sent += 1;
            slot.in_flight.push_back(job);
        }
    }
    if !out.is_empty() {
        return Next::Write;
    }
    let slot = state.workers.get_mut(&worker).expect("checked above");
    let retiring = scheduler
        .config
        .max_tasks_per_child
        .is_some_and(|max| slot.sent >= max);
    if !slot.exit_sent && (retiring || (state.shut_down && state.pending.is_empty())) {
        slot.exit_sent = true;
        wire::encode(&mut out.small, wire::EXIT, 0, &[]).expect("empty frame fits");
        return Next::Write;
    }
    Next::Wait
}

/// Reads what the worker reports until its stream ends, then reaps it and lets the scheduler
/// settle its jobs.
fn read_loop(scheduler: &Arc<Scheduler>, worker: u64, socket: UnixStream, mut child: Child) {
    let pid = child.id();
    let mut reader = BufReader::with_capacity(1 << 16, socket);
    let refused = loop {
        let frame = match wire::read(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(error) => {
                tracing::error!(target: "concurrent_futures", pid, %error, "unreadable stream from worker; killing it");
                signal(pid, libc::SIGKILL);
                break None;
            }
        };
        match handle(scheduler, worker, frame) {
            Ok(None) => {}
            Ok(Some((job, frame))) => finish(job, frame),
            Err(Stop::Refused(reason)) => break Some(reason),
            Err(Stop::Protocol(error)) => {
                tracing::error!(target: "concurrent_futures", pid, %error, "protocol error from worker; killing it");
                signal(pid, libc::SIGKILL);
                break None;
            }
        }
    };
    let slot = scheduler.detach(worker);
    if refused.is_some() {
        // It exits by itself after refusing; make sure before waiting on it.
        let _ = child.kill();
    }
    let status = child.wait().ok();
    if let Some(slot) = slot {
        scheduler.worker_exited(slot, status, refused);
    }
}

enum Stop {
    Refused(String),
    Protocol(String),
}

/// Completes a job's future from its result frame, outside the scheduler's lock: completing
/// runs user callbacks.
fn finish(job: Job, frame: wire::Frame) {
    let body = &frame.body[wire::RUN_TIME_PREFIX..];
    if frame.kind == wire::SUCCEEDED {
        job.future.succeed(body);
    } else {
        job.future.fail(decode_error(body));
    }
}

fn decode_error(body: &[u8]) -> Error {
    postcard::from_bytes::<Error>(body).unwrap_or_else(|e| Error::Serialization {
        message: format!("cannot decode the error a worker sent: {e}"),
    })
}

/// Acts on one frame from the worker; hands back a finished job to complete once the lock
/// is released.
fn handle(
    scheduler: &Arc<Scheduler>,
    worker: u64,
    frame: wire::Frame,
) -> Result<Option<(Job, wire::Frame)>, Stop> {
    let mut state = scheduler.lock();
    let state = &mut *state;
    let Some(slot) = state.workers.get_mut(&worker) else {
        return Err(Stop::Protocol("worker left the table".to_owned()));
    };
    match frame.kind {
        wire::READY => {
            slot.ready = true;
            state.handshake_failures = 0;
            Ok(None)
        }
        wire::REFUSED => Err(Stop::Refused(
            String::from_utf8_lossy(&frame.body).into_owned(),
        )),
        wire::STARTED if frame.id == INITIALIZER_ID => Ok(None),
        wire::SUCCEEDED if frame.id == INITIALIZER_ID => {
            slot.initialized = true;
            Ok(None)
        }
        // Python breaks the pool when an initializer raises; the worker is killed on return.
        wire::FAILED if frame.id == INITIALIZER_ID => Err(Stop::Refused(format!(
            "the worker initializer failed: {}",
            decode_error(frame.body.get(wire::RUN_TIME_PREFIX..).unwrap_or_default())
        ))),
        wire::STARTED => {
            let Some(job) = slot.in_flight.front().filter(|job| job.id == frame.id) else {
                return Err(Stop::Protocol(format!("started unknown task {}", frame.id)));
            };
            slot.front_started = true;
            let now = Instant::now();
            if let Some(timeout) = job.timeout {
                slot.deadline = Some((now + timeout, timeout));
                scheduler.ensure_supervisor(state);
                scheduler.deadlines.notify_all();
            }
            Ok(None)
        }
        wire::SUCCEEDED | wire::FAILED => {
            if slot.in_flight.front().is_none_or(|job| job.id != frame.id) {
                return Err(Stop::Protocol(format!(
                    "result for unknown task {}",
                    frame.id
                )));
            }
            let Some(ran) = wire::ran_for(&frame.body) else {
                return Err(Stop::Protocol(
                    "result frame without its run time".to_owned(),
                ));
            };
            let job = slot.in_flight.pop_front().expect("checked");
            slot.front_started = false;
            slot.deadline = None;
            slot.last_task_time = ran;
            scheduler.wake_writers(state);
            Ok(Some((job, frame)))
        }
        kind => Err(Stop::Protocol(format!("unknown frame kind {kind}"))),
    }
}
