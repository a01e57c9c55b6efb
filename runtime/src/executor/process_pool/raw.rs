//! Calls that arrive already encoded: what a Redis worker hands its local pool. The call's
//! bytes go to a worker process as they are, and the output comes back as bytes, so the
//! Redis worker never needs the task's Rust type.

use std::time::Duration;

use super::ProcessPoolExecutor;
use super::scheduler::{Completion, mark_sent, was_sent};
use crate::error::Error;
use crate::future::Future;
use crate::process::wire;

/// A future completed with the worker's encoded output, undecoded.
struct RawFuture(Future<Vec<u8>>);

impl Completion for RawFuture {
    fn send(&self) -> bool {
        mark_sent(&self.0)
    }

    fn succeed(&self, mut body: Vec<u8>, at: usize) {
        // The output stays in the buffer it arrived in.
        body.drain(..at.min(body.len()));
        let _ = self.0.set_result(body);
    }

    fn fail(&self, error: Error) {
        let _ = self.0.set_exception(error);
    }

    fn cancel(&self) {
        self.0.cancel_unsent();
    }

    fn sent(&self) -> bool {
        was_sent(&self.0)
    }

    fn future_id(&self) -> usize {
        self.0.id()
    }
}

impl ProcessPoolExecutor {
    /// Runs a call encoded by `process::call::encode` (task name, then its arguments) in a
    /// worker process; the future holds the encoded output. Errors are the pool's own: a
    /// panic, a timeout, a dead worker, an unknown task name.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn submit_encoded(
        &self,
        call: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Future<Vec<u8>> {
        if let Err(error) = super::check_size(call.len(), format_args!("an encoded call")) {
            return Future::failed(error);
        }
        let future = Future::new();
        self.enqueue(
            wire::RUN,
            call,
            timeout.or(self.scheduler.config.task_timeout),
            Box::new(RawFuture(future.clone())),
        );
        future
    }
}
