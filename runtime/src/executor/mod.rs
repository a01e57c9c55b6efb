//! The `Executor` trait every pool implements, and the `map` that all of them share.

pub(crate) mod batch;
mod cancellations;
mod job_queue;
mod map;
pub(crate) mod process_pool;
pub(crate) mod thread_pool;

pub use batch::Reader as __BatchReader;
pub use map::{__Submitted, Map, MapOptions};

/// An executor type's inherent `map` and `map_with`, forwarding to [`Executor`]'s, so that
/// users call them without importing the trait. A string, if given, is added to `map_with`'s
/// documentation.
macro_rules! inherent_map {
    ($($map_with_doc:literal)?) => {
        /// See [`Executor::map`](crate::Executor::map).
        pub fn map<I, F, T>(
            &self,
            f: F,
            inputs: I,
        ) -> crate::executor::Map<'_, Self, I::IntoIter, F, T>
        where
            I: IntoIterator,
            F: FnMut(I::Item) -> T,
            T: crate::task::Task,
        {
            crate::executor::Executor::map(self, f, inputs)
        }

        /// See [`Executor::map_with`](crate::Executor::map_with).
        $(#[doc = $map_with_doc])?
        pub fn map_with<I, F, T>(
            &self,
            f: F,
            inputs: I,
            options: crate::executor::MapOptions,
        ) -> crate::executor::Map<'_, Self, I::IntoIter, F, T>
        where
            I: IntoIterator,
            F: FnMut(I::Item) -> T,
            T: crate::task::Task,
        {
            crate::executor::Executor::map_with(self, f, inputs, options)
        }
    };
}
pub(crate) use inherent_map;

use crate::future::Future;
use crate::task::Task;

/// What every pool can do, so code can be generic over where its tasks run, as with Python's
/// `Executor` base class.
///
/// Each pool also has these as inherent methods, so calling them needs no import.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor, task};
///
/// #[task]
/// fn double(x: i64) -> i64 {
///     x * 2
/// }
///
/// fn total(executor: &impl Executor, inputs: Vec<i64>) -> i64 {
///     executor.map(double, inputs).map(|r| r.unwrap()).sum()
/// }
///
/// assert_eq!(total(&ThreadPoolExecutor::new(2), vec![1, 2, 3]), 12);
/// ```
pub trait Executor {
    /// Schedules `task` and returns its future. Never panics: a task that cannot be scheduled
    /// gets a future already failed with the reason ([`Error::ShutDown`](crate::Error::ShutDown),
    /// [`Error::Broken`](crate::Error::Broken), ...).
    fn submit<T: Task>(&self, task: T) -> Future<T::Output>;

    /// Runs `f(input)` for every input and yields the results in input order.
    ///
    /// Every call is submitted now, before the first `next()`, as in Python. A failed call
    /// yields its error at its position and iteration goes on. Dropping the iterator cancels
    /// the calls that have not started. On a shut-down executor (where Python's `map` raises)
    /// it yields one [`Error::ShutDown`](crate::Error::ShutDown) and ends. See [`map_with`](Self::map_with) for a timeout and
    /// lazy submission.
    ///
    /// The thread pool makes no future per call here: it hands the calls to its threads as
    /// one batch. Each thread takes calls in input order, one at a time while they are slow
    /// and in growing blocks (up to 4,096 calls) while they are short, and a thread with
    /// nothing left takes the rest of another's block, so a call that blocks holds back no
    /// other while a thread is free; as many calls run at once as there are threads. A map
    /// over many short calls runs several times faster than submitting them one by one.
    ///
    /// What differs from Python's futures-per-call `map`: every input is read (and every task
    /// made) before the first call starts, so an input iterator that waits for the map's own
    /// calls, or shuts the pool down part-way, needs [`MapOptions::buffersize`], which
    /// submits call by call; and short calls taken in blocks may start up to a block ahead of
    /// an earlier call, so calls that wait for earlier ones to *start* need it too.
    fn map<I, F, T>(&self, f: F, inputs: I) -> Map<'_, Self, I::IntoIter, F, T>
    where
        Self: Sized,
        I: IntoIterator,
        F: FnMut(I::Item) -> T,
        T: Task,
    {
        Map::new(self, f, inputs.into_iter(), MapOptions::default())
    }

    /// [`map`](Self::map) with [`MapOptions`]: a `timeout` from this call, a `chunksize`, and
    /// a `buffersize` that submits lazily (so an infinite iterator works).
    fn map_with<I, F, T>(
        &self,
        f: F,
        inputs: I,
        options: MapOptions,
    ) -> Map<'_, Self, I::IntoIter, F, T>
    where
        Self: Sized,
        I: IntoIterator,
        F: FnMut(I::Item) -> T,
        T: Task,
    {
        Map::new(self, f, inputs.into_iter(), options)
    }

    /// Submits a `map` chunk. The process pool sends it as one frame with one future; the
    /// default submits each task on its own, as the thread pool does (Python's ignores
    /// `chunksize` too).
    #[doc(hidden)]
    fn __submit_chunk<T: Task>(&self, tasks: Vec<T>, into: &mut Vec<__Submitted<T::Output>>)
    where
        Self: Sized,
    {
        into.extend(
            tasks
                .into_iter()
                .map(|task| __Submitted::One(self.submit(task))),
        );
    }

    /// Takes a `map`'s calls (up to `u32::MAX` of them) as one batch that its threads share,
    /// if it runs calls in this process and is open (the thread pool); `None`, touching
    /// nothing, if the calls are to be submitted one by one.
    #[doc(hidden)]
    fn __submit_batch<T: Task>(
        &self,
        calls: &mut dyn Iterator<Item = T>,
    ) -> Option<__BatchReader<T>>
    where
        Self: Sized,
    {
        let _ = calls;
        None
    }

    /// True if a submission this executor refuses comes back as the only handle to its
    /// future, which lets `map` tell a refusal without locking each accepted future. False
    /// unless the executor promises it: one of the user's own may keep every future.
    #[doc(hidden)]
    fn __refusal_is_sole_handle(&self) -> bool {
        false
    }

    /// Stops accepting work. With `wait`, blocks until the submitted work is done and the
    /// workers have exited; with `cancel_futures`, cancels the work that has not started.
    /// Safe to call more than once, from several threads at once: a call with `wait` returns
    /// only once another caller's `cancel_futures` has cancelled everything it took (the
    /// cancelling runs done callbacks, so it happens outside the pool's lock). After it,
    /// `submit` gives [`Error::ShutDown`](crate::Error::ShutDown).
    fn shutdown(&self, wait: bool, cancel_futures: bool);
}
