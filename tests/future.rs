//! `Future<T>`: Python's `concurrent.futures.Future` state machine (PYTHON.md §1.3), its
//! callbacks, its `Debug` (Python's repr) and `.await`.
//!
//! Synchronisation is by channels, barriers and a Mutex+Condvar event, never by sleeping;
//! timeouts appear only where the behaviour under test is a timeout.

use std::future::IntoFuture;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use concurrent_futures::{Error, Future, State, ThreadPoolExecutor};

mod common;
use common::{Gate, block_on};

/// Short: only used where the behaviour under test is the timeout itself.
const SHORT: Duration = Duration::from_millis(20);

fn finished<T>(value: T) -> Future<T> {
    let future = Future::new();
    future.set_result(value).unwrap();
    future
}

fn assert_send_sync<T: Send + Sync>() {}

// ---------------------------------------------------------------------------------------
// States and transitions
// ---------------------------------------------------------------------------------------

#[test]
fn new_future_is_pending() {
    let future: Future<u8> = Future::new();
    assert_eq!(future.state(), State::Pending);
    assert!(!future.done());
    assert!(!future.running());
    assert!(!future.cancelled());

    let default: Future<u8> = Future::default();
    assert_eq!(default.state(), State::Pending);
}

#[test]
fn set_running_or_notify_cancel_moves_pending_to_running() {
    let future: Future<u8> = Future::new();
    assert_eq!(future.set_running_or_notify_cancel(), Ok(true));
    assert_eq!(future.state(), State::Running);
    assert!(future.running());
    assert!(!future.done());
    assert!(!future.cancelled());
}

#[test]
fn set_result_from_running_finishes() {
    let future = Future::new();
    future.set_running_or_notify_cancel().unwrap();
    future.set_result(7_u8).unwrap();
    assert_eq!(future.state(), State::Finished);
    assert!(future.done());
    assert!(!future.running());
    assert!(!future.cancelled());
    assert_eq!(future.result(), Ok(7));
}

#[test]
fn set_result_directly_from_pending_is_allowed() {
    let future = Future::new();
    assert_eq!(future.set_result(String::from("direct")), Ok(()));
    assert_eq!(future.state(), State::Finished);
    assert_eq!(future.result().as_deref(), Ok("direct"));
}

#[test]
fn set_exception_stores_error_and_finishes() {
    let future: Future<u8> = Future::new();
    future.set_running_or_notify_cancel().unwrap();
    future.set_exception(Error::ShutDown).unwrap();
    assert_eq!(future.state(), State::Finished);
    assert!(future.done());
    assert!(!future.cancelled());
    assert_eq!(future.result(), Err(Error::ShutDown));
}

#[test]
fn failed_constructor_gives_finished_future_with_error() {
    let future: Future<u8> = Future::failed(Error::ShutDown);
    assert_eq!(future.state(), State::Finished);
    assert_eq!(future.result(), Err(Error::ShutDown));
}

#[test]
fn clones_share_one_state() {
    let future: Future<u8> = Future::new();
    let clone = future.clone();
    clone.set_result(3).unwrap();
    assert!(future.done());
    assert_eq!(future.result(), Ok(3));
    assert!(future.set_result(4).unwrap_err().is_invalid_state());
}

// ---------------------------------------------------------------------------------------
// cancel()
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_pending_future_returns_true_and_marks_it_cancelled_and_done() {
    let future: Future<u8> = Future::new();
    assert!(future.cancel());
    assert_eq!(future.state(), State::Cancelled);
    assert!(future.cancelled());
    assert!(future.done());
    assert!(!future.running());
}

#[test]
fn cancel_returns_true_when_already_cancelled() {
    let future: Future<u8> = Future::new();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&callbacks);
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert!(future.cancel());
    assert!(
        future.cancel(),
        "a second cancel reports the cancellation again"
    );
    assert_eq!(future.state(), State::Cancelled);
    assert_eq!(
        callbacks.load(Ordering::SeqCst),
        1,
        "no state change, no second callback run"
    );
}

#[test]
fn cancel_returns_false_once_running() {
    let future: Future<u8> = Future::new();
    future.set_running_or_notify_cancel().unwrap();
    assert!(!future.cancel());
    assert_eq!(future.state(), State::Running);
    assert!(!future.cancelled());
    future.set_result(1).unwrap();
    assert_eq!(future.result(), Ok(1));
}

#[test]
fn cancel_returns_false_once_finished() {
    let future = finished(5_u8);
    assert!(!future.cancel());
    assert_eq!(future.state(), State::Finished);
    assert!(!future.cancelled());
    assert_eq!(future.result(), Ok(5));
}

#[test]
fn cancel_returns_false_for_a_failed_future() {
    let future: Future<u8> = Future::new();
    future.set_exception(Error::ShutDown).unwrap();
    assert!(!future.cancel());
    assert_eq!(future.result(), Err(Error::ShutDown));
}

#[test]
fn cancel_wakes_threads_blocked_in_result() {
    let future: Future<u8> = Future::new();
    let waiters = 3;
    let barrier = Barrier::new(waiters + 1);
    let outcomes = thread::scope(|s| {
        let handles: Vec<_> = (0..waiters)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    future.result()
                })
            })
            .collect();
        barrier.wait();
        assert!(future.cancel());
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes, vec![Err(Error::Cancelled); waiters]);
}

// ---------------------------------------------------------------------------------------
// result() / result_timeout() / into_result()
// ---------------------------------------------------------------------------------------

#[test]
fn result_wakes_every_blocked_waiter_with_the_value() {
    let future: Future<String> = Future::new();
    let waiters = 4;
    let barrier = Barrier::new(waiters + 1);
    let outcomes = thread::scope(|s| {
        let handles: Vec<_> = (0..waiters)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    future.result()
                })
            })
            .collect();
        barrier.wait();
        future.set_result("shared".to_owned()).unwrap();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes, vec![Ok("shared".to_owned()); waiters]);
}

#[test]
fn result_of_cancelled_future_is_cancelled_error() {
    let future: Future<u8> = Future::new();
    future.cancel();
    assert_eq!(future.result(), Err(Error::Cancelled));
    assert!(future.result().unwrap_err().is_cancelled());
}

#[test]
fn result_returns_the_stored_error() {
    let future: Future<u8> = Future::new();
    let error = Error::Panicked {
        message: "boom".to_owned(),
        location: None,
        backtrace: None,
    };
    future.set_exception(error.clone()).unwrap();
    assert_eq!(future.result(), Err(error.clone()));
    // Every caller gets the same outcome, not only the first.
    assert_eq!(future.result(), Err(error));
}

#[test]
fn result_returns_error_even_when_it_looks_empty() {
    // Python's gh-132063: a "falsey" exception is still raised. Here: an empty message.
    let future: Future<u8> = Future::new();
    let empty = Error::Panicked {
        message: String::new(),
        location: None,
        backtrace: None,
    };
    future.set_exception(empty.clone()).unwrap();
    assert_eq!(future.result(), Err(empty.clone()));
    assert_eq!(future.error(), Some(empty));
}

#[test]
fn result_timeout_on_never_completed_future_times_out() {
    let future: Future<u8> = Future::new();
    let outcome = future.result_timeout(SHORT);
    assert!(outcome.as_ref().unwrap_err().is_timeout(), "{outcome:?}");
    // The wait gave up; the future did not change.
    assert_eq!(future.state(), State::Pending);
    future.set_result(1).unwrap();
    assert_eq!(future.result(), Ok(1));
}

#[test]
fn result_timeout_zero_polls() {
    let pending: Future<u8> = Future::new();
    assert!(
        pending
            .result_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timeout()
    );
    let done = finished(9_u8);
    assert_eq!(done.result_timeout(Duration::ZERO), Ok(9));
    let cancelled: Future<u8> = Future::new();
    cancelled.cancel();
    assert_eq!(
        cancelled.result_timeout(Duration::ZERO),
        Err(Error::Cancelled)
    );
}

#[test]
fn result_timeout_returns_value_completed_by_another_thread() {
    let future: Future<u8> = Future::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let outcome = thread::scope(|s| {
        let waiter = s.spawn(|| {
            ready_tx.send(()).unwrap();
            future.result_timeout(Duration::from_secs(3600))
        });
        ready_rx.recv().unwrap();
        future.set_result(11).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(outcome, Ok(11));
}

#[test]
fn result_timeout_too_large_to_represent_waits_like_result() {
    let future: Future<u8> = Future::new();
    let outcome = thread::scope(|s| {
        let waiter = s.spawn(|| future.result_timeout(Duration::MAX));
        future.set_result(12).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(outcome, Ok(12));
}

#[test]
fn timeout_error_message_is_pythons() {
    let future: Future<u8> = Future::new();
    let error = future.result_timeout(Duration::ZERO).unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            unfinished: 1,
            total: 1
        }
    );
    assert_eq!(error.to_string(), "1 (of 1) futures unfinished");
}

#[test]
fn into_result_moves_value_without_clone() {
    #[derive(Debug, PartialEq)]
    struct NotClone(u32);

    let future = Future::new();
    future.set_result(NotClone(5)).unwrap();
    assert_eq!(future.into_result(), Ok(NotClone(5)));

    let joined = Future::new();
    joined.set_result(NotClone(6)).unwrap();
    assert_eq!(joined.join(), Ok(NotClone(6)));
}

#[test]
fn into_result_then_result_on_another_handle_is_invalid_state() {
    let future = finished(String::from("taken"));
    let other = future.clone();
    assert_eq!(future.into_result().as_deref(), Ok("taken"));
    assert_eq!(other.result(), Err(Error::InvalidState));
    assert!(other.done());
}

#[test]
fn into_result_of_cancelled_future_is_cancelled() {
    let future: Future<u8> = Future::new();
    future.cancel();
    assert_eq!(future.into_result(), Err(Error::Cancelled));
}

// ---------------------------------------------------------------------------------------
// error() (Python's exception())
// ---------------------------------------------------------------------------------------

#[test]
fn error_is_none_on_success() {
    let future = finished(1_u8);
    assert_eq!(future.error(), None);
    assert_eq!(future.error_timeout(Duration::ZERO), None);
}

#[test]
fn error_returns_the_stored_error() {
    let future: Future<u8> = Future::new();
    future.set_exception(Error::ShutDown).unwrap();
    assert_eq!(future.error(), Some(Error::ShutDown));
}

#[test]
fn error_of_cancelled_future_is_cancelled() {
    let future: Future<u8> = Future::new();
    future.cancel();
    assert_eq!(future.error(), Some(Error::Cancelled));
}

#[test]
fn error_timeout_on_never_completed_future_times_out() {
    let future: Future<u8> = Future::new();
    let error = future.error_timeout(SHORT);
    assert!(matches!(error, Some(Error::Timeout { .. })), "{error:?}");
    assert_eq!(future.state(), State::Pending);
}

#[test]
fn error_wakes_when_another_thread_fails_the_future() {
    let future: Future<u8> = Future::new();
    let outcome = thread::scope(|s| {
        let waiter = s.spawn(|| future.error());
        future.set_exception(Error::ShutDown).unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(outcome, Some(Error::ShutDown));
}

// ---------------------------------------------------------------------------------------
// add_done_callback()
// ---------------------------------------------------------------------------------------

#[test]
fn done_callback_runs_immediately_when_already_done() {
    let future = finished(2_u8);
    let ran_in = Arc::new(Mutex::new(None));
    let record = Arc::clone(&ran_in);
    future.add_done_callback(move |f| {
        *record.lock().unwrap() = Some((thread::current().id(), f.result()));
    });
    // Already recorded when add_done_callback returns: it ran at once, in this thread.
    assert_eq!(
        *ran_in.lock().unwrap(),
        Some((thread::current().id(), Ok(2)))
    );
}

#[test]
fn done_callback_runs_in_the_thread_that_sets_the_result() {
    let future: Future<u8> = Future::new();
    let (tx, rx) = mpsc::channel();
    future.add_done_callback(move |f| {
        tx.send((thread::current().id(), f.result())).unwrap();
    });
    assert!(
        rx.try_recv().is_err(),
        "a pending future does not run its callbacks"
    );
    let completer = thread::spawn({
        let future = future.clone();
        move || {
            future.set_result(8).unwrap();
            thread::current().id()
        }
    });
    let completer_id = completer.join().unwrap();
    assert_eq!(rx.recv().unwrap(), (completer_id, Ok(8)));
}

#[test]
fn done_callback_runs_in_the_cancelling_thread() {
    let future: Future<u8> = Future::new();
    let ran_in = Arc::new(Mutex::new(None));
    let record = Arc::clone(&ran_in);
    future.add_done_callback(move |f| {
        *record.lock().unwrap() = Some((thread::current().id(), f.cancelled()));
    });
    assert!(future.cancel());
    // Synchronous: recorded by the time cancel returns.
    assert_eq!(
        *ran_in.lock().unwrap(),
        Some((thread::current().id(), true))
    );
}

#[test]
fn done_callback_runs_on_failure() {
    let future: Future<u8> = Future::new();
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    future.add_done_callback(move |f| *record.lock().unwrap() = Some(f.error()));
    future.set_exception(Error::ShutDown).unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Some(Error::ShutDown)));
}

#[test]
fn done_callbacks_run_in_insertion_order() {
    let future: Future<u8> = Future::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = Arc::clone(&order);
        future.add_done_callback(move |_| order.lock().unwrap().push(i));
    }
    future.set_result(0).unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn done_callback_runs_exactly_once() {
    let future: Future<u8> = Future::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    future.set_result(1).unwrap();
    assert!(future.set_result(2).is_err());
    assert!(future.set_exception(Error::ShutDown).is_err());
    assert!(!future.cancel());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn done_callback_is_not_rerun_when_executor_notices_cancellation() {
    let future: Future<u8> = Future::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert!(future.cancel());
    assert_eq!(future.set_running_or_notify_cancel(), Ok(false));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn panicking_callback_is_logged_and_next_runs() {
    let future: Future<u8> = Future::new();
    let later = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&later);
    future.add_done_callback(|_| panic!("callback panics on purpose"));
    future.add_done_callback(move |f| record.lock().unwrap().push(f.result()));
    // The panic does not reach the completing thread.
    assert_eq!(future.set_result(4), Ok(()));
    assert_eq!(*later.lock().unwrap(), [Ok(4)]);
    // The future is unaffected.
    assert_eq!(future.state(), State::Finished);
    assert_eq!(future.result(), Ok(4));
}

#[test]
fn panicking_callback_on_done_future_does_not_reach_the_caller() {
    let future = finished(6_u8);
    future.add_done_callback(|_| panic!("immediate callback panics on purpose"));
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(future.result(), Ok(6));
}

#[test]
fn panicking_callback_on_cancel_does_not_stop_cancel() {
    let future: Future<u8> = Future::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    future.add_done_callback(|_| panic!("cancel callback panics on purpose"));
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert!(future.cancel());
    assert!(future.cancelled());
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn done_callback_may_add_another_callback() {
    // A callback runs outside the future's lock, so it may use the future freely.
    let future: Future<u8> = Future::new();
    let (tx, rx) = mpsc::channel();
    let inner_tx = tx.clone();
    future.add_done_callback(move |f| {
        tx.send("outer").unwrap();
        f.add_done_callback(move |_| inner_tx.send("inner").unwrap());
    });
    future.set_result(1).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["outer", "inner"]);
}

#[test]
fn done_callback_runs_in_the_pool_thread_that_completes_the_task() {
    let executor = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("callback-pool")
        .build()
        .unwrap();
    let gate = Gate::new();
    let hold = gate.handle();
    let future = executor.spawn(move || {
        hold.wait();
        3_u8
    });
    let (tx, rx) = mpsc::channel();
    future.add_done_callback(move |f| {
        let name = thread::current().name().map(str::to_owned);
        tx.send((name, f.result())).unwrap();
    });
    gate.open();
    assert_eq!(
        rx.recv().unwrap(),
        (Some("callback-pool_0".to_owned()), Ok(3))
    );
}

// ---------------------------------------------------------------------------------------
// set_running_or_notify_cancel() / set_result() / set_exception() for executors
// ---------------------------------------------------------------------------------------

#[test]
fn set_running_or_notify_cancel_on_cancelled_returns_false() {
    let future: Future<u8> = Future::new();
    assert!(future.cancel());
    assert_eq!(future.set_running_or_notify_cancel(), Ok(false));
    assert_eq!(future.state(), State::Cancelled);
    assert!(future.cancelled());
    assert_eq!(future.result(), Err(Error::Cancelled));
}

#[test]
fn set_running_or_notify_cancel_twice_is_invalid_state() {
    let future: Future<u8> = Future::new();
    assert_eq!(future.set_running_or_notify_cancel(), Ok(true));
    assert_eq!(
        future.set_running_or_notify_cancel(),
        Err(Error::InvalidState)
    );
    assert_eq!(future.state(), State::Running);
}

#[test]
fn set_running_or_notify_cancel_after_notified_cancel_is_invalid_state() {
    let future: Future<u8> = Future::new();
    future.cancel();
    assert_eq!(future.set_running_or_notify_cancel(), Ok(false));
    assert_eq!(
        future.set_running_or_notify_cancel(),
        Err(Error::InvalidState)
    );
    assert!(future.cancelled());
}

#[test]
fn set_running_or_notify_cancel_on_finished_is_invalid_state() {
    let future = finished(1_u8);
    assert_eq!(
        future.set_running_or_notify_cancel(),
        Err(Error::InvalidState)
    );
    assert_eq!(future.result(), Ok(1));
}

#[test]
fn set_result_twice_is_invalid_state() {
    let future = Future::new();
    future.set_result(1_u8).unwrap();
    let second = future.set_result(2);
    assert_eq!(second, Err(Error::InvalidState));
    assert!(second.unwrap_err().is_invalid_state());
    assert_eq!(future.result(), Ok(1), "the first outcome is kept");
}

#[test]
fn set_exception_after_set_result_is_invalid_state() {
    let future = finished(1_u8);
    assert_eq!(
        future.set_exception(Error::ShutDown),
        Err(Error::InvalidState)
    );
    assert_eq!(future.result(), Ok(1));
}

#[test]
fn set_result_after_set_exception_is_invalid_state() {
    let future: Future<u8> = Future::new();
    future.set_exception(Error::ShutDown).unwrap();
    assert_eq!(future.set_result(1), Err(Error::InvalidState));
    assert_eq!(future.result(), Err(Error::ShutDown));
}

#[test]
fn set_result_on_cancelled_future_is_invalid_state() {
    let future: Future<u8> = Future::new();
    future.cancel();
    assert_eq!(future.set_result(1), Err(Error::InvalidState));
    assert_eq!(
        future.set_exception(Error::ShutDown),
        Err(Error::InvalidState)
    );
    assert_eq!(
        future.result(),
        Err(Error::Cancelled),
        "keeps its cancellation"
    );
}

// ---------------------------------------------------------------------------------------
// Debug (Python's repr)
// ---------------------------------------------------------------------------------------

#[test]
fn debug_shows_state_like_python_repr() {
    let future: Future<u64> = Future::new();
    let pending = format!("{future:?}");
    assert!(pending.starts_with("<Future at 0x"), "{pending}");
    assert!(pending.ends_with(" state=pending>"), "{pending}");

    future.set_running_or_notify_cancel().unwrap();
    assert!(format!("{future:?}").ends_with(" state=running>"));

    future.set_result(1).unwrap();
    assert!(
        format!("{future:?}").ends_with(" state=finished returned u64>"),
        "{future:?}"
    );

    let cancelled: Future<u64> = Future::new();
    cancelled.cancel();
    assert!(format!("{cancelled:?}").ends_with(" state=cancelled>"));
    // Both of Python's cancelled states read `cancelled`.
    cancelled.set_running_or_notify_cancel().unwrap();
    assert!(format!("{cancelled:?}").ends_with(" state=cancelled>"));

    let failed: Future<u64> = Future::new();
    failed.set_exception(Error::ShutDown).unwrap();
    let failed = format!("{failed:?}");
    assert!(failed.contains(" state=finished raised "), "{failed}");
    assert!(failed.ends_with(&format!("raised {}>", Error::ShutDown.kind_name())));
}

#[test]
fn debug_names_the_result_type_without_its_path() {
    let text = finished(String::from("x"));
    assert!(
        format!("{text:?}").ends_with("returned String>"),
        "{text:?}"
    );
    let nested = finished(Some(vec![1_u8]));
    assert!(
        format!("{nested:?}").ends_with("returned Option<Vec<u8>>>"),
        "{nested:?}"
    );
}

#[test]
fn debug_address_is_the_same_for_clones() {
    let future: Future<u8> = Future::new();
    let address = |f: &Future<u8>| {
        let repr = format!("{f:?}");
        repr.split_whitespace().nth(2).unwrap().to_owned()
    };
    assert_eq!(address(&future), address(&future.clone()));
    assert_ne!(address(&future), address(&Future::new()));
}

// ---------------------------------------------------------------------------------------
// .await
// ---------------------------------------------------------------------------------------

#[test]
fn await_resolves_future() {
    let executor = ThreadPoolExecutor::new(2);
    let future = executor.spawn(|| 6_u32 * 7);
    assert_eq!(block_on(future), Ok(42));
    let a = executor.spawn(|| 1_u32);
    let b = executor.spawn(|| 2_u32);
    let sum = block_on(async { a.await.unwrap() + b.await.unwrap() });
    assert_eq!(sum, 3);
}

#[test]
fn await_wakes_when_completed_after_first_poll() {
    let future: Future<u8> = Future::new();
    let mut awaiting = pin!(future.clone().into_future());
    // First poll: not done, so the waker is registered.
    let (woken_tx, woken_rx) = mpsc::channel();
    struct Notify(Mutex<mpsc::Sender<()>>);
    impl Wake for Notify {
        fn wake(self: Arc<Self>) {
            self.0.lock().unwrap().send(()).unwrap();
        }
    }
    let waker = Waker::from(Arc::new(Notify(Mutex::new(woken_tx))));
    let mut cx = Context::from_waker(&waker);
    assert!(awaiting.as_mut().poll(&mut cx).is_pending());
    assert!(woken_rx.try_recv().is_err());
    future.set_result(5).unwrap();
    woken_rx.recv().unwrap();
    assert_eq!(awaiting.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
}

#[test]
fn await_resolves_across_threads_with_parking() {
    let future: Future<u8> = Future::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let outcome = thread::scope(|s| {
        let awaiting = future.clone();
        let handle = s.spawn(move || {
            ready_tx.send(()).unwrap();
            block_on(awaiting)
        });
        ready_rx.recv().unwrap();
        future.set_result(9).unwrap();
        handle.join().unwrap()
    });
    assert_eq!(outcome, Ok(9));
}

#[test]
fn await_cancelled_future_gives_cancelled() {
    let future: Future<u8> = Future::new();
    let outcome = thread::scope(|s| {
        let awaiting = future.clone();
        let handle = s.spawn(move || block_on(awaiting));
        future.cancel();
        handle.join().unwrap()
    });
    assert_eq!(outcome, Err(Error::Cancelled));
}

#[test]
fn await_failed_future_gives_its_error() {
    let future: Future<u8> = Future::new();
    future.set_exception(Error::ShutDown).unwrap();
    assert_eq!(block_on(future), Err(Error::ShutDown));
}

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

#[test]
fn future_and_error_are_send_and_sync() {
    assert_send_sync::<Future<u64>>();
    assert_send_sync::<Future<String>>();
    assert_send_sync::<Error>();
    fn assert_std_error<E: std::error::Error + Clone>() {}
    assert_std_error::<Error>();
    assert_eq!(Error::Cancelled.to_string(), "the future was cancelled");
}

/// A value whose `Clone` panics while the flag says so.
#[derive(Debug)]
struct Brittle {
    value: u32,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Clone for Brittle {
    fn clone(&self) -> Self {
        assert!(!self.fail.load(Ordering::SeqCst), "this clone fails");
        Self {
            value: self.value,
            fail: Arc::clone(&self.fail),
        }
    }
}

/// `result()` clones the value under the future's lock: a `Clone` that panics must not leave
/// the future locked, or every later call on it (from any handle) would spin for ever.
#[test]
fn a_panicking_clone_in_result_leaves_the_future_usable() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let future = finished(Brittle {
        value: 5,
        fail: Arc::clone(&fail),
    });
    let other = future.clone();
    let panicked = std::panic::catch_unwind(|| future.result());
    assert!(panicked.is_err(), "the clone panicked through result()");

    // Another thread finds it unlocked and intact.
    let seen = thread::spawn(move || (other.state(), other.done(), format!("{other:?}")))
        .join()
        .unwrap();
    assert_eq!(seen.0, State::Finished);
    assert!(seen.1);
    assert!(
        seen.2.contains("state=finished returned Brittle"),
        "{}",
        seen.2
    );

    fail.store(false, Ordering::SeqCst);
    assert_eq!(future.result().map(|b| b.value), Ok(5));
    assert_eq!(future.into_result().map(|b| b.value), Ok(5));
}
