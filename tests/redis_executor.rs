//! `RedisExecutor` against a real `redis-server` that each test starts on a loopback port,
//! with workers that are this test binary started again: results through every way of
//! waiting, panics and timeouts as in the process pool, a restarted submitter finding its
//! results by task id, many tasks over four workers, each future resolved once, and the
//! result thread ending once the executor and every future it could complete are gone.
//!
//! Tasks that must wait are held on a Redis list (`BLPOP`) that the test pushes to: no sleeps.

mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use concurrent_futures::{
    Error, Future, RedisExecutor, ReturnWhen, as_completed, join_completed, task, wait,
};
use redis_support::{RedisServer, Workers};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn shout(word: String) -> String {
    word.to_uppercase()
}

#[task]
fn explode(message: String) -> u64 {
    panic!("{message}")
}

#[task(timeout = "300ms")]
fn hang_forever() -> u64 {
    // Held until the worker's local pool kills it for its timeout.
    std::thread::park();
    0
}

/// Pushes `tag` to `started`, then waits for an item on `gate`: a task the test holds.
#[task]
fn held(url: String, tag: String) -> String {
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("task connection");
    let _: () = redis::cmd("RPUSH")
        .arg("started")
        .arg(&tag)
        .query(&mut conn)
        .unwrap();
    let _: Vec<String> = redis::cmd("BLPOP")
        .arg("gate")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    format!("done {tag}")
}

#[test]
fn results_come_back_through_submit_map_as_completed_wait_and_join_completed() {
    let server = RedisServer::start(false);
    let _workers = Workers::start(&server.url(), 2, 2, &[]);
    let executor = RedisExecutor::connect(&server.url()).unwrap();

    assert_eq!(executor.submit(square_number(12)).result(), Ok(144));

    let squares: Vec<u64> = executor
        .map(square_number, 0..50)
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, (0..50).map(|x| x * x).collect::<Vec<_>>());

    let chunked: Vec<u64> = executor
        .map_with(
            square_number,
            0..50,
            concurrent_futures::MapOptions::default().chunksize(10),
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, squares);

    let futures: Vec<Future<u64>> = (0..20).map(|i| executor.submit(square_number(i))).collect();
    let mut seen: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).map(|x| x * x).collect::<Vec<_>>());

    let done = wait(&futures, ReturnWhen::AllCompleted, None);
    assert_eq!((done.done.len(), done.not_done.len()), (20, 0));

    let (n, word) = join_completed! {
        n = executor.submit(square_number(9)) => n.unwrap(),
        w = executor.submit(shout("redis".to_owned())) => w.unwrap(),
    };
    assert_eq!((n, word.as_str()), (81, "REDIS"));
}

#[test]
fn panics_and_timeouts_fail_their_futures_as_in_the_process_pool() {
    let server = RedisServer::start(false);
    let _workers = Workers::start(&server.url(), 1, 2, &[]);
    let executor = RedisExecutor::connect(&server.url()).unwrap();

    let panicked = executor.submit(explode("no luck".to_owned())).result();
    match panicked {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "no luck"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        executor.submit(hang_forever()).result(),
        Err(Error::TaskTimedOut {
            timeout: Duration::from_millis(300)
        })
    );
    assert_eq!(
        executor
            .submit_with_timeout(hang_forever(), Duration::from_millis(200))
            .result(),
        Err(Error::TaskTimedOut {
            timeout: Duration::from_millis(200)
        })
    );
    // The worker lives on: its local pool replaced the killed processes.
    assert_eq!(executor.submit(square_number(3)).result(), Ok(9));
}

#[test]
fn a_restarted_submitter_finds_its_results_by_task_id() {
    let server = RedisServer::start(false);
    let _workers = Workers::start(&server.url(), 1, 2, &[]);
    let mut conn = server.connection();

    let first = RedisExecutor::connect(&server.url()).unwrap();
    assert_eq!(
        first.submit_as("order-1", square_number(7)).result(),
        Ok(49)
    );
    let in_flight = first.submit_as("order-2", held(server.url(), "o2".to_owned()));
    let started: (String, String) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    assert_eq!(started.1, "o2");
    // The submitter goes away without waiting for order-2.
    first.shutdown(false, false);

    let second = RedisExecutor::connect(&server.url()).unwrap();
    assert_eq!(second.reattach::<SquareNumber>("order-1").result(), Ok(49));
    let later = second.reattach::<Held>("order-2");
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg("go")
        .query(&mut conn)
        .unwrap();
    assert_eq!(later.result(), Ok("done o2".to_owned()));
    assert_eq!(in_flight.result(), Ok("done o2".to_owned()));
    drop(first);
}

#[test]
fn a_password_and_tls_reach_the_executor_and_its_workers() {
    let server = RedisServer::start_secure("s3cret-pass");
    let url = server.url();
    let ca = server.dir.join("ca.pem");
    let ca_file = ca.to_str().unwrap();
    let _workers = Workers::start(
        &url,
        1,
        1,
        &[(concurrent_futures::WORKER_CA_FILE_VAR, ca_file)],
    );
    let executor = RedisExecutor::builder(&url)
        .tls_root_certificate(std::fs::read(&ca).unwrap())
        .build()
        .unwrap();
    assert_eq!(executor.submit(square_number(11)).result(), Ok(121));

    // The wrong password is refused at once, not retried.
    let wrong = url.replace("s3cret-pass", "guess");
    let refused = RedisExecutor::builder(&wrong)
        .tls_root_certificate(std::fs::read(&ca).unwrap())
        .build()
        .unwrap_err();
    assert!(refused.is_broken(), "{refused}");
    assert!(
        refused.to_string().to_lowercase().contains("password"),
        "{refused}"
    );
    // Without the authority's certificate the server's is not trusted.
    let untrusted = RedisExecutor::builder(&url)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(untrusted.is_broken(), "{untrusted}");
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
}

/// Every future of `count` tasks over four worker processes resolves once, with its own
/// value. Returns the tasks per second of the run (first submit to last result).
fn many_tasks(count: u64) -> f64 {
    let server = RedisServer::start(false);
    let _workers = Workers::start(&server.url(), 4, 1, &[]);
    let executor = RedisExecutor::connect(&server.url()).unwrap();
    // Warm: every worker process and its local pool are up before the clock starts.
    let warm: Vec<_> = (0..64).map(|i| executor.submit(square_number(i))).collect();
    assert_eq!(
        wait(&warm, ReturnWhen::AllCompleted, None).not_done.len(),
        0
    );

    let completions: Arc<Vec<AtomicU32>> =
        Arc::new((0..count).map(|_| AtomicU32::new(0)).collect());
    let (call, called) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    let futures: Vec<Future<u64>> = (0..count)
        .map(|i| {
            let future = executor.submit(square_number(i));
            let completions = Arc::clone(&completions);
            let call = call.clone();
            future.add_done_callback(move |_| {
                completions[i as usize].fetch_add(1, Ordering::SeqCst);
                let _ = call.send(());
            });
            future
        })
        .collect();
    let submitted = started.elapsed();
    let done = wait(&futures, ReturnWhen::AllCompleted, None);
    let elapsed = started.elapsed();
    println!("{count} tasks submitted in {submitted:.2?}, all resolved in {elapsed:.2?}");
    assert_eq!(done.not_done.len(), 0);
    for (i, future) in futures.iter().enumerate() {
        assert_eq!(future.result(), Ok((i as u64) * (i as u64)));
    }
    // As in Python, a future wakes its waiters before it runs its done callbacks: the last
    // callbacks may still be running in the result thread when `wait` returns. Each one says
    // so; the timeout is only an upper bound for a failure.
    for _ in 0..count {
        called
            .recv_timeout(Duration::from_secs(60))
            .expect("every done callback runs");
    }
    for (i, completed) in completions.iter().enumerate() {
        assert_eq!(completed.load(Ordering::SeqCst), 1, "future {i}");
    }
    count as f64 / elapsed.as_secs_f64()
}

#[test]
fn ten_thousand_tasks_over_four_workers_each_resolve_once() {
    many_tasks(10_000);
}

/// The README's throughput figure, in release:
/// `cargo test --release --features redis --test redis_executor -- --ignored --nocapture`
#[test]
#[ignore = "100,000 tasks: run in release for the README figure"]
fn hundred_thousand_tasks_over_four_workers_each_resolve_once() {
    let rate = many_tasks(100_000);
    println!("100000 tasks over 4 Redis workers: {rate:.0} tasks/s");
}

#[test]
fn dropping_an_executor_shut_down_without_waiting_does_not_wait_for_its_results() {
    let server = RedisServer::start(false);
    // No worker: the task is never run, so a drop that waits for it waits forever.
    let executor = RedisExecutor::connect(&server.url()).unwrap();
    let future = executor.submit(square_number(2));
    executor.shutdown(false, false);
    let (dropped, was_dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(executor);
        let _ = dropped.send(());
    });
    // A bound to report a hang as a failure, not synchronisation: the drop needs no worker.
    assert_eq!(
        was_dropped.recv_timeout(Duration::from_secs(60)),
        Ok(()),
        "the drop after shutdown(false, false) waited for a result no worker will produce"
    );
    assert!(!future.done());
}

#[test]
fn a_task_id_waited_for_twice_resolves_both_futures() {
    let server = RedisServer::start(false);
    let executor = RedisExecutor::connect(&server.url()).unwrap();
    // Both registered before any worker runs the task.
    let submitted = executor.submit_as("twice", square_number(6));
    let reattached = executor.reattach::<SquareNumber>("twice");
    let _workers = Workers::start(&server.url(), 1, 1, &[]);
    assert_eq!(reattached.result(), Ok(36));
    // A bound to report a future that never resolves as a failure; it resolved with the
    // other one, from the same announcement, if at all.
    assert_eq!(submitted.result_timeout(Duration::from_secs(60)), Ok(36));
}

#[test]
fn a_timeout_under_a_millisecond_still_times_the_task_out() {
    let server = RedisServer::start(false);
    let _workers = Workers::start(&server.url(), 1, 1, &[]);
    let executor = RedisExecutor::connect(&server.url()).unwrap();
    let outcomes: Vec<_> = [Duration::ZERO, Duration::from_nanos(500)]
        .into_iter()
        .map(|timeout| {
            executor
                .submit_with_timeout(hang_forever(), timeout)
                // A bound to report a task run with no timeout as a failure.
                .result_timeout(Duration::from_secs(60))
        })
        .collect();
    // Leave without waiting for a task that would never end if the timeout were lost.
    executor.shutdown(false, false);
    for outcome in outcomes {
        assert!(
            outcome.as_ref().is_err_and(Error::is_task_timeout),
            "{outcome:?}"
        );
    }
}

#[test]
fn the_result_thread_ends_once_the_executor_and_every_future_it_could_resolve_are_gone() {
    let server = RedisServer::start(false);
    let url = server.url();
    let mut conn = server.connection();
    // The result thread's last act is deleting its reply stream: the test waits for that
    // keyspace event, not on a clock.
    let mut events = server.keyspace_events("Eg", Duration::from_secs(60));
    let mut pubsub = events.as_pubsub();
    pubsub.subscribe("__keyevent@0__:del").unwrap();
    let _workers = Workers::start(&url, 1, 1, &[]);
    let executor = RedisExecutor::connect(&url).unwrap();
    // One result announced: the reply stream exists, for the thread to delete.
    assert_eq!(executor.submit(square_number(4)).result(), Ok(16));

    let kept = executor.submit(held(url.clone(), "kept".to_owned()));
    let started: (String, String) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    assert_eq!(started.1, "kept");
    // A task whose future is dropped at once (it runs after `kept`, and is held there), and
    // a reattach to a task nobody submitted: results that never come.
    drop(executor.submit(held(url.clone(), "dropped".to_owned())));
    let never = executor.reattach::<SquareNumber>("never-submitted");
    executor.shutdown(false, false);
    drop(executor);

    // With the executor gone, a future still held resolves: the thread goes on for it.
    let _: () = redis::cmd("RPUSH")
        .arg("gate")
        .arg("go")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kept.result(), Ok("done kept".to_owned()));
    let started: (String, String) = redis::cmd("BLPOP")
        .arg("started")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    assert_eq!(started.1, "dropped");
    assert!(!never.done());
    // Nothing left that a result could reach: the thread ends.
    drop(never);
    // (Lists emptied by BLPOP are deleted too: skip those.)
    loop {
        let deleted = pubsub
            .get_message()
            .expect("the result thread ended within 60 s of its last future's drop");
        let key = deleted.get_payload::<String>().unwrap();
        if key.starts_with("cf:reply:") {
            break;
        }
        assert!(["started", "gate"].contains(&key.as_str()), "{key}");
    }
}
