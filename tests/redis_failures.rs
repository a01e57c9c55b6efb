//! `RedisExecutor` when things go wrong, against a real `redis-server` each test starts: a
//! worker killed mid-task (an idempotent task finishes on another worker, any other fails
//! with `WorkerDied`; either way the future resolves once), a poison task reaching the
//! dead-letter stream, tasks with a wrong or missing signature rejected, Redis killed and
//! restarted mid-run (append-only file on) with nothing lost, a stopped worker's consumer
//! removed from the group, a worker claiming no more of a lost worker's tasks than it has
//! room for, a result the server refuses for a while (out of memory) stored once it can, and
//! a heartbeat that never takes back a task another worker claimed while its reply was late.
//!
//! Nothing here sleeps: tasks report on a Redis list that the test waits on (`BLPOP`), and
//! wait on another that the test pushes to.

mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use concurrent_futures::{Error, Future, RedisExecutor, task};
use redis_support::{RedisServer, StallProxy, Workers};

concurrent_futures::enable_test_support!();

const CLAIM_IDLE: &str = concurrent_futures::WORKER_CLAIM_IDLE_VAR;

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connection")
}

/// What a held task does: report the pid of the Redis worker running it (its local pool
/// process's parent) on `started`, wait for an item on `gate`, return that pid.
fn report_and_wait(url: &str) -> u32 {
    let worker = std::os::unix::process::parent_id();
    let mut conn = connect(url);
    let _: () = redis::cmd("RPUSH")
        .arg("started")
        .arg(worker)
        .query(&mut conn)
        .unwrap();
    let _: Vec<String> = redis::cmd("BLPOP")
        .arg("gate")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    worker
}

#[task(idempotent)]
fn held_idempotent(url: String) -> u32 {
    report_and_wait(&url)
}

#[task]
fn held_once(url: String) -> u32 {
    report_and_wait(&url)
}

/// Like `held_once`, but outlives a Redis restart: it reconnects until it gets the gate.
#[task]
fn held_across_restart(url: String) -> String {
    let mut reported = false;
    loop {
        let attempt = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut conn| {
                if !reported {
                    redis::cmd("RPUSH")
                        .arg("started")
                        .arg("r")
                        .query::<()>(&mut conn)?;
                    reported = true;
                }
                redis::cmd("BLPOP")
                    .arg("gate")
                    .arg(0)
                    .query::<Vec<String>>(&mut conn)
            });
        if attempt.is_ok() {
            return "through the restart".to_owned();
        }
        // Redis is restarting: a pause before reconnecting, not synchronisation.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reports `<worker pid> <connection id>` on `started`, then waits on `gate` until the test
/// unblocks its connection (`CLIENT UNBLOCK`, which needs no memory: it works while the server
/// refuses writes). Returns the worker's pid.
#[task]
fn held_until_unblocked(url: String) -> u32 {
    let worker = std::os::unix::process::parent_id();
    let mut conn = connect(&url);
    let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
    // In one write, so that the server has blocked this connection before anyone reads
    // `started` (the test still unblocks it until it hears that it did). Nil once unblocked.
    let _: (Option<Vec<String>>,) = redis::pipe()
        .cmd("RPUSH")
        .arg("started")
        .arg(format!("{worker} {id}"))
        .ignore()
        .cmd("BLPOP")
        .arg("gate")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    worker
}

/// Kills the Redis worker running it (its parent), every time it is delivered.
#[task(idempotent)]
fn kill_my_worker() -> u32 {
    let worker = std::os::unix::process::parent_id();
    let _ = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status();
    // The worker's death ends this process too (its pool socket closes).
    std::thread::park();
    worker
}

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

/// The next pid a held task reported.
fn next_started(conn: &mut redis::Connection) -> u32 {
    let (_, pid): (String, u32) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(conn)
        .unwrap();
    pid
}

/// Counts the completions of `future`.
fn count_completions<T: Send + 'static>(future: &Future<T>) -> Arc<AtomicU32> {
    let count = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&count);
    future.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    count
}

/// Pending entries of the task stream's consumer group, and entries left in it.
fn leftovers(conn: &mut redis::Connection) -> (u64, u64) {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg("cf:tasks")
        .arg("workers")
        .query(conn)
        .unwrap();
    let pending = match summary {
        redis::Value::Array(fields) => match fields.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            other => panic!("unexpected XPENDING summary {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    };
    let length: u64 = redis::cmd("XLEN").arg("cf:tasks").query(conn).unwrap();
    (pending, length)
}

#[test]
fn a_worker_killed_mid_task_has_its_idempotent_task_finished_by_another_once() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    let mut workers = Workers::start(&url, 1, 1, &[(CLAIM_IDLE, "1000")]);
    let first = workers.0[0].id();
    let executor = RedisExecutor::connect(&url).unwrap();

    let future = executor.submit(held_idempotent(url.clone()));
    let completions = count_completions(&future);
    assert_eq!(next_started(&mut conn), first);
    workers.kill(first);
    let second = workers.add(&url, 1, &[(CLAIM_IDLE, "1000")]);
    // The second worker claims the task once it has gone a second without a heartbeat.
    assert_eq!(next_started(&mut conn), second);
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg("go")
        .query(&mut conn)
        .unwrap();

    assert_eq!(future.result(), Ok(second));
    drop(executor);
    assert_eq!(completions.load(Ordering::SeqCst), 1);
    assert_eq!(leftovers(&mut conn), (0, 0));
}

#[test]
fn a_worker_killed_mid_task_fails_a_task_that_is_not_idempotent_with_worker_died() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    let mut workers = Workers::start(&url, 1, 1, &[(CLAIM_IDLE, "1000")]);
    let first = workers.0[0].id();
    let executor = RedisExecutor::connect(&url).unwrap();

    let future = executor.submit(held_once(url.clone()));
    let completions = count_completions(&future);
    assert_eq!(next_started(&mut conn), first);
    workers.kill(first);
    workers.add(&url, 1, &[(CLAIM_IDLE, "1000")]);

    assert_eq!(
        future.result(),
        Err(Error::WorkerDied {
            pid: first,
            exit_code: None,
            signal: None
        })
    );
    // Not run again: nothing else reported starting.
    let started: u64 = redis::cmd("LLEN").arg("started").query(&mut conn).unwrap();
    assert_eq!(started, 0);
    drop(executor);
    assert_eq!(completions.load(Ordering::SeqCst), 1);
    assert_eq!(leftovers(&mut conn), (0, 0));
}

#[test]
fn a_poison_task_reaches_the_dead_letter_stream() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    // Two deliveries kill two workers; the third worker dead-letters the task.
    let _workers = Workers::start(&url, 3, 1, &[(CLAIM_IDLE, "500")]);
    let executor = RedisExecutor::builder(&url)
        .max_deliveries(2)
        .build()
        .unwrap();

    let poison = executor.submit_as("poison-1", kill_my_worker());
    let reason = match poison.result() {
        Err(Error::DeadLetter { reason }) => reason,
        other => panic!("expected a dead letter, got {other:?}"),
    };
    assert!(
        reason.starts_with("delivered 3 times, over the limit of 2"),
        "{reason}"
    );
    let dead = executor.dead_letters().unwrap();
    assert_eq!(dead, [("poison-1".to_owned(), reason)]);
    // The surviving worker goes on with other work.
    assert_eq!(executor.submit(square_number(5)).result(), Ok(25));
    assert_eq!(leftovers(&mut conn), (0, 0));
}

#[test]
fn tasks_with_a_wrong_or_missing_signature_are_rejected_before_they_run() {
    let server = RedisServer::start(false);
    let url = server.url();
    let _workers = Workers::start(
        &url,
        1,
        1,
        &[(concurrent_futures::WORKER_KEY_VAR, "the right key")],
    );
    let signed = RedisExecutor::builder(&url)
        .signing_key("the right key")
        .build()
        .unwrap();
    let wrong = RedisExecutor::builder(&url)
        .signing_key("a wrong key")
        .build()
        .unwrap();
    let unsigned = RedisExecutor::connect(&url).unwrap();

    assert_eq!(signed.submit(square_number(4)).result(), Ok(16));
    assert_eq!(
        wrong.submit_as("wrong-1", square_number(4)).result(),
        Err(Error::DeadLetter {
            reason: "the task's signature does not match this worker's key".to_owned()
        })
    );
    assert_eq!(
        unsigned.submit_as("unsigned-1", square_number(4)).result(),
        Err(Error::DeadLetter {
            reason: "the task is not signed, and this worker requires a signature".to_owned()
        })
    );
    // A forged entry whose body is not even a task: rejected for its signature, so the
    // worker never tried to decode it (that would say "malformed task body").
    let mut conn = server.connection();
    let _: String = redis::cmd("XADD")
        .arg("cf:tasks")
        .arg("*")
        .arg("id")
        .arg("forged-1")
        .arg("reply")
        .arg("cf:reply:nobody")
        .arg("body")
        .arg(&b"\xff\x00 not a task"[..])
        .arg("sig")
        .arg("00".repeat(32))
        .query(&mut conn)
        .unwrap();
    let forged = signed.reattach::<SquareNumber>("forged-1");
    assert_eq!(
        forged.result(),
        Err(Error::DeadLetter {
            reason: "the task's signature does not match this worker's key".to_owned()
        })
    );
    let dead: Vec<String> = signed
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(dead, ["wrong-1", "unsigned-1", "forged-1"]);
}

#[test]
fn nothing_is_lost_when_redis_is_killed_and_restarted_mid_run() {
    let mut server = RedisServer::start(true);
    let url = server.url();
    let _workers = Workers::start(&url, 2, 2, &[]);
    let executor = RedisExecutor::connect(&url).unwrap();

    let across = executor.submit(held_across_restart(url.clone()));
    let before: Vec<Future<u64>> = (0..300)
        .map(|i| executor.submit(square_number(i)))
        .collect();
    let mut conn = server.connection();
    let _: (String, String) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(&mut conn)
        .unwrap();

    // One task is running and others are queued or in flight while the server goes away.
    server.crash_and_restart();
    let after: Vec<Future<u64>> = (300..600)
        .map(|i| executor.submit(square_number(i)))
        .collect();
    let mut conn = server.connection();
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg("go")
        .query(&mut conn)
        .unwrap();

    assert_eq!(across.result(), Ok("through the restart".to_owned()));
    for (i, future) in before.iter().chain(&after).enumerate() {
        assert_eq!(future.result(), Ok((i as u64) * (i as u64)));
    }
    drop(executor);
    assert_eq!(leftovers(&mut conn), (0, 0));
}

#[test]
fn the_consumer_of_a_stopped_worker_is_removed() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    // Removing a consumer publishes a keyspace event: the test waits on it, not on a clock.
    let mut events = server.keyspace_events("Et", std::time::Duration::from_secs(120));
    let mut pubsub = events.as_pubsub();
    pubsub
        .subscribe("__keyevent@0__:xgroup-delconsumer")
        .unwrap();

    let mut workers = Workers::start(&url, 1, 1, &[]);
    let first = workers.0[0].id();
    let executor = RedisExecutor::connect(&url).unwrap();
    // Ran by the first worker: its consumer exists, with nothing pending.
    assert_eq!(executor.submit(square_number(2)).result(), Ok(4));
    workers.kill(first);
    // Removes consumers idle ten claim periods (here 50 ms each) with nothing pending.
    workers.add(&url, 1, &[(CLAIM_IDLE, "50")]);

    let event = pubsub
        .get_message()
        .expect("a consumer removed within 120 s");
    assert_eq!(event.get_payload::<String>().unwrap(), "cf:tasks");
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("cf:tasks")
        .arg("workers")
        .query(&mut conn)
        .unwrap();
    let names: Vec<String> = consumers.consumers.into_iter().map(|c| c.name).collect();
    assert!(
        names
            .iter()
            .all(|name| !name.contains(&format!(":{first}:"))),
        "{names:?}"
    );
    // The live worker still serves.
    assert_eq!(executor.submit(square_number(3)).result(), Ok(9));
}

#[test]
fn a_worker_claims_no_more_tasks_of_a_lost_worker_than_it_has_room_for() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    let prefetch = concurrent_futures::WORKER_PREFETCH_VAR;
    let settings = [(CLAIM_IDLE, "1000"), (prefetch, "0")];
    let mut workers = Workers::start(&url, 1, 4, &settings);
    let lost = workers.0[0].id();
    let executor = RedisExecutor::connect(&url).unwrap();
    let futures: Vec<_> = (0..4)
        .map(|_| executor.submit(held_idempotent(url.clone())))
        .collect();
    for _ in 0..4 {
        assert_eq!(next_started(&mut conn), lost);
    }
    workers.kill(lost);
    // Room for one task: concurrency 1, nothing prefetched.
    let heir = workers.add(&url, 1, &settings);
    assert_eq!(next_started(&mut conn), heir);
    // What the heir holds now, while its one claimed task runs.
    let pending = pending_entries(&mut conn);
    let held = pending
        .iter()
        .filter(|(_, consumer, _, _)| consumer.contains(&format!(":{heir}:")))
        .count();
    // The rest are claimed as room frees up, and all four finish on the heir.
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg(&["go"; 4])
        .query(&mut conn)
        .unwrap();
    for future in &futures {
        assert_eq!(future.result(), Ok(heir));
    }
    assert_eq!(held, 1, "{pending:?}");
}

/// An executor that leaves without waiting for its results if the test fails, so that the
/// failure is reported instead of hanging in the drop on a result that will never come.
struct LeaveOnPanic(RedisExecutor);

impl std::ops::Deref for LeaveOnPanic {
    type Target = RedisExecutor;

    fn deref(&self) -> &RedisExecutor {
        &self.0
    }
}

impl Drop for LeaveOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.shutdown(false, false);
        }
    }
}

/// Sets a server setting.
fn config_set(conn: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(conn)
        .unwrap();
}

/// Runs a held task on the worker `pid` of the server at `url`, makes the server refuse every write that needs
/// memory (storing the task's result too) before releasing it, waits until the worker has
/// said `refusals` times that it cannot store the result, then lets the server take writes
/// again: the future must get the task's value.
fn refuse_a_result(
    url: &str,
    conn: &mut redis::Connection,
    executor: &RedisExecutor,
    pid: u32,
    said: &std::sync::mpsc::Receiver<String>,
    refusals: usize,
) {
    let future = executor.submit(held_until_unblocked(url.to_owned()));
    let (_, started): (String, String) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(conn)
        .unwrap();
    let (worker, client) = started.split_once(' ').unwrap();
    assert_eq!(worker.parse::<u32>().unwrap(), pid);

    config_set(conn, "maxmemory", "1");
    // 0 if the task's connection is not blocked yet: then again.
    while redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(client)
        .query::<u64>(conn)
        .unwrap()
        == 0
    {}
    // A bound to report a worker that stopped trying as a failure, not synchronisation.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut failures = 0;
    while failures < refusals {
        let line = said
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("{refusals} failed attempts to store the result"));
        if line.contains("cannot store") {
            assert!(line.contains("OOM"), "{line}");
            failures += 1;
        }
    }
    config_set(conn, "maxmemory", "0");

    // Stored once Redis takes writes again; never failed as the task of a dead worker.
    // (A bound to report a result never stored as a failure.)
    assert_eq!(
        future.result_timeout(std::time::Duration::from_secs(60)),
        Ok(pid)
    );
    // The worker says so once the refused results are in: nothing of this round is left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let line = said
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the worker reported the refused result stored");
        if line.contains("stored the results Redis had refused") {
            break;
        }
    }
}

#[test]
fn a_result_redis_refuses_for_a_while_is_stored_once_it_can_and_its_worker_never_blames_itself() {
    let server = RedisServer::start(false);
    let mut conn = server.connection();
    config_set(&mut conn, "maxmemory-policy", "noeviction");
    let mut workers = Workers(Vec::new());
    // A short claim time: a task left without heartbeats is claimed within a fraction of a
    // second.
    let (pid, said) = workers.add_watched(&server.url(), 1, &[(CLAIM_IDLE, "200")]);
    let executor = LeaveOnPanic(RedisExecutor::connect(&server.url()).unwrap());

    // Refused once, then taken.
    refuse_a_result(&server.url(), &mut conn, &executor, pid, &said, 1);
    // Refused six times: the worker's retries back off from 10 ms, doubling, so more than
    // the claim time has passed since the first refusal. Its task was heartbeated meanwhile.
    refuse_a_result(&server.url(), &mut conn, &executor, pid, &said, 6);

    assert_eq!(executor.dead_letters().unwrap(), []);
    drop(executor);
    assert_eq!(leftovers(&mut conn), (0, 0));
}

/// The next line `MONITOR` shows on `monitor`; a panic past `deadline` (a bound to report a
/// worker that stopped heartbeating as a failure: other clients' commands keep `MONITOR`
/// talking).
fn monitored(monitor: &mut redis::Connection, deadline: std::time::Instant) -> String {
    assert!(
        std::time::Instant::now() < deadline,
        "the awaited command did not run in time"
    );
    match monitor.recv_response() {
        Ok(redis::Value::SimpleString(line)) => line,
        other => panic!("unexpected MONITOR output {other:?}"),
    }
}

#[test]
fn a_heartbeat_never_takes_back_a_task_another_worker_claimed_meanwhile() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    // The worker reaches the server through a proxy that can hold back a reply; its task
    // reaches it directly. Heartbeats every second; a claim only after four.
    let proxy = StallProxy::start(server.port);
    let mut workers = Workers::start(&proxy.url(), 1, 1, &[(CLAIM_IDLE, "4000")]);
    let pid = workers.0[0].id();
    let executor = LeaveOnPanic(RedisExecutor::connect(&url).unwrap());
    let future = executor.submit(held_once(url.clone()));
    assert_eq!(next_started(&mut conn), pid);
    let pending = pending_entries(&mut conn);
    let [(entry, consumer, _, _)] = &pending[..] else {
        panic!("one task pending: {pending:?}")
    };
    let (entry, consumer) = (entry.clone(), consumer.clone());
    let (quoted_entry, quoted_consumer) = (format!("\"{entry}\""), format!("\"{consumer}\""));
    // As `MONITOR` shows it: the heartbeat's read of what this worker owns (the keeper's
    // claims read with `IDLE`).
    let heartbeat_read = |line: &str| {
        line.contains("\"XPENDING\"") && line.contains(&quoted_consumer) && !line.contains("IDLE")
    };

    // Every command the server runs, in the order it runs them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut monitor = server.connection();
    monitor
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    monitor
        .send_packed_command(&redis::cmd("MONITOR").get_packed_command())
        .unwrap();
    assert_eq!(monitor.recv_response().unwrap(), redis::Value::Okay);

    // The worker's next heartbeat request (the only request of the worker that names it,
    // reads and claims aside) runs, but its reply waits in the proxy.
    let name = consumer.clone().into_bytes();
    proxy.hold_reply_to(move |request| {
        let has = |what: &[u8]| request.windows(what.len()).any(|w| w == what);
        has(&name) && !has(b"XREADGROUP") && !has(b"XAUTOCLAIM")
    });
    let _: String = redis::cmd("ECHO").arg("armed").query(&mut conn).unwrap();
    while !monitored(&mut monitor, deadline).contains("\"armed\"") {}
    while !heartbeat_read(&monitored(&mut monitor, deadline)) {}
    // The heartbeat has read that this worker owns the task. Another worker claims it now.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("cf:tasks")
        .arg("workers")
        .arg("thief")
        .arg(0)
        .arg(&entry)
        .arg("JUSTID")
        .query(&mut conn)
        .unwrap();
    while !monitored(&mut monitor, deadline).contains("\"thief\"") {}
    proxy.release();

    // Up to the next heartbeat, nothing claims the task back for this worker.
    let mut since = Vec::new();
    loop {
        let line = monitored(&mut monitor, deadline);
        if heartbeat_read(&line) {
            break;
        }
        since.push(line);
    }
    let owners = pending_entries(&mut conn);
    // The task still finishes here, and its result is stored: the future resolves once.
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg("go")
        .query(&mut conn)
        .unwrap();
    assert_eq!(future.result(), Ok(pid));

    let taken_back: Vec<&String> = since
        .iter()
        .filter(|line| {
            line.contains("\"XCLAIM\"")
                && line.contains(&quoted_consumer)
                && line.contains(&quoted_entry)
        })
        .collect();
    assert!(
        taken_back.is_empty(),
        "the heartbeat took back a task another worker had claimed: {taken_back:?}"
    );
    // The other worker owned it still, after this worker's next heartbeat.
    assert_eq!(owners[0].1, "thief", "{owners:?}");
    drop(executor);
    workers.kill(pid);
}

/// The task stream's pending entries (up to 100): id, consumer, idle ms, deliveries.
fn pending_entries(conn: &mut redis::Connection) -> Vec<(String, String, u64, u64)> {
    redis::cmd("XPENDING")
        .arg("cf:tasks")
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(100)
        .query(conn)
        .unwrap()
}
