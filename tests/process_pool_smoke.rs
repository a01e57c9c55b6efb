//! A first round trip through worker processes.

use concurrent_futures::{ProcessPoolExecutor, as_completed, task};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn my_pid() -> u32 {
    std::process::id()
}

#[test]
fn squares_come_back_from_worker_processes() {
    let executor = ProcessPoolExecutor::new(2);
    let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    let mut results: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().unwrap())
        .collect();
    results.sort();
    assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    let pid = executor.submit(my_pid()).result().unwrap();
    assert_ne!(pid, std::process::id());
}
