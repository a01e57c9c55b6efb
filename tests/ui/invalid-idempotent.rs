use concurrent_futures::task;

#[task(idempotent = "yes")]
fn quoted() {}

#[task(idempotent = 1)]
fn numeric() {}

fn main() {}
