//! `join_completed!` in both forms, on futures of different types.
//!
//! ```text
//! cargo run --example join_completed
//! ```

use std::time::Duration;

use concurrent_futures::{Error, ThreadPoolExecutor, join_completed, task};

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn is_prime(n: u64) -> bool {
    n > 1 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

/// The arm form: one arm per future, each its own type; `?` works inside arms.
fn report(executor: &ThreadPoolExecutor) -> Result<(u64, bool, String), Error> {
    let (square, prime, loud) = join_completed! {
        s = executor.submit(square_number(12)) => {
            println!("square finished: {s:?}");
            s?
        }
        p = executor.submit(is_prime(1_000_003)) => {
            println!("primality finished: {p:?}");
            p?
        }
        t = executor.submit(shout("done".to_owned())) => {
            println!("shout finished: {t:?}");
            t?
        }
    };
    Ok((square, prime, loud))
}

fn main() -> Result<(), Error> {
    concurrent_futures::init();
    let executor = ThreadPoolExecutor::new(3);

    let (square, prime, loud) = report(&executor)?;
    println!("arm form, in written order: ({square}, {prime}, {loud:?})");

    // The collection form: an iterator of results in completion order.
    let futures: Vec<_> = (1..=5).map(|i| executor.submit(square_number(i))).collect();
    for result in join_completed!(futures, timeout = Duration::from_secs(10)) {
        println!("collection form: {}", result?);
    }
    Ok(())
}
