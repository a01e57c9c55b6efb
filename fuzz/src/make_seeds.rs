//! Writes the seed corpus of the `frames` target: real frames, as parent and worker encode
//! them, of the tasks in this crate. `cargo run --bin make_seeds -- corpus/frames`.

use std::path::PathBuf;

use concurrent_futures::__private::fuzzing::{
    chunk_frame, failed_frame, hello_frame, run_frame, succeeded_frame,
};
use concurrent_futures::Error;
use concurrent_futures_fuzz::{Describe, Echo, Square, describe, echo, square};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/frames".to_owned()),
    );
    std::fs::create_dir_all(&dir)?;
    let mut hello_then_calls = hello_frame();
    hello_then_calls.extend(run_frame(1, &square(12))?);
    hello_then_calls.extend(run_frame(2, &echo(b"bytes".to_vec()))?);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("hello", hello_frame()),
        ("run_square", run_frame(1, &square(7))?),
        ("run_echo", run_frame(2, &echo(vec![0, 1, 2, 255]))?),
        (
            "run_describe",
            run_frame(3, &describe("xs".to_owned(), vec![-1, 7], Some(true)))?,
        ),
        (
            "chunk_square",
            chunk_frame(4, &[square(2), square(3), square(4)])?,
        ),
        ("hello_then_calls", hello_then_calls),
        ("succeeded_square", succeeded_frame::<Square>(1, &49)?),
        ("succeeded_echo", succeeded_frame::<Echo>(2, &vec![9; 16])?),
        (
            "succeeded_describe",
            succeeded_frame::<Describe>(3, &"xs: 2 values".to_owned())?,
        ),
        ("failed_cancelled", failed_frame(5, &Error::Cancelled)?),
        (
            "failed_panicked",
            failed_frame(
                6,
                &Error::Panicked {
                    message: "boom".to_owned(),
                    location: Some("src/lib.rs:1:1".to_owned()),
                    backtrace: None,
                },
            )?,
        ),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
