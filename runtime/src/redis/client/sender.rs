//! The sender thread of a `RedisExecutor`: adds submitted tasks to the stream in batches.

use std::time::Instant;

use crossbeam_channel::Receiver;

use super::{Outgoing, Resolve, Shared, broken};
use crate::error::Error;
use crate::redis::conn::Link;
use crate::sync::lock;

/// The most tasks the sender adds in one round trip.
const SEND_BATCH: usize = 4096;

/// The sender thread: adds submitted tasks to the stream, as many per round trip as have
/// been submitted meanwhile, so a loop of `submit` calls is not one round trip each. Ends
/// when the executor is shut down and everything submitted is sent.
pub(super) fn send_loop(shared: &Shared, mut link: Link, to_send: &Receiver<Vec<Outgoing>>) {
    while let Ok(mut batch) = to_send.recv() {
        while batch.len() < SEND_BATCH {
            match to_send.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        if let Err(error) = send(shared, &mut link, &batch) {
            fail_unsent(shared, &batch, &error);
        }
    }
}

/// Adds `outgoing` to the task stream in one round trip.
fn send(shared: &Shared, link: &mut Link, outgoing: &[Outgoing]) -> Result<(), Error> {
    let tasks = shared.keys.tasks();
    let mut pipe = redis::pipe();
    for task in outgoing {
        let cmd = pipe
            .cmd("XADD")
            .arg(&tasks)
            .arg("*")
            .arg("id")
            .arg(&task.id)
            .arg("reply")
            .arg(&shared.reply)
            .arg("body")
            .arg(&task.body);
        if let Some(sig) = &task.sig {
            cmd.arg("sig").arg(sig);
        }
        cmd.ignore();
    }
    let give_up = Some(Instant::now() + shared.connect_timeout);
    link.run(give_up, |conn| pipe.query::<()>(conn))
        .map_err(|e| broken("cannot add tasks to the stream", &e))
}

/// Fails the futures of tasks that never reached the stream.
pub(super) fn fail_unsent(shared: &Shared, unsent: &[Outgoing], error: &Error) {
    let failed: Vec<Box<dyn Resolve>> = {
        let mut pending = lock(&shared.pending);
        // The newest future of each id is the unsent task's (registered just before it was
        // queued); an older one for the same id waits on for its own task's result.
        let failed = unsent
            .iter()
            .filter_map(|task| {
                let waiting = pending.futures.get_mut(&task.id)?;
                let future = waiting.pop();
                if waiting.is_empty() {
                    pending.futures.remove(&task.id);
                }
                future
            })
            .collect();
        if pending.futures.is_empty() {
            shared.all_done.notify_all();
        }
        failed
    };
    // Outside the lock: failing runs done callbacks.
    for future in failed {
        future.fail(error.clone());
    }
}
