//! Checks from reviews: a job that a submitter began to hand to an idle worker and that went
//! back to the queue must still resolve; a large result is not read into a buffer allocated
//! far ahead of its bytes; a `shutdown(wait = true)` waits for another caller's cancellations.

use std::io::Write;
use std::sync::Arc;

use concurrent_futures::{Error, Future, ProcessPoolExecutor, task};

mod common;
use common::second_shutdown::race_a_second_shutdown;
use common::{Event, Gate, accept_started, hold, one_worker_held, start_listener};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

/// SIGKILLs `pid` and returns once it has exited (a zombie nobody reaped yet): a pidfd
/// becomes readable then, so no polling of /proc and no sleep.
fn kill_and_wait_for_exit(pid: u32) {
    // SAFETY: pidfd_open and poll read nothing of ours but the pollfd we own.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as libc::c_int;
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        assert_eq!(libc::kill(pid as libc::pid_t, libc::SIGKILL), 0);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        while libc::poll(&mut pfd, 1, -1) != 1 {}
        libc::close(fd);
    }
}

/// A one-worker pool whose worker has finished its first task (`first`, its result its pid)
/// and been killed, while its connection thread is held in `first`'s done callback until
/// `release` opens: the connection has not noticed the death and still counts as asleep.
fn dead_worker_with_its_connection_held(
    name: &str,
) -> (ProcessPoolExecutor, Future<u32>, u32, Gate) {
    let (listener, path) = start_listener(name);
    let executor = ProcessPoolExecutor::new(1);
    let release = Gate::new();
    let first = executor.submit(hold(path));
    let mut started = accept_started(&listener);
    let pid = executor.worker_pids()[0];
    let in_callback = Arc::new(Event::default());
    {
        let in_callback = Arc::clone(&in_callback);
        let release = release.handle();
        first.add_done_callback(move |_| {
            in_callback.set();
            release.wait();
        });
    }
    started.write_all(b"g").unwrap();
    in_callback.wait();
    kill_and_wait_for_exit(pid);
    (executor, first, pid, release)
}

/// The worker dies while idle and its connection thread is busy in a done callback (so it
/// has not noticed yet and still counts as asleep): the next submit tries to hand its job
/// straight to that worker, the write fails, and the job goes back to the queue already
/// marked running. `shutdown(cancel_futures = true)` then must not drop it unresolved: it
/// was sent as far as the user can tell (`cancel()` is refused), so it runs elsewhere.
#[test]
fn a_job_whose_hand_over_failed_resolves_after_shutdown_cancelling_futures() {
    let (executor, first, pid, release) = dead_worker_with_its_connection_held("review-hand-over");

    let second = executor.submit(square_number(3));
    // Queued (not started anywhere): Python would cancel it; once sent, it runs.
    let cancelled = second.cancel();
    executor.shutdown(false, true);
    release.open();
    executor.shutdown(true, false);

    assert!(
        second.done(),
        "a submitted future was left unresolved by shutdown(cancel_futures = true) \
         (cancel() returned {cancelled}, running() = {})",
        second.running()
    );
    if !cancelled {
        assert_eq!(second.result().unwrap(), 9);
    }
    assert_eq!(first.result().unwrap(), pid);
}

/// As above, with `kill_workers()`: nothing more runs, so the job that went back to the
/// queue after its hand-over failed must fail with `Cancelled` (as what a killed worker had
/// been sent but not started does), not stay queued forever.
#[test]
fn a_job_whose_hand_over_failed_is_cancelled_by_kill_workers() {
    let (executor, _first, _pid, release) =
        dead_worker_with_its_connection_held("review-hand-over-kill");

    let second = executor.submit(square_number(3));
    let cancelled = second.cancel();
    executor.kill_workers();
    release.open();
    executor.shutdown(true, false);

    assert!(
        second.done(),
        "kill_workers() left a submitted future unresolved (cancel() returned {cancelled}, \
         running() = {})",
        second.running()
    );
    assert!(matches!(second.result(), Err(Error::Cancelled)));
}

#[task]
fn bytes_of(len: usize) -> Vec<u8> {
    vec![7; len]
}

/// The README: the decoders "never allocate more than 16 MiB ahead of the bytes that
/// actually arrived". A large result is read into a buffer of its own, which the user then
/// gets: its capacity shows what was allocated.
#[test]
fn a_large_result_is_not_allocated_far_ahead_of_its_bytes() {
    let executor = ProcessPoolExecutor::new(1);
    for len in [20 << 20, 40 << 20, 64 << 20] {
        let value = executor.submit(bytes_of(len)).result().unwrap();
        assert_eq!(value.len(), len);
        assert!(
            value.capacity() - value.len() <= 16 << 20,
            "{len} bytes arrived in a buffer of {} ({} MiB ahead)",
            value.capacity(),
            (value.capacity() - value.len()) >> 20
        );
    }
}

/// `shutdown(cancel_futures = true)` cancels the queued futures after releasing the pool's
/// lock (their callbacks may use the pool). Another caller's `shutdown(wait = true)` made
/// meanwhile still returns only once every one of them is cancelled, as in Python, where the
/// cancelling happens under the shutdown lock. The second call starts from the first queued
/// future's done callback, with the second not yet cancelled; the callback gives it half a
/// second to return early (it did, before the fix, once the worker had exited).
#[test]
fn a_concurrent_shutdown_wait_returns_after_the_other_caller_s_cancellations() {
    let (executor, running, mut started) = one_worker_held("review-concurrent-shutdown");
    // Queued behind it: a pipeline of one sends nothing more to the busy worker.
    let first = executor.submit(square_number(1));
    let second = executor.submit(square_number(2));

    // The held task may finish and its worker exit once the cancelling has begun.
    let race = race_a_second_shutdown(&executor, &first, &second, move || {
        started.write_all(b"g").unwrap();
    });
    executor.shutdown(false, true);

    race.check();
    assert!(running.result().is_ok());
    assert_eq!(first.result(), Err(Error::Cancelled));
    assert_eq!(second.result(), Err(Error::Cancelled));
}
