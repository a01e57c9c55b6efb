//! The Redis worker: what `init()` runs in a process started with
//! `CONCURRENT_FUTURES_REDIS_WORKER`.
//!
//! Three threads, each with its own connection:
//!
//! - the main thread reads tasks through the consumer group (`XREADGROUP`), checks each
//!   signature before anything else, and hands the call to a local process pool, so that a
//!   crashing task takes down one local process, not the worker;
//! - the finisher stores each result, announces it and acknowledges the task in one atomic
//!   script, a batch per round trip: a task is acknowledged only once its result is stored,
//!   and a result Redis refuses is kept, its task held and heartbeated, and sent again;
//! - the keeper heartbeats the tasks this worker holds (one script checks that each is still
//!   its own and resets its idle time with `XCLAIM ... JUSTID`) and claims the tasks of workers that stopped (`XAUTOCLAIM`), which it re-runs,
//!   fails with `WorkerDied`, or moves to the dead-letter stream.
//!
//! The worker holds at most its concurrency plus its prefetch in tasks (by default twice its
//! concurrency), so that the local pool has the next task at hand, and the tasks a dead
//! worker takes with it are few.

mod keeper;

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::process;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::streams::{StreamId, StreamReadReply};
use redis::{ConnectionLike, Value};

use super::conn::{Link, is_transient};
use super::envelope::{self, Key, Settings};
use super::keys::{GROUP, Keys};
use super::launch::WorkerConfig;
use super::script;
use crate::error::Error;
use crate::executor::process_pool::ProcessPoolExecutor;
use crate::sync::{Arc, Condvar, Mutex, lock};

/// Exit code of a worker that cannot start (bad settings, no Redis, no local pool).
const EXIT_GAVE_UP: i32 = 70;

/// How long one `XREADGROUP` blocks waiting for tasks.
const READ_BLOCK: Duration = Duration::from_secs(2);

/// Results written per round trip, at most.
const FINISH_BATCH: usize = 256;

/// The first pause before sending again results Redis refused; it doubles at each refusal
/// in a row, up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between two attempts to store refused results.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How many finished entries a worker remembers (see [`Held::finished`]): far more than can
/// finish during one read of its pending entries.
const REMEMBER_FINISHED: usize = 1 << 16;

/// The result TTL of a task whose body cannot be read (rejected before decoding).
const FALLBACK_TTL_SECS: u32 = 24 * 60 * 60;

/// Runs the worker; never returns.
pub(crate) fn run(config: Result<WorkerConfig, String>) -> ! {
    let outcome = config.and_then(serve);
    if let Err(message) = outcome {
        say(&message);
        process::exit(EXIT_GAVE_UP);
    }
    process::exit(0)
}

/// What the worker's threads share.
struct Worker {
    keys: Keys,
    tasks: String,
    consumer: String,
    key: Option<Key>,
    claim_idle: Duration,
    /// How many tasks this worker may hold at once.
    capacity: usize,
    pool: ProcessPoolExecutor,
    held: Mutex<Held>,
    /// Signalled when a held task is finished.
    room: Condvar,
    finished: Sender<Done>,
}

#[derive(Default)]
struct Held {
    /// The stream entries this worker holds (running or waiting in the local pool), to
    /// heartbeat.
    entries: HashSet<String>,
    /// Entries recently finished, newest last: a read of this worker's pending entries that
    /// raced with their acknowledgement must not take them again.
    finished: VecDeque<String>,
    finished_set: HashSet<String>,
}

impl Held {
    /// Whether `entry` is held or was finished lately.
    fn knows(&self, entry: &str) -> bool {
        self.entries.contains(entry) || self.finished_set.contains(entry)
    }

    fn release(&mut self, entry: &str) {
        if self.entries.remove(entry) {
            if self.finished.len() == REMEMBER_FINISHED {
                if let Some(oldest) = self.finished.pop_front() {
                    self.finished_set.remove(&oldest);
                }
            }
            self.finished.push_back(entry.to_owned());
            self.finished_set.insert(entry.to_owned());
        }
    }
}

/// A task's outcome, on its way to Redis.
struct Done {
    entry: String,
    id: String,
    reply: String,
    /// The stored form of the result.
    value: Vec<u8>,
    ttl: u32,
    dead: Option<DeadLetter>,
}

/// Why a task goes to the dead-letter stream, with what it carried.
struct DeadLetter {
    reason: String,
    deliveries: u64,
    body: Vec<u8>,
    sig: Vec<u8>,
}

/// A task entry's fields, as read (nothing trusted yet).
struct Entry {
    entry: String,
    id: String,
    reply: String,
    body: Vec<u8>,
    sig: Option<Vec<u8>>,
}

fn serve(config: WorkerConfig) -> Result<(), String> {
    let client =
        super::open_client(&config.url, config.root_cert.as_deref()).map_err(|e| e.to_string())?;
    let keys = Keys::new(&config.prefix);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(config.concurrency)
        // Tasks arrive one by one from Redis; no point queueing deep behind a busy process.
        .pipeline_depth(2)
        .build()
        .map_err(|e| format!("cannot build the local pool: {e}"))?;
    let (finished, to_finish) = crossbeam_channel::unbounded();
    let worker = Arc::new(Worker {
        tasks: keys.tasks(),
        consumer: consumer_name(),
        keys,
        key: config.key,
        claim_idle: config.claim_idle,
        capacity: config.concurrency.saturating_add(config.prefetch),
        pool,
        held: Mutex::new(Held::default()),
        room: Condvar::new(),
        finished,
    });
    let link = || Link::new(client.clone(), READ_BLOCK + Duration::from_secs(30));
    let mut reader = link().on_connect(super::prepare_hook(&worker.keys));
    // Fail fast on a server that is not there at start; later outages are waited out.
    reader
        .run(
            Some(std::time::Instant::now() + Duration::from_secs(30)),
            |conn| redis::cmd("PING").query::<()>(conn),
        )
        .map_err(|e| format!("cannot reach Redis: {e}"))?;
    say(&format!(
        "consumer {} serving {} with {} local processes",
        worker.consumer,
        worker.tasks,
        worker.pool.max_workers()
    ));

    let finisher = {
        let worker = Arc::clone(&worker);
        let link = link().on_connect(super::prepare_hook(&worker.keys));
        spawn("cf-redis-finish", move || {
            finish_loop(&worker, link, &to_finish)
        })?
    };
    let keeper = {
        let worker = Arc::clone(&worker);
        let link = link().on_connect(super::prepare_hook(&worker.keys));
        spawn("cf-redis-keep", move || keeper::keep_loop(&worker, link))?
    };
    let _ = (finisher, keeper);
    read_loop(&worker, reader);
    Ok(())
}

fn spawn(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Reads new tasks while there is room for them.
///
/// After a reconnection it first reads this worker's own pending entries (`0` instead of
/// `>`): a delivery whose reply was lost with the old connection is pending under this
/// worker's name, and would otherwise wait for another worker to claim it as a lost one.
fn read_loop(worker: &Worker, mut link: Link) {
    let block_ms = READ_BLOCK.as_millis().to_string();
    let mut connects = link.connects();
    loop {
        if link.connects() != connects {
            connects = link.connects();
            recover_own(worker, &mut link);
            continue;
        }
        let room = {
            let mut held = lock(&worker.held);
            while held.entries.len() >= worker.capacity {
                held = worker.room.wait(held).unwrap_or_else(|p| p.into_inner());
            }
            worker.capacity - held.entries.len()
        };
        let read = link.run(None, |conn| {
            worker
                .read_group(room, Some(&block_ms), ">")
                .query::<Option<StreamReadReply>>(conn)
        });
        match read {
            Ok(read) => {
                for stream in read.into_iter().flat_map(|r| r.keys) {
                    for entry in stream.ids {
                        worker.take(entry, None);
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot read tasks from Redis");
                say(&format!("cannot read tasks: {error}"));
                // Not synchronisation: a pause before retrying a command Redis refused.
                std::thread::sleep(READ_BLOCK);
            }
        }
    }
}

/// Takes the entries pending under this worker's name that it does not hold.
fn recover_own(worker: &Worker, link: &mut Link) {
    let count = worker.capacity.saturating_mul(2).saturating_add(100);
    let read = link.run(None, |conn| {
        worker
            .read_group(count, None, "0")
            .query::<Option<StreamReadReply>>(conn)
    });
    let read = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%error, "cannot read this worker's pending tasks");
            return;
        }
    };
    for stream in read.into_iter().flat_map(|r| r.keys) {
        for entry in stream.ids {
            // Checked now, not before the read: an entry acknowledged meanwhile is in
            // `finished`, one claimed meanwhile by the keeper in `entries`.
            worker.take_own(entry);
        }
    }
}

impl Worker {
    /// `XREADGROUP` of up to `count` entries of the task stream under this worker's name, from
    /// `from` (`>`: new deliveries; `0`: its own pending ones), blocking for `block_ms` if given.
    fn read_group(&self, count: usize, block_ms: Option<&str>, from: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block_ms) = block_ms {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&self.tasks).arg(from);
        cmd
    }

    /// Takes one delivered task: checks it, then runs it, or finishes it at once (rejected,
    /// over its delivery limit, or lost with a worker and not idempotent). `claimed` is the
    /// delivery count and the previous owner of a task claimed from another worker.
    fn take(&self, raw: StreamId, claimed: Option<(u64, String)>) {
        // Held until the finisher has acknowledged it, whatever happens to it here, so that
        // neither a heartbeat nor a recovery read takes it as someone else's.
        lock(&self.held).entries.insert(raw.id.clone());
        let Some(entry) = read_entry(&raw) else {
            tracing::warn!(entry = %raw.id, "malformed task entry, dropped to the dead letters");
            self.finish(Done {
                entry: raw.id.clone(),
                id: format!("malformed-{}", raw.id),
                reply: self.keys.reply("unknown"),
                value: envelope::encode_result(
                    self.key.as_ref(),
                    "",
                    &Err(dead("malformed task entry")),
                ),
                ttl: FALLBACK_TTL_SECS,
                dead: Some(DeadLetter {
                    reason: "malformed task entry".to_owned(),
                    deliveries: claimed.as_ref().map_or(1, |c| c.0),
                    body: Vec::new(),
                    sig: Vec::new(),
                }),
            });
            return;
        };
        let deliveries = claimed.as_ref().map_or(1, |c| c.0);
        // The signature first: nothing of an unverified body is decoded.
        if let Some(key) = &self.key {
            if let Err(reason) =
                key.verify_task(&entry.id, &entry.reply, &entry.body, entry.sig.as_deref())
            {
                // Unsigned notice: the submitter may not share our key (see `envelope`).
                return self.reject(entry, reason, deliveries, FALLBACK_TTL_SECS, None);
            }
        }
        let Some((settings, call)) =
            envelope::decode_body(&entry.body).map(|(s, c)| (s, c.to_vec()))
        else {
            return self.reject(
                entry,
                "malformed task body".to_owned(),
                deliveries,
                FALLBACK_TTL_SECS,
                self.key.as_ref(),
            );
        };
        if let Some((deliveries, owner)) = claimed {
            if deliveries > u64::from(settings.max_deliveries) {
                let reason = format!(
                    "delivered {deliveries} times, over the limit of {}: the workers that took \
                     it died or stopped heartbeating (the last was {owner})",
                    settings.max_deliveries
                );
                return self.reject(
                    entry,
                    reason,
                    deliveries,
                    settings.result_ttl,
                    self.key.as_ref(),
                );
            }
            if !settings.idempotent {
                let error = Error::WorkerDied {
                    pid: pid_of(&owner),
                    exit_code: None,
                    signal: None,
                };
                return self.finish(self.done(entry, settings, &Err(error)));
            }
        }
        self.run(entry, settings, call);
    }

    /// Takes an entry pending under this worker's own name (a delivery whose reply was lost
    /// with a connection) as a first delivery, unless it holds it or finished it lately.
    /// Checked and marked held under one lock: the reader's recovery and the keeper may
    /// find the same entry at once, and only one of them takes it.
    fn take_own(&self, raw: StreamId) {
        let fresh = {
            let mut held = lock(&self.held);
            !held.knows(&raw.id) && held.entries.insert(raw.id.clone())
        };
        if fresh {
            tracing::info!(entry = %raw.id, "recovered a delivery of this worker's own");
            self.take(raw, None);
        }
    }

    fn run(&self, entry: Entry, settings: Settings, call: Vec<u8>) {
        let future = self.pool.submit_encoded(call, settings.timeout);
        let finished = self.finished.clone();
        let key = self.key.clone();
        future.add_done_callback(move |future| {
            let outcome = future.result();
            if let Err(Error::Broken { reason }) = &outcome {
                // The local pool cannot run anything: stop taking tasks, rather than fail
                // them all. What this worker holds goes to other workers once unclaimed.
                say(&format!("the local pool is broken, exiting: {reason}"));
                process::exit(EXIT_GAVE_UP);
            }
            let value = envelope::encode_result(key.as_ref(), &entry.id, &outcome);
            let _ = finished.send(Done {
                entry: entry.entry,
                id: entry.id,
                reply: entry.reply,
                value,
                ttl: settings.result_ttl,
                dead: None,
            });
        });
    }

    fn done(&self, entry: Entry, settings: Settings, outcome: &Result<Vec<u8>, Error>) -> Done {
        Done {
            value: envelope::encode_result(self.key.as_ref(), &entry.id, outcome),
            entry: entry.entry,
            id: entry.id,
            reply: entry.reply,
            ttl: settings.result_ttl,
            dead: None,
        }
    }

    /// Moves a task to the dead-letter stream and fails its future with the reason.
    fn reject(&self, entry: Entry, reason: String, deliveries: u64, ttl: u32, key: Option<&Key>) {
        tracing::warn!(task = %entry.id, %reason, "task moved to the dead letters");
        let value = envelope::encode_result(key, &entry.id, &Err(dead(&reason)));
        self.finish(Done {
            entry: entry.entry,
            id: entry.id,
            reply: entry.reply,
            value,
            ttl,
            dead: Some(DeadLetter {
                reason,
                deliveries,
                body: entry.body,
                sig: entry.sig.unwrap_or_default(),
            }),
        });
    }

    fn finish(&self, done: Done) {
        let _ = self.finished.send(done);
    }
}

fn dead(reason: &str) -> Error {
    Error::DeadLetter {
        reason: reason.to_owned(),
    }
}

/// The fields of a task entry, or `None` if one is missing.
fn read_entry(raw: &StreamId) -> Option<Entry> {
    let bytes = |name: &str| match raw.map.get(name) {
        Some(Value::BulkString(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    let text = |name: &str| bytes(name).and_then(|b| String::from_utf8(b).ok());
    Some(Entry {
        entry: raw.id.clone(),
        id: text("id")?,
        reply: text("reply")?,
        body: bytes("body")?,
        sig: bytes("sig"),
    })
}

/// Stores, announces and acknowledges finished tasks, a batch per round trip.
///
/// A result Redis refuses (out of memory under `noeviction`, a replica that became read-only,
/// a disk it cannot persist to) is kept and sent again, after a pause that doubles from
/// [`FIRST_RETRY_PAUSE`] to [`MAX_RETRY_PAUSE`], until Redis takes it; results that come
/// meanwhile are sent at once. Its task stays held, so the keeper goes on heartbeating it:
/// released, it would stay pending under this worker's name with nobody heartbeating it, and
/// this worker's own keeper would claim it as a stopped worker's task and fail it with
/// `WorkerDied` naming this very process, losing its result.
fn finish_loop(worker: &Worker, mut link: Link, to_finish: &Receiver<Done>) {
    let mut refused: Vec<Done> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempts = 0_u32;
    loop {
        let first = match retry_at {
            None => match to_finish.recv() {
                Ok(done) => Some(done),
                Err(_) => return,
            },
            Some(at) => match to_finish.recv_deadline(at) {
                Ok(done) => Some(done),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let mut batch: Vec<Done> = first
            .into_iter()
            .chain(to_finish.try_iter().take(FINISH_BATCH - 1))
            .collect();
        if retry_at.is_some_and(|at| Instant::now() >= at) {
            batch.append(&mut refused);
            retry_at = None;
        }
        if batch.is_empty() {
            continue;
        }
        let outcomes = store(worker, &mut link, &batch);
        let mut stored = Vec::with_capacity(batch.len());
        let mut failure = None;
        for (done, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                None => stored.push(done.entry),
                Some(error) => {
                    failure.get_or_insert(error);
                    refused.push(done);
                }
            }
        }
        if !stored.is_empty() {
            let mut held = lock(&worker.held);
            for entry in &stored {
                held.release(entry);
            }
            drop(held);
            worker.room.notify_all();
        }
        if let Some(error) = failure {
            attempts = attempts.saturating_add(1);
            tracing::error!(%error, attempts, "cannot store results; retrying");
            say(&format!(
                "cannot store {} results (attempt {attempts}), retrying in {pause:?}; their \
                 tasks stay held: {error}",
                refused.len()
            ));
            retry_at = Some(Instant::now() + pause);
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        } else if refused.is_empty() && attempts > 0 {
            say(&format!(
                "stored the results Redis had refused, after {attempts} failed attempts"
            ));
            attempts = 0;
            pause = FIRST_RETRY_PAUSE;
        }
    }
}

/// Runs the finish script for each of `batch` in one round trip. For each, `None` if its
/// result is stored, announced and its task acknowledged; else why not.
fn store(worker: &Worker, link: &mut Link, batch: &[Done]) -> Vec<Option<String>> {
    let hash = script::finish().get_hash();
    let reply_prefix = worker.keys.reply("");
    let mut pipe = redis::pipe();
    for done in batch {
        // The reply stream is named by the (possibly unsigned) entry: never write
        // anywhere but a reply stream of this prefix.
        let reply = if done.reply.starts_with(&reply_prefix) {
            done.reply.clone()
        } else {
            worker.keys.reply("unknown")
        };
        let dead = done.dead.as_ref();
        pipe.cmd("EVALSHA")
            .arg(hash)
            .arg(4)
            .arg(worker.keys.result(&done.id))
            .arg(reply)
            .arg(&worker.tasks)
            .arg(worker.keys.dead())
            .arg(&done.value)
            .arg(done.ttl.max(1))
            .arg(&done.id)
            .arg(GROUP)
            .arg(&done.entry)
            .arg(dead.map_or("", |d| d.reason.as_str()))
            .arg(&worker.consumer)
            .arg(dead.map_or(0, |d| d.deliveries))
            .arg(dead.map_or(&[][..], |d| d.body.as_slice()))
            .arg(dead.map_or(&[][..], |d| d.sig.as_slice()));
    }
    let packed = pipe.get_packed_pipeline();
    let replies = link.run(None, |conn| {
        // Each script's own reply: one refused does not hide that the others ran.
        let replies = conn.req_packed_commands(&packed, 0, batch.len())?;
        // An error a new connection cures (the script or the group lost with a restart) fails
        // the round trip, for the link to reconnect and send it all again: a script that ran
        // already runs again harmlessly (first writer wins; a second announcement of a task
        // resolves nothing more).
        let cured_by_reconnecting = replies.iter().find_map(|reply| match reply {
            Value::ServerError(error) => {
                let error = redis::RedisError::from(error.clone());
                is_transient(&error).then_some(error)
            }
            _ => None,
        });
        match cured_by_reconnecting {
            Some(error) => Err(error),
            None => Ok(replies),
        }
    });
    match replies {
        Ok(replies) => replies
            .into_iter()
            .map(|reply| match reply {
                Value::ServerError(error) => Some(redis::RedisError::from(error).to_string()),
                _ => None,
            })
            .collect(),
        Err(error) => {
            let error = error.to_string();
            batch.iter().map(|_| Some(error.clone())).collect()
        }
    }
}

/// `host:pid:random`: unique per process start, and it says which process to look for.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}:{}:{}", process::id(), super::client::random_id())
}

/// The process id in a consumer name; 0 if it has none.
fn pid_of(consumer: &str) -> u32 {
    consumer
        .rsplit(':')
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or(0)
}

/// Writes to the process's stderr itself, as the process-pool worker does: a test harness
/// would capture `eprintln!`.
fn say(message: &str) {
    let line = format!(
        "concurrent-futures redis worker {}: {message}\n",
        process::id()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::pid_of;

    #[test]
    fn the_pid_is_read_from_the_consumer_name() {
        assert_eq!(pid_of("build-host:4242:00ff00ff00ff00ff"), 4242);
        assert_eq!(pid_of("a:b:c:17:x"), 17);
        assert_eq!(pid_of("nonsense"), 0);
    }
}
