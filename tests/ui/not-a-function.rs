use concurrent_futures::task;

#[task]
struct SquareNumber {
    x: u64,
}

fn main() {}
