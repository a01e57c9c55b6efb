use concurrent_futures::task;

struct Handle {
    id: u32,
}

#[task]
fn open(id: u32) -> Handle {
    Handle { id }
}

fn main() {}
