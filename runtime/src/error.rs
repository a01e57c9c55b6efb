//! The one error type every future, executor and wait returns.

use std::time::Duration;

/// Why a future did not produce its value, or why an executor refused work.
///
/// One type for every executor, so futures from different pools mix in
/// [`wait`](crate::wait) and [`as_completed`](crate::as_completed). It is `Clone` because
/// [`Future::result`](crate::Future::result) hands the same outcome to every caller.
///
/// Match on the variants, or use the `is_*` predicates where only the kind matters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The future was cancelled before it started.
    #[error("the future was cancelled")]
    Cancelled,

    /// A wait ran out of time; the tasks it waited for go on running.
    ///
    /// Returned by [`Future::result_timeout`](crate::Future::result_timeout), by
    /// [`as_completed_timeout`](crate::as_completed_timeout) and by a `map` deadline. The message
    /// is Python's: `"2 (of 4) futures unfinished"`.
    #[error("{unfinished} (of {total}) futures unfinished")]
    Timeout {
        /// How many of the awaited futures had not finished when time ran out.
        unfinished: usize,
        /// How many futures the wait covered.
        total: usize,
    },

    /// The task panicked, in a pool thread or in a worker process.
    #[error("task panicked{}: {message}", location_suffix(location))]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
        /// `file:line:column` of the panic, when the panic hook saw it.
        location: Option<String>,
        /// The backtrace, captured when `RUST_BACKTRACE` is set.
        backtrace: Option<String>,
    },

    /// The task outlived its own timeout; in a process pool its worker was killed.
    #[error("task timed out after {timeout:?}")]
    TaskTimedOut {
        /// The timeout the task had.
        timeout: Duration,
    },

    /// The worker process running this task died (abort, segfault, kill, out of memory).
    #[error("worker process {pid} died{}", death_suffix(*exit_code, *signal))]
    WorkerDied {
        /// The worker's process id.
        pid: u32,
        /// Its exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
    },

    /// An argument or a result failed to encode or decode.
    #[error("serialization failed: {message}")]
    Serialization {
        /// What the encoder or decoder said.
        message: String,
    },

    /// The executor cannot run tasks (an initializer failed, workers cannot start).
    #[error("executor is broken: {reason}")]
    Broken {
        /// Why, in words that name the fix where there is one.
        reason: String,
    },

    /// The task was submitted after the executor was shut down.
    #[error("cannot schedule new futures after shutdown")]
    ShutDown,

    /// The operation does not fit the future's state: a second `set_*`, or a result that
    /// [`Future::into_result`](crate::Future::into_result) already took.
    #[error("future in invalid state for this operation")]
    InvalidState,

    /// A value given to a constructor or builder is out of range (zero workers, zero chunk).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// Which argument and what it must be.
        message: String,
    },

    /// No worker would run the task; it was moved to the dead-letter stream of its
    /// distributed executor (its signature was missing or wrong, or it was delivered more
    /// often than its limit, its workers dying each time).
    #[error("task moved to the dead-letter stream: {reason}")]
    DeadLetter {
        /// Why, as recorded in the dead-letter stream.
        reason: String,
    },
}

impl Error {
    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// True for [`Error::Timeout`], a wait that ran out (not a task's own timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True for [`Error::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// True for [`Error::TaskTimedOut`].
    pub fn is_task_timeout(&self) -> bool {
        matches!(self, Error::TaskTimedOut { .. })
    }

    /// True for [`Error::WorkerDied`].
    pub fn is_worker_died(&self) -> bool {
        matches!(self, Error::WorkerDied { .. })
    }

    /// True for [`Error::Serialization`].
    pub fn is_serialization(&self) -> bool {
        matches!(self, Error::Serialization { .. })
    }

    /// True for [`Error::Broken`].
    pub fn is_broken(&self) -> bool {
        matches!(self, Error::Broken { .. })
    }

    /// True for [`Error::ShutDown`].
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Error::ShutDown)
    }

    /// True for [`Error::DeadLetter`].
    pub fn is_dead_letter(&self) -> bool {
        matches!(self, Error::DeadLetter { .. })
    }

    /// True for [`Error::InvalidState`].
    pub fn is_invalid_state(&self) -> bool {
        matches!(self, Error::InvalidState)
    }

    /// The short lowercase name of the kind, as `Debug` of a failed future shows it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Cancelled => "cancelled",
            Error::Timeout { .. } => "timeout",
            Error::Panicked { .. } => "panicked",
            Error::TaskTimedOut { .. } => "task_timed_out",
            Error::WorkerDied { .. } => "worker_died",
            Error::Serialization { .. } => "serialization",
            Error::Broken { .. } => "broken",
            Error::ShutDown => "shut_down",
            Error::InvalidState => "invalid_state",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::DeadLetter { .. } => "dead_letter",
        }
    }
}

fn location_suffix(location: &Option<String>) -> String {
    match location {
        Some(at) => format!(" at {at}"),
        None => String::new(),
    }
}

fn death_suffix(exit_code: Option<i32>, signal: Option<i32>) -> String {
    match (exit_code, signal) {
        (_, Some(signal)) => format!(" from signal {signal}"),
        (Some(code), None) => format!(" with exit code {code}"),
        (None, None) => String::new(),
    }
}

/// Two `#[task]` functions were registered under one name; see
/// [`check_task_names`](crate::check_task_names).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "task name `{name}` is registered twice, by `{first}` and by `{second}`; \
     give one of them #[task(name = \"...\")]"
)]
pub struct DuplicateTaskName {
    /// The name both tasks claim.
    pub name: &'static str,
    /// The Rust path of one task type.
    pub first: &'static str,
    /// The Rust path of the other.
    pub second: &'static str,
}
