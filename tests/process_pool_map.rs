//! `map` on the process pool: chunks of calls in one frame, results in input order, and a
//! failing call that fails only its own position.

use std::time::Duration;

use concurrent_futures::{Error, MapOptions, ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn fails_on_seven(x: u64) -> u64 {
    assert_ne!(x, 7, "seven is refused");
    x
}

#[task]
fn worker_pid(_x: u64) -> u32 {
    std::process::id()
}

#[task]
fn aborts_on_seven(x: u64) -> u64 {
    if x == 7 {
        std::process::abort();
    }
    x
}

/// Encodes except for the value 13, whose `Serialize` refuses: a call that cannot be sent.
#[derive(Debug, serde::Deserialize)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("thirteen refuses to be encoded"));
        }
        serializer.serialize_u64(self.0)
    }
}

#[task]
fn unwrap_picky(x: Picky) -> u64 {
    x.0
}

#[task]
fn blocks_on_three(x: u64) -> u64 {
    if x == 3 {
        loop {
            std::thread::park();
        }
    }
    x
}

#[test]
fn chunked_map_returns_every_result_in_input_order() {
    let executor = ProcessPoolExecutor::new(2);
    let options = MapOptions::new().chunksize(100);
    let results: Vec<u64> = executor
        .map_with(square_number, 0..1_000, options)
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, (0..1_000).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn chunk_runs_its_calls_in_one_worker() {
    let executor = ProcessPoolExecutor::new(2);
    let pids: Vec<u32> = executor
        .map_with(worker_pid, 0..10, MapOptions::new().chunksize(10))
        .map(Result::unwrap)
        .collect();
    assert!(pids.iter().all(|&pid| pid == pids[0]), "{pids:?}");
    assert_ne!(pids[0], std::process::id());
}

#[test]
fn failing_call_in_a_chunk_fails_only_its_position() {
    let executor = ProcessPoolExecutor::new(2);
    let results: Vec<_> = executor
        .map_with(fails_on_seven, 0..20, MapOptions::new().chunksize(4))
        .collect();
    for (x, result) in results.into_iter().enumerate() {
        match result {
            Ok(value) => assert_eq!(value, x as u64),
            Err(Error::Panicked { message, .. }) => {
                assert_eq!(x, 7);
                assert!(message.contains("seven is refused"), "{message}");
            }
            Err(other) => panic!("call {x}: unexpected {other}"),
        }
    }
}

#[test]
fn chunked_buffered_map_pulls_an_endless_input_lazily() {
    let executor = ProcessPoolExecutor::new(2);
    let options = MapOptions::new()
        .chunksize(8)
        .buffersize(2)
        .timeout(Duration::from_secs(60));
    let first: Vec<u64> = executor
        .map_with(square_number, 0.., options)
        .take(50)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..50).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn a_chunk_whose_worker_dies_fails_each_of_its_calls_and_only_those() {
    let executor = ProcessPoolExecutor::new(2);
    let results: Vec<_> = executor
        .map_with(aborts_on_seven, 0..20, MapOptions::new().chunksize(5))
        .collect();
    for (x, result) in results.into_iter().enumerate() {
        match result {
            // 7 is in the chunk 5..10: the worker died under it, taking the whole chunk.
            Err(Error::WorkerDied { signal, .. }) if (5..10).contains(&x) => {
                assert_eq!(signal, Some(6), "call {x}: SIGABRT");
            }
            Ok(value) if !(5..10).contains(&x) => assert_eq!(value, x as u64),
            other => panic!("call {x}: unexpected {other:?}"),
        }
    }
    // The pool replaced the worker and goes on.
    let again: Vec<u64> = executor
        .map_with(square_number, 0..10, MapOptions::new().chunksize(5))
        .map(Result::unwrap)
        .collect();
    assert_eq!(again, (0..10).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn a_call_that_cannot_be_encoded_fails_alone_in_its_chunk() {
    let executor = ProcessPoolExecutor::new(2);
    let results: Vec<_> = executor
        .map_with(
            |x| unwrap_picky(Picky(x)),
            10..20,
            MapOptions::new().chunksize(4),
        )
        .collect();
    for (result, x) in results.into_iter().zip(10..) {
        match result {
            Err(Error::Serialization { message }) if x == 13 => {
                assert!(message.contains("thirteen refuses"), "{message}");
            }
            Ok(value) if x != 13 => assert_eq!(value, x),
            other => panic!("call {x}: unexpected {other:?}"),
        }
    }
}

#[test]
fn a_chunk_of_calls_that_all_cannot_be_encoded_fails_without_a_worker() {
    let executor = ProcessPoolExecutor::new(1);
    let results: Vec<_> = executor
        .map_with(
            |x| unwrap_picky(Picky(x)),
            [13, 13],
            MapOptions::new().chunksize(2),
        )
        .collect();
    assert_eq!(results.len(), 2);
    for result in results {
        assert!(
            matches!(result, Err(Error::Serialization { .. })),
            "{result:?}"
        );
    }
    assert!(executor.worker_pids().is_empty(), "nothing was sent");
}

#[test]
fn a_chunked_map_timeout_counts_unfinished_calls_not_chunks() {
    let executor = ProcessPoolExecutor::new(1);
    let options = MapOptions::new()
        .chunksize(4)
        .timeout(Duration::from_millis(300));
    let mut results = executor.map_with(blocks_on_three, 0..12, options);
    // The first chunk (0..4) never finishes: its call 3 blocks its only worker.
    match results.next() {
        Some(Err(Error::Timeout { unfinished, total })) => {
            assert_eq!(total, 12);
            assert_eq!(unfinished, 12, "every call of every chunk was unfinished");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(results.next().is_none(), "map ends after its timeout");
    drop(results);
    executor.kill_workers();
}

#[test]
fn a_chunked_map_on_a_shut_down_pool_stops_pulling_inputs() {
    let executor = ProcessPoolExecutor::new(1);
    executor.shutdown(true, false);
    // An endless input whose every chunk holds a call that cannot be encoded: the refusal of
    // the first chunk must still stop `map` from pulling more.
    let mut pulled = 0;
    let inputs = std::iter::from_fn(|| {
        pulled += 1;
        assert!(
            pulled < 1_000,
            "map kept pulling inputs from a shut-down pool"
        );
        Some(if pulled % 2 == 0 { 13 } else { 1 })
    });
    let results: Vec<_> = executor
        .map_with(
            |x| unwrap_picky(Picky(x)),
            inputs,
            MapOptions::new().chunksize(2),
        )
        .collect();
    assert!(!results.is_empty());
    for result in results {
        assert!(matches!(result, Err(Error::ShutDown)), "{result:?}");
    }
}
