//! `join_completed!` in both forms, with `?`, `return` and block bodies, adds no warning.
#![deny(warnings, unused_qualifications, unused_results)]

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

fn arms(executor: &ThreadPoolExecutor) -> Result<(u64, bool, String), Error> {
    let (sq, prime, text) = join_completed! {
        s = executor.submit(square_number(4)) => s?,
        p = executor.submit(is_prime(97)) => {
            let prime = p?;
            if !prime {
                return Ok((0, false, String::new()));
            }
            prime
        }
        t = executor.submit(square_number(3)) => format!("{}", t?),
    };
    Ok((sq, prime, text))
}

fn collection(executor: &ThreadPoolExecutor) -> u64 {
    let futures: Vec<_> = (1..=3).map(|i| executor.submit(square_number(i))).collect();
    let quick: Vec<_> = (1..=2).map(|i| executor.submit(square_number(i))).collect();
    let timed = join_completed!(quick, timeout = Duration::from_secs(60),).count();
    join_completed!(futures).map(Result::unwrap).sum::<u64>() + timed as u64
}

fn main() {
    concurrent_futures::init();
    let executor = ThreadPoolExecutor::new(2);
    assert_eq!(arms(&executor).unwrap(), (16, true, "9".to_owned()));
    assert_eq!(collection(&executor), 14 + 2);
}
