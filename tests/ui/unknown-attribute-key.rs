use concurrent_futures::task;

#[task(retries = "3")]
fn square_number(x: u64) -> u64 {
    x * x
}

fn main() {}
