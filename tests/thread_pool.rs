//! `ThreadPoolExecutor` and the `Executor` trait: Python's `Executor` and
//! `ThreadPoolExecutor` (PYTHON.md §1.4, §1.5).
//!
//! Tasks are held by a gate the test opens and report their start on a channel, so no test
//! sleeps; every gate opens itself when dropped, so a failed assertion cannot hang the
//! executor's drop.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use concurrent_futures::{Error, Executor, Future, State, ThreadPoolExecutor, task};

mod common;
use common::Gate;
use common::second_shutdown::race_a_second_shutdown;

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn checked_half(x: u64) -> Result<u64, String> {
    if x % 2 == 0 {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

/// Spawns a task that reports `id` on `started`, waits for `gate`, then returns `id`.
fn spawn_held(
    executor: &ThreadPoolExecutor,
    gate: &Gate,
    started: &mpsc::Sender<usize>,
    id: usize,
) -> Future<usize> {
    let hold = gate.handle();
    let started = started.clone();
    executor.spawn(move || {
        started.send(id).unwrap();
        hold.wait();
        id
    })
}

/// A pool of one thread, busy with `running` (started, held by the gate) and `queued` behind it.
fn one_running_one_queued() -> (Arc<ThreadPoolExecutor>, Gate, Future<usize>, Future<usize>) {
    let executor = Arc::new(ThreadPoolExecutor::new(1));
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 0);
    let queued = spawn_held(&executor, &gate, &started_tx, 1);
    assert_eq!(started_rx.recv(), Ok(0));
    (executor, gate, running, queued)
}

fn current_thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

// ---------------------------------------------------------------------------------------
// submit / spawn
// ---------------------------------------------------------------------------------------

#[test]
fn submit_task_value_returns_its_result() {
    let executor = ThreadPoolExecutor::new(3);
    let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    let results: Vec<u64> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
}

#[test]
fn task_returning_err_resolves_to_ok_err() {
    let executor = ThreadPoolExecutor::new(2);
    let even = executor.submit(checked_half(8));
    let odd = executor.submit(checked_half(7));
    assert_eq!(even.result(), Ok(Ok(4)));
    // The task's own error is typed data, not the executor's Error.
    assert_eq!(odd.result(), Ok(Err("7 is odd".to_owned())));
}

#[test]
fn spawn_closure_returns_its_value() {
    let executor = ThreadPoolExecutor::new(2);
    let owned = String::from("moved into the closure");
    let future = executor.spawn(move || owned.len());
    assert_eq!(future.result(), Ok(22));
    assert_eq!(future.state(), State::Finished);
}

#[test]
fn executor_trait_submit_is_generic_over_pools() {
    fn squares(executor: &impl Executor, n: u64) -> Vec<u64> {
        let futures: Vec<_> = (0..n).map(|i| executor.submit(square_number(i))).collect();
        futures.into_iter().map(|f| f.join().unwrap()).collect()
    }
    let executor = ThreadPoolExecutor::new(2);
    assert_eq!(squares(&executor, 4), [0, 1, 4, 9]);
    Executor::shutdown(&executor, true, false);
    assert_eq!(
        Executor::submit(&executor, square_number(2)).result(),
        Err(Error::ShutDown)
    );
}

#[test]
fn submit_never_blocks_when_all_threads_are_busy() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let hold = gate.handle();
    let first = executor.spawn(move || {
        hold.wait();
        0
    });
    // The queue is unbounded: a thousand submits return while the only thread is held.
    let queued: Vec<_> = (1..=1000).map(|i| executor.spawn(move || i)).collect();
    assert!(queued.iter().all(|f| !f.done()));
    assert_eq!(executor.thread_count(), 1);
    gate.open();
    assert_eq!(first.result(), Ok(0));
    let sum: i32 = queued.iter().map(|f| f.result().unwrap()).sum();
    assert_eq!(sum, 1000 * 1001 / 2);
}

#[test]
fn queued_tasks_run_in_submission_order() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let hold = gate.handle();
    executor.spawn(move || hold.wait());
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..8 {
        let order = Arc::clone(&order);
        executor.spawn(move || order.lock().unwrap().push(i));
    }
    gate.open();
    executor.shutdown(true, false);
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[test]
fn running_task_future_is_running_and_cannot_be_cancelled() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let future = spawn_held(&executor, &gate, &started_tx, 1);
    started_rx.recv().unwrap();
    assert!(future.running());
    assert_eq!(future.state(), State::Running);
    assert!(!future.done());
    assert!(!future.cancel(), "cancel returns false once running");
    assert!(!future.cancelled());
    gate.open();
    assert_eq!(future.result(), Ok(1));
    assert_eq!(future.state(), State::Finished);
}

#[test]
fn cancelled_queued_task_never_runs() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 1);
    started_rx.recv().unwrap();
    let (ran_tx, ran_rx) = mpsc::channel::<()>();
    let queued = executor.spawn(move || ran_tx.send(()).unwrap());
    assert!(queued.cancel(), "a queued task is still pending");
    assert!(queued.cancelled());
    gate.open();
    assert_eq!(running.result(), Ok(1));
    executor.shutdown(true, false);
    // The closure was dropped without running: its sender is gone, nothing was sent.
    assert_eq!(ran_rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(queued.result(), Err(Error::Cancelled));
}

#[test]
fn submitter_thread_locals_are_not_copied_into_tasks() {
    // Python's contextvars are not copied per submit; here, thread-locals are not either.
    thread_local! {
        static REQUEST_ID: Cell<u32> = const { Cell::new(0) };
    }
    REQUEST_ID.with(|id| id.set(7));
    let executor = ThreadPoolExecutor::new(1);
    let seen = executor.spawn(|| REQUEST_ID.with(Cell::get));
    assert_eq!(seen.result(), Ok(0));
    assert_eq!(REQUEST_ID.with(Cell::get), 7);
}

// ---------------------------------------------------------------------------------------
// Task failures
// ---------------------------------------------------------------------------------------

#[test]
fn panicking_task_leaves_thread_alive() {
    let executor = ThreadPoolExecutor::new(1);
    let (name_tx, name_rx) = mpsc::channel();
    let failing = executor.spawn(move || -> String {
        name_tx.send(current_thread_name()).unwrap();
        panic!("task panics on purpose")
    });
    let error = failing.result().unwrap_err();
    assert!(error.is_panic(), "{error:?}");
    let panicked_in = name_rx.recv().unwrap();
    // The same single thread runs the next task: it survived the panic.
    assert_eq!(
        executor.spawn(current_thread_name).result(),
        Ok(panicked_in)
    );
    assert_eq!(executor.thread_count(), 1);
}

#[test]
fn panic_error_carries_message_and_location() {
    let executor = ThreadPoolExecutor::new(1);
    let future = executor.spawn(|| -> u8 { panic!("bad input {}", 42) });
    match future.result() {
        Err(Error::Panicked {
            message, location, ..
        }) => {
            assert_eq!(message, "bad input 42");
            let location = location.expect("the panic hook records the location");
            assert!(location.contains("thread_pool.rs"), "{location}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let display = future.error().unwrap().to_string();
    assert!(display.starts_with("task panicked"), "{display}");
    assert!(display.ends_with(": bad input 42"), "{display}");
}

#[test]
fn panic_with_non_string_payload_is_still_a_panic() {
    let executor = ThreadPoolExecutor::new(1);
    let future = executor.spawn(|| -> u8 { panic::panic_any(17_u32) });
    let error = future.result().unwrap_err();
    assert!(error.is_panic(), "{error:?}");
}

#[test]
fn task_failure_does_not_break_the_pool() {
    let executor = ThreadPoolExecutor::new(2);
    let failures: Vec<_> = (0..4)
        .map(|i| executor.spawn(move || -> u64 { panic!("failure {i}") }))
        .collect();
    for failure in &failures {
        assert!(failure.result().unwrap_err().is_panic());
    }
    let after: Vec<_> = (0..4).map(|i| executor.submit(square_number(i))).collect();
    let results: Vec<_> = after.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 4, 9]);
}

// ---------------------------------------------------------------------------------------
// Threads: lazy start, reuse, limits, names
// ---------------------------------------------------------------------------------------

#[test]
fn threads_start_lazily() {
    let executor = ThreadPoolExecutor::new(4);
    assert_eq!(
        executor.thread_count(),
        0,
        "no thread before the first submit"
    );
    executor.spawn(|| ()).result().unwrap();
    assert_eq!(executor.thread_count(), 1);
}

#[test]
fn three_blocked_tasks_start_exactly_three_threads() {
    let executor = ThreadPoolExecutor::new(10);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let futures: Vec<_> = (0..3)
        .map(|i| spawn_held(&executor, &gate, &started_tx, i))
        .collect();
    for _ in 0..3 {
        started_rx.recv().unwrap();
    }
    assert_eq!(executor.thread_count(), 3);
    gate.open();
    let results: Vec<_> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 2]);
    assert_eq!(executor.thread_count(), 3);
}

#[test]
fn sequential_submit_and_result_reuses_one_thread() {
    let executor = ThreadPoolExecutor::new(5);
    let names: Vec<String> = (0..3)
        .map(|_| executor.spawn(current_thread_name).result().unwrap())
        .collect();
    assert_eq!(
        executor.thread_count(),
        1,
        "an idle thread was always there"
    );
    assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
}

#[test]
fn saturation_starts_exactly_max_workers_threads() {
    let executor = ThreadPoolExecutor::new(4);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let futures: Vec<_> = (0..12)
        .map(|i| {
            let hold = gate.handle();
            let started = started_tx.clone();
            executor.spawn(move || {
                started.send(i).unwrap();
                hold.wait();
                current_thread_name()
            })
        })
        .collect();
    assert_eq!(executor.thread_count(), 4, "threads start at submit time");
    for _ in 0..4 {
        started_rx.recv().unwrap();
    }
    gate.open();
    let names: BTreeSet<String> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(executor.thread_count(), 4);
}

#[test]
fn max_workers_tasks_run_at_the_same_time() {
    // Each task waits for all the others: it only completes if all run concurrently.
    let executor = ThreadPoolExecutor::new(3);
    let barrier = Arc::new(Barrier::new(3));
    let futures: Vec<_> = (0..3)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            executor.spawn(move || {
                barrier.wait();
                i
            })
        })
        .collect();
    let results: Vec<_> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 2]);
}

#[test]
fn thread_names_are_prefix_underscore_index() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(3)
        .thread_name_prefix("resizer")
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let futures: Vec<_> = (0..3)
        .map(|i| {
            let hold = gate.handle();
            let started = started_tx.clone();
            executor.spawn(move || {
                started.send(i).unwrap();
                hold.wait();
                current_thread_name()
            })
        })
        .collect();
    for _ in 0..3 {
        started_rx.recv().unwrap();
    }
    gate.open();
    let names: BTreeSet<String> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "resizer_0".to_owned(),
            "resizer_1".to_owned(),
            "resizer_2".to_owned()
        ])
    );
}

#[test]
fn default_thread_name_prefix_is_thread_pool_executor_n() {
    let prefix_number = |executor: &ThreadPoolExecutor| -> u64 {
        let name = executor.spawn(current_thread_name).result().unwrap();
        let rest = name
            .strip_prefix("ThreadPoolExecutor-")
            .unwrap_or_else(|| panic!("unexpected default name {name:?}"));
        let (n, index) = rest.split_once('_').expect("`{prefix}_{i}`");
        assert_eq!(index, "0");
        n.parse().expect("a pool number")
    };
    let first = ThreadPoolExecutor::new(1);
    let second = ThreadPoolExecutor::new(1);
    let a = prefix_number(&first);
    let b = prefix_number(&second);
    assert_ne!(a, b, "each pool gets the next number of a global counter");
}

#[test]
fn default_max_workers_is_min_32_cpus_plus_4() {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let expected = 32.min(cpus + 4);
    let built = ThreadPoolExecutor::builder().build().unwrap();
    assert_eq!(built.max_workers(), expected);
    assert_eq!(ThreadPoolExecutor::default().max_workers(), expected);
}

#[test]
fn new_sets_max_workers() {
    assert_eq!(ThreadPoolExecutor::new(3).max_workers(), 3);
    let built = ThreadPoolExecutor::builder()
        .max_workers(7)
        .build()
        .unwrap();
    assert_eq!(built.max_workers(), 7);
}

#[test]
fn zero_max_workers_is_rejected_by_builder() {
    let error = ThreadPoolExecutor::builder()
        .max_workers(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidArgument { message } if message == "max_workers must be greater than 0"),
        "{error:?}"
    );
}

#[test]
#[should_panic(expected = "max_workers must be greater than 0")]
fn zero_max_workers_panics_in_new() {
    let _ = ThreadPoolExecutor::new(0);
}

// ---------------------------------------------------------------------------------------
// Initializer
// ---------------------------------------------------------------------------------------

#[test]
fn initializer_runs_once_per_thread_before_tasks() {
    thread_local! {
        static INITIALIZED: Cell<bool> = const { Cell::new(false) };
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let executor = ThreadPoolExecutor::builder()
        .max_workers(3)
        .thread_name_prefix("init-once")
        .initializer(move || {
            assert!(current_thread_name().starts_with("init-once_"));
            INITIALIZED.with(|i| i.set(true));
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let held: Vec<_> = (0..3)
        .map(|i| {
            let hold = gate.handle();
            let started = started_tx.clone();
            executor.spawn(move || {
                started.send(i).unwrap();
                hold.wait();
                INITIALIZED.with(Cell::get)
            })
        })
        .collect();
    for _ in 0..3 {
        started_rx.recv().unwrap();
    }
    gate.open();
    assert!(held.iter().all(|f| f.result() == Ok(true)));
    for _ in 0..5 {
        assert_eq!(
            executor.spawn(|| INITIALIZED.with(Cell::get)).result(),
            Ok(true)
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "once per thread, three threads"
    );
}

#[test]
fn initializer_returning_ok_leaves_pool_usable() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| -> Result<(), String> { Ok(()) })
        .build()
        .unwrap();
    assert_eq!(executor.submit(square_number(5)).result(), Ok(25));
}

#[test]
fn initializer_failure_breaks_pool_and_fails_queued_futures() {
    // The initializer fails only once every task is queued behind it.
    let all_queued = Gate::new();
    let hold = all_queued.handle();
    let executor = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(move || -> Result<(), String> {
            hold.wait();
            Err("no database".to_owned())
        })
        .build()
        .unwrap();
    let (ran_tx, ran_rx) = mpsc::channel::<usize>();
    let futures: Vec<_> = (0..MANY)
        .map(|i| {
            let ran = ran_tx.clone();
            executor.spawn(move || ran.send(i).unwrap())
        })
        .collect();
    drop(ran_tx);
    assert!(futures.iter().all(|f| f.state() == State::Pending));
    all_queued.open();
    for future in &futures {
        match future.result() {
            Err(Error::Broken { reason }) => assert!(reason.contains("no database"), "{reason}"),
            other => panic!("expected Broken, got {other:?}"),
        }
    }
    executor.shutdown(true, false);
    assert_eq!(
        ran_rx.try_recv(),
        Err(TryRecvError::Disconnected),
        "no task ran"
    );
}

#[test]
fn broken_pool_fails_later_submits_immediately() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| -> Result<(), String> { Err("bad config".to_owned()) })
        .build()
        .unwrap();
    let first = executor.spawn(|| 1);
    assert!(first.result().unwrap_err().is_broken());
    // Broken is now known: a later submit is failed before it returns.
    let later = executor.submit(square_number(3));
    assert!(later.done());
    assert!(later.result().unwrap_err().is_broken());
    let later_spawn = executor.spawn(|| 2);
    assert!(later_spawn.done());
    let message = later_spawn.error().unwrap().to_string();
    assert!(message.contains("bad config"), "{message}");
}

#[test]
fn panicking_initializer_breaks_pool() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(|| -> Result<(), String> { panic!("initializer panics on purpose") })
        .build()
        .unwrap();
    let future = executor.spawn(|| 1);
    match future.result() {
        Err(Error::Broken { reason }) => {
            assert!(reason.contains("initializer panics on purpose"), "{reason}");
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert!(executor.spawn(|| 2).result().unwrap_err().is_broken());
}

// ---------------------------------------------------------------------------------------
// Shutdown and drop
// ---------------------------------------------------------------------------------------

#[test]
fn submit_after_shutdown_fails_with_shut_down() {
    let executor = ThreadPoolExecutor::new(2);
    executor.shutdown(true, false);
    let submitted = executor.submit(square_number(4));
    assert!(submitted.done(), "failed before submit returns");
    assert_eq!(submitted.result(), Err(Error::ShutDown));
    let spawned = executor.spawn(|| 1);
    assert!(spawned.result().unwrap_err().is_shut_down());
    assert_eq!(executor.thread_count(), 0, "nothing was started for them");
}

#[test]
fn shut_down_error_message_is_pythons() {
    let executor = ThreadPoolExecutor::new(1);
    executor.shutdown(false, false);
    let error = executor.spawn(|| ()).error().unwrap();
    assert_eq!(
        error.to_string(),
        "cannot schedule new futures after shutdown"
    );
}

#[test]
fn shutdown_is_idempotent() {
    let executor = ThreadPoolExecutor::new(2);
    assert_eq!(executor.spawn(|| 1).result(), Ok(1));
    executor.shutdown(true, false);
    executor.shutdown(true, false);
    executor.shutdown(false, true);
    executor.shutdown(true, true);
    assert_eq!(executor.spawn(|| 2).result(), Err(Error::ShutDown));
    drop(executor); // and the drop's own shutdown after all of them
}

#[test]
fn shutdown_wait_blocks_until_submitted_work_finishes() {
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let (started_tx, _started_rx) = mpsc::channel();
    let futures: Vec<_> = (0..5)
        .map(|i| spawn_held(&executor, &gate, &started_tx, i))
        .collect();
    let all_done_at_return = thread::scope(|s| {
        let shutter = s.spawn(|| {
            executor.shutdown(true, false);
            futures.iter().all(Future::done)
        });
        gate.open();
        shutter.join().unwrap()
    });
    assert!(all_done_at_return);
    let results: Vec<_> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 2, 3, 4]);
}

#[test]
fn shutdown_without_wait_returns_while_work_runs_and_queued_work_still_runs() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 1);
    let queued = spawn_held(&executor, &gate, &started_tx, 2);
    started_rx.recv().unwrap();
    executor.shutdown(false, false);
    // Returned while the held task cannot have finished.
    assert!(!running.done());
    assert!(!queued.done());
    assert!(executor.spawn(|| 0).result().unwrap_err().is_shut_down());
    gate.open();
    assert_eq!(running.result(), Ok(1));
    assert_eq!(
        queued.result(),
        Ok(2),
        "queued work runs after shutdown(wait = false)"
    );
}

#[test]
fn shutdown_cancel_futures_cancels_queued_only() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 0);
    let queued: Vec<_> = (1..4)
        .map(|i| spawn_held(&executor, &gate, &started_tx, i))
        .collect();
    assert_eq!(started_rx.recv(), Ok(0));
    executor.shutdown(false, true);
    assert!(
        queued.iter().all(Future::cancelled),
        "cancelled by the time shutdown returns"
    );
    assert_eq!(
        running.state(),
        State::Running,
        "a started task is untouched"
    );
    gate.open();
    assert_eq!(running.result(), Ok(0));
    for future in &queued {
        assert_eq!(future.result(), Err(Error::Cancelled));
    }
    executor.shutdown(true, false);
    assert!(started_rx.try_recv().is_err(), "no cancelled task started");
}

#[test]
fn shutdown_wait_and_cancel_futures_completes_started_work() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 0);
    let queued: Vec<_> = (1..3)
        .map(|i| spawn_held(&executor, &gate, &started_tx, i))
        .collect();
    assert_eq!(started_rx.recv(), Ok(0));
    // Once shutdown has cancelled the last queued task, let the running one finish.
    let open = gate.handle();
    queued[1].add_done_callback(move |_| open.set());
    executor.shutdown(true, true);
    // Returned only after the started task completed.
    assert_eq!(running.state(), State::Finished);
    assert_eq!(running.result(), Ok(0));
    assert!(queued.iter().all(Future::cancelled));
}

// Far more queued tasks than the pool's queue keeps in its ring (1,024): the rest wait in its
// overflow list, and must behave the same.
const MANY: usize = 5_000;

#[test]
fn many_queued_tasks_run_in_submission_order() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let hold = gate.handle();
    executor.spawn(move || hold.wait());
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..MANY {
        let order = Arc::clone(&order);
        executor.spawn(move || order.lock().unwrap().push(i));
    }
    gate.open();
    executor.shutdown(true, false);
    assert_eq!(*order.lock().unwrap(), (0..MANY).collect::<Vec<_>>());
}

/// Holds each of the pool's `threads` threads with a task on `gate`, once all have started.
fn occupy(executor: &ThreadPoolExecutor, gate: &Gate, threads: usize) -> Vec<Future<usize>> {
    let (started_tx, started_rx) = mpsc::channel();
    let held: Vec<_> = (0..threads)
        .map(|i| spawn_held(executor, gate, &started_tx, i))
        .collect();
    for _ in 0..threads {
        started_rx.recv().unwrap();
    }
    held
}

#[test]
fn shutdown_without_wait_still_runs_many_queued_tasks() {
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let held = occupy(&executor, &gate, 2);
    let queued: Vec<_> = (0..MANY).map(|i| executor.spawn(move || i)).collect();
    executor.shutdown(false, false);
    assert!(executor.spawn(|| 0).result().unwrap_err().is_shut_down());
    gate.open();
    assert_eq!(held.iter().map(|f| f.result().unwrap()).sum::<usize>(), 1);
    for (i, future) in queued.iter().enumerate() {
        assert_eq!(future.result(), Ok(i));
    }
    executor.shutdown(true, false);
    assert_eq!(executor.thread_count(), 2);
}

#[test]
fn shutdown_cancel_futures_cancels_many_queued_tasks() {
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let held = occupy(&executor, &gate, 2);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..MANY)
        .map(|_| {
            let ran = Arc::clone(&ran);
            executor.spawn(move || ran.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    executor.shutdown(false, true);
    assert!(queued.iter().all(Future::cancelled));
    gate.open();
    executor.shutdown(true, false);
    assert!(held.iter().all(|f| f.result().is_ok()));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "no cancelled task ran");
}

#[test]
fn shutdown_wait_joins_worker_threads() {
    /// Reports when its thread exits: thread-locals are destroyed as the thread ends.
    struct ExitGuard(mpsc::Sender<String>);
    impl Drop for ExitGuard {
        fn drop(&mut self) {
            let _ = self.0.send(current_thread_name());
        }
    }
    thread_local! {
        static GUARD: RefCell<Option<ExitGuard>> = const { RefCell::new(None) };
    }
    let (exit_tx, exit_rx) = mpsc::channel();
    let executor = ThreadPoolExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("joined")
        .initializer(move || GUARD.with(|g| *g.borrow_mut() = Some(ExitGuard(exit_tx.clone()))))
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let futures: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            executor.spawn(move || {
                barrier.wait();
            })
        })
        .collect();
    for future in &futures {
        future.result().unwrap();
    }
    executor.shutdown(true, false);
    // Both threads have exited by the time shutdown returns.
    let exited: BTreeSet<String> = exit_rx.try_iter().collect();
    assert_eq!(
        exited,
        BTreeSet::from(["joined_0".to_owned(), "joined_1".to_owned()])
    );
}

#[test]
fn drop_waits_for_submitted_work() {
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let (started_tx, _started_rx) = mpsc::channel();
    let futures: Vec<_> = (0..4)
        .map(|i| spawn_held(&executor, &gate, &started_tx, i))
        .collect();
    let all_done_after_drop = thread::scope(|s| {
        let futures = &futures;
        let dropper = s.spawn(move || {
            drop(executor);
            futures.iter().all(Future::done)
        });
        gate.open();
        dropper.join().unwrap()
    });
    assert!(all_done_after_drop);
    let results: Vec<_> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 2, 3]);
}

#[test]
fn drop_while_unwinding_waits_and_does_not_cancel_pending() {
    // Python's `__exit__` does not cancel pending futures when the body raised.
    let mut futures = Vec::new();
    let unwound = panic::catch_unwind(AssertUnwindSafe(|| {
        let executor = ThreadPoolExecutor::new(1);
        let gate = Gate::new(); // dropped (opened) before the executor
        let hold = gate.handle();
        futures.push(executor.spawn(move || {
            hold.wait();
            0
        }));
        for i in 1..5 {
            futures.push(executor.spawn(move || i));
        }
        panic!("the scope body panics on purpose");
    }));
    assert!(unwound.is_err());
    assert!(futures.iter().all(|f| f.state() == State::Finished));
    let results: Vec<_> = futures.iter().map(|f| f.result().unwrap()).collect();
    assert_eq!(results, [0, 1, 2, 3, 4]);
}

#[test]
fn shutdown_called_by_own_task_does_not_deadlock() {
    let executor = Arc::new(ThreadPoolExecutor::new(2));
    let pool = Arc::clone(&executor);
    let future = executor.spawn(move || {
        pool.shutdown(true, false);
        pool.spawn(|| 1).result()
    });
    assert_eq!(future.result(), Ok(Err(Error::ShutDown)));
    assert!(executor.spawn(|| 2).result().unwrap_err().is_shut_down());
}

#[test]
fn executor_debug_reports_configuration_and_state() {
    let executor = ThreadPoolExecutor::new(2);
    let before = format!("{executor:?}");
    assert!(before.starts_with("ThreadPoolExecutor"), "{before}");
    assert!(before.contains("max_workers: 2"), "{before}");
    assert!(before.contains("shut_down: false"), "{before}");
    executor.shutdown(true, false);
    let after = format!("{executor:?}");
    assert!(after.contains("shut_down: true"), "{after}");
    let builder = format!("{:?}", ThreadPoolExecutor::builder().max_workers(3));
    assert!(builder.contains("max_workers: Some(3)"), "{builder}");
}

/// `queued` counts tasks waiting to run. The threads' exit markers are no tasks: neither
/// those shutdown queues for threads still busy, nor one left by a thread that exited early.
#[test]
fn executor_debug_queued_counts_tasks_only() {
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 0);
    let queued = spawn_held(&executor, &gate, &started_tx, 1);
    assert_eq!(started_rx.recv(), Ok(0));
    let before = format!("{executor:?}");
    assert!(before.contains("queued: 1"), "{before}");
    executor.shutdown(false, false);
    let shut = format!("{executor:?}");
    assert!(shut.contains("queued: 1"), "{shut}");
    gate.open();
    assert_eq!((running.result(), queued.result()), (Ok(0), Ok(1)));
    executor.shutdown(true, false);
    let after = format!("{executor:?}");
    assert!(after.contains("queued: 0"), "{after}");

    // A thread whose initializer failed exits without taking its marker.
    let broken = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(|| Err::<(), _>("no database"))
        .build()
        .unwrap();
    assert!(matches!(
        broken.spawn(|| 1).result(),
        Err(Error::Broken { .. })
    ));
    broken.shutdown(true, false);
    let shown = format!("{broken:?}");
    assert!(shown.contains("queued: 0"), "{shown}");
}

/// `shutdown(cancel_futures = true)` cancels queued futures in the calling thread, which
/// runs their done callbacks: a callback that uses the pool (submits, shows it) gets its
/// answer, as any callback would, rather than waiting on a lock its own thread holds.
#[test]
fn cancel_futures_callbacks_may_use_the_pool() {
    let (executor, gate, running, queued) = one_running_one_queued();
    let pool = Arc::clone(&executor);
    let (seen_tx, seen_rx) = mpsc::channel();
    queued.add_done_callback(move |_| {
        let refused = pool.spawn(|| 2).result();
        seen_tx.send((refused, format!("{pool:?}"))).unwrap();
    });
    // In a thread of its own, so that a deadlock fails this test instead of hanging the run:
    // the timeout below only ever expires on that failure, never paces the test.
    let shutting = Arc::clone(&executor);
    let shutdown = thread::spawn(move || shutting.shutdown(false, true));
    let (refused, shown) = seen_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the cancelled future's callback ran to its end");
    assert_eq!(refused, Err(Error::ShutDown));
    assert!(shown.contains("shut_down: true"), "{shown}");
    shutdown.join().unwrap();
    assert_eq!(queued.result(), Err(Error::Cancelled));
    gate.open();
    assert_eq!(running.result(), Ok(0));
}

/// `shutdown(cancel_futures = true)` cancels the queued futures after releasing the pool's
/// lock (their callbacks may use the pool). Another caller's `shutdown(wait = true)` made
/// meanwhile still returns only once every one of them is cancelled, as in Python, where the
/// cancelling happens under the shutdown lock. Here the second call starts from the first
/// future's done callback, with the second future not yet cancelled; the callback gives it
/// half a second to return early (it did, before the fix, as soon as the pool thread exited).
#[test]
fn a_concurrent_shutdown_wait_returns_after_the_other_caller_s_cancellations() {
    let executor = Arc::new(ThreadPoolExecutor::new(1));
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 0);
    let first = spawn_held(&executor, &gate, &started_tx, 1);
    let second = spawn_held(&executor, &gate, &started_tx, 2);
    assert_eq!(started_rx.recv(), Ok(0));
    // The pool thread may finish its task and exit once the cancelling has begun.
    let open = gate.handle();
    let race = race_a_second_shutdown(&executor, &first, &second, move || open.set());
    executor.shutdown(false, true);

    race.check();
    assert_eq!(running.result(), Ok(0));
    assert_eq!(first.result(), Err(Error::Cancelled));
    assert_eq!(second.result(), Err(Error::Cancelled));
}

/// The waiting above is for other callers only: a done callback that runs during the
/// cancellations and itself calls `shutdown(wait = true)` (in the cancelling thread) returns
/// once the pool's threads are gone, rather than waiting for the cancellations it is part of.
#[test]
fn a_cancelled_future_s_callback_may_shut_the_pool_down_and_wait() {
    let (executor, gate, running, queued) = one_running_one_queued();
    let pool = Arc::clone(&executor);
    let open = gate.handle();
    let (returned_tx, returned_rx) = mpsc::channel();
    queued.add_done_callback(move |_| {
        open.set();
        pool.shutdown(true, false);
        returned_tx.send(()).unwrap();
    });
    // In a thread of its own, so that a deadlock fails this test instead of hanging the run:
    // the timeout below only ever expires on that failure, never paces the test.
    let shutting = Arc::clone(&executor);
    let shutdown = thread::spawn(move || shutting.shutdown(false, true));
    returned_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the callback's shutdown(wait = true) returned");
    shutdown.join().unwrap();
    assert_eq!(running.result(), Ok(0));
    assert_eq!(queued.result(), Err(Error::Cancelled));
}
