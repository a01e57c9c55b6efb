//! The task types the fuzz target decodes calls and results of, shared with the seed
//! generator so that the seeds are real frames of registered tasks.

use concurrent_futures::task;

/// An integer argument and result.
#[task]
pub fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// `Vec<u8>` arguments and results travel as one byte string, a path of their own.
#[task]
pub fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Strings, sequences and options.
#[task]
pub fn describe(name: String, values: Vec<i32>, flag: Option<bool>) -> String {
    format!("{name}: {} values, {flag:?}", values.len())
}
