use concurrent_futures::task;

#[task(name = "math::square", timeout = "1s", name = "math::squared")]
fn square_number(x: u64) -> u64 {
    x * x
}

fn main() {}
