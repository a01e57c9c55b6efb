//! `ProcessPoolExecutor` when things go wrong: workers that die (abort, `exit`, segfault,
//! SIGKILL), tasks queued behind a dying one, per-task timeouts, workers that never shake
//! hands (no fork bomb), a worker from another build, and a worker started by hand.
//!
//! Nothing here sleeps: tasks are synchronised through their futures; the only timeouts are
//! the task timeouts under test and watchdogs that turn a hang into a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::{Error, Future, ProcessPoolExecutor, Task, as_completed, task};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn my_pid() -> u32 {
    std::process::id()
}

#[task]
fn abort_worker() -> u32 {
    std::process::abort()
}

#[task]
fn exit_worker(code: i32) -> u32 {
    std::process::exit(code)
}

#[task]
fn segfault_worker() -> u32 {
    // A write to the first page, which is never mapped: a real SIGSEGV. (Not a null pointer:
    // debug builds check `write_volatile`'s pointer for null and would abort instead.) Rust's
    // own SIGSEGV handler only claims stack-guard faults and re-raises this one as default.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::dangling_mut::<u64>().write_volatile(1);
    }
    unreachable!("the write faults")
}

#[task]
fn sigkill_own_worker() -> u32 {
    let _ = Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    loop {
        std::thread::park();
    }
}

fn hang_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[task(timeout = "200ms")]
fn hang_with_own_timeout() -> u32 {
    hang_forever()
}

#[task]
fn hang() -> u32 {
    hang_forever()
}

#[task(timeout = "60s")]
fn square_with_timeout(x: u64) -> u64 {
    x * x
}

/// Generous: only there so that a hang fails the test instead of blocking it.
const WATCHDOG: Duration = Duration::from_secs(60);

fn pool(max_workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(max_workers)
        .build()
        .expect("valid options")
}

/// Reports `index` on `done` each time the future completes: it must be once.
fn track<T: Send + 'static>(future: &Future<T>, index: usize, done: &mpsc::Sender<usize>) {
    let done = done.clone();
    future.add_done_callback(move |_| {
        let _ = done.send(index);
    });
}

/// Submits three squares, `dying`, and three more squares to a pool of two workers; every
/// square succeeds, every future resolves exactly once, and the pool still works afterwards.
/// Returns the dying task's error.
fn only_the_dying_task_fails<T: Task>(dying: T) -> Error
where
    T::Output: std::fmt::Debug,
{
    let executor = pool(2);
    let (done_tx, done_rx) = mpsc::channel();
    let before: Vec<_> = (0..3).map(|i| executor.submit(square_number(i))).collect();
    let dying = executor.submit(dying);
    let after: Vec<_> = (3..6).map(|i| executor.submit(square_number(i))).collect();
    let squares: Vec<_> = before.into_iter().chain(after).collect();
    for (i, future) in squares.iter().enumerate() {
        track(future, i, &done_tx);
    }
    track(&dying, squares.len(), &done_tx);

    let error = dying
        .into_result()
        .expect_err("the dying task cannot succeed");
    for (i, future) in (0u64..).zip(&squares) {
        assert_eq!(future.result(), Ok(i * i), "square {i}");
    }
    // The pool replaced the worker and goes on.
    assert_eq!(executor.submit(square_number(9)).result(), Ok(81));
    // Once dropped, every pool thread has ended: every callback that will run has run.
    drop(executor);
    drop(done_tx);
    let mut seen: Vec<usize> = done_rx.iter().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..=squares.len()).collect::<Vec<_>>(), "each once");
    error
}

fn assert_worker_died(error: &Error, expected_exit: Option<i32>, expected_signal: Option<i32>) {
    match *error {
        Error::WorkerDied {
            pid,
            exit_code,
            signal,
        } => {
            assert_ne!(pid, std::process::id(), "the worker's pid, not ours");
            assert_eq!(
                (exit_code, signal),
                (expected_exit, expected_signal),
                "{error}"
            );
        }
        ref other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn an_aborting_worker_fails_only_its_task() {
    let error = only_the_dying_task_fails(abort_worker());
    assert_worker_died(&error, None, Some(6));
}

#[test]
fn an_exiting_worker_fails_only_its_task() {
    let error = only_the_dying_task_fails(exit_worker(3));
    assert_worker_died(&error, Some(3), None);
}

#[test]
fn a_segfaulting_worker_fails_only_its_task() {
    let error = only_the_dying_task_fails(segfault_worker());
    assert_worker_died(&error, None, Some(11));
}

#[test]
fn a_sigkilled_worker_fails_only_its_task() {
    let error = only_the_dying_task_fails(sigkill_own_worker());
    assert_worker_died(&error, None, Some(9));
}

#[test]
fn tasks_queued_behind_a_dying_task_run_elsewhere() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .pipeline_depth(8)
        .build()
        .unwrap();
    let dying = executor.submit(exit_worker(3));
    let queued: Vec<_> = (0..5).map(|i| executor.submit(square_number(i))).collect();
    assert_worker_died(&dying.result().unwrap_err(), Some(3), None);
    let results: Vec<_> = queued.iter().map(|f| f.result()).collect();
    assert_eq!(results, [Ok(0), Ok(1), Ok(4), Ok(9), Ok(16)]);
}

/// `hung` times out after 200 ms; squares submitted around it succeed, and so does a fresh
/// submit afterwards.
fn times_out_alone(executor: &ProcessPoolExecutor, hung: Future<u32>) {
    let squares: Vec<_> = (0..4).map(|i| executor.submit(square_number(i))).collect();
    assert_eq!(
        hung.result(),
        Err(Error::TaskTimedOut {
            timeout: Duration::from_millis(200)
        })
    );
    let results: Vec<_> = squares.iter().map(|f| f.result()).collect();
    assert_eq!(results, [Ok(0), Ok(1), Ok(4), Ok(9)]);
    assert_eq!(executor.submit(square_number(7)).result(), Ok(49));
}

#[test]
fn a_task_past_its_own_timeout_fails_with_task_timed_out() {
    let executor = pool(2);
    let hung = executor.submit(hang_with_own_timeout());
    times_out_alone(&executor, hung);
}

#[test]
fn submit_with_timeout_times_out_a_hung_task() {
    let executor = pool(2);
    let hung = executor.submit_with_timeout(hang(), Duration::from_millis(200));
    times_out_alone(&executor, hung);
}

#[test]
fn the_builders_task_timeout_is_the_default() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let hung = executor.submit(hang());
    times_out_alone(&executor, hung);
}

#[test]
fn a_task_within_its_timeout_is_unaffected() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .task_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let pid = executor.submit(my_pid()).result().unwrap();
    let futures = [
        executor.submit(square_with_timeout(3)),
        executor.submit_with_timeout(square_number(4), Duration::from_secs(60)),
        executor.submit(square_number(5)),
    ];
    let mut results: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().unwrap())
        .collect();
    results.sort_unstable();
    assert_eq!(results, [9, 16, 25]);
    // Nobody killed the worker.
    assert_eq!(executor.submit(my_pid()).result(), Ok(pid));
}

fn expect_broken(future: &Future<u64>) -> String {
    match future.result_timeout(WATCHDOG) {
        Err(Error::Broken { reason }) => reason,
        other => panic!("expected Broken, got {other:?}"),
    }
}

#[test]
fn workers_that_never_call_init_break_the_pool_instead_of_respawning() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .executable("/bin/true")
        .build()
        .unwrap();
    let futures: Vec<_> = (0..3).map(|i| executor.submit(square_number(i))).collect();
    for future in &futures {
        let reason = expect_broken(future);
        assert!(reason.contains("init()"), "{reason}");
        assert!(reason.contains("enable_test_support!"), "{reason}");
    }
    // It gave up: later submits fail at once, nothing is started again.
    let later = executor.submit(square_number(4));
    assert!(later.done(), "{later:?}");
    assert!(expect_broken(&later).contains("init()"));
}

/// `target/debug/examples/<name>`, built by `cargo test` next to this test binary's
/// `target/debug/deps`.
fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

#[test]
fn a_worker_from_another_build_refuses_to_run() {
    let Some(other) = example_binary("square_numbers") else {
        eprintln!(
            "SKIPPED a_worker_from_another_build_refuses_to_run: examples/square_numbers is not \
             built next to this test binary (run `cargo test`, which builds the examples)"
        );
        return;
    };
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .executable(&other)
        .build()
        .unwrap();
    let future = executor.submit(square_number(3));
    let reason = expect_broken(&future);
    assert!(reason.contains("another binary"), "{reason}");
}

/// Starts this binary as a worker by hand: the marker names descriptor 0, which is not a
/// socket from a pool (stdin is null).
fn start_worker_by_hand(extra_args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["__concurrent_futures_worker_entry", "--exact"])
        .args(extra_args)
        .env("CONCURRENT_FUTURES_WORKER", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn assert_gave_up_clearly(output: &std::process::Output, elapsed: Duration) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", output.status);
    assert!(output.status.code().is_some(), "exits, not killed");
    assert!(
        stderr.contains("not a socket from a pool") && stderr.contains("not by hand"),
        "stderr: {stderr:?}"
    );
    // It does not wait for a handshake that cannot come.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

/// With `--nocapture`, as the pool (and cargo-nextest) start test binaries.
#[test]
fn a_worker_started_by_hand_exits_with_a_clear_message() {
    let (output, elapsed) = start_worker_by_hand(&["--nocapture"]);
    assert_gave_up_clearly(&output, elapsed);
}

#[test]
fn a_worker_started_by_hand_without_nocapture_exits_with_a_clear_message() {
    let (output, elapsed) = start_worker_by_hand(&[]);
    assert_gave_up_clearly(&output, elapsed);
}
