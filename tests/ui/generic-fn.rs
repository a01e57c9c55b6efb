use concurrent_futures::task;

#[task]
fn largest<T: Ord>(items: Vec<T>) -> Option<T> {
    items.into_iter().max()
}

#[task]
fn total(items: Vec<u64>) -> u64
where
    u64: Copy,
{
    items.iter().sum()
}

fn main() {}
