//! The runtime half of `join_completed!`: what its expansion calls.

use std::time::Duration;

use super::Waitable;
use super::as_completed::AsCompletedTimeout;
use super::completions::Completions;
use crate::error::Error;
use crate::future::Future;

/// A type-erased handle to `future`, for the arm form's completion order.
pub fn waitable<T: Send + 'static>(future: &Future<T>) -> Box<dyn Waitable> {
    Box::new(future.clone())
}

/// The indices of `futures` in completion order (already done ones first). No deduplication:
/// two arms on clones of one future both run.
pub fn completion_order(futures: Vec<Box<dyn Waitable>>) -> impl Iterator<Item = usize> {
    let mut completions = Completions::new(futures, false);
    std::iter::from_fn(move || completions.next_done(None).map(|(index, _)| index))
}

/// The collection form: each future's result, in completion order; with a timeout, an
/// `Err(Error::Timeout { .. })` last if time runs out. Owned futures give their values up
/// (`into_result`); borrowed ones clone them (`result`).
pub fn join_collection<I, T>(
    futures: I,
    timeout: Option<Duration>,
) -> impl Iterator<Item = Result<T, Error>>
where
    I: IntoIterator,
    I::Item: Outcome<Output = T>,
{
    let completions = match timeout {
        Some(timeout) => super::as_completed_timeout(futures, timeout),
        None => AsCompletedTimeout::unbounded(futures),
    };
    completions.map(|item| item.and_then(Outcome::outcome))
}

/// A future the collection form can take the result of: owned or borrowed.
pub trait Outcome: Waitable {
    /// The future's value type.
    type Output;

    /// The result of a done future.
    fn outcome(self) -> Result<Self::Output, Error>;
}

impl<T> Outcome for Future<T> {
    type Output = T;

    fn outcome(self) -> Result<T, Error> {
        self.into_result()
    }
}

impl<T: Clone> Outcome for &Future<T> {
    type Output = T;

    fn outcome(self) -> Result<T, Error> {
        self.result()
    }
}
