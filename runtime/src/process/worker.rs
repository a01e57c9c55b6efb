//! The worker loop: what a process started by a pool runs after `init()`.
//!
//! The main thread runs tasks one at a time, in the order they arrive, and reports each as it
//! starts it, so the parent always knows which task a crash took down. A watch thread polls
//! the socket for the end of the stream, so that a parent that died (even by SIGKILL) ends
//! this process at once, even while a task runs. The parent's end is non-blocking: a large
//! write to a busy worker never holds up the results it reads.

use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::call;
use super::identity::build_identity;
use super::wire;
use crate::error::Error;

/// How long a worker waits for its parent's hello before deciding it has none.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code of a worker that gave up (no parent, refused handshake, broken stream).
const EXIT_GAVE_UP: i32 = 70;

/// Serves the parent on the socket named by `marker`, then exits; never returns.
pub(crate) fn run(marker: &str) -> ! {
    let socket = match inherited_socket(marker) {
        Ok(socket) => socket,
        Err(message) => {
            say(&message);
            process::exit(EXIT_GAVE_UP)
        }
    };
    // `socket` lives until `exit`: the watch thread polls its descriptor, which must not be
    // closed (and its number reused) while the process still runs.
    match serve(&socket) {
        Ok(()) => process::exit(0),
        Err(message) => {
            say(&message);
            process::exit(EXIT_GAVE_UP)
        }
    }
}

fn serve(socket: &UnixStream) -> Result<(), String> {
    socket
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut reader =
        BufReader::with_capacity(1 << 16, socket.try_clone().map_err(|e| e.to_string())?);
    let mut writer =
        BufWriter::with_capacity(1 << 16, socket.try_clone().map_err(|e| e.to_string())?);

    let no_parent = || {
        format!(
            "no pool on the other end of descriptor {}: workers are started by a \
             ProcessPoolExecutor, not by hand",
            socket.as_raw_fd()
        )
    };
    let hello = wire::read(&mut reader)
        .map_err(|e| format!("{}: {e}", no_parent()))?
        .ok_or_else(no_parent)?;
    if hello.kind != wire::HELLO {
        return Err(format!("expected a hello frame, got kind {}", hello.kind));
    }
    if hello.id != build_identity() {
        let reason = format!(
            "worker {} was built from another binary than its parent (identity {:#x}, parent's \
             {:#x}): was the program rebuilt while it ran?",
            process::id(),
            build_identity(),
            hello.id
        );
        let _ = wire::send(&mut writer, wire::REFUSED, 0, reason.as_bytes());
        return Err(reason);
    }
    // A hostile parent could ask for hours; the pool's builder allows 10 ms.
    let mut idle = IdleWatch::new(
        wire::Hello::decode(&hello.body)
            .idle_spin
            .min(wire::MAX_IDLE_SPIN),
    );
    wire::send(&mut writer, wire::READY, u64::from(process::id()), &[])
        .map_err(|e| e.to_string())?;
    socket.set_read_timeout(None).map_err(|e| e.to_string())?;

    watch_for_parent_death(socket)?;
    let mut frame = Vec::new();
    // The body of the call being run, kept across calls: large ones reuse its allocation.
    let mut request = Vec::new();
    loop {
        let (kind, id) = match wire::read_into(&mut reader, &mut request) {
            Ok(Some((kind, id)))
                if matches!(kind, wire::RUN | wire::RUN_BATCH | wire::RUN_THEN_WATCH) =>
            {
                (kind, id)
            }
            // Finish: everything sent before it has run.
            Ok(Some((wire::EXIT, _))) => break,
            Ok(Some((kind, _))) => {
                return Err(format!("unexpected frame kind {kind} from the pool"));
            }
            // The parent is gone: nobody wants the results.
            Ok(None) => process::exit(0),
            Err(error) => return Err(format!("broken stream from the pool: {error}")),
        };
        // Reported before running and flushed (with the previous result, in one write), so
        // that the parent knows which task was running if this one brings the process down.
        wire::encode(&mut frame, wire::STARTED, id, &[]).expect("empty frame fits");
        write_out(&mut writer, &mut frame, true)?;

        let start = wire::begin(&mut frame, wire::SUCCEEDED, id);
        let run_time_at = frame.len();
        frame.extend_from_slice(&[0; wire::RUN_TIME_PREFIX]);
        let began = Instant::now();
        let outcome = if kind == wire::RUN_BATCH {
            call::run_chunk(&request, &mut frame)
        } else {
            call::run(&request, &mut frame)
        };
        let ran = run_time(began);
        frame[run_time_at..run_time_at + wire::RUN_TIME_PREFIX].copy_from_slice(&ran);
        let outcome = outcome.and_then(|()| {
            wire::end(&mut frame, start).map_err(|too_large| Error::Serialization {
                message: format!("the result of task {id}: {too_large}"),
            })
        });
        if let Err(error) = &outcome {
            frame.truncate(start);
            let mut body = ran.to_vec();
            body.extend_from_slice(&encode_error(error));
            wire::encode(&mut frame, wire::FAILED, id, &body).expect("small frame");
        }
        // More work already read: the result rides with the next task's report.
        let flush = reader.buffer().is_empty();
        write_out(&mut writer, &mut frame, flush)?;
        if flush && kind == wire::RUN_THEN_WATCH {
            idle.watch(socket);
        }
        if id == wire::INITIALIZER_ID && outcome.is_err() {
            // Python's worker exits when its initializer raises; no task runs after it.
            writer.flush().map_err(|e| e.to_string())?;
            process::exit(EXIT_GAVE_UP);
        }
    }
    writer.flush().map_err(|e| e.to_string())
}

/// Whether to poll for the next call after answering a lone one, before the next read
/// blocks: a caller that submits again within `spin` finds this process awake, and waking a
/// sleeping process is the dearest step of a round trip on many machines.
///
/// Backs off, so that a caller whose calls come further apart than `spin` does not have a
/// core spent on each: a watch in vain skips the next lone call, the next in vain two, then
/// four, up to [`MAX_SKIPS`](super::backoff::MAX_SKIPS); a watch that catches a call starts
/// over.
struct IdleWatch {
    spin: Duration,
    backoff: Backoff,
}

impl IdleWatch {
    fn new(spin: Duration) -> Self {
        Self {
            spin,
            backoff: Backoff::default(),
        }
    }

    /// After the answer to a lone call: watch the socket, unless backing off.
    fn watch(&mut self, socket: &UnixStream) {
        if self.spin.is_zero() || !self.backoff.poll_now() {
            return;
        }
        if poll_for_work(socket, self.spin) {
            self.backoff.caught();
        } else {
            self.backoff.missed();
        }
    }
}

/// Polls the socket for up to `spin`; true as soon as a frame (or the end) is there. Each poll
/// is a system call, on whose return the kernel runs instead any thread woken with real work
/// for this core.
fn poll_for_work(socket: &UnixStream, spin: Duration) -> bool {
    // Once first: a caller that shares this core (the scheduler put them together, or the
    // machine is busy elsewhere) reads the answer just written and sends its next call now,
    // instead of after the watch that waits for it has been preempted.
    std::thread::yield_now();
    let began = Instant::now();
    while began.elapsed() < spin {
        let mut watched = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes only the one pollfd we own, with a zero timeout; the
        // descriptor is the socket borrowed for this call.
        #[allow(unsafe_code)]
        let ready = unsafe { libc::poll(&mut watched, 1, 0) };
        // Readable, hung up, or an error for the blocking read to report.
        if ready != 0 {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

/// Writes to the process's stderr itself, not through `eprintln!`, which a test harness
/// captures (and which would then be lost when the worker exits).
fn say(message: &str) {
    let line = format!("concurrent-futures worker {}: {message}\n", process::id());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Exits this process as soon as the parent's end of the socket closes, even while a task
/// runs: the parent died (even by SIGKILL) and nobody wants the results. The thread only
/// polls for the hang-up; the main thread reads the frames, with no hand-off between them.
fn watch_for_parent_death(socket: &UnixStream) -> Result<(), String> {
    let fd = socket.as_raw_fd();
    std::thread::Builder::new()
        .name("cf-worker-watch".to_owned())
        .spawn(move || {
            loop {
                let mut watched = libc::pollfd {
                    fd,
                    events: libc::POLLRDHUP,
                    revents: 0,
                };
                // SAFETY: poll reads and writes only the one pollfd we own; the descriptor
                // stays open until the process exits (`run` keeps the socket alive).
                #[allow(unsafe_code)]
                let ready = unsafe { libc::poll(&mut watched, 1, -1) };
                let hung_up = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
                if ready > 0 && watched.revents & hung_up != 0 {
                    process::exit(0);
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the watch thread: {e}"))
}

fn write_out(writer: &mut impl Write, frame: &mut Vec<u8>, flush: bool) -> Result<(), String> {
    let result = writer
        .write_all(frame)
        .and_then(|()| if flush { writer.flush() } else { Ok(()) });
    frame.clear();
    // The parent closed the socket: it is gone or shutting us down.
    result.map_err(|e| format!("cannot write to the pool: {e}"))
}

/// Microseconds since `began`, saturated, as the result prefix.
fn run_time(began: Instant) -> [u8; wire::RUN_TIME_PREFIX] {
    let micros = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
    micros.to_le_bytes()
}

fn encode_error(error: &Error) -> Vec<u8> {
    postcard::to_stdvec(error).expect("errors always encode")
}

/// The socket the parent left open for this process, checked to be one.
fn inherited_socket(marker: &str) -> Result<UnixStream, String> {
    let fd: RawFd = marker
        .parse()
        .map_err(|_| format!("{} is not a descriptor number", super::entry::WORKER_MARKER))?;
    if !is_socket(fd) {
        return Err(format!(
            "descriptor {fd} is not a socket from a pool: workers are started by a \
             ProcessPoolExecutor, not by hand"
        ));
    }
    let fd = if fd <= 2 {
        move_off_standard_stream(fd)?
    } else {
        fd
    };
    // SAFETY: the parent handed this descriptor to this process alone (the marker names it),
    // `is_socket` checked that it is open and a socket, and nothing else in the process owns
    // it: it is wrapped exactly once, here.
    #[allow(unsafe_code)]
    let socket = unsafe { UnixStream::from_raw_fd(fd) };
    // Processes this worker's tasks start must not inherit the pool's socket.
    set_cloexec(fd);
    Ok(socket)
}

/// The parent passes the socket as stdin: give it a descriptor of its own, and give the
/// standard stream /dev/null, so a task that reads stdin cannot eat the pool's frames.
#[allow(unsafe_code)]
fn move_off_standard_stream(fd: RawFd) -> Result<RawFd, String> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    // SAFETY: fcntl and dup2 on descriptors this process owns; no memory is touched. `moved`
    // is a new descriptor (close-on-exec) that nothing else refers to.
    unsafe {
        let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if moved < 0 {
            return Err(format!(
                "cannot move the pool's socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) < 0 {
            return Err(format!(
                "cannot replace stdin: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(moved)
    }
}

#[allow(unsafe_code)]
fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat only writes into the zeroed struct we own; a bad fd gives -1, not UB.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

#[allow(unsafe_code)]
fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd we own, with flags read from it first; no memory is touched.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Watches in vain skip 1, then 2, then 4 lone calls; one that catches a call starts over.
    #[test]
    fn the_idle_watch_backs_off_and_starts_over() {
        let (worker_end, mut parent_end) = UnixStream::pair().unwrap();
        let mut idle = IdleWatch::new(Duration::from_micros(100));
        // Nothing comes: the watch is in vain, the next lone call goes unwatched.
        idle.watch(&worker_end);
        assert_eq!(idle.backoff.counts(), (1, 2));
        idle.watch(&worker_end);
        assert_eq!(idle.backoff.counts().0, 0);
        idle.watch(&worker_end);
        assert_eq!(idle.backoff.counts(), (2, 4));
        idle.watch(&worker_end);
        idle.watch(&worker_end);
        // A call waits on the socket: the watch catches it at once and the back-off resets.
        parent_end.write_all(b"call").unwrap();
        idle.watch(&worker_end);
        assert_eq!(idle.backoff.counts(), (0, 1));
        // Never more than MAX_SKIPS lone calls unwatched.
        let mut idle = IdleWatch::new(Duration::from_nanos(1));
        let (quiet, _keep_open) = UnixStream::pair().unwrap();
        for _ in 0..20 {
            while idle.backoff.counts().0 > 0 {
                idle.watch(&quiet); // skipped
            }
            idle.watch(&quiet); // in vain
        }
        assert_eq!(idle.backoff.counts().0, crate::process::backoff::MAX_SKIPS);
        // A zero spin never watches.
        let mut off = IdleWatch::new(Duration::ZERO);
        off.watch(&quiet);
        assert_eq!(off.backoff.counts(), (0, 1));
    }
}
