//! `wait` and `as_completed` (PYTHON.md §1.8), with this crate's deliberate difference: a
//! cancelled future counts as done the moment `cancel()` returns true.
//!
//! "Does not return early" is checked with a short timeout and a lower bound on the elapsed
//! time, which load can only make larger; nothing here sleeps.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{
    Error, Future, ReturnWhen, State, ThreadPoolExecutor, Waitable, as_completed,
    as_completed_timeout, wait,
};

mod common;
use common::Gate;

/// Short: only used where the behaviour under test is the timeout itself.
const SHORT: Duration = Duration::from_millis(20);

/// A task that reports its start on `started`, then waits for `gate`.
fn spawn_held<T: Send + 'static>(
    executor: &ThreadPoolExecutor,
    gate: &Gate,
    started: &mpsc::Sender<()>,
    value: T,
) -> Future<T> {
    let hold = gate.handle();
    let started = started.clone();
    executor.spawn(move || {
        started.send(()).unwrap();
        hold.wait();
        value
    })
}

fn finished<T>(value: T) -> Future<T> {
    let future = Future::new();
    future.set_result(value).unwrap();
    future
}

fn failed<T>() -> Future<T> {
    let future = Future::new();
    future.set_exception(Error::ShutDown).unwrap();
    future
}

fn cancelled<T>() -> Future<T> {
    let future = Future::new();
    assert!(future.cancel());
    future
}

/// Whether `a` and `b` are handles to the same future (same `Debug` address).
fn same<T>(a: &Future<T>, b: &Future<T>) -> bool {
    let address = |f: &Future<T>| {
        format!("{f:?}")
            .split_whitespace()
            .nth(2)
            .map(str::to_owned)
    };
    address(a) == address(b)
}

// ---------------------------------------------------------------------------------------
// wait
// ---------------------------------------------------------------------------------------

#[test]
fn wait_all_completed_returns_when_all_are_done() {
    let a = finished(1_u8);
    let b: Future<u8> = Future::new();
    let c: Future<u8> = Future::new();
    let split = thread::scope(|s| {
        let waiter = s.spawn(|| wait([&a, &b, &c], ReturnWhen::AllCompleted, None));
        b.set_result(2).unwrap();
        c.set_exception(Error::ShutDown).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(split.done.len(), 3);
    assert!(split.not_done.is_empty());
}

#[test]
fn wait_all_completed_on_pool_tasks() {
    let executor = ThreadPoolExecutor::new(3);
    let futures: Vec<_> = (0..10_u64).map(|i| executor.spawn(move || i * i)).collect();
    let split = wait(&futures, ReturnWhen::AllCompleted, None);
    assert_eq!(split.done.len(), 10);
    assert!(split.not_done.is_empty());
    assert!(futures.iter().all(Future::done));
    let total: u64 = futures.iter().map(|f| f.result().unwrap()).sum();
    assert_eq!(total, 285);
}

#[test]
fn wait_all_completed_is_the_default() {
    assert_eq!(ReturnWhen::default(), ReturnWhen::AllCompleted);
}

#[test]
fn wait_all_completed_does_not_return_while_one_is_pending() {
    let done = finished(1_u8);
    let never: Future<u8> = Future::new();
    let start = Instant::now();
    let split = wait([&done, &never], ReturnWhen::AllCompleted, Some(SHORT));
    assert!(start.elapsed() >= SHORT, "returned before its timeout");
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &done));
    assert!(same(split.not_done[0], &never));
}

#[test]
fn wait_timeout_returns_partial_sets_without_error() {
    let done = finished(1_u8);
    let running: Future<u8> = Future::new();
    running.set_running_or_notify_cancel().unwrap();
    let pending: Future<u8> = Future::new();
    for return_when in [
        ReturnWhen::AllCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::FirstCompleted,
    ] {
        let split = wait([&running, &pending], return_when, Some(SHORT));
        assert!(split.done.is_empty(), "{return_when:?}");
        assert_eq!(split.not_done.len(), 2, "{return_when:?}");
    }
    let split = wait(
        [&done, &running, &pending],
        ReturnWhen::AllCompleted,
        Some(SHORT),
    );
    assert_eq!(split.done.len(), 1);
    assert_eq!(split.not_done.len(), 2);
    // The waited-on futures are untouched.
    assert_eq!(running.state(), State::Running);
    assert_eq!(pending.state(), State::Pending);
}

#[test]
fn wait_zero_timeout_polls() {
    let done = finished(1_u8);
    let never: Future<u8> = Future::new();
    let split = wait(
        [&never, &done],
        ReturnWhen::AllCompleted,
        Some(Duration::ZERO),
    );
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &done));
    assert_eq!(split.not_done.len(), 1);
}

#[test]
fn wait_first_completed_returns_on_first_completion() {
    let first: Future<u8> = Future::new();
    let never: Future<u8> = Future::new();
    let split = thread::scope(|s| {
        let waiter = s.spawn(|| wait([&never, &first], ReturnWhen::FirstCompleted, None));
        first.set_result(1).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &first));
    assert_eq!(split.not_done.len(), 1);
    assert!(same(split.not_done[0], &never));
}

#[test]
fn wait_first_completed_returns_at_once_if_any_is_already_done() {
    let never: Future<u8> = Future::new();
    let done = finished(3_u8);
    let split = wait([&never, &done], ReturnWhen::FirstCompleted, None);
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &done));
    assert!(same(split.not_done[0], &never));
}

#[test]
fn wait_returns_at_once_in_every_mode_when_all_are_done() {
    let ok = finished(1_u8);
    let cancelled = cancelled::<u8>();
    for return_when in [
        ReturnWhen::AllCompleted,
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
    ] {
        let split = wait([&ok, &cancelled], return_when, None);
        assert_eq!(split.done.len(), 2, "{return_when:?}");
        assert!(split.not_done.is_empty(), "{return_when:?}");
    }
}

#[test]
fn wait_first_exception_returns_on_first_failure() {
    let never: Future<u8> = Future::new();
    let fails: Future<u8> = Future::new();
    let split = thread::scope(|s| {
        let waiter = s.spawn(|| wait([&never, &fails], ReturnWhen::FirstException, None));
        fails.set_exception(Error::ShutDown).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &fails));
    assert!(same(split.not_done[0], &never));
}

#[test]
fn wait_first_exception_returns_at_once_if_a_done_future_failed() {
    let never: Future<u8> = Future::new();
    let ok = finished(1_u8);
    let bad = failed::<u8>();
    let split = wait([&never, &ok, &bad], ReturnWhen::FirstException, None);
    assert_eq!(split.done.len(), 2);
    assert_eq!(split.not_done.len(), 1);
    assert!(same(split.not_done[0], &never));
}

#[test]
fn wait_first_exception_on_pool_task_panic() {
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let (started_tx, _started_rx) = mpsc::channel();
    let held = spawn_held(&executor, &gate, &started_tx, 1_u8);
    let panics = executor.spawn(|| -> u8 { panic!("task panics on purpose") });
    let split = wait([&held, &panics], ReturnWhen::FirstException, None);
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &panics));
    assert!(split.done[0].result().unwrap_err().is_panic());
    assert!(same(split.not_done[0], &held));
}

#[test]
fn wait_first_exception_without_failure_waits_for_all() {
    let ok = finished(1_u8);
    let never: Future<u8> = Future::new();
    let start = Instant::now();
    let split = wait([&ok, &never], ReturnWhen::FirstException, Some(SHORT));
    assert!(start.elapsed() >= SHORT, "a success is not an exception");
    assert_eq!(split.done.len(), 1);
    assert_eq!(split.not_done.len(), 1);

    // ... and like AllCompleted, it returns once every future is done.
    let later: Future<u8> = Future::new();
    let split = thread::scope(|s| {
        let waiter = s.spawn(|| wait([&ok, &later], ReturnWhen::FirstException, None));
        later.set_result(2).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(split.done.len(), 2);
    assert!(split.not_done.is_empty());
}

#[test]
fn wait_first_exception_ignores_cancelled_futures() {
    let cancelled = cancelled::<u8>();
    let never: Future<u8> = Future::new();
    let start = Instant::now();
    let split = wait(
        [&cancelled, &never],
        ReturnWhen::FirstException,
        Some(SHORT),
    );
    assert!(
        start.elapsed() >= SHORT,
        "a cancellation is not an exception"
    );
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &cancelled));
    assert_eq!(split.not_done.len(), 1);
}

#[test]
fn wait_counts_duplicates_once() {
    let done = finished(1_u8);
    let pending: Future<u8> = Future::new();
    let clone = done.clone();
    let split = wait(
        [&done, &done, &clone, &pending, &pending],
        ReturnWhen::AllCompleted,
        Some(Duration::ZERO),
    );
    assert_eq!(split.done.len(), 1);
    assert_eq!(split.not_done.len(), 1);
}

#[test]
fn wait_returns_sets_in_input_order() {
    let futures: Vec<Future<u8>> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                finished(i)
            } else {
                Future::new()
            }
        })
        .collect();
    let split = wait(&futures, ReturnWhen::AllCompleted, Some(Duration::ZERO));
    assert!(same(split.done[0], &futures[0]));
    assert!(same(split.done[1], &futures[2]));
    assert!(same(split.done[2], &futures[4]));
    assert!(same(split.not_done[0], &futures[1]));
    assert!(same(split.not_done[1], &futures[3]));
    assert!(same(split.not_done[2], &futures[5]));
}

#[test]
fn wait_on_empty_input_returns_empty_sets() {
    let none: Vec<Future<u8>> = Vec::new();
    for return_when in [
        ReturnWhen::AllCompleted,
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
    ] {
        let split = wait(&none, return_when, None);
        assert!(split.done.is_empty());
        assert!(split.not_done.is_empty());
    }
}

#[test]
fn wait_accepts_owned_futures() {
    let executor = ThreadPoolExecutor::new(2);
    let futures: Vec<Future<String>> = (0..3)
        .map(|i| executor.spawn(move || format!("#{i}")))
        .collect();
    let split = wait(futures, ReturnWhen::AllCompleted, None);
    let mut values: Vec<String> = split
        .done
        .into_iter()
        .map(|f| f.into_result().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, ["#0", "#1", "#2"]);
}

#[test]
fn wait_counts_cancelled_future_as_done_at_once() {
    // Deliberate difference from CPython: the executor need not notice the cancellation.
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 1_u8);
    started_rx.recv().unwrap();
    let queued = spawn_held(&executor, &gate, &started_tx, 2_u8);
    assert!(queued.cancel());
    // The only thread is held, so the executor has not seen the cancellation yet. Polled
    // (zero timeout) so that CPython's semantics would fail here rather than hang.
    let split = wait([&queued], ReturnWhen::AllCompleted, Some(Duration::ZERO));
    assert_eq!(split.done.len(), 1);
    let split = wait(
        [&running, &queued],
        ReturnWhen::FirstCompleted,
        Some(Duration::ZERO),
    );
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &queued));
    assert!(same(split.not_done[0], &running));
    // Without a timeout too.
    let split = wait([&running, &queued], ReturnWhen::FirstCompleted, None);
    assert!(same(split.done[0], &queued));
    assert!(running.running());
    gate.open();
    assert_eq!(running.result(), Ok(1));
}

#[test]
fn wait_wakes_when_a_future_is_cancelled() {
    let pending: Future<u8> = Future::new();
    let never: Future<u8> = Future::new();
    let split = thread::scope(|s| {
        let waiter = s.spawn(|| wait([&never, &pending], ReturnWhen::FirstCompleted, None));
        assert!(pending.cancel());
        waiter.join().unwrap()
    });
    assert_eq!(split.done.len(), 1);
    assert!(same(split.done[0], &pending));
    assert!(split.done[0].cancelled());
}

#[test]
fn wait_mixes_futures_from_different_pools() {
    let numbers = ThreadPoolExecutor::new(1);
    let words = ThreadPoolExecutor::new(1);
    let number = numbers.spawn(|| 7_u64);
    let word = words.spawn(|| String::from("seven"));
    let manual: Future<bool> = Future::new();
    manual.set_result(true).unwrap();
    let all: [&dyn Waitable; 3] = [&number, &word, &manual];
    let split = wait(all, ReturnWhen::AllCompleted, None);
    assert_eq!(split.done.len(), 3);
    assert!(split.not_done.is_empty());
    assert_eq!(number.result(), Ok(7));
    assert_eq!(word.result().as_deref(), Ok("seven"));
}

// ---------------------------------------------------------------------------------------
// as_completed
// ---------------------------------------------------------------------------------------

#[test]
fn as_completed_yields_finished_futures_first() {
    let pending_a: Future<u8> = Future::new();
    let done_b = finished(2_u8);
    let pending_c: Future<u8> = Future::new();
    let done_d = finished(4_u8);
    let mut iter = as_completed([&pending_a, &done_b, &pending_c, &done_d]);
    let first_two: Vec<u8> = (0..2)
        .map(|_| iter.next().unwrap().result().unwrap())
        .collect();
    let mut sorted = first_two.clone();
    sorted.sort();
    assert_eq!(sorted, [2, 4], "the already-finished ones come first");
    pending_c.set_result(3).unwrap();
    assert!(same(iter.next().unwrap(), &pending_c));
    pending_a.set_result(1).unwrap();
    assert!(same(iter.next().unwrap(), &pending_a));
    assert!(iter.next().is_none());
}

#[test]
fn as_completed_yields_in_completion_order() {
    let futures: Vec<Future<u8>> = (0..4).map(|_| Future::new()).collect();
    let iter = as_completed(&futures);
    for i in [2, 0, 3, 1] {
        futures[i].set_result(i as u8).unwrap();
    }
    let order: Vec<u8> = iter.map(|f| f.result().unwrap()).collect();
    assert_eq!(order, [2, 0, 3, 1]);
}

#[test]
fn as_completed_yields_pool_tasks_in_completion_order() {
    let executor = ThreadPoolExecutor::new(3);
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    let futures: Vec<Future<usize>> = (0..3)
        .map(|i| {
            let hold = gates[i].handle();
            executor.spawn(move || {
                hold.wait();
                i
            })
        })
        .collect();
    let mut iter = as_completed(&futures);
    let mut order = Vec::new();
    for i in [1, 2, 0] {
        gates[i].open();
        order.push(iter.next().unwrap().result().unwrap());
    }
    assert_eq!(order, [1, 2, 0]);
    assert!(iter.next().is_none());
}

#[test]
fn as_completed_yields_duplicates_once() {
    let a = finished(1_u8);
    let b: Future<u8> = Future::new();
    let a_clone = a.clone();
    let iter = as_completed([&a, &b, &a, &a_clone, &b]);
    assert_eq!(iter.len(), 2);
    b.set_result(2).unwrap();
    let values: Vec<u8> = iter.map(|f| f.result().unwrap()).collect();
    assert_eq!(values, [1, 2]);
}

/// Each future remembers the last call that saw it; a second call while the first is still
/// going must neither lose its own duplicates nor spoil the first's.
#[test]
fn overlapping_calls_each_yield_duplicates_once() {
    let a = finished(1_u8);
    let b: Future<u8> = Future::new();
    let c = finished(3_u8);
    let mut outer = as_completed([&a, &b, &a, &c, &b]);
    assert_eq!(outer.len(), 3);
    let first = outer.next().unwrap().result().unwrap();
    // The outer call is still going: its marks stay on a, b and c.
    let inner: Vec<u8> = as_completed_timeout([&c, &a, &c, &b, &a, &b], Duration::ZERO)
        .filter_map(Result::ok)
        .map(|f| f.result().unwrap())
        .collect();
    assert_eq!(inner, [3, 1]);
    let split = wait(
        [&b, &a, &b, &a],
        ReturnWhen::AllCompleted,
        Some(Duration::ZERO),
    );
    assert_eq!((split.done.len(), split.not_done.len()), (1, 1));
    b.set_result(2).unwrap();
    let mut rest: Vec<u8> = outer.map(|f| f.result().unwrap()).collect();
    rest.insert(0, first);
    assert_eq!(rest, [1, 3, 2]);
}

/// Two calls in two threads over the same futures, each future listed three times, while a
/// pool completes them: each call yields every future exactly once, whichever call marked it.
#[test]
fn concurrent_calls_in_two_threads_each_yield_every_future_once() {
    const N: usize = 2_000;
    let executor = ThreadPoolExecutor::new(2);
    let gate = Gate::new();
    let hold = gate.handle();
    let futures: Arc<Vec<Future<usize>>> = Arc::new(
        (0..N)
            .map(|i| {
                let hold = Arc::clone(&hold);
                executor.spawn(move || {
                    if i == N / 2 {
                        hold.wait();
                    }
                    i
                })
            })
            .collect(),
    );
    let start = Arc::new(std::sync::Barrier::new(3));
    let callers: Vec<_> = (0..2)
        .map(|k| {
            let futures = Arc::clone(&futures);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                // Three copies, in an order of this caller's own.
                let listed: Vec<&Future<usize>> = if k == 0 {
                    futures.iter().chain(&*futures).chain(&*futures).collect()
                } else {
                    futures
                        .iter()
                        .rev()
                        .chain(&*futures)
                        .chain(futures.iter().rev())
                        .collect()
                };
                start.wait();
                let mut seen: Vec<usize> =
                    as_completed(listed).map(|f| f.result().unwrap()).collect();
                seen.sort_unstable();
                seen
            })
        })
        .collect();
    start.wait();
    gate.open();
    for caller in callers {
        assert_eq!(caller.join().unwrap(), (0..N).collect::<Vec<_>>());
    }
}

/// `join_completed!`'s arms do not deduplicate: each arm on a clone of one future runs, even
/// while an `as_completed` call that marked that future is still going.
#[test]
fn join_completed_arms_on_one_future_all_run_while_another_call_watches_it() {
    let a: Future<u8> = Future::new();
    let watching = as_completed([&a, &a]);
    assert_eq!(watching.len(), 1);
    a.set_result(7).unwrap();
    // Owned arms move the value out: the first arm to run gets it, the other arm still runs.
    let (x, y) = concurrent_futures::join_completed! {
        x = a.clone() => x,
        y = a.clone() => y,
    };
    let mut outcomes = [x, y];
    outcomes.sort_by_key(Result::is_err);
    assert_eq!(outcomes, [Ok(7), Err(Error::InvalidState)]);
    assert_eq!(watching.count(), 1);
}

/// A finished call's marks mean nothing to the next call over the same futures.
#[test]
fn calls_one_after_another_each_yield_duplicates_once() {
    let futures: Vec<Future<u8>> = (0..4).map(finished).collect();
    let with_clones: Vec<&Future<u8>> = futures.iter().chain(futures.iter().rev()).collect();
    for _ in 0..3 {
        assert_eq!(as_completed(&with_clones).count(), 4);
        let split = wait(&with_clones, ReturnWhen::AllCompleted, None);
        assert_eq!(split.done.len(), 4);
    }
}

#[test]
fn as_completed_timeout_message_counts_unfinished() {
    let futures: Vec<Future<u8>> = vec![finished(0), Future::new(), finished(2), Future::new()];
    let start = Instant::now();
    let mut iter = as_completed_timeout(&futures, SHORT);
    let first = iter.next().unwrap().unwrap();
    let second = iter.next().unwrap().unwrap();
    assert!(first.done() && second.done());
    let error = iter.next().unwrap().unwrap_err();
    assert!(start.elapsed() >= SHORT);
    assert_eq!(
        error,
        Error::Timeout {
            unfinished: 2,
            total: 4
        }
    );
    assert_eq!(error.to_string(), "2 (of 4) futures unfinished");
    assert!(iter.next().is_none(), "iteration ends after the timeout");
    // The unfinished futures go on.
    assert_eq!(futures[1].state(), State::Pending);
}

#[test]
fn as_completed_timeout_is_a_total_deadline_from_the_call() {
    // Long enough that a loaded machine's scheduling delays cannot pass for a fresh wait.
    let timeout = Duration::from_secs(1);
    let done = finished(1_u8);
    let never: Future<u8> = Future::new();
    let mut iter = as_completed_timeout([&done, &never], timeout);
    assert!(iter.next().unwrap().is_ok());
    // Let the whole timeout run out between two next() calls.
    let elsewhere: Future<u8> = Future::new();
    assert!(elsewhere.result_timeout(timeout).unwrap_err().is_timeout());
    let start = Instant::now();
    let error = iter.next().unwrap().unwrap_err();
    assert!(
        start.elapsed() < timeout,
        "next() waited a fresh timeout instead of what remained of the call's"
    );
    assert_eq!(error.to_string(), "1 (of 2) futures unfinished");
}

#[test]
fn as_completed_timeout_zero_reports_all_unfinished() {
    let a: Future<u8> = Future::new();
    let b: Future<u8> = Future::new();
    let outcomes: Vec<_> = as_completed_timeout([&a, &b], Duration::ZERO).collect();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        outcomes[0].as_ref().unwrap_err().to_string(),
        "2 (of 2) futures unfinished"
    );
}

#[test]
fn as_completed_timeout_yields_all_when_done_in_time() {
    let executor = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (0..5_u32).map(|i| executor.spawn(move || i)).collect();
    let yielded: Result<Vec<_>, Error> =
        as_completed_timeout(&futures, Duration::from_secs(3600)).collect();
    let mut values: Vec<u32> = yielded
        .unwrap()
        .iter()
        .map(|f| f.result().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, [0, 1, 2, 3, 4]);
}

#[test]
fn as_completed_timeout_deadline_too_large_to_represent_waits_forever() {
    let later: Future<u8> = Future::new();
    let yielded = thread::scope(|s| {
        let waiter = s.spawn(|| {
            as_completed_timeout([&later], Duration::MAX)
                .map(|r| r.map(|f| f.result()))
                .collect::<Vec<_>>()
        });
        later.set_result(5).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(yielded, [Ok(Ok(5))]);
}

#[test]
fn as_completed_yields_cancelled_future_at_once() {
    // Deliberate difference from CPython: no need for the executor to notice.
    let executor = ThreadPoolExecutor::new(1);
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let running = spawn_held(&executor, &gate, &started_tx, 1_u8);
    started_rx.recv().unwrap();
    let queued = spawn_held(&executor, &gate, &started_tx, 2_u8);
    assert!(queued.cancel());
    // Polled first, so that CPython's semantics would fail here rather than hang.
    let polled: Vec<_> = as_completed_timeout([&running, &queued], Duration::ZERO).collect();
    assert_eq!(polled.len(), 2);
    assert!(same(polled[0].as_ref().unwrap(), &queued));
    assert_eq!(
        polled[1].as_ref().unwrap_err(),
        &Error::Timeout {
            unfinished: 1,
            total: 2
        }
    );
    let mut iter = as_completed([&running, &queued]);
    let first = iter.next().unwrap();
    assert!(same(first, &queued));
    assert!(first.cancelled());
    assert!(running.running(), "the only thread is still held");
    gate.open();
    assert!(same(iter.next().unwrap(), &running));
    assert_eq!(running.result(), Ok(1));
}

#[test]
fn as_completed_wakes_when_a_future_is_cancelled_while_waiting() {
    let pending: Future<u8> = Future::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let cancelled_seen = thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut iter = as_completed([&pending]);
            ready_tx.send(()).unwrap();
            iter.next().map(|f| f.cancelled())
        });
        ready_rx.recv().unwrap();
        assert!(pending.cancel());
        waiter.join().unwrap()
    });
    assert_eq!(cancelled_seen, Some(true));
}

#[test]
fn as_completed_works_over_owned_futures() {
    let executor = ThreadPoolExecutor::new(3);
    let futures: Vec<Future<u64>> = (1..=4).map(|i| executor.spawn(move || i * 10)).collect();
    let total: u64 = as_completed(futures)
        .map(|f| f.into_result().unwrap())
        .sum();
    assert_eq!(total, 100);
}

#[test]
fn as_completed_works_over_borrowed_futures() {
    let executor = ThreadPoolExecutor::new(3);
    let futures: Vec<Future<u64>> = (1..=4).map(|i| executor.spawn(move || i)).collect();
    let total: u64 = as_completed(&futures).map(|f| f.result().unwrap()).sum();
    assert_eq!(total, 10);
    // Still usable afterwards.
    assert!(futures.iter().all(Future::done));
}

#[test]
fn as_completed_mixes_futures_from_different_pools() {
    let numbers = ThreadPoolExecutor::new(1);
    let words = ThreadPoolExecutor::new(1);
    let number = numbers.spawn(|| 7_u64);
    let word = words.spawn(|| String::from("seven"));
    let borrowed: [&dyn Waitable; 2] = [&number, &word];
    assert_eq!(as_completed(borrowed).filter(|f| f.done()).count(), 2);
    let owned: Vec<Box<dyn Waitable>> = vec![Box::new(number.clone()), Box::new(word.clone())];
    assert_eq!(as_completed(owned).filter(|f| f.done()).count(), 2);
    assert_eq!(number.result(), Ok(7));
    assert_eq!(word.result().as_deref(), Ok("seven"));
}

#[test]
fn as_completed_on_empty_input_yields_nothing() {
    let none: Vec<Future<u8>> = Vec::new();
    assert_eq!(as_completed(&none).count(), 0);
    assert_eq!(as_completed_timeout(&none, Duration::ZERO).count(), 0);
}

#[test]
fn as_completed_len_counts_remaining() {
    let futures: Vec<Future<u8>> = (0..3).map(finished).collect();
    let mut iter = as_completed(&futures);
    assert_eq!(iter.len(), 3);
    iter.next().unwrap();
    assert_eq!(iter.len(), 2);
    iter.next().unwrap();
    iter.next().unwrap();
    assert_eq!(iter.len(), 0);
    assert!(iter.next().is_none());
}

#[test]
fn as_completed_keeps_no_reference_to_yielded_futures() {
    // bpo-27144: a yielded future is not retained by the iterator.
    let futures: Vec<Arc<Future<u8>>> = (0..3).map(|i| Arc::new(finished(i))).collect();
    let mut iter = as_completed(futures.iter().map(Arc::clone).collect::<Vec<_>>());
    for yielded in iter.by_ref() {
        // Ours and the yielded one; none left inside the iterator.
        assert_eq!(Arc::strong_count(&yielded), 2);
        drop(yielded);
    }
    // The iterator is still alive and holds none of them.
    assert!(futures.iter().all(|f| Arc::strong_count(f) == 1));
    drop(iter);
}

#[test]
fn as_completed_yields_each_pool_task_exactly_once() {
    let executor = ThreadPoolExecutor::new(4);
    let futures: Vec<Future<usize>> = (0..200).map(|i| executor.spawn(move || i)).collect();
    let mut seen: Vec<usize> = as_completed(&futures)
        .map(|f| f.result().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
}

#[test]
fn join_completed_collection_form_takes_borrowed_futures_and_keeps_them() {
    let executor = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (1..=3_u64)
        .map(|i| executor.spawn(move || i * 10))
        .collect();
    let mut seen: Vec<u64> = concurrent_futures::join_completed!(&futures)
        .map(Result::unwrap)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [10, 20, 30]);
    // Borrowed: the values were cloned, the futures still hold them.
    assert_eq!(futures[1].result(), Ok(20));
}
