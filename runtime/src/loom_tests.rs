//! Model checks of the future's state machine under every interleaving loom explores:
//! cancel racing the executor's start, results racing each other, callbacks added while the
//! future completes, and threads blocked in `result()` or `wait` woken by completion.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p concurrent-futures-runtime --release --lib
//! loom -- --nocapture` (the README's command), which prints how many interleavings each
//! model explored. The largest model has four threads and explores about a million
//! interleavings, a minute or two.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::error::Error;
use crate::future::{Future, State};
use crate::waiting::{ReturnWhen, wait};

/// Runs `model` under every interleaving loom finds, and checks (and prints, for the README)
/// that there was more than one: a model whose threads never interleave proves nothing.
fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    loom::model(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{name}: {runs} interleavings explored");
    assert!(runs > 1, "{name}: only {runs} interleaving");
}

/// A done callback that counts its runs and checks it sees the future done.
fn counting_callback(future: &Future<u32>, runs: &Arc<AtomicUsize>) {
    let runs = Arc::clone(runs);
    future.add_done_callback(move |done| {
        assert!(done.done(), "a callback runs only on a done future");
        runs.fetch_add(1, Ordering::SeqCst);
    });
}

#[test]
fn loom_cancel_races_the_executor_starting_the_task() {
    check("cancel_races_the_executor_starting_the_task", || {
        let future = Future::<u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        counting_callback(&future, &runs);

        let executor = {
            let future = future.clone();
            thread::spawn(move || match future.set_running_or_notify_cancel() {
                Ok(true) => {
                    future.set_result(7).unwrap();
                    true
                }
                Ok(false) => false,
                Err(error) => panic!("first start of a future: {error:?}"),
            })
        };
        let cancelled = future.cancel();
        let ran = executor.join().unwrap();

        // Exactly one side won, and the future says which.
        assert_ne!(cancelled, ran);
        if cancelled {
            assert_eq!(future.state(), State::Cancelled);
            assert_eq!(future.result(), Err(Error::Cancelled));
        } else {
            assert_eq!(future.state(), State::Finished);
            assert_eq!(future.result(), Ok(7));
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the callback ran exactly once"
        );
    });
}

#[test]
fn loom_two_results_race_and_one_wins() {
    check("two_results_race_and_one_wins", || {
        let future = Future::<u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        counting_callback(&future, &runs);

        let other = {
            let future = future.clone();
            thread::spawn(move || future.set_exception(Error::InvalidState).is_ok())
        };
        let mine = future.set_result(1).is_ok();
        let theirs = other.join().unwrap();

        assert_ne!(mine, theirs, "exactly one completion is accepted");
        let expected = if mine {
            Ok(1)
        } else {
            Err(Error::InvalidState)
        };
        assert_eq!(future.result(), expected);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_a_callback_added_while_the_future_completes_runs_once() {
    check(
        "a_callback_added_while_the_future_completes_runs_once",
        || {
            let future = Future::<u32>::new();
            let runs = Arc::new(AtomicUsize::new(0));

            let adder = {
                let future = future.clone();
                let runs = Arc::clone(&runs);
                thread::spawn(move || {
                    let seen = Arc::new(AtomicUsize::new(0));
                    let seen_in_callback = Arc::clone(&seen);
                    future.add_done_callback(move |done| {
                        // Whichever thread runs it, the value is already there.
                        assert_eq!(done.result(), Ok(5));
                        seen_in_callback.fetch_add(1, Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                    });
                    seen
                })
            };
            future.set_result(5).unwrap();
            adder.join().unwrap();

            // Run either at once by the adder (future already done) or by the completer.
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        },
    );
}

#[test]
fn loom_threads_blocked_in_result_are_all_woken() {
    check("threads_blocked_in_result_are_all_woken", || {
        let future = Future::<u32>::new();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let future = future.clone();
                thread::spawn(move || future.result())
            })
            .collect();
        future.set_result(3).unwrap();
        // A lost wake-up would leave a waiter blocked forever: loom reports it as a deadlock.
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Ok(3));
        }
    });
}

#[test]
fn loom_a_waiter_in_wait_is_woken_by_cancel() {
    check("a_waiter_in_wait_is_woken_by_cancel", || {
        let future = Future::<u32>::new();
        let waiter = {
            let future = future.clone();
            thread::spawn(move || {
                let outcome = wait([&future], ReturnWhen::AllCompleted, None);
                (outcome.done.len(), outcome.not_done.len())
            })
        };
        assert!(future.cancel());
        assert_eq!(waiter.join().unwrap(), (1, 0));
        assert!(future.cancelled());
    });
}

#[test]
fn loom_cancel_start_callback_and_waiter_all_race() {
    check("cancel_start_callback_and_waiter_all_race", || {
        let future = Future::<u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let executor = {
            let future = future.clone();
            thread::spawn(move || {
                if future.set_running_or_notify_cancel() == Ok(true) {
                    future.set_result(9).unwrap();
                }
            })
        };
        let waiter = {
            let future = future.clone();
            thread::spawn(move || future.result())
        };
        let adder = {
            let future = future.clone();
            let runs = Arc::clone(&runs);
            thread::spawn(move || counting_callback(&future, &runs))
        };
        let cancelled = future.cancel();
        executor.join().unwrap();
        adder.join().unwrap();
        let seen = waiter.join().unwrap();

        let expected = if cancelled {
            Err(Error::Cancelled)
        } else {
            Ok(9)
        };
        assert_eq!(seen, expected, "the waiter sees the one outcome");
        assert_eq!(future.result(), expected);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}
