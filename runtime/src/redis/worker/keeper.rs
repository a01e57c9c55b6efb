//! The keeper thread of a Redis worker: heartbeats for the tasks this worker holds, claims
//! of the tasks of workers that stopped, and removal of their consumers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::Value;
use redis::streams::StreamAutoClaimReply;

use super::Worker;
use crate::redis::conn::Link;
use crate::redis::keys::GROUP;
use crate::redis::script;
use crate::sync::lock;

/// Tasks claimed from stopped workers per pass of the keeper.
const CLAIM_BATCH: usize = 64;

/// The shortest keeper period. Each period costs several round trips to Redis (heartbeat,
/// pending read, claim, consumer list and removals); at a quarter of a claim time of a few
/// milliseconds (`CONCURRENT_FUTURES_REDIS_CLAIM_IDLE_MS=1` gave 250 µs) that was close to a
/// busy loop against the server. Claim times under 40 ms therefore get fewer than four
/// heartbeats each, and under 10 ms a task may go unheartbeated past its claim time and be
/// claimed from a live worker: such claim times suit tests of claiming, not deployments.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// A consumer idle this many claim periods, with nothing pending, is a stopped worker's.
const STALE_CONSUMER_FACTOR: u32 = 10;

/// Heartbeats the tasks this worker holds, and claims those of stopped workers.
pub(super) fn keep_loop(worker: &Worker, mut link: Link) {
    let period = keeper_period(worker.claim_idle);
    let idle_ms = worker.claim_idle.as_millis().to_string();
    loop {
        // A timer, not synchronisation: the heartbeat's period.
        std::thread::sleep(period);
        if let Err(error) = heartbeat(worker, &mut link) {
            tracing::warn!(%error, "heartbeat failed");
        }
        if let Err(error) = claim_stopped(worker, &mut link, &idle_ms) {
            tracing::warn!(%error, "cannot claim the tasks of stopped workers");
        }
        if let Err(error) = forget_stopped(worker, &mut link) {
            tracing::debug!(%error, "cannot remove stopped consumers");
        }
    }
}

/// Resets the idle time of the tasks this worker holds and still owns, in one atomic step
/// (see [`script::heartbeat`]): a task another worker claimed meanwhile (this one was too
/// slow to heartbeat) is left to it.
fn heartbeat(worker: &Worker, link: &mut Link) -> redis::RedisResult<()> {
    let held: Vec<String> = lock(&worker.held).entries.iter().cloned().collect();
    if held.is_empty() {
        return Ok(());
    }
    let hash = script::heartbeat().get_hash();
    link.run(None, |conn| {
        redis::cmd("EVALSHA")
            .arg(hash)
            .arg(1)
            .arg(&worker.tasks)
            .arg(GROUP)
            .arg(&worker.consumer)
            .arg(&held)
            .query::<i64>(conn)
    })
    .map(drop)
}

/// Removes the consumers of stopped workers once their tasks are claimed: every process start
/// adds one (a unique name), and the group would otherwise list them forever.
fn forget_stopped(worker: &Worker, link: &mut Link) -> redis::RedisResult<()> {
    let info: redis::streams::StreamInfoConsumersReply = link.run(None, |conn| {
        redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&worker.tasks)
            .arg(GROUP)
            .query(conn)
    })?;
    // Long past the claim time, so that a live worker that was merely slow is never removed
    // (and if it were, with nothing pending, its next read would add it again).
    let stale = worker.claim_idle.saturating_mul(STALE_CONSUMER_FACTOR);
    for consumer in info.consumers {
        let idle = Duration::from_millis(consumer.idle as u64);
        if consumer.name != worker.consumer && consumer.pending == 0 && idle > stale {
            link.run(None, |conn| {
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&worker.tasks)
                    .arg(GROUP)
                    .arg(&consumer.name)
                    .query::<()>(conn)
            })?;
        }
    }
    Ok(())
}

/// Claims tasks idle past the limit (their workers died or stopped heartbeating) and takes
/// each as a redelivery, with its delivery count and previous owner.
fn claim_stopped(worker: &Worker, link: &mut Link, idle_ms: &str) -> redis::RedisResult<()> {
    // Who held them, and how often they were delivered, before the claim changes both.
    let before: Value = link.run(None, |conn| {
        redis::cmd("XPENDING")
            .arg(&worker.tasks)
            .arg(GROUP)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(CLAIM_BATCH)
            .query(conn)
    })?;
    let owners = pending_owners(&before);
    let mine: HashSet<String> = lock(&worker.held).entries.clone();
    // Nothing idle but what this worker runs (its heartbeat was late): nothing to claim.
    if owners.keys().all(|entry| mine.contains(entry)) {
        return Ok(());
    }
    // No more than there is room for, as for reads: a worker holds at most its capacity,
    // so that its own loss takes few tasks with it. Workers with room claim the rest.
    let room = worker.capacity.saturating_sub(mine.len()).min(CLAIM_BATCH);
    if room == 0 {
        return Ok(());
    }
    let claimed: StreamAutoClaimReply = link.run(None, |conn| {
        redis::cmd("XAUTOCLAIM")
            .arg(&worker.tasks)
            .arg(GROUP)
            .arg(&worker.consumer)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(room)
            .query(conn)
    })?;
    for entry in claimed.claimed {
        // Our own task, idle only because the heartbeat was late: it is running here.
        if mine.contains(&entry.id) {
            continue;
        }
        let (owner, deliveries) = owners
            .get(&entry.id)
            .map(|(owner, count)| (owner.clone(), count + 1))
            .unwrap_or_else(|| ("an unknown worker".to_owned(), 2));
        if owner == worker.consumer {
            // Pending under this worker's own name and not held: a delivery whose reply was
            // lost, not yet recovered by the reader. This worker is not dead; never blame it.
            worker.take_own(entry);
            continue;
        }
        tracing::info!(entry = %entry.id, %owner, deliveries, "claimed a task of a stopped worker");
        worker.take(entry, Some((deliveries, owner)));
    }
    Ok(())
}

/// How often the keeper heartbeats and looks for tasks to claim: four times per claim time,
/// but never more often than every [`MIN_PERIOD`].
fn keeper_period(claim_idle: Duration) -> Duration {
    (claim_idle / 4).max(MIN_PERIOD)
}

/// Entry id → (consumer, times delivered), from an extended `XPENDING` reply.
fn pending_owners(reply: &Value) -> HashMap<String, (String, u64)> {
    let mut owners = HashMap::new();
    let Value::Array(rows) = reply else {
        return owners;
    };
    for row in rows {
        if let Value::Array(fields) = row {
            if let [
                Value::BulkString(id),
                Value::BulkString(consumer),
                _,
                Value::Int(count),
            ] = fields.as_slice()
            {
                owners.insert(
                    String::from_utf8_lossy(id).into_owned(),
                    (
                        String::from_utf8_lossy(consumer).into_owned(),
                        u64::try_from(*count).unwrap_or(0),
                    ),
                );
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::keeper_period;

    #[test]
    fn the_keeper_beats_four_times_per_claim_time_but_never_more_often_than_every_10_ms() {
        let ms = Duration::from_millis;
        assert_eq!(keeper_period(Duration::from_secs(30)), ms(7500));
        assert_eq!(keeper_period(ms(1000)), ms(250));
        assert_eq!(keeper_period(ms(44)), ms(11));
        // From four floors down, the floor: no busy loop with a tiny claim time.
        assert_eq!(keeper_period(ms(40)), ms(10));
        assert_eq!(keeper_period(ms(20)), ms(10));
        assert_eq!(keeper_period(ms(1)), ms(10));
        assert_eq!(keeper_period(Duration::from_nanos(1)), ms(10));
    }
}
