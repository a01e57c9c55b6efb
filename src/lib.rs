//! Python's `concurrent.futures`, done the Rust way.
//!
//! `#[task]` turns an ordinary function into a serializable task type; an executor runs it and
//! hands back a typed [`Future`]; [`as_completed`], [`wait`] and [`join_completed!`] consume
//! results as they finish.
//!
//! ```
//! use concurrent_futures::{ThreadPoolExecutor, as_completed, task};
//!
//! #[task]
//! fn square_number(x: u64) -> u64 {
//!     x * x
//! }
//!
//! concurrent_futures::init(); // first line of `main`: where a worker process enters
//! let executor = ThreadPoolExecutor::new(3);
//! let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
//! let mut results: Vec<u64> = as_completed(&futures).map(|f| f.result().unwrap()).collect();
//! results.sort();
//! assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! // dropping the executor waits for its work, like leaving Python's `with` block
//! ```
//!
//! # How it maps to Python
//!
//! | Python | here |
//! |---|---|
//! | `executor.submit(fn, *args)` | `executor.submit(task_fn(args))` for `#[task]` functions; `executor.spawn(closure)` on the thread pool |
//! | `future.result(timeout)` | [`Future::result`], [`Future::result_timeout`], [`Future::into_result`] |
//! | `future.exception(timeout)` | [`Future::error`], [`Future::error_timeout`] |
//! | `executor.map(fn, iterable, timeout=, buffersize=)` | [`Executor::map`], [`Executor::map_with`] and [`MapOptions`] |
//! | `as_completed(fs, timeout)` | [`as_completed`], [`as_completed_timeout`] |
//! | `wait(fs, timeout, return_when)` | [`wait`] with [`ReturnWhen`] |
//! | `with Executor() as e:` | the executor's `Drop`, which is `shutdown(wait = true)` |
//! | exceptions | one [`Error`] enum |
//!
//! Where this crate differs on purpose:
//!
//! - A cancelled future counts as done for [`wait`] and [`as_completed`] the moment
//!   [`Future::cancel`] returns `true`. CPython counts it only once its executor notices, which
//!   can hang a waiter (gh-92001, gh-109934).
//! - `map` yields a failed call's error at its position and goes on (Python 3.15's behaviour).
//! - A task returning `Result<T, E>` resolves its future to `Ok(Err(e))`: the task's own error
//!   is typed data, distinct from the executor's [`Error`].
//!
//! # The process pool
//!
//! Swapping [`ThreadPoolExecutor`] for [`ProcessPoolExecutor`] is the only change needed to
//! run the same tasks in worker processes. The workers are this program started again: put
//! [`init`] first in `main`, where a worker enters and never returns. Everything before it runs
//! in every worker too, as code above Python's `if __name__ == "__main__":` does.
//!
//! ```no_run
//! use concurrent_futures::{ProcessPoolExecutor, as_completed, task};
//! # #[task] fn square_number(x: u64) -> u64 { x * x }
//! fn main() {
//!     concurrent_futures::init();
//!     let executor = ProcessPoolExecutor::new(2);
//!     let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
//!     for future in as_completed(&futures) {
//!         println!("{}", future.result().unwrap());
//!     }
//! }
//! ```
//!
//! Where it does better than Python's:
//!
//! - One dead worker (abort, segfault, `process::exit`, SIGKILL, out of memory) fails only the
//!   task it was running, with [`Error::WorkerDied`]; the worker is replaced and the tasks it
//!   had not started run elsewhere. Python breaks the whole pool.
//! - A per-task timeout (`#[task(timeout = "10s")]`, [`ProcessPoolExecutor::submit_with_timeout`],
//!   or the builder's default) kills the hung worker and fails the task with
//!   [`Error::TaskTimedOut`]. Python cannot stop a running task.
//! - An argument that cannot be encoded fails its own future with [`Error::Serialization`]
//!   before anything is sent; the pool is untouched.
//! - A worker from another build (the binary was rebuilt while the program ran) refuses the
//!   handshake, so stale code never runs; a program that forgets [`init`] gets
//!   [`Error::Broken`] naming the fix instead of a fork bomb.
//!
//! Under `cargo test` the test harness owns `main`; one line at the root of each test crate
//! lets its test binary serve as the workers:
//!
//! ```
//! concurrent_futures::enable_test_support!();
//! # fn main() {}
//! ```
//!
//! # `join_completed!`
//!
//! Over a collection, it is an iterator of results in completion order:
//!
//! ```
//! use concurrent_futures::{ThreadPoolExecutor, join_completed, task};
//! # #[task] fn square_number(x: u64) -> u64 { x * x }
//! let executor = ThreadPoolExecutor::new(2);
//! let futures: Vec<_> = (1..=3).map(|i| executor.submit(square_number(i))).collect();
//! let total: u64 = join_completed!(futures).map(|r| r.unwrap()).sum();
//! assert_eq!(total, 14);
//! ```
//!
//! Over futures of different types, one arm each; the arm bodies run in completion order
//! inside the caller, so `?` and `return` work, and the value is the tuple of the arms' values
//! in written order:
//!
//! ```
//! use concurrent_futures::{Error, ThreadPoolExecutor, join_completed, task};
//! # #[task] fn square_number(x: u64) -> u64 { x * x }
//! #[task]
//! fn is_prime(n: u64) -> bool {
//!     n > 1 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
//! }
//!
//! fn run() -> Result<(u64, bool), Error> {
//!     let executor = ThreadPoolExecutor::new(2);
//!     let (sq, prime) = join_completed! {
//!         s = executor.submit(square_number(4)) => s?,
//!         p = executor.submit(is_prime(97)) => p?,
//!     };
//!     Ok((sq, prime))
//! }
//! assert_eq!(run().unwrap(), (16, true));
//! ```
//!
//! An arm's `break` or `continue` would act on the macro's own loop; leave arms with `?` or
//! `return`.
//!
//! # Distributed (Redis)
//!
//! With the `redis` feature, `RedisExecutor` runs the same tasks on workers attached to a
//! Redis server (version 7), on any host. The workers are this program again: started with
//! `CONCURRENT_FUTURES_REDIS_WORKER` naming the server, [`init`] makes the process a worker
//! that runs up to `CONCURRENT_FUTURES_REDIS_CONCURRENCY` tasks at once, each in a process of
//! its own local [`ProcessPoolExecutor`], so a crashing task does not take the worker down:
//!
//! ```text
//! CONCURRENT_FUTURES_REDIS_WORKER=redis://redis.internal:6379/ \
//! CONCURRENT_FUTURES_REDIS_CONCURRENCY=8 ./my-program
//! ```
//!
//! Tasks go through a Redis stream and a consumer group. They are delivered **at least
//! once**: a worker that dies or stops heartbeating has its tasks claimed by another, which
//! runs them again if they are `#[task(idempotent)]` and fails them with
//! [`Error::WorkerDied`] otherwise. A task delivered more often than the limit goes to the
//! dead-letter stream and its future fails with [`Error::DeadLetter`]. Results are stored
//! first-writer-wins under the task id, so every future resolves once; a restarted program
//! finds its results with `RedisExecutor::reattach`. Timeouts and panics are the process
//! pool's. The URL may carry a password and use TLS (`rediss://`); a shared signing key
//! (`RedisBuilder::signing_key`, `CONCURRENT_FUTURES_REDIS_KEY` for workers) signs every
//! task with HMAC-SHA256, and workers reject unsigned or mis-signed tasks before decoding
//! them.
//!
//! ```no_run
//! # #[cfg(feature = "redis")] {
//! use concurrent_futures::{RedisExecutor, as_completed, task};
//!
//! #[task(idempotent)]
//! fn square_number(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() {
//!     concurrent_futures::init(); // a worker enters here and never returns
//!     let executor = RedisExecutor::connect("redis://127.0.0.1:6379/").unwrap();
//!     let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
//!     for future in as_completed(&futures) {
//!         println!("{}", future.result().unwrap());
//!     }
//! }
//! # }
//! ```

pub use concurrent_futures_macros::{main, task};
pub use concurrent_futures_runtime::{
    AsCompleted, AsCompletedTimeout, AwaitFuture, DoneAndNotDone, DuplicateTaskName, Error,
    Executor, Future, InitResult, Map, MapOptions, ProcessPoolBuilder, ProcessPoolExecutor,
    ReturnWhen, State, Task, ThreadPoolBuilder, ThreadPoolExecutor, Waitable, as_completed,
    as_completed_timeout, check_task_names, init, wait,
};
#[cfg(feature = "redis")]
pub use concurrent_futures_runtime::{
    RedisBuilder, RedisExecutor, WORKER_CA_FILE_VAR, WORKER_CLAIM_IDLE_VAR, WORKER_CONCURRENCY_VAR,
    WORKER_KEY_VAR, WORKER_PREFETCH_VAR, WORKER_PREFIX_VAR, WORKER_URL_VAR, worker_command,
};

/// Consumes futures as they complete; see the [crate docs](crate#join_completed).
///
/// - `join_completed!(futures)` and `join_completed!(futures, timeout = duration)`: an iterator
///   of `Result<T, Error>` in completion order, over owned futures (their values are moved
///   out) or borrowed ones (`&futures`; their values are cloned). With a timeout, the iterator's last item is
///   `Err(Error::Timeout { .. })` if time runs out.
/// - `join_completed! { name = future => body, ... }`: runs each body, with `name` bound to that
///   future's `Result<T, Error>`, as the future completes; evaluates to the tuple of the bodies'
///   values in written order.
#[macro_export]
macro_rules! join_completed {
    ($($input:tt)*) => {
        $crate::__private::join_completed_impl! { $crate; $($input)* }
    };
}

/// Lets the test binaries of a crate serve as process-pool workers: one line per test crate,
/// at its root (an integration test file, or the crate root of unit tests).
///
/// ```
/// concurrent_futures::enable_test_support!();
/// # fn main() {}
/// ```
///
/// The test harness owns `main`, so there is no place for [`init`]. This defines a hidden test
/// that a worker process is started into (`<test binary> <hidden test> --exact`), where it
/// runs the worker loop; in a normal test run that test does nothing. Works with `cargo test`
/// and cargo-nextest. It expands to nothing outside `cfg(test)`; use it once per test binary.
#[macro_export]
macro_rules! enable_test_support {
    () => {
        #[cfg(test)]
        #[test]
        #[doc(hidden)]
        fn __concurrent_futures_worker_entry() {
            $crate::__private::test_worker_entry();
        }

        // Test builds only: in a library's normal build it must not redirect the workers of
        // the programs that use it.
        #[cfg(test)]
        $crate::__private::inventory::submit! {
            $crate::__private::TestWorkerEntry::new(
                ::core::module_path!(),
                "__concurrent_futures_worker_entry",
            )
        }
    };
}

/// What generated code names. Not public API: no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use ::inventory;
    pub use ::serde;
    pub use ::typetag;
    pub use concurrent_futures_macros::join_completed_impl;
    pub use concurrent_futures_runtime::__private::*;
}
