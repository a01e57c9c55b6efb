//! `Executor::map`: calls submitted eagerly or through a bounded buffer, results in input order.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::time::{Duration, Instant};

use super::Executor;
use super::batch::{Late, MAX_CALLS, Reader};
use crate::error::Error;
use crate::future::Future;
use crate::task::Task;

/// Options for [`Executor::map_with`].
///
/// ```
/// use std::time::Duration;
/// use concurrent_futures::MapOptions;
///
/// let options = MapOptions::new().timeout(Duration::from_secs(5)).buffersize(64);
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    timeout: Option<Duration>,
    chunksize: Option<usize>,
    buffersize: Option<usize>,
}

impl MapOptions {
    /// No timeout, one call per task, every call submitted at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for the whole iteration, measured from the `map_with` call. When a `next()`
    /// runs past it, the call it awaited and all later ones are cancelled, it yields
    /// [`Error::Timeout`], and iteration ends.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls per frame for the process pool; the thread pool ignores it, as Python's does.
    ///
    /// As in Python, a chunk is one unit of work: its calls run one after another in one
    /// worker and come back together. A call that panics fails only its own position; a
    /// worker that dies under a chunk fails each of the chunk's calls with
    /// [`Error::WorkerDied`], and a `timeout` counts every call of an unfinished chunk.
    ///
    /// # Panics
    ///
    /// If `chunksize` is zero.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        assert!(chunksize >= 1, "chunksize must be >= 1");
        self.chunksize = Some(chunksize);
        self
    }

    /// Submits lazily: at most `buffersize` calls in flight; each `next()` submits one more
    /// input, then waits for the oldest. The inputs are pulled only as needed, so an infinite
    /// iterator works.
    ///
    /// # Panics
    ///
    /// If `buffersize` is zero.
    pub fn buffersize(mut self, buffersize: usize) -> Self {
        assert!(buffersize >= 1, "buffersize must be >= 1");
        self.buffersize = Some(buffersize);
        self
    }

    /// The chunk size set, if any.
    pub fn get_chunksize(&self) -> Option<usize> {
        self.chunksize
    }
}

/// The iterator of [`Executor::map`]: each call's `Result`, in input order.
#[must_use = "the calls are submitted; iterate to get their results"]
pub struct Map<'a, E, I, F, T>
where
    E: Executor,
    I: Iterator,
    F: FnMut(I::Item) -> T,
    T: Task,
{
    executor: &'a E,
    inputs: Fuse<I>,
    make_task: F,
    /// Calls taken as batches by an executor that runs them so (the thread pool, eager
    /// mode), oldest first; read before `in_flight`, which is empty then.
    batches: VecDeque<Reader<T>>,
    /// Submitted, not yet yielded, oldest first.
    in_flight: VecDeque<__Submitted<T::Output>>,
    /// Outcomes of the oldest chunk, taken from its future, not yet yielded.
    ready: VecDeque<Result<T::Output, Error>>,
    /// Calls in `in_flight` and `ready`.
    unyielded: usize,
    /// `Some`: lazy mode, refill one chunk per `next()`.
    buffersize: Option<usize>,
    /// Calls per submission: 1, or the `chunksize` option.
    chunk: usize,
    deadline: Option<Instant>,
    submitted: usize,
    /// No more inputs are pulled: exhausted, shut down, or timed out.
    stopped: bool,
}

impl<'a, E, I, F, T> Map<'a, E, I, F, T>
where
    E: Executor,
    I: Iterator,
    F: FnMut(I::Item) -> T,
    T: Task,
{
    pub(crate) fn new(executor: &'a E, make_task: F, inputs: I, options: MapOptions) -> Self {
        let mut map = Self {
            executor,
            inputs: inputs.fuse(),
            make_task,
            batches: VecDeque::new(),
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            unyielded: 0,
            buffersize: options.buffersize,
            chunk: options.chunksize.unwrap_or(1),
            deadline: options.timeout.and_then(|t| Instant::now().checked_add(t)),
            submitted: 0,
            stopped: false,
        };
        if options.buffersize.is_none() {
            map.submit_batches();
        }
        let initial = options
            .buffersize
            .map_or(usize::MAX, |b| b.saturating_mul(map.chunk));
        while map.unyielded < initial && map.submit_next() {}
        map
    }

    /// Hands every input to the executor as batches (one unless there are more than
    /// [`MAX_CALLS`] inputs), if it takes them so; leaves the inputs untouched if not.
    fn submit_batches(&mut self) {
        loop {
            let make_task = &mut self.make_task;
            let mut calls = self.inputs.by_ref().map(make_task);
            let Some(batch) = self.executor.__submit_batch(&mut calls) else {
                return;
            };
            self.stopped = true;
            let calls = batch.remaining();
            self.submitted += calls;
            self.unyielded += calls;
            if calls > 0 {
                self.batches.push_back(batch);
            }
            if calls < MAX_CALLS {
                return;
            }
        }
    }

    /// The next outcome of the oldest batch, waiting until `deadline`.
    fn next_from_batches(&mut self) -> Option<Result<Result<T::Output, Error>, Late>> {
        loop {
            let batch = self.batches.front_mut()?;
            match batch.next_by(self.deadline) {
                Some(next) => return Some(next),
                None => {
                    self.batches.pop_front();
                }
            }
        }
    }

    /// Submits the next chunk of inputs (one input unless `chunksize` was set); false once
    /// there is none to submit.
    fn submit_next(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        if self.chunk == 1 {
            // The common case, on the hot path of every `map`: no vectors per input.
            let Some(input) = self.inputs.next() else {
                self.stopped = true;
                return false;
            };
            let future = self.executor.submit((self.make_task)(input));
            self.track(__Submitted::One(future));
            return true;
        }
        let tasks: Vec<T> = self
            .inputs
            .by_ref()
            .take(self.chunk)
            .map(&mut self.make_task)
            .collect();
        if tasks.is_empty() {
            self.stopped = true;
            return false;
        }
        let mut submitted = Vec::new();
        self.executor.__submit_chunk(tasks, &mut submitted);
        for submitted in submitted {
            self.track(submitted);
        }
        true
    }

    fn track(&mut self, submitted: __Submitted<T::Output>) {
        // A shut-down executor fails every submit at once: stop pulling an endless input.
        if submitted.shut_down(self.executor.__refusal_is_sole_handle()) {
            self.stopped = true;
        }
        let calls = submitted.calls();
        self.in_flight.push_back(submitted);
        self.submitted += calls;
        self.unyielded += calls;
    }

    fn cancel_in_flight(&mut self) {
        for submitted in self.in_flight.drain(..) {
            submitted.cancel();
        }
        // Dropping a batch's reader stops it.
        self.batches.clear();
    }

    /// Cancels everything not yet started after `next()` ran past the deadline waiting for a
    /// call that had not finished: the timeout error, counting that call and every later
    /// unfinished one.
    fn time_out(&mut self, late: Option<__Submitted<T::Output>>) -> Error {
        let mut unfinished = 0;
        if let Some(late) = late {
            // Python's gh-95166: the awaited call is cancelled too, not only the later ones.
            late.cancel();
            unfinished += late.calls();
        }
        unfinished += self.batches.iter().map(Reader::cancel).sum::<usize>();
        unfinished += self
            .in_flight
            .iter()
            .filter(|s| !s.done())
            .map(__Submitted::calls)
            .sum::<usize>();
        self.cancel_in_flight();
        self.stopped = true;
        Error::Timeout {
            unfinished,
            total: self.submitted,
        }
    }

    /// The next outcome in input order, waiting until `deadline`; the submission that was not
    /// done in time otherwise.
    fn next_outcome(&mut self) -> Option<Next<T::Output>> {
        if let Some(outcome) = self.ready.pop_front() {
            return Some(Next::Ready(outcome));
        }
        match self.in_flight.pop_front()? {
            __Submitted::One(future) => Some(match future.into_result_by(self.deadline) {
                Ok(outcome) => Next::Ready(outcome),
                Err(future) => Next::Late(__Submitted::One(future)),
            }),
            __Submitted::Chunk { future, calls } => {
                match future.into_result_by(self.deadline) {
                    Ok(Ok(outcomes)) => self.ready.extend(outcomes),
                    // The chunk failed as a whole (its worker died, the pool broke): so did
                    // each of its calls.
                    Ok(Err(error)) => self.ready.extend((0..calls).map(|_| Err(error.clone()))),
                    Err(future) => return Some(Next::Late(__Submitted::Chunk { future, calls })),
                }
                self.ready.pop_front().map(Next::Ready)
            }
        }
    }
}

impl<E, I, F, T> Iterator for Map<'_, E, I, F, T>
where
    E: Executor,
    I: Iterator,
    F: FnMut(I::Item) -> T,
    T: Task,
{
    type Item = Result<T::Output, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(buffersize) = self.buffersize {
            if self.unyielded <= buffersize.saturating_mul(self.chunk) {
                self.submit_next();
            }
        }
        if !self.batches.is_empty() {
            return match self.next_from_batches()? {
                Ok(outcome) => {
                    self.unyielded -= 1;
                    if matches!(outcome, Err(Error::ShutDown)) {
                        // Refused by a pool shut down as the batch was queued: as a refused
                        // submit does, end here.
                        self.cancel_in_flight();
                        self.stopped = true;
                    }
                    Some(outcome)
                }
                Err(Late) => Some(Err(self.time_out(None))),
            };
        }
        match self.next_outcome()? {
            Next::Ready(outcome) => {
                self.unyielded -= 1;
                Some(outcome)
            }
            Next::Late(late) => Some(Err(self.time_out(Some(late)))),
        }
    }
}

/// The next outcome in input order, or the submission that was not done in time for it.
enum Next<O> {
    Ready(Result<O, Error>),
    Late(__Submitted<O>),
}

/// What `map` submitted for some of its inputs: a future per call, or one future for a chunk
/// of calls sent to a worker together (the process pool's `chunksize`), which resolves to
/// their outcomes in order. Public only for [`Executor::__submit_chunk`].
#[doc(hidden)]
#[derive(Debug)]
pub enum __Submitted<O> {
    /// One call.
    One(Future<O>),
    /// `calls` calls; the future fails as a whole only if the chunk could not run at all.
    Chunk {
        /// The outcomes, in call order.
        future: Future<Vec<Result<O, Error>>>,
        /// How many calls.
        calls: usize,
    },
}

impl<O> __Submitted<O> {
    fn calls(&self) -> usize {
        match self {
            __Submitted::One(_) => 1,
            __Submitted::Chunk { calls, .. } => *calls,
        }
    }

    fn done(&self) -> bool {
        match self {
            __Submitted::One(future) => future.done(),
            __Submitted::Chunk { future, .. } => future.done(),
        }
    }

    fn cancel(&self) {
        match self {
            __Submitted::One(future) => future.cancel(),
            __Submitted::Chunk { future, .. } => future.cancel(),
        };
    }

    /// Refused at once by a shut-down executor. With `sole_handle` (the executor keeps no
    /// handle to a future it refused, see [`Executor::__refusal_is_sole_handle`]), most
    /// submissions are told apart without taking their future's lock, on the line the thread
    /// running them writes; an executor that keeps handles gets every future checked.
    fn shut_down(&self, sole_handle: bool) -> bool {
        fn refused<T>(future: &Future<T>, sole_handle: bool) -> bool {
            (!sole_handle || future.is_only_handle())
                && future.done()
                && matches!(future.error(), Some(Error::ShutDown))
        }
        match self {
            __Submitted::One(future) => refused(future, sole_handle),
            __Submitted::Chunk { future, .. } => refused(future, sole_handle),
        }
    }
}

impl<E, I, F, T> Drop for Map<'_, E, I, F, T>
where
    E: Executor,
    I: Iterator,
    F: FnMut(I::Item) -> T,
    T: Task,
{
    fn drop(&mut self) {
        self.cancel_in_flight();
    }
}

impl<E, I, F, T> fmt::Debug for Map<'_, E, I, F, T>
where
    E: Executor,
    I: Iterator,
    F: FnMut(I::Item) -> T,
    T: Task,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("batches", &self.batches)
            .field("in_flight", &self.in_flight.len())
            .field("submitted", &self.submitted)
            .field("buffersize", &self.buffersize)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
