//! The runtime of `concurrent-futures`: futures, executors, waiting.
//!
//! Users depend on the `concurrent-futures` facade, which re-exports everything here; see its
//! documentation for the guide. This crate keeps one executor per file behind the [`Executor`]
//! trait and a flat public surface.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[doc(hidden)]
pub mod bytes;
mod encode;
mod error;
mod executor;
mod future;
#[doc(hidden)]
pub mod fuzzing;
mod help;
#[cfg(all(test, loom))]
mod loom_tests;
mod process;
#[cfg(feature = "redis")]
mod redis;
mod sync;
mod task;
mod unwind;
mod waiting;

pub use error::{DuplicateTaskName, Error};
pub use executor::process_pool::{ProcessPoolBuilder, ProcessPoolExecutor};
pub use executor::thread_pool::{InitResult, ThreadPoolBuilder, ThreadPoolExecutor};
#[doc(hidden)]
pub use executor::{__BatchReader, __Submitted};
pub use executor::{Executor, Map, MapOptions};
pub use future::{AwaitFuture, Future, State};
pub use process::entry::init;
#[cfg(feature = "redis")]
pub use redis::{
    RedisBuilder, RedisExecutor, WORKER_CA_FILE_VAR, WORKER_CLAIM_IDLE_VAR, WORKER_CONCURRENCY_VAR,
    WORKER_KEY_VAR, WORKER_PREFETCH_VAR, WORKER_PREFIX_VAR, WORKER_URL_VAR, worker_command,
};
pub use task::{ErasedTask, Task, check_task_names};
pub use waiting::{
    AsCompleted, AsCompletedTimeout, DoneAndNotDone, ReturnWhen, Waitable, as_completed,
    as_completed_timeout, wait,
};

/// What `#[task]` and `join_completed!` expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bytes;
    pub use crate::bytes::{decode_output_bytes, decode_output_bytes_owned, encode_output_bytes};
    pub use crate::error::Error;
    pub use crate::future::Future;
    pub use crate::fuzzing;
    pub use crate::process::entry::{TestWorkerEntry, test_worker_entry};
    pub use crate::task::{ErasedTask, Task, TaskRegistration, run_encoded, run_registered};
    pub use crate::waiting::join::{Outcome, completion_order, join_collection, waitable};
    pub use crate::waiting::{WaitSet, Waitable};
    pub use postcard::Error as PostcardError;
}
