//! A second `shutdown(wait = true)` raced against a first caller's cancellations, for the
//! check that it returns only once they are all done (both pools).

use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use concurrent_futures::{Executor, Future};

/// What the second caller did; collected once the first caller's shutdown has returned.
pub(crate) struct SecondShutdown {
    /// `Some(None)`: it had not returned half a second after it started, while the first
    /// caller was still cancelling. `Some(Some(done))`: it had, and `done` was the state of the
    /// future not yet cancelled then.
    returned_early: Arc<Mutex<Option<Option<bool>>>>,
    caller: Arc<Mutex<Option<SecondCaller>>>,
}

/// The second caller's thread, and what it reports when its shutdown returns.
type SecondCaller = (JoinHandle<()>, Receiver<bool>);

/// Makes `first`'s done callback (which the caller of `shutdown(cancel_futures = true)` runs
/// while cancelling, before it cancels `later`) call `release`, start another thread calling
/// `shutdown(wait = true)`, and give it half a second to return (it did, before the fix, as
/// soon as the pool's threads had exited).
pub(crate) fn race_a_second_shutdown<E, T, U>(
    executor: &Arc<E>,
    first: &Future<T>,
    later: &Future<U>,
    release: impl FnOnce() + Send + 'static,
) -> SecondShutdown
where
    E: Executor + Send + Sync + 'static,
    T: Send + 'static,
    U: Send + 'static,
{
    let race = SecondShutdown {
        returned_early: Arc::default(),
        caller: Arc::default(),
    };
    let executor = Arc::clone(executor);
    let later = later.clone();
    let returned_early = Arc::clone(&race.returned_early);
    let caller = Arc::clone(&race.caller);
    first.add_done_callback(move |_| {
        release();
        let (report, reported) = mpsc::channel();
        let second = thread::spawn(move || {
            executor.shutdown(true, false);
            report.send(later.done()).unwrap();
        });
        let early = reported.recv_timeout(Duration::from_millis(500));
        *returned_early.lock().unwrap() = Some(early.ok());
        *caller.lock().unwrap() = Some((second, reported));
    });
    race
}

impl SecondShutdown {
    /// Checks, once the first caller's shutdown has returned, that the second did not return
    /// before it and that every queued future was done when it did.
    pub(crate) fn check(self) {
        assert_eq!(
            *self.returned_early.lock().unwrap(),
            Some(None),
            "the other caller's shutdown(wait = true) returned while this one was cancelling"
        );
        let (second, reported) = self.caller.lock().unwrap().take().unwrap();
        second.join().unwrap();
        assert_eq!(
            reported.recv(),
            Ok(true),
            "every queued future was done when it returned"
        );
    }
}
