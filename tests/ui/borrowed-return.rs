use concurrent_futures::task;

#[task]
fn greeting(formal: bool) -> &'static str {
    if formal { "good day" } else { "hi" }
}

#[task]
fn evens(limit: u64) -> impl Iterator<Item = u64> {
    (0..limit).filter(|n| n % 2 == 0)
}

fn main() {}
