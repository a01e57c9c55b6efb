//! The seed program: squares of 0..9, collected as they complete.
//!
//! ```text
//! cargo run --release --example square_numbers               # thread pool
//! cargo run --release --example square_numbers -- --processes  # process pool
//! ```

use concurrent_futures::{Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, task};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

/// The same code for either pool: only the executor differs.
fn squares(executor: &impl Executor) -> Vec<u64> {
    let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    as_completed(&futures)
        .map(|f| f.result().expect("square_number cannot fail"))
        .collect()
}

fn main() {
    concurrent_futures::init(); // a re-executed worker enters here and never returns

    let processes = std::env::args().any(|arg| arg == "--processes");
    let (as_completed_order, which) = if processes {
        let executor = ProcessPoolExecutor::new(3);
        let results = squares(&executor);
        let which = format!(
            "a ProcessPoolExecutor (worker pids {:?})",
            executor.worker_pids()
        );
        (results, which)
    } else {
        let executor = ThreadPoolExecutor::new(3);
        let results = squares(&executor);
        let which = format!("a ThreadPoolExecutor ({} threads)", executor.thread_count());
        (results, which)
    }; // dropping an executor = shutdown(wait = true), like leaving Python's `with` block

    println!("as completed: {as_completed_order:?}");
    let mut sorted = as_completed_order;
    sorted.sort_unstable();
    println!("sorted:       {sorted:?}");
    println!("ran on {which}");
}
