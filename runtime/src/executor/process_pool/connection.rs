//! The parent's end of one worker: a thread that writes the jobs the scheduler grants to the
//! worker's socket and reads back what the worker reports, on a non-blocking socket, so that a
//! result and the next job are handled in one wake-up with no hand-off between threads.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::Instant;

use super::link::Link;
use super::scheduler::{Job, Scheduler, State, signal};
use crate::error::Error;
use crate::help;
use crate::process::identity::build_identity;
use crate::process::inbox::Received;
use crate::process::wire::{self, INITIALIZER_ID};
use crate::sync::Arc;

/// Wakes a connection thread asleep in `poll`: an eventfd, so that a ring that lands before
/// the thread sleeps is not lost.
#[derive(Debug)]
pub(super) struct Doorbell(OwnedFd);

impl Doorbell {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a descriptor it returns is ours alone.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        #[allow(unsafe_code)]
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn ring(&self) {
        let one = 1_u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to a descriptor we own. A full counter
        // (EAGAIN) means it is rung already.
        #[allow(unsafe_code)]
        unsafe {
            libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len());
        }
    }

    /// Its descriptor, for an epoll set to watch.
    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub(super) fn silence(&self) {
        let mut count = [0_u8; 8];
        // SAFETY: reads at most 8 bytes into a live array from a descriptor we own.
        #[allow(unsafe_code)]
        unsafe {
            libc::read(self.0.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
        }
    }
}

/// Frames to write, in order: small ones copied together (one write for many), large payloads
/// written from their shared buffer after their header, never copied.
#[derive(Default)]
struct Outgoing {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    /// An emptied small buffer, kept for its allocation.
    spare: Vec<u8>,
}

enum Chunk {
    Small(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Small(bytes) => bytes,
            Chunk::Shared(bytes) => bytes,
        }
    }
}

/// A payload above this is written from where it is rather than copied into the batch.
const COPY_LIMIT: usize = 64 * 1024;

impl Outgoing {
    /// The small-frame buffer at the back, to append to.
    fn small(&mut self) -> &mut Vec<u8> {
        if !matches!(self.chunks.back(), Some(Chunk::Small(_))) {
            self.chunks
                .push_back(Chunk::Small(std::mem::take(&mut self.spare)));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Small(bytes)) => bytes,
            _ => unreachable!("pushed above"),
        }
    }

    fn push(&mut self, kind: u8, id: u64, payload: &Arc<Vec<u8>>) {
        if payload.len() <= COPY_LIMIT {
            wire::encode(self.small(), kind, id, payload).expect("size checked at submit");
        } else {
            let header = wire::header(kind, id, payload.len()).expect("size checked at submit");
            self.small().extend_from_slice(&header);
            self.chunks.push_back(Chunk::Shared(Arc::clone(payload)));
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes as much as the socket takes now; `Ok(true)` once everything is out.
    fn write_some(&mut self, socket: &UnixStream) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(slices.len()).enumerate() {
                let skip = if i == 0 { self.written } else { 0 };
                slices[i] = IoSlice::new(&chunk.bytes()[skip..]);
                count = i + 1;
            }
            let mut n = match send_vectored(socket, &slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            while let Some(front) = self.chunks.front() {
                let left = front.bytes().len() - self.written;
                if n < left {
                    self.written += n;
                    break;
                }
                n -= left;
                self.written = 0;
                if let Some(Chunk::Small(mut bytes)) = self.chunks.pop_front() {
                    bytes.clear();
                    self.spare = bytes;
                }
            }
        }
        Ok(true)
    }
}

/// A job this small goes straight from the submitting thread to an idle worker's socket.
const HAND_OVER_LIMIT: usize = 4096;

/// Writes `job` from the submitting thread straight to a worker that is idle and whose
/// connection sleeps, saving the wake-up of that thread on the way out (a round trip's
/// latency is mostly wake-ups). Hands the job back if no worker fits.
///
/// Called under the state lock, so that this write and the connection thread's own (which
/// only starts once it has taken the lock) cannot interleave; the socket is non-blocking and
/// an idle worker's is empty, so the write does not wait. Should it take only part of the
/// frame, the rest is left in the slot for the connection thread to write first.
pub(super) fn hand_over(scheduler: &Scheduler, state: &mut State, job: Job) -> Result<(), Job> {
    if job.payload.len() > HAND_OVER_LIMIT {
        return Err(job);
    }
    let Some(slot) = state.workers.values_mut().find(|slot| {
        slot.io_sleeping
            && slot.in_flight.is_empty()
            && slot.leftover.is_empty()
            && slot.doom.is_none()
            && !slot.exit_sent
            && scheduler
                .config
                .max_tasks_per_child
                .is_none_or(|max| slot.sent < max)
    }) else {
        return Err(job);
    };
    if !job.future.send() {
        return Ok(()); // cancelled while queued: dropped, as the connection would
    }
    // Called only when nothing was queued, for a worker with nothing in flight.
    let kind = latency_kind(job.kind, job.payload.len(), true, true);
    let mut frame = Vec::with_capacity(wire::PREFIXED_HEADER + job.payload.len());
    wire::encode(&mut frame, kind, job.id, &job.payload).expect("size checked at submit");
    // Full or gone (an error, taken as nothing written): the connection thread sends it, or
    // finds the worker's end.
    let written = (&slot.socket).write(&frame).unwrap_or_default();
    if written > 0 {
        // The submitting thread, should it block on this call's result, may read the answer
        // itself (see `link`).
        let link: std::sync::Weak<dyn help::Help> = Arc::downgrade(&slot.link) as _;
        help::offer(job.future.future_id(), job.id, link);
        slot.sent += 1;
        slot.in_flight.push_back(job);
        if written < frame.len() {
            frame.drain(..written);
            slot.leftover = frame;
            slot.wake();
        }
        Ok(())
    } else {
        slot.wake();
        Err(job)
    }
}

/// The kind to send a job to a worker as: `RUN_THEN_WATCH` for a lone small call (nothing
/// else queued, nothing else in flight to that worker, arguments a hand-over would take), the
/// latency case, in which the worker keeps watching for its caller's next job a moment before
/// sleeping (`idle_spin`). A busy pool's workers, with work queued, never spend a core on
/// waiting, nor do workers given large arguments, whose parent is busy copying them.
fn latency_kind(kind: u8, payload: usize, nothing_queued: bool, nothing_in_flight: bool) -> u8 {
    if kind == wire::RUN && payload <= HAND_OVER_LIMIT && nothing_queued && nothing_in_flight {
        wire::RUN_THEN_WATCH
    } else {
        kind
    }
}

/// `writev` on a socket, as `sendmsg` with `MSG_NOSIGNAL`: writing to a worker that just died
/// must give `EPIPE`, not a SIGPIPE that kills a program which restored the default action
/// (std's `write_vectored` is a plain `writev`; its `write` already passes the flag).
fn send_vectored(socket: &UnixStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no name, no control data); `IoSlice` is documented to
    // be ABI-compatible with `iovec` on Unix, and the slices outlive the call, which only
    // reads them.
    #[allow(unsafe_code)]
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = slices.as_ptr().cast_mut().cast();
        message.msg_iovlen = slices.len() as _;
        libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL)
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Serves one worker until its stream ends, then reaps it and lets the scheduler settle its
/// jobs.
pub(super) fn serve(
    scheduler: &Arc<Scheduler>,
    worker: u64,
    doorbell: &Doorbell,
    link: &Link,
    mut child: Child,
) {
    let refused = exchange(scheduler, worker, doorbell, link, child.id());
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

/// Moves frames both ways until the worker's stream ends: jobs out as the scheduler grants
/// credit, reports in. Returns the reason if the worker refused the pool.
fn exchange(
    scheduler: &Arc<Scheduler>,
    worker: u64,
    doorbell: &Doorbell,
    link: &Link,
    pid: u32,
) -> Option<String> {
    let socket = &link.socket;
    let give_up = |error: &dyn std::fmt::Display| {
        tracing::error!(target: "concurrent_futures", pid, %error, "unusable stream from worker; killing it");
        signal(pid, libc::SIGKILL);
        None
    };
    if let Err(error) = socket.set_nonblocking(true) {
        return give_up(&error);
    }
    let mut out = Outgoing::default();
    let hello = wire::Hello {
        idle_spin: scheduler.config.idle_spin,
    };
    wire::encode(out.small(), wire::HELLO, build_identity(), &hello.encode())
        .expect("small frame fits");
    if let Some(initializer) = &scheduler.config.initializer {
        wire::encode(out.small(), wire::RUN, INITIALIZER_ID, initializer)
            .expect("checked at build");
    }
    let mut finished = Vec::new();
    // False once the worker stopped taking frames (it is dying): its reports are still read
    // to the end of its stream.
    let mut writable = true;
    loop {
        let mut flushed = true;
        if writable && !out.is_empty() {
            match out.write_some(socket) {
                Ok(done) => flushed = done,
                Err(_) => {
                    writable = false;
                    out = Outgoing::default();
                }
            }
        }
        // Held until the decision to sleep is made and the epoll set armed for it: a caller
        // leading this socket (see `link`) waits for it, and is waited for.
        let mut reader = link.read_lock();
        let received = match reader.inbox.receive(&mut &link.socket) {
            Ok(Received::End) => {
                if reader.inbox.is_mid_frame() {
                    tracing::error!(target: "concurrent_futures", pid, "stream from worker ended inside a frame");
                }
                return None;
            }
            Ok(received) => received,
            Err(error) => return give_up(&error),
        };

        let mut state = scheduler.lock();
        if let Some(slot) = state.workers.get_mut(&worker) {
            slot.io_sleeping = false;
            if !slot.leftover.is_empty() {
                // The rest of a frame a submitter began: it goes before anything else.
                out.small().append(&mut slot.leftover);
                flushed = false;
            }
        }
        let stop = loop {
            match reader.inbox.next_frame() {
                Ok(Some(frame)) => match handle(scheduler, &mut state, worker, frame) {
                    Ok(None) => {}
                    Ok(Some(done)) => finished.push(done),
                    Err(stop) => break Some(stop),
                },
                Ok(None) => break None,
                Err(error) => break Some(Stop::Protocol(error.to_string())),
            }
        };
        let mut more_to_write = false;
        if stop.is_none() && flushed && writable {
            more_to_write = next_frames(scheduler, &mut state, worker, &mut out);
        }
        let read_all = matches!(
            received,
            Received::WouldBlock | Received::Bytes { drained: true }
        );
        let sleep = stop.is_none() && read_all && !more_to_write;
        if sleep && flushed {
            if let Some(slot) = state.workers.get_mut(&worker) {
                slot.io_sleeping = true;
            }
        }
        drop(state);
        if sleep {
            let to_write = !flushed && writable;
            let wanted = libc::EPOLLIN as u32 | if to_write { libc::EPOLLOUT as u32 } else { 0 };
            if let Err(error) = link.arm(&mut reader, wanted) {
                return give_up(&error);
            }
        }
        drop(reader);
        // Outside the lock: completing a future runs user callbacks.
        for (job, frame) in finished.drain(..) {
            finish(job, frame);
        }
        match stop {
            Some(Stop::Refused(reason)) => return Some(reason),
            Some(Stop::Protocol(error)) => return give_up(&error),
            None if sleep => link.wait(doorbell),
            None => {}
        }
    }
}

/// Moves what `worker` may take now from the queue into its in-flight list and `out`, or the
/// exit request once there will be no more; whether there is anything to write.
fn next_frames(scheduler: &Scheduler, state: &mut State, worker: u64, out: &mut Outgoing) -> bool {
    let mut any = false;
    loop {
        let Some(slot) = state.workers.get(&worker) else {
            return any;
        };
        if state.pending.is_empty() || !scheduler.credit(state, slot) {
            break;
        }
        let nothing_in_flight = slot.in_flight.is_empty();
        let job = state.pending.pop_front().expect("not empty");
        if job.future.send() {
            let kind = latency_kind(
                job.kind,
                job.payload.len(),
                state.pending.is_empty(),
                nothing_in_flight,
            );
            out.push(kind, job.id, &job.payload);
            any = true;
            let slot = state.workers.get_mut(&worker).expect("present");
            slot.sent += 1;
            slot.in_flight.push_back(job);
        }
    }
    if any {
        return true;
    }
    let slot = state.workers.get_mut(&worker).expect("checked above");
    let retiring = scheduler
        .config
        .max_tasks_per_child
        .is_some_and(|max| slot.sent >= max);
    if !slot.exit_sent && (retiring || (state.shut_down && state.pending.is_empty())) {
        slot.exit_sent = true;
        wire::encode(out.small(), wire::EXIT, 0, &[]).expect("empty frame fits");
        return true;
    }
    false
}

/// Why a worker's stream is no longer served.
pub(super) enum Stop {
    Refused(String),
    Protocol(String),
}

/// Kills `worker` for breaking the protocol (`stop`), as its connection thread does, from a
/// thread that read its socket as leader; that thread then sees the stream end. Signalled
/// under the lock: the worker is reaped only after it leaves the table.
pub(super) fn give_up_on(scheduler: &Scheduler, worker: u64, stop: &Stop) {
    let error = match stop {
        Stop::Refused(reason) => format!("refused after its handshake: {reason}"),
        Stop::Protocol(error) => error.clone(),
    };
    let state = scheduler.lock();
    if let Some(slot) = state.workers.get(&worker) {
        tracing::error!(target: "concurrent_futures", pid = slot.pid, %error, "unusable stream from worker; killing it");
        signal(slot.pid, libc::SIGKILL);
    }
}

/// Completes a job's future from its result frame, outside the scheduler's lock: completing
/// runs user callbacks.
pub(super) fn finish(job: Job, frame: wire::Frame) {
    if frame.kind == wire::SUCCEEDED {
        job.future.succeed(frame.body, wire::RUN_TIME_PREFIX);
    } else {
        job.future
            .fail(decode_error(&frame.body[wire::RUN_TIME_PREFIX..]));
    }
}

fn decode_error(body: &[u8]) -> Error {
    postcard::from_bytes::<Error>(body).unwrap_or_else(|e| Error::Serialization {
        message: format!("cannot decode the error a worker sent: {e}"),
    })
}

/// Acts on one frame from the worker; hands back a finished job to complete once the lock
/// is released.
pub(super) fn handle(
    scheduler: &Arc<Scheduler>,
    state: &mut State,
    worker: u64,
    frame: wire::Frame,
) -> Result<Option<(Job, wire::Frame)>, Stop> {
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
            state.lost_before_start = 0;
            if let Some(timeout) = job.timeout {
                slot.deadline = Some((Instant::now() + timeout, timeout));
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
            Ok(Some((job, frame)))
        }
        kind => Err(Stop::Protocol(format!("unknown frame kind {kind}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a lone small call asks its worker to watch for the next one: a chunk, a large
    /// call, or a call with others queued or in flight never makes a worker spend a core
    /// waiting.
    #[test]
    fn only_a_lone_call_asks_its_worker_to_watch() {
        assert_eq!(latency_kind(wire::RUN, 8, true, true), wire::RUN_THEN_WATCH);
        assert_eq!(latency_kind(wire::RUN, 8, false, true), wire::RUN);
        assert_eq!(latency_kind(wire::RUN, 8, true, false), wire::RUN);
        assert_eq!(latency_kind(wire::RUN, 1 << 20, true, true), wire::RUN);
        assert_eq!(
            latency_kind(wire::RUN_BATCH, 8, true, true),
            wire::RUN_BATCH
        );
    }

    /// Writing to a worker that is gone gives `EPIPE` and raises no SIGPIPE. Checked with
    /// SIGPIPE blocked on this thread, where a raised one stays pending (Linux keeps blocked
    /// signals pending even when their action is to ignore them), so the test binary's
    /// other threads are not affected.
    #[test]
    #[allow(unsafe_code)]
    fn writing_to_a_closed_socket_raises_no_sigpipe() {
        // SAFETY: signal-set calls on sets we own; the mask change is this thread's only and
        // is undone below, after any pending SIGPIPE is consumed.
        unsafe {
            let mut pipe_only: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe_only);
            libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, std::ptr::null_mut());

            let (ours, theirs) = UnixStream::pair().unwrap();
            drop(theirs);
            let mut out = Outgoing::default();
            out.push(wire::RUN, 1, &Arc::new(vec![7; 100]));
            let error = out.write_some(&ours).unwrap_err();

            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&pipe_only, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &pipe_only, std::ptr::null_mut());

            assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
            assert!(!raised, "writing to a closed worker socket raised SIGPIPE");
        }
    }
}
