//! `wait`: block until some or all of a set of futures are done.

use std::time::{Duration, Instant};

use super::{WaitSet, Waitable, watch_all};
use crate::sync::Arc;

/// When [`wait`] returns, as Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any future is done (finished or cancelled).
    FirstCompleted,
    /// As soon as any future finishes with an error; if none does, when all are done.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// What [`wait`] returns: the futures that are done and those that are not, each in input
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneAndNotDone<W> {
    /// Finished or cancelled.
    pub done: Vec<W>,
    /// Pending or running.
    pub not_done: Vec<W>,
}

/// Blocks until the `return_when` condition holds or `timeout` passes, and returns the futures
/// split into done and not done.
///
/// Python's `wait`. Duplicates count once. Running out of time is not an error: the sets are
/// returned as they are. A cancelled future is done the moment it is cancelled.
///
/// ```
/// use std::time::Duration;
/// use concurrent_futures::{Future, ReturnWhen, wait};
///
/// let finished = Future::new();
/// finished.set_result(1).unwrap();
/// let pending = Future::new();
/// let split = wait([&finished, &pending], ReturnWhen::AllCompleted, Some(Duration::from_millis(10)));
/// assert_eq!(split.done.len(), 1);
/// assert_eq!(split.not_done.len(), 1);
/// ```
pub fn wait<I>(
    futures: I,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> DoneAndNotDone<I::Item>
where
    I: IntoIterator,
    I::Item: Waitable,
{
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let set = Arc::new(WaitSet::default());
    let (futures, mut ready) = watch_all(futures, &set, true);
    let mut done = 0;
    while done < futures.len() {
        let satisfied = match return_when {
            ReturnWhen::FirstCompleted => done > 0,
            ReturnWhen::FirstException | ReturnWhen::AllCompleted => false,
        };
        if satisfied {
            break;
        }
        if ready.is_empty() && !set.take_all(&mut ready, deadline) {
            break;
        }
        let key = ready.pop_front().expect("not empty");
        done += 1;
        if return_when == ReturnWhen::FirstException && futures[key].failed() {
            break;
        }
    }
    for future in &futures {
        future.__unsubscribe(&set);
    }
    let (done, not_done) = futures.into_iter().partition(|f| f.done());
    DoneAndNotDone { done, not_done }
}
