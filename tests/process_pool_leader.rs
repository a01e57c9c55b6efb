//! A caller blocked on the result of a lone call it handed straight to an idle worker reads the
//! worker's answer from the socket itself (it leads the socket), instead of sleeping until the
//! worker's connection thread has read it. Checked here: that it does (the caller is found
//! waiting on the socket, and the future completes on its thread), and that everything a
//! connection thread guarantees still holds while a caller leads: a killed worker fails only
//! that call, a task timeout kills the worker, a timed-out wait hands the socket back,
//! workers retire after `max_tasks_per_child`, and shutdown waits for the call.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{Error, ProcessPoolExecutor, task};

mod common;
use common::{accept_started, hold, start_listener};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn my_pid() -> u32 {
    std::process::id()
}

/// The calling thread's kernel id, for /proc.
fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::gettid()
    }
}

/// Whether thread `tid` of this process is blocked in `ppoll`, as a leading caller is while
/// it waits for its answer (a caller that is not leading parks on a futex instead).
fn blocked_in_ppoll(tid: libc::pid_t) -> bool {
    let Ok(syscall) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    syscall
        .split_whitespace()
        .next()
        .and_then(|number| number.parse::<libc::c_long>().ok())
        == Some(libc::SYS_ppoll)
}

/// Watches thread `tid` until it is blocked in `ppoll`; false if it is not within 30 s (the
/// bound only turns a missing leader into a failure instead of a hang).
fn wait_until_leading(tid: libc::pid_t) -> bool {
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        if blocked_in_ppoll(tid) {
            return true;
        }
        thread::yield_now();
    }
    false
}

/// A one-worker pool, warmed up: its worker is ready and idle, and its connection thread
/// sleeps, so the next submit is handed straight to the worker.
fn warm_pool(builder: concurrent_futures::ProcessPoolBuilder) -> ProcessPoolExecutor {
    let executor = builder.max_workers(1).build().unwrap();
    assert_eq!(executor.submit(square_number(3)).result(), Ok(9));
    executor
}

/// Starts a thread that waits for the held task to start and for `caller` to be blocked on
/// the socket, then does `then` with the held task's stream; gives back whether the caller
/// was found leading, and the thread's result.
fn when_leading<R: Send + 'static>(
    listener: std::os::unix::net::UnixListener,
    caller: libc::pid_t,
    then: impl FnOnce(UnixStream) -> R + Send + 'static,
) -> thread::JoinHandle<(bool, R)> {
    thread::spawn(move || {
        let started = accept_started(&listener);
        let leading = wait_until_leading(caller);
        (leading, then(started))
    })
}

#[test]
fn a_lone_call_s_answer_is_read_by_the_thread_blocked_on_it() {
    let executor = warm_pool(ProcessPoolExecutor::builder());
    let (listener, path) = start_listener("leader-reads");
    let future = executor.submit(hold(path));
    let completed_on = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&completed_on);
    future.add_done_callback(move |_| *seen.lock().unwrap() = Some(thread::current().id()));
    let releaser = when_leading(listener, gettid(), |mut started| {
        started.write_all(b"go").unwrap();
    });
    let pid = future
        .result()
        .expect("the held call returns its worker's pid");
    let (leading, ()) = releaser.join().unwrap();
    assert!(
        leading,
        "the caller never waited on the worker's socket itself"
    );
    assert_eq!(executor.worker_pids(), [pid]);
    assert_eq!(
        *completed_on.lock().unwrap(),
        Some(thread::current().id()),
        "the future was completed on another thread than the one blocked on it"
    );
    // The socket went back to the connection thread: a call it sends itself still returns.
    let futures: Vec<_> = (0..20).map(|i| executor.submit(square_number(i))).collect();
    for (i, future) in (0..20).zip(&futures) {
        assert_eq!(future.result(), Ok(i * i));
    }
}

#[test]
fn a_worker_killed_while_its_caller_leads_fails_only_that_call() {
    let executor = warm_pool(ProcessPoolExecutor::builder());
    let pid = executor.worker_pids()[0];
    let (listener, path) = start_listener("leader-killed");
    let future = executor.submit(hold(path));
    let killer = when_leading(listener, gettid(), move |started| {
        // SAFETY: kill(2) of our own worker; touches no memory.
        #[allow(unsafe_code)]
        let killed = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        (killed, started)
    });
    let error = future.result().unwrap_err();
    let (leading, (killed, _started)) = killer.join().unwrap();
    assert!(
        leading,
        "the caller never waited on the worker's socket itself"
    );
    assert_eq!(killed, 0);
    assert!(
        matches!(error, Error::WorkerDied { pid: died, signal: Some(9), .. } if died == pid),
        "{error:?}"
    );
    // A replacement serves the next call.
    assert_eq!(executor.submit(square_number(12)).result(), Ok(144));
    assert_ne!(executor.worker_pids(), [pid]);
}

#[test]
fn a_task_timeout_kills_the_worker_while_its_caller_leads() {
    let executor = warm_pool(ProcessPoolExecutor::builder());
    let pid = executor.worker_pids()[0];
    let (listener, path) = start_listener("leader-timeout");
    let future = executor.submit_with_timeout(hold(path), Duration::from_millis(200));
    // The held task is never let go: only its timeout ends it. (Whether the caller was seen
    // leading is not asserted here: a thread watching for it could be held up past the
    // timeout on a busy machine. The tests that act only once it was seen assert it.)
    let holder = thread::spawn(move || accept_started(&listener));
    let error = future.result().unwrap_err();
    let _started = holder.join().unwrap();
    assert_eq!(
        error,
        Error::TaskTimedOut {
            timeout: Duration::from_millis(200)
        }
    );
    assert_eq!(executor.submit(square_number(5)).result(), Ok(25));
    assert_ne!(executor.worker_pids(), [pid]);
}

#[test]
fn a_wait_that_times_out_while_leading_hands_the_socket_back() {
    let executor = warm_pool(ProcessPoolExecutor::builder());
    let (listener, path) = start_listener("leader-wait-timeout");
    let future = executor.submit(hold(path));
    // Callbacks run after waiters wake: the name comes through a channel.
    let (completed_on, seen) = std::sync::mpsc::channel();
    future.add_done_callback(move |_| {
        let _ = completed_on.send(thread::current().name().map(str::to_owned));
    });
    // (Whether the caller was seen leading before its wait ran out is not asserted: a thread
    // watching for it could be held up past the timeout on a busy machine.)
    let holder = thread::spawn(move || accept_started(&listener));
    // The task is held: this wait can only time out.
    let waited = future.result_timeout(Duration::from_millis(100));
    assert!(waited.as_ref().is_err_and(Error::is_timeout), "{waited:?}");
    let mut started = holder.join().unwrap();
    assert!(!future.done());
    // Nobody leads now (the offer was used): the connection thread must read the answer, so
    // it has to be watching the socket again. Bounded, so that a socket left out of its epoll
    // set fails the test instead of hanging it.
    started.write_all(b"go").unwrap();
    let pid = executor.worker_pids()[0];
    assert_eq!(future.result_timeout(Duration::from_secs(60)), Ok(pid));
    let reader = seen.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        reader.as_deref(),
        Some(format!("cf-pool-{pid}").as_str()),
        "the answer was not read by the worker's connection thread"
    );
    assert_eq!(executor.submit(square_number(6)).result(), Ok(36));
}

/// A worker retires after `max_tasks_per_child` even when its last call's answer was read
/// by the caller, whose connection thread slept through it: the caller wakes it to send the
/// exit request, or the next call would wait for a worker that never takes work again.
#[test]
fn workers_retire_after_max_tasks_per_child_when_their_callers_lead() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..8)
        .map(|_| {
            // Bounded, so that a worker that never retires fails the test instead of hanging
            // it.
            let pid = executor
                .submit(my_pid())
                .result_timeout(Duration::from_secs(60));
            pid.expect("a worker takes the call")
        })
        .collect();
    // Each worker ran two calls, the second handed over while it idled, and was replaced.
    for pair in pids.chunks(2) {
        assert_eq!(pair[0], pair[1], "{pids:?}");
    }
    for (i, a) in pids.iter().enumerate().step_by(2) {
        assert!(
            pids[i + 2..].iter().all(|b| b != a),
            "a retired worker ran again: {pids:?}"
        );
    }
}

#[test]
fn shutdown_from_another_thread_waits_for_a_led_call() {
    let executor = Arc::new(warm_pool(ProcessPoolExecutor::builder()));
    let (listener, path) = start_listener("leader-shutdown");
    let future = executor.submit(hold(path));
    let pool = Arc::clone(&executor);
    let closer = when_leading(listener, gettid(), move |mut started| {
        let shutting = thread::spawn(move || pool.shutdown(true, false));
        started.write_all(b"go").unwrap();
        shutting.join().unwrap();
    });
    let pid = future.result().expect("the call runs to its end");
    let (leading, ()) = closer.join().unwrap();
    assert!(
        leading,
        "the caller never waited on the worker's socket itself"
    );
    assert!(pid > 0);
    assert_eq!(
        executor.submit(square_number(2)).result(),
        Err(Error::ShutDown)
    );
}
