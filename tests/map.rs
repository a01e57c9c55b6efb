//! `Executor::map` and `map_with` on the thread pool (PYTHON.md §1.4): eager submission,
//! results in input order, Python 3.15's "a failed call yields its error and iteration goes
//! on", the timeout that cancels the awaited and remaining calls, `buffersize`, and dropping
//! the iterator.
//!
//! `#[task]` arguments must be serializable, so a task finds the `Control` that holds it
//! through a static registry, by number. Nothing here sleeps.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use concurrent_futures::{Error, Executor, Future, MapOptions, ThreadPoolExecutor, task};

/// Short: only used where the behaviour under test is the timeout itself.
const SHORT: Duration = Duration::from_millis(20);

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn fail_on(bad: u64, x: u64) -> u64 {
    assert_ne!(x, bad, "input {x} fails on purpose");
    x
}

#[task]
fn checked_half(x: u64) -> Result<u64, String> {
    if x % 2 == 0 {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

/// Reports its start, waits until the test releases `x`, records its end, returns `x * x`.
#[task]
fn held_square(control: usize, x: u64) -> u64 {
    let control = control_for(control);
    control.start(x);
    control.wait_released(x);
    control.finish(x);
    x * x
}

/// As `held_square`, but input `bad` panics once released.
#[task]
fn held_fail_on(control: usize, bad: u64, x: u64) -> u64 {
    let control = control_for(control);
    control.start(x);
    control.wait_released(x);
    control.finish(x);
    assert_ne!(x, bad, "input {x} fails on purpose");
    x
}

#[derive(Default)]
struct ControlState {
    released: BTreeSet<u64>,
    all_released: bool,
    started: Vec<u64>,
    finished: Vec<u64>,
}

/// What the test uses to hold `#[task]` calls and watch them start and finish.
#[derive(Default)]
struct Control {
    state: Mutex<ControlState>,
    changed: Condvar,
}

static CONTROLS: Mutex<Vec<Arc<Control>>> = Mutex::new(Vec::new());

fn control_for(id: usize) -> Arc<Control> {
    Arc::clone(&CONTROLS.lock().unwrap()[id])
}

impl Control {
    fn update(&self, f: impl FnOnce(&mut ControlState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    fn wait_for(&self, condition: impl Fn(&ControlState) -> bool) {
        let mut state = self.state.lock().unwrap();
        while !condition(&state) {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn start(&self, x: u64) {
        self.update(|s| s.started.push(x));
    }

    fn finish(&self, x: u64) {
        self.update(|s| s.finished.push(x));
    }

    /// As `wait_for`, but gives up after `limit`: true if the condition came true. Only for
    /// turning a hang (the behaviour under test missing) into a failure.
    fn wait_for_within(&self, limit: Duration, condition: impl Fn(&ControlState) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap();
        while !condition(&state) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
        true
    }

    fn wait_released(&self, x: u64) {
        self.wait_for(|s| s.all_released || s.released.contains(&x));
    }
}

/// A registered `Control`; releases every call when dropped, so a failed assertion cannot
/// hang the executor's drop. Declare it after the executor.
struct Held {
    id: usize,
    control: Arc<Control>,
}

impl Held {
    fn new() -> Self {
        let control = Arc::new(Control::default());
        let mut controls = CONTROLS.lock().unwrap();
        controls.push(Arc::clone(&control));
        Held {
            id: controls.len() - 1,
            control,
        }
    }

    fn release(&self, x: u64) {
        self.control.update(|s| {
            s.released.insert(x);
        });
    }

    fn release_all(&self) {
        self.control.update(|s| s.all_released = true);
    }

    fn wait_started(&self, count: usize) {
        self.control.wait_for(|s| s.started.len() >= count);
    }

    fn wait_finished(&self, x: u64) {
        self.control.wait_for(|s| s.finished.contains(&x));
    }

    fn started(&self) -> Vec<u64> {
        self.control.state.lock().unwrap().started.clone()
    }

    fn finished(&self) -> Vec<u64> {
        self.control.state.lock().unwrap().finished.clone()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// Occupies the executor's only thread until the returned `Held` releases input 0.
fn block_only_thread(executor: &ThreadPoolExecutor) -> Held {
    let blocker = Held::new();
    let _ = executor.submit(held_square(blocker.id, 0));
    blocker.wait_started(1);
    blocker
}

fn is_panic(item: &Result<u64, Error>) -> bool {
    matches!(item, Err(e) if e.is_panic())
}

// ---------------------------------------------------------------------------------------
// Order and eagerness
// ---------------------------------------------------------------------------------------

#[test]
fn map_results_in_input_order() {
    let executor = ThreadPoolExecutor::new(4);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..4);
    held.wait_started(4);
    // Complete them last to first.
    for x in (0..4).rev() {
        held.release(x);
        held.wait_finished(x);
    }
    assert_eq!(held.finished(), [3, 2, 1, 0]);
    let results: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(results, [0, 1, 4, 9]);
}

#[test]
fn map_submits_eagerly_without_iteration() {
    let executor = ThreadPoolExecutor::new(3);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..3);
    // No next() yet, and every call has started.
    held.wait_started(3);
    let started: BTreeSet<u64> = held.started().into_iter().collect();
    assert_eq!(started, BTreeSet::from([0, 1, 2]));
    held.release_all();
    assert_eq!(results.map(Result::unwrap).collect::<Vec<_>>(), [0, 1, 4]);
}

#[test]
fn map_of_task_values_returns_their_results() {
    let executor = ThreadPoolExecutor::new(3);
    let squares: Vec<u64> = executor
        .map(square_number, 0..10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
}

#[test]
fn map_over_empty_input_yields_nothing() {
    let executor = ThreadPoolExecutor::new(1);
    assert_eq!(executor.map(square_number, Vec::new()).count(), 0);
    assert_eq!(executor.thread_count(), 0, "nothing was submitted");
}

#[test]
fn map_via_executor_trait_is_generic_over_pools() {
    fn total(executor: &impl Executor, inputs: Vec<u64>) -> u64 {
        executor
            .map(square_number, inputs)
            .map(Result::unwrap)
            .sum()
    }
    let executor = ThreadPoolExecutor::new(2);
    assert_eq!(total(&executor, vec![1, 2, 3]), 14);
    let with_options: Vec<u64> =
        Executor::map_with(&executor, square_number, 0..3, MapOptions::new())
            .map(Result::unwrap)
            .collect();
    assert_eq!(with_options, [0, 1, 4]);
}

// ---------------------------------------------------------------------------------------
// Failed calls (Python 3.15, gh-108518)
// ---------------------------------------------------------------------------------------

#[test]
fn map_failing_call_yields_its_error_at_its_position_and_iteration_continues() {
    let executor = ThreadPoolExecutor::new(2);
    let results: Vec<Result<u64, Error>> = executor.map(|x| fail_on(2, x), 0..5).collect();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], Ok(0));
    assert_eq!(results[1], Ok(1));
    assert!(is_panic(&results[2]), "{:?}", results[2]);
    assert_eq!(results[3], Ok(3));
    assert_eq!(results[4], Ok(4));
}

#[test]
fn map_failing_call_does_not_cancel_later_calls() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let mut results = executor.map(|x| held_fail_on(held.id, 0, x), 0..4);
    // Only the first call may finish: the later ones are pending when its error is yielded.
    held.release(0);
    assert!(is_panic(&results.next().unwrap()));
    assert_eq!(held.finished(), [0]);
    held.release_all();
    let rest: Vec<_> = results.collect();
    assert_eq!(rest, [Ok(1), Ok(2), Ok(3)]);
}

#[test]
fn map_failing_call_under_a_timeout_is_an_item_error() {
    // gh-155852: a call's own failure is not the map's timeout.
    let executor = ThreadPoolExecutor::new(2);
    let options = MapOptions::new().timeout(Duration::from_secs(3600));
    let results: Vec<_> = executor
        .map_with(|x| fail_on(1, x), 0..3, options)
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], Ok(0));
    assert!(is_panic(&results[1]), "{:?}", results[1]);
    assert!(!results[1].as_ref().unwrap_err().is_timeout());
    assert_eq!(results[2], Ok(2));
}

#[test]
fn map_task_returning_err_yields_ok_err() {
    let executor = ThreadPoolExecutor::new(2);
    let results: Vec<_> = executor.map(checked_half, [4, 5, 6]).collect();
    assert_eq!(
        results,
        [Ok(Ok(2)), Ok(Err("5 is odd".to_owned())), Ok(Ok(3))]
    );
}

// ---------------------------------------------------------------------------------------
// Timeout (gh-95166)
// ---------------------------------------------------------------------------------------

#[test]
fn map_timeout_cancels_awaited_and_remaining_calls() {
    let executor = ThreadPoolExecutor::new(1);
    let blocker = block_only_thread(&executor);
    let held = Held::new();
    let options = MapOptions::new().timeout(SHORT);
    let mut results = executor.map_with(|x| held_square(held.id, x), 1..4, options);
    let error = results.next().unwrap().unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            unfinished: 3,
            total: 3
        }
    );
    assert_eq!(error.to_string(), "3 (of 3) futures unfinished");
    assert!(
        results.next().is_none(),
        "the iterator is exhausted after a timeout"
    );
    blocker.release_all();
    held.release_all();
    executor.shutdown(true, false);
    assert!(
        held.started().is_empty(),
        "every map call was cancelled before it started"
    );
}

#[test]
fn map_timeout_is_measured_from_the_map_call() {
    // Long enough that a loaded machine's scheduling delays cannot pass for a fresh wait.
    let timeout = Duration::from_secs(1);
    let executor = ThreadPoolExecutor::new(1);
    let blocker = block_only_thread(&executor);
    let held = Held::new();
    let options = MapOptions::new().timeout(timeout);
    let mut results = executor.map_with(|x| held_square(held.id, x), 1..3, options);
    // Let the whole timeout run out before the first next().
    let never: Future<()> = Future::new();
    assert!(never.result_timeout(timeout).unwrap_err().is_timeout());
    let start = Instant::now();
    assert!(results.next().unwrap().unwrap_err().is_timeout());
    assert!(
        start.elapsed() < timeout,
        "next() waited a fresh timeout instead of what remained of the call's"
    );
    blocker.release_all();
}

#[test]
fn map_timeout_does_not_stop_a_running_call() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let options = MapOptions::new().timeout(SHORT);
    let mut results = executor.map_with(|x| held_square(held.id, x), 0..3, options);
    held.wait_started(1);
    let error = results.next().unwrap().unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(results.next().is_none());
    held.release_all();
    executor.shutdown(true, false);
    // The running call could not be cancelled and finished; the queued ones never started.
    assert_eq!(held.started(), [0]);
    assert_eq!(held.finished(), [0]);
}

// ---------------------------------------------------------------------------------------
// buffersize
// ---------------------------------------------------------------------------------------

#[test]
fn map_buffersize_works_with_infinite_input() {
    let executor = ThreadPoolExecutor::new(2);
    let options = MapOptions::new().buffersize(4);
    let squares: Vec<u64> = executor
        .map_with(square_number, 0.., options)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
}

#[test]
fn map_buffersize_submits_buffersize_then_one_per_next() {
    let executor = ThreadPoolExecutor::new(2);
    let pulled = Cell::new(0);
    let inputs = (0..10).inspect(|_| pulled.set(pulled.get() + 1));
    let mut results = executor.map_with(square_number, inputs, MapOptions::new().buffersize(3));
    assert_eq!(pulled.get(), 3, "only buffersize inputs at first");
    assert_eq!(results.next(), Some(Ok(0)));
    assert_eq!(pulled.get(), 4, "each next() submits one more");
    assert_eq!(results.next(), Some(Ok(1)));
    assert_eq!(pulled.get(), 5);
    let rest: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(rest, [4, 9, 16, 25, 36, 49, 64, 81]);
    assert_eq!(pulled.get(), 10);
}

#[test]
fn map_without_buffersize_pulls_all_input_at_the_call() {
    let executor = ThreadPoolExecutor::new(2);
    let pulled = Cell::new(0);
    let inputs = (0..6).inspect(|_| pulled.set(pulled.get() + 1));
    let results = executor.map(square_number, inputs);
    assert_eq!(pulled.get(), 6);
    assert_eq!(results.count(), 6);
}

#[test]
fn map_buffersize_keeps_input_order() {
    let executor = ThreadPoolExecutor::new(3);
    let held = Held::new();
    let options = MapOptions::new().buffersize(3);
    let mut results = executor.map_with(|x| held_square(held.id, x), 0..6, options);
    held.wait_started(3);
    // Finish the second and third before the first.
    held.release(2);
    held.wait_finished(2);
    held.release(1);
    held.wait_finished(1);
    held.release_all();
    assert_eq!(results.next(), Some(Ok(0)));
    let rest: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(rest, [1, 4, 9, 16, 25]);
}

#[test]
fn map_buffersize_combines_with_timeout() {
    let executor = ThreadPoolExecutor::new(1);
    let blocker = block_only_thread(&executor);
    let held = Held::new();
    let pulled = Cell::new(0);
    let inputs = (1..).inspect(|_| pulled.set(pulled.get() + 1));
    let options = MapOptions::new().buffersize(2).timeout(SHORT);
    let mut results = executor.map_with(|x| held_square(held.id, x), inputs, options);
    let error = results.next().unwrap().unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            unfinished: 3,
            total: 3
        }
    );
    assert!(results.next().is_none());
    assert_eq!(pulled.get(), 3, "no input is pulled after the timeout");
    blocker.release_all();
    held.release_all();
    executor.shutdown(true, false);
    assert!(held.started().is_empty());
}

#[test]
fn map_buffersize_stops_pulling_input_after_shutdown() {
    let executor = ThreadPoolExecutor::new(2);
    let options = MapOptions::new().buffersize(2);
    let mut results = executor.map_with(square_number, 0.., options);
    assert_eq!(results.next(), Some(Ok(0)));
    assert_eq!(results.next(), Some(Ok(1)));
    executor.shutdown(false, false);
    // The calls already submitted still run; the next pull fails and ends the endless input.
    let rest: Vec<_> = results.collect();
    assert_eq!(rest, [Ok(4), Ok(9), Err(Error::ShutDown)]);
}

#[test]
#[should_panic(expected = "buffersize must be >= 1")]
fn map_buffersize_zero_panics() {
    let _ = MapOptions::new().buffersize(0);
}

// ---------------------------------------------------------------------------------------
// chunksize
// ---------------------------------------------------------------------------------------

#[test]
fn map_chunksize_is_ignored_by_thread_pool() {
    let executor = ThreadPoolExecutor::new(2);
    let options = MapOptions::new().chunksize(3);
    assert_eq!(options.get_chunksize(), Some(3));
    let squares: Vec<u64> = executor
        .map_with(square_number, 0..7, options)
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36]);
}

#[test]
#[should_panic(expected = "chunksize must be >= 1")]
fn map_chunksize_zero_panics() {
    let _ = MapOptions::new().chunksize(0);
}

// ---------------------------------------------------------------------------------------
// Dropping the iterator, shutdown
// ---------------------------------------------------------------------------------------

#[test]
fn dropping_map_iterator_cancels_unstarted_calls() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..4);
    held.wait_started(1);
    drop(results);
    held.release_all();
    executor.shutdown(true, false);
    // The started call ran to its end; the other three were cancelled.
    assert_eq!(held.started(), [0]);
    assert_eq!(held.finished(), [0]);
}

#[test]
fn dropping_partly_consumed_map_iterator_cancels_the_rest() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let mut results = executor.map(|x| held_square(held.id, x), 0..4);
    held.release(0);
    assert_eq!(results.next(), Some(Ok(0)));
    // Call 1 may have started (it waits for its release); calls 2 and 3 cannot have.
    drop(results);
    held.release_all();
    executor.shutdown(true, false);
    let started = held.started();
    assert!(started == [0] || started == [0, 1], "{started:?}");
    assert_eq!(held.finished(), started);
}

#[test]
fn map_after_shutdown_yields_shut_down() {
    let executor = ThreadPoolExecutor::new(2);
    executor.shutdown(true, false);
    let results: Vec<_> = executor.map(square_number, 0..3).collect();
    // Python raises at the call; here the first call's ShutDown ends the iteration.
    assert_eq!(results.len(), 1);
    assert!(
        results.iter().all(|r| r == &Err(Error::ShutDown)),
        "{results:?}"
    );
}

#[test]
fn map_after_shutdown_with_infinite_input_terminates() {
    let executor = ThreadPoolExecutor::new(2);
    executor.shutdown(true, false);
    let results: Vec<_> = executor.map(square_number, 0..).collect();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r == &Err(Error::ShutDown)));
}

/// An executor of the user's own that keeps a handle to every future it returns (to wait for
/// them all later, say). Its refusals are refusals all the same.
struct Keeping {
    pool: ThreadPoolExecutor,
    kept: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Executor for Keeping {
    fn submit<T: concurrent_futures::Task>(&self, task: T) -> Future<T::Output> {
        let future = self.pool.submit(task);
        self.kept.lock().unwrap().push(Box::new(future.clone()));
        future
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.pool.shutdown(wait, cancel_futures);
    }
}

#[test]
fn map_stops_at_a_refusal_from_an_executor_that_keeps_its_futures() {
    let executor = Keeping {
        pool: ThreadPoolExecutor::new(1),
        kept: Mutex::new(Vec::new()),
    };
    executor.shutdown(true, false);
    let pulled = Cell::new(0);
    let inputs = (0..100).inspect(|_| pulled.set(pulled.get() + 1));
    let results: Vec<_> = executor.map(square_number, inputs).collect();
    assert_eq!(results, [Err(Error::ShutDown)]);
    assert_eq!(
        pulled.get(),
        1,
        "no input is pulled after the first refusal"
    );
}

// ---------------------------------------------------------------------------------------
// One map shared by many threads. The thread pool hands an eager map's calls to its threads
// as one batch, not a future per call; these pin what a future per call gave.
// ---------------------------------------------------------------------------------------

/// What a test waits for when the behaviour under test would otherwise hang it: long enough
/// for any loaded machine.
const HANG: Duration = Duration::from_secs(60);

static COUNTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn counted_triple(x: u64) -> u64 {
    COUNTED_RUNS.fetch_add(1, Ordering::Relaxed);
    x * 3
}

#[test]
fn map_on_many_threads_runs_each_call_once_and_yields_in_input_order() {
    const N: u64 = 20_000;
    let executor = ThreadPoolExecutor::new(4);
    let results: Vec<u64> = executor
        .map(counted_triple, 0..N)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results, (0..N).map(|x| x * 3).collect::<Vec<_>>());
    assert_eq!(COUNTED_RUNS.load(Ordering::Relaxed), N as usize);
}

/// Only input `held` waits for its release (after recording its start); every input records
/// its end and returns itself.
#[task]
fn hold_one(control: usize, held: u64, x: u64) -> u64 {
    let control = control_for(control);
    if x == held {
        control.start(x);
        control.wait_released(x);
    }
    control.finish(x);
    x
}

#[test]
fn map_runs_as_many_calls_at_once_as_the_pool_has_threads() {
    let executor = ThreadPoolExecutor::new(4);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..4);
    assert!(
        held.control.wait_for_within(HANG, |s| s.started.len() == 4),
        "only {:?} of 4 calls started on a pool of 4 threads",
        held.started()
    );
    held.release_all();
    let results: Vec<u64> = results.map(|r| r.unwrap()).collect();
    assert_eq!(results, [0, 1, 4, 9]);
}

#[test]
fn map_starts_slow_calls_in_input_order() {
    let executor = ThreadPoolExecutor::new(2);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..6);
    // Calls that take long are taken one at a time, in input order, as futures would be.
    assert!(
        held.control.wait_for_within(HANG, |s| s.started.len() == 2),
        "only {:?} started on a pool of 2 threads",
        held.started()
    );
    let mut first_two = held.started();
    first_two.sort_unstable();
    assert_eq!(first_two, [0, 1]);
    for x in 0..6 {
        held.release(x);
        held.wait_finished(x);
    }
    let results: Vec<u64> = results.map(|r| r.unwrap()).collect();
    assert_eq!(results, [0, 1, 4, 9, 16, 25]);
}

#[test]
fn map_a_held_call_does_not_hold_back_the_calls_after_it() {
    // Held in the middle of short calls, where calls are taken in blocks: the rest of its
    // block goes to the free thread.
    const N: u64 = 2_000;
    const HELD: u64 = 1_000;
    let executor = ThreadPoolExecutor::new(2);
    let held = Held::new();
    let results = executor.map(|x| hold_one(held.id, HELD, x), 0..N);
    assert!(
        held.control
            .wait_for_within(HANG, |s| s.finished.len() == N as usize - 1),
        "{} of {} calls finished while call {HELD} was held",
        held.finished().len(),
        N - 1
    );
    held.release(HELD);
    assert_eq!(
        results.map(|r| r.unwrap()).collect::<Vec<_>>(),
        (0..N).collect::<Vec<_>>()
    );
}

/// Input `waiting` waits (up to `HANG`) for input `waiting + 1` to finish and says whether
/// it did; every input records its end.
#[task]
fn wait_for_next(control: usize, waiting: u64, x: u64) -> bool {
    let control = control_for(control);
    let met =
        x != waiting || control.wait_for_within(HANG, |s| s.finished.contains(&(waiting + 1)));
    control.finish(x);
    met
}

#[test]
fn map_a_call_may_wait_for_the_next_one_on_two_threads() {
    // Fine with a future per call, as in Python: the next call runs on the other thread,
    // even when both sit in one block of short calls.
    let executor = ThreadPoolExecutor::new(2);
    let held = Held::new();
    let results: Vec<bool> = executor
        .map(|x| wait_for_next(held.id, 1_000, x), 0..2_000)
        .map(|r| r.unwrap())
        .collect();
    assert!(results[1_000], "call 1000 never saw call 1001 finish");
    assert!(results.iter().all(|&met| met));
}

/// Inputs from `from` on wait (up to `HANG`) until `together` of them have started, and say
/// whether they did.
#[task]
fn meet(control: usize, from: u64, together: usize, x: u64) -> bool {
    if x < from {
        return true;
    }
    let control = control_for(control);
    control.start(x);
    control.wait_for_within(HANG, |s| s.started.len() >= together)
}

#[test]
fn map_calls_after_short_ones_still_run_as_many_at_once_as_there_are_threads() {
    let executor = ThreadPoolExecutor::new(4);
    let held = Held::new();
    let results: Vec<bool> = executor
        .map(|x| meet(held.id, 1_000, 4, x), 0..1_004)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results[1_000..], [true; 4], "{:?} met", held.started());
}

#[test]
fn shutdown_cancel_futures_cancels_the_unstarted_calls_of_a_running_map() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let results = executor.map(|x| held_square(held.id, x), 0..4);
    held.wait_started(1);
    executor.shutdown(false, true);
    held.release_all();
    let results: Vec<_> = results.collect();
    assert_eq!(
        results,
        [
            Ok(0),
            Err(Error::Cancelled),
            Err(Error::Cancelled),
            Err(Error::Cancelled)
        ]
    );
    executor.shutdown(true, false);
    assert_eq!(held.started(), [0]);
}

/// Counts the live values of itself: made by `new`, counted down by `drop`.
#[derive(Debug, Serialize, Deserialize)]
struct Tracked(u64);

static LIVE_TRACKED: AtomicIsize = AtomicIsize::new(0);

impl Tracked {
    fn new(x: u64) -> Self {
        LIVE_TRACKED.fetch_add(1, Ordering::SeqCst);
        Tracked(x)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE_TRACKED.fetch_sub(1, Ordering::SeqCst);
    }
}

#[task]
fn tracked_next(control: usize, t: Tracked) -> Tracked {
    if t.0 == 50 {
        let control = control_for(control);
        control.start(t.0);
        control.wait_released(t.0);
    }
    Tracked::new(t.0 + 1)
}

#[test]
fn a_dropped_map_drops_every_call_and_output_once() {
    let executor = ThreadPoolExecutor::new(2);
    let held = Held::new();
    let mut results = executor.map(|x| tracked_next(held.id, Tracked::new(x)), 0..10_000);
    // Outputs taken, outputs left in their slots, a call running, calls never started.
    for x in 0..10 {
        assert_eq!(results.next().unwrap().unwrap().0, x + 1);
    }
    held.wait_started(1);
    drop(results);
    held.release_all();
    executor.shutdown(true, false);
    assert_eq!(
        LIVE_TRACKED.load(Ordering::SeqCst),
        0,
        "values leaked or dropped twice"
    );
}

#[test]
fn map_on_a_pool_whose_initializer_fails_yields_broken_at_every_position() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let executor = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(move || -> Result<(), String> {
            // Fails only once the map is queued behind it.
            let _ = go_rx.lock().unwrap().recv();
            Err("no database".to_owned())
        })
        .build()
        .unwrap();
    let results = executor.map(counted_square_never_run, 0..100);
    drop(go_tx);
    let results: Vec<_> = results.collect();
    assert_eq!(results.len(), 100);
    for result in results {
        match result {
            Err(Error::Broken { reason }) => assert!(reason.contains("no database"), "{reason}"),
            other => panic!("expected Broken, got {other:?}"),
        }
    }
}

#[task]
fn counted_square_never_run(x: u64) -> u64 {
    panic!("a broken pool ran call {x}");
}

/// Panics when dropped with the value 2, as a call's captured state might.
#[derive(Debug, Serialize, Deserialize)]
struct BoomOnDrop(u64);

impl Drop for BoomOnDrop {
    fn drop(&mut self) {
        if self.0 == 2 && !std::thread::panicking() {
            panic!("dropping input 2 fails on purpose");
        }
    }
}

#[task]
fn held_boom(control: usize, input: BoomOnDrop) -> u64 {
    let x = input.0;
    std::mem::forget(input);
    let control = control_for(control);
    control.start(x);
    control.wait_released(x);
    x
}

#[test]
fn a_panicking_drop_of_a_call_that_never_ran_leaves_the_pool_working() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let results = executor.map(|x| held_boom(held.id, BoomOnDrop(x)), 0..4);
    held.wait_started(1);
    // Calls 1 to 3 never start; their inputs are dropped on the pool's only thread.
    drop(results);
    held.release_all();
    let after = executor.submit(square_number(3));
    assert_eq!(
        after.result_timeout(HANG),
        Ok(9),
        "the pool's thread did not survive the panicking drop"
    );
}

#[test]
fn an_input_that_waits_for_the_map_s_own_calls_works_with_buffersize() {
    // The thread pool's eager map reads every input before its first call starts; with a
    // buffersize it submits call by call as it reads, so such an input works (the documented
    // way).
    let executor = ThreadPoolExecutor::new(2);
    let held = Held::new();
    let control = Arc::clone(&held.control);
    let inputs = (0..5_u64).inspect(move |&x| {
        if x > 0 {
            assert!(
                control.wait_for_within(HANG, |s| s.finished.contains(&(x - 1))),
                "call {} never ran before input {x} was read",
                x - 1
            );
        }
    });
    let options = MapOptions::new().buffersize(1);
    let results: Vec<u64> = executor
        .map_with(|x| hold_one(held.id, u64::MAX, x), inputs, options)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results, [0, 1, 2, 3, 4]);
}

#[task]
fn boom_or_hold(control: usize, x: u64) -> BoomOnDrop {
    if x != 2 {
        let control = control_for(control);
        control.start(x);
        control.wait_released(x);
    }
    BoomOnDrop(x)
}

#[test]
fn a_panicking_drop_of_an_untaken_output_leaves_the_pool_working() {
    let executor = ThreadPoolExecutor::new(1);
    let held = Held::new();
    let results = executor.map(|x| boom_or_hold(held.id, x), [2, 3]);
    // Output 2 is done and not taken; call 3 runs.
    held.wait_started(1);
    // As dropping a future holding it would, dropping the map drops output 2 here.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(results)));
    assert!(
        dropped.is_err(),
        "output 2's drop did not run on this thread"
    );
    held.release_all();
    let after = executor.submit(square_number(3));
    assert_eq!(
        after.result_timeout(HANG),
        Ok(9),
        "the pool's thread did not survive"
    );
}

/// Runs per input of `map_stress_...`, which alone uses them.
static STRESS_RUNS: [AtomicUsize; 3_000] = [const { AtomicUsize::new(0) }; 3_000];

/// Spins for a time that varies with the input, so that blocks, steals and stops interleave
/// differently from one map to the next.
#[task]
fn uneven(x: u64) -> u64 {
    STRESS_RUNS[x as usize].fetch_add(1, Ordering::Relaxed);
    let spins = (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) * 64;
    for _ in 0..spins {
        std::hint::spin_loop();
    }
    x * 2
}

#[test]
fn map_stress_no_call_runs_twice_and_every_result_is_in_place() {
    for round in 0..120_usize {
        for runs in &STRESS_RUNS {
            runs.store(0, Ordering::Relaxed);
        }
        let n = 1 + (round * 37) % STRESS_RUNS.len();
        // Some rounds stop early: the iterator dropped half-way, or timed out at once.
        let keep = if round % 3 == 0 { n / 2 } else { n };
        let options = if round % 7 == 0 {
            MapOptions::new().timeout(Duration::ZERO)
        } else {
            MapOptions::new()
        };
        let executor = ThreadPoolExecutor::new(1 + round % 4);
        let mut results = executor.map_with(uneven, 0..n as u64, options);
        let mut taken = 0;
        for (i, result) in results.by_ref().take(keep).enumerate() {
            match result {
                Ok(v) => assert_eq!(v, 2 * i as u64, "round {round}: result {i} out of place"),
                Err(e) => {
                    assert!(e.is_timeout(), "round {round}: {e:?}");
                    break;
                }
            }
            taken += 1;
        }
        drop(results);
        // Waits for every call that started.
        drop(executor);
        let runs: Vec<usize> = STRESS_RUNS[..n]
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect();
        assert!(
            runs.iter().all(|&r| r <= 1),
            "round {round}: a call ran twice"
        );
        assert!(
            runs[..taken].iter().all(|&r| r == 1),
            "round {round}: a result came from a call that did not run once"
        );
        if taken == n {
            assert!(
                runs.iter().all(|&r| r == 1),
                "round {round}: a call never ran"
            );
        }
    }
}
