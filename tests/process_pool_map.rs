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
