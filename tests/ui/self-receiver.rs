use concurrent_futures::task;

struct Counter {
    count: u64,
}

impl Counter {
    #[task]
    fn bump(&self) -> u64 {
        self.count + 1
    }
}

fn main() {}
