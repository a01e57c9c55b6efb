//! `as_completed`: futures handed back as they finish.

use std::time::{Duration, Instant};

use super::Waitable;
use super::completions::Completions;
use crate::error::Error;

/// Yields each future once it is done: those already done first, then in completion order.
///
/// Python's `as_completed`. Duplicates (the same future twice, or two clones of it) are
/// yielded once. Works over borrowed (`&futures`) and owned (`futures`) collections, and over
/// futures of different types as `&dyn Waitable`. A future yielded is no longer watched, and
/// dropping the iterator stops watching the rest.
///
/// ```
/// use concurrent_futures::{ThreadPoolExecutor, as_completed};
///
/// let executor = ThreadPoolExecutor::new(2);
/// let futures: Vec<_> = (0..4_u32).map(|i| executor.spawn(move || i * 10)).collect();
/// let mut seen: Vec<u32> = as_completed(&futures).map(|f| f.result().unwrap()).collect();
/// seen.sort();
/// assert_eq!(seen, [0, 10, 20, 30]);
/// ```
pub fn as_completed<I>(futures: I) -> AsCompleted<I::Item>
where
    I: IntoIterator,
    I::Item: Waitable,
{
    AsCompleted {
        completions: Completions::new(futures, true),
    }
}

/// Like [`as_completed`], with a total deadline of `timeout` from this call.
///
/// Items are `Ok(future)`; if the deadline passes first, the last item is
/// `Err(Error::Timeout { .. })`, whose message is Python's (`"2 (of 4) futures unfinished"`),
/// and iteration ends. The unfinished tasks go on.
///
/// ```
/// use std::time::Duration;
/// use concurrent_futures::{Future, as_completed_timeout};
///
/// let never: Future<u8> = Future::new();
/// let now = Future::new();
/// now.set_result(1_u8).unwrap();
/// let outcomes: Vec<_> = as_completed_timeout([&never, &now], Duration::from_millis(10)).collect();
/// assert!(outcomes[0].is_ok());
/// assert_eq!(outcomes[1].as_ref().unwrap_err().to_string(), "1 (of 2) futures unfinished");
/// ```
pub fn as_completed_timeout<I>(futures: I, timeout: Duration) -> AsCompletedTimeout<I::Item>
where
    I: IntoIterator,
    I::Item: Waitable,
{
    AsCompletedTimeout {
        completions: Completions::new(futures, true),
        deadline: Instant::now().checked_add(timeout),
    }
}

/// The iterator of [`as_completed`].
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct AsCompleted<W: Waitable> {
    completions: Completions<W>,
}

impl<W: Waitable> Iterator for AsCompleted<W> {
    type Item = W;

    fn next(&mut self) -> Option<W> {
        self.completions.next_done(None).map(|(_, item)| item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.completions.remaining();
        (remaining, Some(remaining))
    }
}

impl<W: Waitable> ExactSizeIterator for AsCompleted<W> {}

/// The iterator of [`as_completed_timeout`].
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct AsCompletedTimeout<W: Waitable> {
    completions: Completions<W>,
    /// `None`: no deadline (a timeout too large to represent).
    deadline: Option<Instant>,
}

impl<W: Waitable> AsCompletedTimeout<W> {
    /// The same iteration with no deadline; what `join_completed!` uses without `timeout`.
    pub(crate) fn unbounded<I>(futures: I) -> Self
    where
        I: IntoIterator<Item = W>,
    {
        Self {
            completions: Completions::new(futures, true),
            deadline: None,
        }
    }
}

impl<W: Waitable> Iterator for AsCompletedTimeout<W> {
    type Item = Result<W, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let remaining = self.completions.remaining();
        if remaining == 0 {
            return None;
        }
        match self.completions.next_done(self.deadline) {
            Some((_, item)) => Some(Ok(item)),
            None => {
                let total = self.completions.total();
                self.completions.close();
                Some(Err(Error::Timeout {
                    unfinished: remaining,
                    total,
                }))
            }
        }
    }
}
