//! The parent's end of one worker's socket, and who reads it: the worker's connection thread,
//! or, for a lone call, the caller blocked on its result (the leader), so that the answer is
//! read and the future completed on the caller's own thread, one wake-up fewer per round
//! trip.
//!
//! The connection thread sleeps in an epoll set holding the socket and its doorbell. A
//! leader takes the socket out of the set before it waits on the socket itself, so the
//! answer wakes the caller alone, and puts it back when done; whoever reads holds the
//! reader lock, so the two never read at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::connection::{self, Doorbell, Stop};
use super::scheduler::Scheduler;
use crate::help::Help;
use crate::process::backoff::Backoff;
use crate::process::inbox::{Inbox, Received};
use crate::sync::{Arc, Mutex, MutexGuard, lock};

/// The epoll key of the socket.
const SOCKET_KEY: u64 = 0;
/// The epoll key of the doorbell.
const DOORBELL_KEY: u64 = 1;

/// How long a leader polls for its answer before it sleeps (at most the pool's `idle_spin`,
/// and not at all if that is zero): a round trip to a worker that is awake takes a few
/// microseconds, and waking a sleeping thread costs more than that on many machines, virtual
/// ones most. Short, so that a call that takes longer costs little of a core, and backed off
/// from after polls in vain. Between polls the leader yields its core: a worker that shares
/// it (one core, or a machine busy elsewhere) then runs at once instead of after the poll.
const LEAD_SPIN: Duration = Duration::from_micros(20);

/// One worker's socket, its epoll set, and what has been read from it.
pub(super) struct Link {
    pub(super) socket: UnixStream,
    epoll: OwnedFd,
    pub(super) reader: Mutex<Reader>,
    scheduler: Weak<Scheduler>,
    worker: u64,
}

/// What only the thread reading the socket touches.
#[derive(Default)]
pub(super) struct Reader {
    pub(super) inbox: Inbox,
    /// The events the connection thread waits for on the socket.
    wanted: u32,
    /// Whether the socket is in the epoll set (a leader takes it out).
    registered: bool,
    /// When leaders poll for their answer before sleeping.
    patience: Backoff,
}

impl Link {
    /// A link for `socket`, whose connection thread is rung through `doorbell`.
    pub(super) fn new(
        socket: UnixStream,
        doorbell: &Doorbell,
        scheduler: Weak<Scheduler>,
        worker: u64,
    ) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a descriptor it returns is ours alone.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        #[allow(unsafe_code)]
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        control(
            &epoll,
            libc::EPOLL_CTL_ADD,
            doorbell.fd(),
            libc::EPOLLIN as u32,
            DOORBELL_KEY,
        )?;
        let wanted = libc::EPOLLIN as u32;
        control(
            &epoll,
            libc::EPOLL_CTL_ADD,
            socket.as_raw_fd(),
            wanted,
            SOCKET_KEY,
        )?;
        Ok(Self {
            socket,
            epoll,
            reader: Mutex::new(Reader {
                inbox: Inbox::default(),
                wanted,
                registered: true,
                patience: Backoff::default(),
            }),
            scheduler,
            worker,
        })
    }

    /// The reader, for the connection thread: waits while a leader reads.
    pub(super) fn read_lock(&self) -> MutexGuard<'_, Reader> {
        lock(&self.reader)
    }

    /// Before the connection thread sleeps: makes the set wake it for `wanted` on the socket
    /// (readable, and writable if it has bytes left to write). Called with the reader held.
    pub(super) fn arm(&self, reader: &mut Reader, wanted: u32) -> io::Result<()> {
        if reader.registered && reader.wanted == wanted {
            return Ok(());
        }
        let op = if reader.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        control(&self.epoll, op, self.socket.as_raw_fd(), wanted, SOCKET_KEY)?;
        reader.wanted = wanted;
        reader.registered = true;
        Ok(())
    }

    /// Sleeps until the socket or the doorbell is ready; silences the doorbell if it rang.
    pub(super) fn wait(&self, doorbell: &Doorbell) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // SAFETY: epoll_wait writes at most `events.len()` entries into the array we own. An
        // error (EINTR) just ends the sleep early.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                -1,
            )
        };
        let ready = events
            .get(..usize::try_from(n).unwrap_or(0))
            .unwrap_or_default();
        if ready.iter().any(|event| event.u64 == DOORBELL_KEY) {
            doorbell.silence();
        }
    }

    /// Leads: reads the worker's answer to `job` on this thread. See [`Help`].
    fn lead(&self, scheduler: &Arc<Scheduler>, job: u64, deadline: Option<Instant>) {
        // Only for a worker whose one job in flight is this one (any other frame it may send
        // is the connection thread's to handle), and only while the connection thread sleeps
        // with nothing to write. Checked once before waiting for the reader, which the
        // connection thread holds while it handles a frame (this call's start, say), and
        // again with both held.
        let lone = |state: &super::scheduler::State| {
            state.workers.get(&self.worker).is_some_and(|slot| {
                slot.ready
                    && slot.leftover.is_empty()
                    && slot.doom.is_none()
                    && !slot.exit_sent
                    && slot.in_flight.len() == 1
                    && slot.in_flight.front().is_some_and(|front| front.id == job)
            })
        };
        if !lone(&scheduler.lock()) {
            return;
        }
        // Not for long: no other caller leads this socket (its job would be the one in
        // flight), and the connection thread holds the reader for one batch of frames, never
        // while it sleeps or runs callbacks.
        let mut reader = self.read_lock();
        {
            let state = scheduler.lock();
            let sleeping = state
                .workers
                .get(&self.worker)
                .is_some_and(|slot| slot.io_sleeping);
            if !(sleeping && lone(&state)) {
                return;
            }
        }
        if reader.registered {
            if control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                self.socket.as_raw_fd(),
                0,
                0,
            )
            .is_err()
            {
                return;
            }
            reader.registered = false;
        }
        let spin = scheduler.config.idle_spin.min(LEAD_SPIN);
        let mut spinning = !spin.is_zero() && reader.patience.poll_now();
        let began = Instant::now();
        let mut finished = Vec::new();
        let mut stop = None;
        let mut answered = false;
        while !answered && stop.is_none() {
            match reader.inbox.receive(&mut &self.socket) {
                Ok(Received::WouldBlock) => {
                    if spinning {
                        let now = Instant::now();
                        if now < began + spin && deadline.is_none_or(|deadline| now < deadline) {
                            // The worker may be waiting for this very core.
                            std::thread::yield_now();
                            continue;
                        }
                        spinning = false;
                        reader.patience.missed();
                    }
                    if readable(&self.socket, deadline) {
                        continue;
                    }
                    break; // out of time
                }
                // The stream's end stays for the connection thread to read again.
                Ok(Received::End) => break,
                Ok(Received::Bytes { .. }) => {}
                Err(error) => {
                    stop = Some(Stop::Protocol(error.to_string()));
                    break;
                }
            }
            let mut state = scheduler.lock();
            loop {
                match reader.inbox.next_frame() {
                    Ok(Some(frame)) => {
                        match connection::handle(scheduler, &mut state, self.worker, frame) {
                            Ok(None) => {}
                            Ok(Some(done)) => {
                                answered |= done.0.id == job;
                                finished.push(done);
                            }
                            Err(error) => {
                                stop = Some(error);
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        stop = Some(Stop::Protocol(error.to_string()));
                        break;
                    }
                }
            }
            let state = &mut *state;
            if let Some(slot) = state.workers.get_mut(&self.worker) {
                let retiring = scheduler
                    .config
                    .max_tasks_per_child
                    .is_some_and(|max| slot.sent >= max);
                // Work for the worker, which may be free now, its retirement, the pool's
                // shutdown, or its end: the connection thread's business, as is anything
                // but this call's answer.
                if !state.pending.is_empty() || retiring || state.shut_down || stop.is_some() {
                    slot.wake();
                }
            }
        }
        if spinning && answered {
            reader.patience.caught();
        }
        // Back in the set before the reader is free: the connection thread never sleeps
        // without watching the socket.
        let wanted = reader.wanted;
        if self.arm(&mut reader, wanted).is_err() {
            // Deaf to the socket: the doorbell makes the connection thread arm it again.
            let mut state = scheduler.lock();
            if let Some(slot) = state.workers.get_mut(&self.worker) {
                slot.io_sleeping = true;
                slot.wake();
            }
        }
        drop(reader);
        if let Some(stop) = stop {
            // A worker that breaks the protocol is killed, as its connection thread does;
            // that thread then sees the stream end and settles its jobs.
            connection::give_up_on(scheduler, self.worker, &stop);
        }
        // Outside every lock: completing a future runs user callbacks.
        for (job, frame) in finished {
            connection::finish(job, frame);
        }
    }
}

impl Help for Link {
    fn help(&self, job: u64, deadline: Option<Instant>) {
        if let Some(scheduler) = self.scheduler.upgrade() {
            self.lead(&scheduler, job, deadline);
        }
    }
}

/// Waits until `socket` is readable (or hung up), or `deadline` passes: false then.
fn readable(socket: &UnixStream, deadline: Option<Instant>) -> bool {
    let timeout = match deadline {
        None => None,
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            }),
            _ => return false,
        },
    };
    let mut watched = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: ppoll reads and writes only the one pollfd we own and reads the timespec, which
    // outlives the call; no signal mask is passed. An error (EINTR) counts as ready: the
    // caller reads, finds nothing, and waits again.
    #[allow(unsafe_code)]
    let ready = unsafe { libc::ppoll(&mut watched, 1, timeout_ptr, std::ptr::null()) };
    ready != 0
}

/// `epoll_ctl` on `epoll` for `fd`, tagged with `key`.
fn control(
    epoll: &OwnedFd,
    op: libc::c_int,
    fd: libc::c_int,
    events: u32,
    key: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: key };
    // SAFETY: epoll_ctl reads the one event we own (ignored for EPOLL_CTL_DEL); both
    // descriptors are open for the call.
    #[allow(unsafe_code)]
    let done = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
