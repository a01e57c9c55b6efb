use std::borrow::Cow;

use concurrent_futures::task;

#[task]
fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

#[task]
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().map(|&b| u32::from(b)).sum()
}

#[task]
fn shout(text: Cow<'_, str>) -> String {
    text.to_uppercase()
}

fn main() {}
