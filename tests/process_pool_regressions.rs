//! Regressions found in review: done callbacks that call back into their pool, a program whose
//! workers block before `init()`, and a thread-pool submit racing its shutdown.

use std::io::Write;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use concurrent_futures::{Error, ProcessPoolExecutor, ThreadPoolExecutor, task};

mod common;
use common::one_worker_held;

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[test]
fn a_done_callback_of_a_cancelled_future_may_use_its_pool() {
    let (executor, running, mut started) = one_worker_held("cancel-callback");
    // Queued in the pool (depth 1: nothing is sent behind a running task).
    let queued = executor.submit(square_number(3));
    let (told, heard) = mpsc::channel();
    let pool = Arc::clone(&executor);
    queued.add_done_callback(move |future| {
        // Runs while the pool cancels: it must not hold its lock around this.
        told.send((future.cancelled(), pool.worker_pids().len()))
            .unwrap();
    });

    executor.shutdown(false, true);
    assert_eq!(heard.recv_timeout(Duration::from_secs(60)), Ok((true, 1)));
    started.write_all(b"r").unwrap();
    assert!(running.result().is_ok());
}

#[test]
fn shutdown_with_wait_inside_a_done_callback_does_not_deadlock() {
    let executor = Arc::new(ProcessPoolExecutor::new(1));
    let (told, heard) = mpsc::channel();
    let pool = Arc::clone(&executor);
    let future = executor.submit(square_number(4));
    future.add_done_callback(move |future| {
        // Runs on one of the pool's own threads.
        pool.shutdown(true, false);
        told.send(future.result()).unwrap();
    });
    assert_eq!(heard.recv_timeout(Duration::from_secs(60)), Ok(Ok(16)));
    assert_eq!(
        executor.submit(square_number(5)).result(),
        Err(Error::ShutDown)
    );
}

#[test]
fn workers_that_never_reach_init_are_killed_and_break_the_pool() {
    // `sort` reads its stdin, the pool's socket, and never answers: a program whose main
    // blocks on stdin before init(). The pool must neither hang nor keep respawning.
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .executable("/usr/bin/sort")
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    match executor.submit(square_number(2)).result() {
        Err(Error::Broken { reason }) => {
            assert!(reason.contains("init()"), "{reason}");
            assert!(reason.contains("3 worker processes in a row"), "{reason}");
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert!(executor.worker_pids().is_empty());
}

#[test]
fn a_submit_racing_shutdown_either_fails_or_is_waited_for() {
    for _ in 0..3000 {
        let executor = Arc::new(ThreadPoolExecutor::new(1));
        let submitter = {
            let executor = Arc::clone(&executor);
            std::thread::spawn(move || executor.submit(square_number(7)))
        };
        executor.shutdown(true, false);
        let future = submitter.join().unwrap();
        // Refused, or accepted before the shutdown and then waited for by it.
        assert!(future.done(), "{future:?} accepted but not waited for");
        match future.result() {
            Ok(49) | Err(Error::ShutDown) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
