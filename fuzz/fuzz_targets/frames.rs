//! Arbitrary bytes as the stream a worker reads from its parent (frames, then calls run
//! through the task registry) and as the stream a parent reads from a worker (frames, then
//! results and errors of each task type). Any input must end in an error or a clean end.

#![no_main]

use concurrent_futures::__private::fuzzing;
use concurrent_futures_fuzz::{Describe, Echo, Square};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::worker_reads(data);
    let _ = fuzzing::parent_reads::<Square>(data);
    let _ = fuzzing::parent_reads::<Echo>(data);
    let _ = fuzzing::parent_reads::<Describe>(data);
});
