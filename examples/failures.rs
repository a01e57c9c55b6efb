//! What each failure gives you, and that the process pool goes on working.
//!
//! ```text
//! cargo run --example failures
//! ```
//!
//! One task panics, one aborts its worker process, one hangs past its timeout; the others
//! succeed. Python's `ProcessPoolExecutor` would be broken after the abort; this one replaces
//! the worker and fails only the task that was running.

use concurrent_futures::{Error, ProcessPoolExecutor, as_completed, task};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn panics() -> u64 {
    panic!("this task panics on purpose")
}

#[task]
fn aborts() -> u64 {
    std::process::abort()
}

#[task(timeout = "500ms")]
fn hangs() -> u64 {
    loop {
        std::thread::park();
    }
}

fn main() {
    concurrent_futures::init();
    let executor = ProcessPoolExecutor::new(2);

    let mut futures = vec![
        ("panics", executor.submit(panics())),
        ("aborts", executor.submit(aborts())),
        ("hangs", executor.submit(hangs())),
    ];
    futures.extend((1..=5).map(|i| ("square_number", executor.submit(square_number(i)))));

    let handles: Vec<_> = futures.iter().map(|(_, f)| f).collect();
    for done in as_completed(handles) {
        let (name, _) = futures
            .iter()
            .find(|(_, f)| std::ptr::eq(f, done))
            .expect("one of ours");
        match done.result() {
            Ok(value) => println!("{name:>14}: ok {value}"),
            Err(error @ Error::Panicked { .. }) => println!("{name:>14}: panicked: {error}"),
            Err(error @ Error::WorkerDied { .. }) => println!("{name:>14}: worker died: {error}"),
            Err(error @ Error::TaskTimedOut { .. }) => println!("{name:>14}: timed out: {error}"),
            Err(error) => println!("{name:>14}: {error}"),
        }
    }

    let after = executor.submit(square_number(12)).result();
    println!("the pool still works: square_number(12) = {after:?}");
}
