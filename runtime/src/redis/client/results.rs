//! The result thread of a `RedisExecutor`: reads the announcements of results on its reply
//! stream (and looks up the results of reattached tasks) and completes the futures.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::Value;
use redis::streams::StreamReadReply;

use super::{Pending, RESULT_POLL, Shared};
use crate::redis::conn::Link;
use crate::sync::lock;

/// The result thread: reads this executor's reply stream and completes futures, until the
/// executor is shut down and nothing is pending. Once the executor is dropped, a future whose
/// handles are all gone (and that has no done callback) no longer counts as pending: without
/// that, a result that never comes (a reattach to a task never submitted, a task whose worker
/// holds it for good) kept the thread polling Redis for the life of the program.
pub(super) fn read_results(shared: &Shared, mut link: Link) {
    let mut last = "0-0".to_owned();
    let block_ms = RESULT_POLL.as_millis().to_string();
    loop {
        let (idle, reattached) = {
            let mut pending = lock(&shared.pending);
            if shared.dropped.load(Ordering::Acquire) {
                pending.forget_abandoned();
            }
            (pending.futures.is_empty(), pending.reattached.clone())
        };
        if idle && shared.shut_down.load(Ordering::Acquire) {
            break;
        }
        let give_up = Some(Instant::now() + Duration::from_secs(1));
        let read = link.run(give_up, |conn| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(4096)
                .arg("BLOCK")
                .arg(&block_ms)
                .arg("STREAMS")
                .arg(&shared.reply)
                .arg(&last)
                .query::<Option<StreamReadReply>>(conn)
        });
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cannot read results from Redis; retrying");
                continue;
            }
        };
        let mut announced = Vec::new();
        for stream in read.into_iter().flat_map(|r| r.keys) {
            for entry in stream.ids {
                if let (Some(Value::BulkString(id)), Some(Value::BulkString(value))) =
                    (entry.map.get("id"), entry.map.get("v"))
                {
                    announced.push((String::from_utf8_lossy(id).into_owned(), value.clone()));
                }
                last = entry.id;
            }
        }
        if !announced.is_empty() {
            // Announcements are read once: drop them, so the stream stays short.
            let trimmed = link.run(give_up, |conn| {
                redis::cmd("XTRIM")
                    .arg(&shared.reply)
                    .arg("MINID")
                    .arg(&last)
                    .query::<()>(conn)
            });
            if let Err(error) = trimmed {
                tracing::debug!(%error, "cannot trim the reply stream");
            }
        }
        if !reattached.is_empty() {
            let keys: Vec<String> = reattached.iter().map(|id| shared.keys.result(id)).collect();
            let found = link.run(give_up, |conn| {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query::<Vec<Option<Vec<u8>>>>(conn)
            });
            match found {
                Ok(values) => announced.extend(
                    reattached
                        .into_iter()
                        .zip(values)
                        .filter_map(|(id, value)| Some((id, value?))),
                ),
                Err(error) => tracing::debug!(%error, "cannot look up reattached results"),
            }
        }
        resolve(shared, announced);
    }
    let _ = link.run(Some(Instant::now()), |conn| {
        redis::cmd("DEL").arg(&shared.reply).query::<()>(conn)
    });
}

/// Completes the futures of `announced` results; a task announced twice (it ran twice)
/// resolves with the first, and only once.
fn resolve(shared: &Shared, announced: Vec<(String, Vec<u8>)>) {
    if announced.is_empty() {
        return;
    }
    let mut ready = Vec::with_capacity(announced.len());
    let now_idle = {
        let mut pending = lock(&shared.pending);
        for (id, value) in announced {
            if let Some(waiting) = pending.futures.remove(&id) {
                ready.extend(
                    waiting
                        .into_iter()
                        .map(|future| (id.clone(), value.clone(), future)),
                );
            }
        }
        let Pending {
            futures,
            reattached,
        } = &mut *pending;
        reattached.retain(|id| futures.contains_key(id));
        futures.is_empty()
    };
    // Outside the lock: completing runs done callbacks, which may submit.
    for (id, value, future) in ready {
        future.resolve(shared.key.as_ref(), &id, &value);
    }
    if now_idle {
        shared.all_done.notify_all();
    }
}
