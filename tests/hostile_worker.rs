//! Hostile frames the other way: a "worker" that shakes hands properly and then answers a
//! call with garbage (a frame kind nobody sends, a length prefix of gigabytes, a result for a
//! task it was never given, a frame cut short by its exit). The parent kills it, fails the
//! task it was running as `WorkerDied`, and does not hang or panic, whether the garbage is
//! read by the worker's connection thread or by a caller leading the socket (`warm-` modes:
//! the garbage answers a second call, handed to the idle worker).
//!
//! The fake worker is this test binary started into `fake_worker` through a small script
//! (the builder's `executable`), which names the misbehaviour in its environment.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use concurrent_futures::{Error, ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

mod common;
use common::frames::{READY, RUN, RUN_THEN_WATCH, STARTED, SUCCEEDED, raw_frame};

/// Names the misbehaviour in the fake worker's environment.
const MODE: &str = "CF_FAKE_WORKER_MODE";

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

/// Reads one frame's (kind, id); `None` at the end of the stream.
fn read_frame(socket: &mut File) -> Option<(u8, u64)> {
    let mut prefix = [0; 4];
    socket.read_exact(&mut prefix).ok()?;
    let mut rest = vec![0; u32::from_le_bytes(prefix) as usize];
    socket.read_exact(&mut rest).ok()?;
    Some((rest[0], u64::from_le_bytes(rest[1..9].try_into().unwrap())))
}

/// The fake worker: the pool's socket is its stdin. Shakes hands, then answers the first
/// call as `CF_FAKE_WORKER_MODE` says and waits to be killed (or exits, for `cut`).
#[test]
fn fake_worker() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let mut socket = File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap());
    let _hello = read_frame(&mut socket).expect("a hello");
    socket
        .write_all(&raw_frame(READY, u64::from(std::process::id()), &[]))
        .unwrap();
    // Anything but a call (the exit request of a shutdown, or the end): leave quietly.
    let Some((RUN | RUN_THEN_WATCH, id)) = read_frame(&mut socket) else {
        std::process::exit(0);
    };
    // `warm-...`: answers the first call properly (`square_number(3)`), misbehaves on the
    // second, which the pool hands to it while it idles.
    let (mode, id) = match mode.strip_prefix("warm-") {
        Some(mode) => {
            let mut answer = raw_frame(STARTED, id, &[]);
            // The run time (4 bytes), then 9 as postcard encodes it.
            answer.extend(raw_frame(SUCCEEDED, id, &[0, 0, 0, 0, 9]));
            socket.write_all(&answer).unwrap();
            let Some((RUN | RUN_THEN_WATCH, id)) = read_frame(&mut socket) else {
                std::process::exit(0);
            };
            (mode.to_owned(), id)
        }
        None => (mode, id),
    };
    if mode == "leave" {
        // Takes the call and exits without starting it.
        std::process::exit(0);
    }
    let mut answer = raw_frame(STARTED, id, &[]);
    match mode.as_str() {
        "unknown-kind" => answer.extend(raw_frame(99, id, &[1, 2, 3])),
        "gigantic" => {
            answer.extend_from_slice(&u32::MAX.to_le_bytes());
            answer.extend_from_slice(&[SUCCEEDED; 9]);
        }
        "unknown-task" => answer.extend(raw_frame(SUCCEEDED, id + 1000, &[0; 5])),
        "cut" => answer.extend_from_slice(&raw_frame(SUCCEEDED, id, &[0; 100])[..50]),
        other => panic!("unknown mode {other}"),
    }
    socket.write_all(&answer).unwrap();
    if mode == "cut" {
        std::process::exit(0);
    }
    loop {
        std::thread::park();
    }
}

/// A script that starts this binary into `fake_worker` in `mode`.
fn fake_worker_script(mode: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path =
        std::env::temp_dir().join(format!("cf-fake-worker-{}-{mode}.sh", std::process::id()));
    let script = format!(
        "#!/bin/sh\nexec env {MODE}={mode} '{}' fake_worker --exact --nocapture --quiet\n",
        exe.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs one call on a pool of one fake worker in `mode`; the call's error.
fn error_from_a_worker_that_sends(mode: &str) -> Error {
    let script = fake_worker_script(mode);
    // Executing a file just written fails with ETXTBSY while a process that another test's
    // thread is starting still holds an inherited descriptor of it (open for writing, closed
    // at that process's exec): a known Linux race, over within microseconds. Start again.
    let mut attempts = 0;
    let error = loop {
        let executor = ProcessPoolExecutor::builder()
            .max_workers(1)
            .executable(&script)
            .build()
            .unwrap();
        let first = executor.submit(square_number(3));
        let error = if mode.starts_with("warm-") {
            match first.result_timeout(Duration::from_secs(60)) {
                Ok(value) => {
                    assert_eq!(value, 9, "{mode}: the first call's answer");
                    executor
                        .submit(square_number(4))
                        .error_timeout(Duration::from_secs(60))
                        .expect("the second call fails")
                }
                Err(error) => error,
            }
        } else {
            first
                .error_timeout(Duration::from_secs(60))
                .expect("the call fails")
        };
        drop(executor);
        attempts += 1;
        match &error {
            Error::Broken { reason } if reason.contains("Text file busy") && attempts < 100 => {}
            _ => break error,
        }
    };
    let _ = std::fs::remove_file(script);
    error
}

fn assert_killed(mode: &str) {
    let error = error_from_a_worker_that_sends(mode);
    eprintln!("{mode}: {error:?}");
    assert!(
        matches!(
            error,
            Error::WorkerDied {
                signal: Some(9),
                ..
            }
        ),
        "{mode}: {error:?}"
    );
}

/// Workers that take the call and exit before starting it leave no task to blame: the call
/// goes to the next worker, and after three in a row the pool breaks instead of starting
/// workers forever.
#[test]
fn workers_that_exit_before_starting_their_call_break_the_pool() {
    let error = error_from_a_worker_that_sends("leave");
    match &error {
        Error::Broken { reason } => assert!(
            reason.contains("3 worker processes in a row exited after being sent work and before starting any of it"),
            "{reason}"
        ),
        other => panic!("expected Broken, got {other:?}"),
    }
}

#[test]
fn a_frame_of_an_unknown_kind_gets_the_worker_killed() {
    assert_killed("unknown-kind");
}

/// The same, with the answer read by the caller blocked on it (the call was handed to the
/// idle worker, see `tests/process_pool_leader.rs`) rather than by the connection thread.
#[test]
fn a_frame_of_an_unknown_kind_read_by_a_leading_caller_gets_the_worker_killed() {
    assert_killed("warm-unknown-kind");
}

#[test]
fn a_result_for_a_task_never_sent_read_by_a_leading_caller_gets_the_worker_killed() {
    assert_killed("warm-unknown-task");
}

#[test]
fn a_gigantic_length_prefix_gets_the_worker_killed() {
    assert_killed("gigantic");
}

#[test]
fn a_result_for_a_task_never_sent_gets_the_worker_killed() {
    assert_killed("unknown-task");
}

#[test]
fn a_result_cut_short_by_the_workers_exit_fails_the_task() {
    let error = error_from_a_worker_that_sends("cut");
    eprintln!("cut: {error:?}");
    assert!(
        matches!(
            error,
            Error::WorkerDied {
                exit_code: Some(0),
                ..
            } | Error::WorkerDied {
                signal: Some(9),
                ..
            }
        ),
        "{error:?}"
    );
}
