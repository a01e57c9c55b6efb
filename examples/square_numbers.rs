//! The seed program: squares of 0..9, collected as they complete.
//!
//! ```text
//! cargo run --release --example square_numbers
//! ```

use concurrent_futures::{ThreadPoolExecutor, as_completed, task};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

fn main() {
    concurrent_futures::init(); // a re-executed worker enters here and never returns

    let executor = ThreadPoolExecutor::new(3);
    println!("executor: {executor:?}");

    let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    let as_completed_order: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().expect("square_number cannot fail"))
        .collect();
    println!("as completed: {as_completed_order:?}");

    let mut sorted = as_completed_order;
    sorted.sort_unstable();
    println!("sorted:       {sorted:?}");
    println!(
        "ran on a ThreadPoolExecutor with {} threads",
        executor.thread_count()
    );
} // dropping the executor = shutdown(wait = true), like leaving Python's `with` block
