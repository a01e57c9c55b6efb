//! The CPU-bound example of Python's `concurrent.futures` docs, on the process pool: is each
//! of these large numbers prime? Results print as they complete, under a progress bar, then
//! the speed-up over checking them one after another in this thread.
//!
//! ```text
//! cargo run --release --example primes
//! ```

use std::time::Instant;

use concurrent_futures::{ProcessPoolExecutor, as_completed, task};
use indicatif::{ProgressBar, ProgressStyle};

/// Python's six, then ten primes just above 10^15 so that there is enough work to spread.
const PRIMES: [u64; 16] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
    1_000_000_000_000_037,
    1_000_000_000_000_091,
    1_000_000_000_000_159,
    1_000_000_000_000_187,
    1_000_000_000_000_223,
    1_000_000_000_000_241,
    1_000_000_000_000_249,
    1_000_000_000_000_259,
    1_000_000_000_000_273,
    1_000_000_000_000_279,
];

#[task]
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let limit = n.isqrt();
    (3..=limit).step_by(2).all(|d| n % d != 0)
}

/// `#[concurrent_futures::main]` puts `concurrent_futures::init()` first, where workers enter.
#[concurrent_futures::main]
fn main() {
    let started = Instant::now();
    let executor = ProcessPoolExecutor::default();
    let futures: Vec<_> = PRIMES
        .iter()
        .map(|&n| executor.submit(is_prime(n)))
        .collect();
    let bar = ProgressBar::new(futures.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} checked, {elapsed}")
            .expect("valid template"),
    );
    for future in as_completed(&futures) {
        let index = futures
            .iter()
            .position(|f| std::ptr::eq(f, future))
            .expect("one of ours");
        let prime = future.result().expect("is_prime cannot fail");
        let line = format!("{} is prime: {prime}", PRIMES[index]);
        if bar.is_hidden() {
            println!("{line}"); // not a terminal: no bar to print above
        } else {
            bar.println(line);
        }
        bar.inc(1);
    }
    bar.finish();
    let pool_time = started.elapsed();
    let workers = executor.max_workers();
    drop(executor);

    let started = Instant::now();
    for (&n, future) in PRIMES.iter().zip(&futures) {
        assert_eq!(is_prime(n).run(), future.result().expect("checked above"));
    }
    let serial_time = started.elapsed();
    println!(
        "{workers} worker processes: {pool_time:.2?}; one thread: {serial_time:.2?}; speed-up {:.2}x",
        serial_time.as_secs_f64() / pool_time.as_secs_f64()
    );
}
