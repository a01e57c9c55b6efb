//! `ProcessPoolExecutor` doing its job: results, `map` order, worker processes, task output
//! on stdout/stderr, panics, serialization failures, large values, `max_tasks_per_child` and
//! initializers.
//!
//! Nothing here sleeps: tasks are synchronised through their futures, and the one test that
//! must look at what workers print runs a helper copy of this binary and reads its output.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use concurrent_futures::{
    Error, Executor, MapOptions, ProcessPoolExecutor, ReturnWhen, as_completed, task, wait,
};

concurrent_futures::enable_test_support!();

#[task]
fn square_number(x: u64) -> u64 {
    x * x
}

#[task]
fn my_pid() -> u32 {
    std::process::id()
}

#[task]
fn panic_with(message: String) -> u32 {
    panic!("{message}")
}

/// An argument or result whose `Serialize` always fails.
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

#[task]
fn take_unencodable(value: Unencodable) -> u32 {
    let Unencodable = value;
    1
}

#[task]
fn make_unencodable() -> Unencodable {
    Unencodable
}

/// A value that encodes but never decodes: it fails on the far side of the wire.
#[derive(Debug, serde::Serialize)]
struct Undecodable(u32);

impl<'de> serde::Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "Undecodable refuses to be decoded",
        ))
    }
}

#[task]
fn take_undecodable(value: Undecodable) -> u32 {
    value.0
}

#[task]
fn make_undecodable() -> Undecodable {
    Undecodable(7)
}

#[task]
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// A byte buffer that serde encodes as one byte string (what `serde_bytes` does), so that a
/// debug build copies 64 MiB instead of visiting every byte through `typetag`'s type erasure.
#[derive(Debug)]
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlobVisitor;
        impl serde::de::Visitor<'_> for BlobVisitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
                Ok(Blob(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BlobVisitor)
    }
}

#[task]
fn echo_blob(blob: Blob) -> Blob {
    blob
}

static INITIALIZED: AtomicBool = AtomicBool::new(false);

#[task]
fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

#[task]
fn was_initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

#[task]
fn failing_initializer() {
    panic!("the initializer refuses to run");
}

fn pool(max_workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(max_workers)
        .build()
        .expect("valid options")
}

#[test]
fn results_come_back_from_worker_processes() {
    let executor = pool(2);
    let futures: Vec<_> = (0..10).map(|i| executor.submit(square_number(i))).collect();
    let mut results: Vec<u64> = as_completed(&futures)
        .map(|f| f.result().unwrap())
        .collect();
    results.sort_unstable();
    assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);

    let split = wait(&futures, ReturnWhen::AllCompleted, None);
    assert_eq!(split.done.len(), 10);
    assert!(split.not_done.is_empty());
}

#[test]
fn map_yields_results_in_input_order() {
    let executor = pool(2);
    let expected: Vec<u64> = (0..40).map(|i| i * i).collect();

    let results: Vec<u64> = executor
        .map(square_number, 0..40)
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, expected);

    // One frame carries many calls; the order is still the inputs'.
    let chunked: Vec<u64> = executor
        .map_with(square_number, 0..40, MapOptions::new().chunksize(7))
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, expected);

    // Through the `Executor` trait, as generic code sees it.
    fn generic(executor: &impl Executor) -> Vec<u64> {
        executor
            .map(square_number, 0..40)
            .map(Result::unwrap)
            .collect()
    }
    assert_eq!(generic(&executor), expected);
}

#[test]
fn tasks_run_in_another_process() {
    let executor = pool(1);
    let pid = executor.submit(my_pid()).result().unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(executor.worker_pids(), [pid]);
}

/// What the noisy task writes, byte for byte: text, NULs, invalid UTF-8, and bytes shaped
/// like a frame of the pool's protocol (length, kind SUCCEEDED, an id, a body).
fn noise(stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..4000u32 {
        write!(out, "{stream} noise line {i}: \0\u{1}\u{7f} ").unwrap();
        out.extend_from_slice(&13u32.to_le_bytes());
        out.push(19);
        out.extend_from_slice(&u64::from(i).to_le_bytes());
        out.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, 0x28]);
        out.push(b'\n');
    }
    out
}

#[task]
fn print_a_lot() -> u64 {
    println!("noisy task starts: println! with a NUL \0 and a frame-like \u{13}\u{0}\u{0}\u{0}");
    eprintln!("noisy task starts: eprintln!");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&noise("stdout")).unwrap();
    stdout.flush().unwrap();
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(&noise("stderr")).unwrap();
    stderr.flush().unwrap();
    42
}

/// Runs `helper` (an ignored test of this binary) alone in a copy of this binary.
fn run_helper(helper: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            helper,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CF_TEST_HELPER", helper)
        .stdin(Stdio::null())
        .output()
        .expect("start a helper copy of the test binary")
}

/// True in the copy of this binary that `run_helper` started for `helper`: the helpers are
/// ignored tests that do nothing when run any other way (`cargo test -- --ignored`).
fn is_helper(helper: &str) -> bool {
    std::env::var("CF_TEST_HELPER").is_ok_and(|h| h == helper)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
#[ignore = "helper of task_prints_do_not_corrupt_the_protocol; does nothing on its own"]
fn helper_print_a_lot() {
    if !is_helper("helper_print_a_lot") {
        return;
    }
    let executor = pool(1);
    assert_eq!(executor.submit(print_a_lot()).result(), Ok(42));
    // The worker serves on after printing.
    assert_eq!(executor.submit(square_number(5)).result(), Ok(25));
    println!("HELPER OK");
}

#[test]
fn task_prints_do_not_corrupt_the_protocol() {
    let output = run_helper("helper_print_a_lot");
    let stdout = &output.stdout;
    let stderr = &output.stderr;
    assert!(
        output.status.success() && contains(stdout, b"HELPER OK"),
        "helper failed: {}\nstdout tail: {}\nstderr tail: {}",
        output.status,
        String::from_utf8_lossy(&stdout[stdout.len().saturating_sub(2000)..]),
        String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(2000)..]),
    );
    // The task's bytes reached the parent's stdout and stderr untouched.
    assert!(contains(stdout, &noise("stdout")), "stdout noise altered");
    assert!(contains(stderr, &noise("stderr")), "stderr noise altered");
    assert!(contains(stdout, b"println! with a NUL \0"));
    assert!(contains(stderr, b"noisy task starts: eprintln!"));
}

#[test]
fn a_panic_comes_back_as_panicked_and_the_worker_lives_on() {
    let executor = pool(1);
    let before = executor.submit(my_pid()).result().unwrap();

    let error = executor
        .submit(panic_with("boom 42".to_owned()))
        .result()
        .unwrap_err();
    match &error {
        Error::Panicked {
            message, location, ..
        } => {
            assert_eq!(message, "boom 42");
            let location = location.as_deref().expect("a location");
            assert!(location.contains("process_pool.rs"), "location {location}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(error.to_string().contains("boom 42"), "{error}");

    let after = executor.submit(my_pid()).result().unwrap();
    assert_eq!(before, after, "the same worker serves after the panic");
    assert_eq!(executor.worker_pids(), [before]);
}

#[test]
fn an_argument_that_fails_to_serialize_fails_its_future_at_once() {
    let executor = pool(1);
    let future = executor.submit(take_unencodable(Unencodable));
    // Failed before anything was sent: no wait, and no worker was even started for it.
    assert!(future.done(), "the future fails at submit");
    assert!(executor.worker_pids().is_empty());
    match future.result() {
        Err(Error::Serialization { message }) => {
            assert!(message.contains("take_unencodable"), "{message}");
            assert!(message.contains("refuses to be encoded"), "{message}");
        }
        other => panic!("expected Serialization, got {other:?}"),
    }
    // The pool keeps working.
    assert_eq!(executor.submit(square_number(6)).result(), Ok(36));
}

#[test]
fn a_result_that_fails_to_serialize_comes_back_as_serialization() {
    let executor = pool(1);
    match executor.submit(make_unencodable()).into_result() {
        Err(Error::Serialization { message }) => {
            assert!(message.contains("make_unencodable"), "{message}");
            assert!(message.contains("refuses to be encoded"), "{message}");
        }
        other => panic!("expected Serialization, got {other:?}"),
    }
    assert_eq!(executor.submit(square_number(6)).result(), Ok(36));
}

#[test]
fn an_argument_that_fails_to_decode_in_the_worker_comes_back_as_serialization() {
    let executor = pool(1);
    match executor.submit(take_undecodable(Undecodable(1))).result() {
        Err(Error::Serialization { message }) => assert!(message.contains("decode"), "{message}"),
        other => panic!("expected Serialization, got {other:?}"),
    }
    assert_eq!(executor.submit(square_number(7)).result(), Ok(49));
}

#[test]
fn a_result_that_fails_to_decode_in_the_parent_fails_as_serialization() {
    let executor = pool(1);
    match executor.submit(make_undecodable()).into_result() {
        Err(Error::Serialization { message }) => assert!(message.contains("decode"), "{message}"),
        other => panic!("expected Serialization, got {other:?}"),
    }
    assert_eq!(executor.submit(square_number(8)).result(), Ok(64));
}

/// FNV-1a over 8-byte words, to compare 64 MiB without keeping a copy.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(0xcbf2_9ce4_8422_2325, |hash, word| {
        let mut padded = [0; 8];
        padded[..word.len()].copy_from_slice(word);
        (hash ^ u64::from_le_bytes(padded)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` bytes of xorshift output: no run of equal bytes hides a lost or repeated chunk.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

const LARGE: usize = 64 << 20;

#[test]
fn large_values_round_trip_without_deadlock() {
    let executor = pool(2);
    let inputs: Vec<Vec<u8>> = (1..=2)
        .map(|seed| pseudo_random_bytes(LARGE, seed))
        .collect();
    let sums: Vec<u64> = inputs.iter().map(|b| checksum(b)).collect();
    // Both in flight at once (one per worker), then waited for.
    let futures: Vec<_> = inputs
        .into_iter()
        .map(|bytes| executor.submit(echo_blob(Blob(bytes))))
        .collect();
    for (future, sum) in futures.into_iter().zip(sums) {
        let Blob(bytes) = future.into_result().unwrap();
        assert_eq!(bytes.len(), LARGE);
        assert_eq!(checksum(&bytes), sum);
    }
}

#[test]
fn large_vec_u8_values_round_trip_without_deadlock() {
    let executor = pool(2);
    let inputs: Vec<Vec<u8>> = (1..=2)
        .map(|seed| pseudo_random_bytes(LARGE, seed))
        .collect();
    let sums: Vec<u64> = inputs.iter().map(|b| checksum(b)).collect();
    let futures: Vec<_> = inputs
        .into_iter()
        .map(|bytes| executor.submit(echo_bytes(bytes)))
        .collect();
    for (future, sum) in futures.into_iter().zip(sums) {
        let bytes = future.into_result().unwrap();
        assert_eq!(bytes.len(), LARGE);
        assert_eq!(checksum(&bytes), sum);
    }
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    // A backlog of ten at once.
    let futures: Vec<_> = (0..10).map(|_| executor.submit(my_pid())).collect();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for future in &futures {
        *per_pid.entry(future.result().unwrap()).or_default() += 1;
    }
    assert!(per_pid.len() >= 5, "pids used: {per_pid:?}");
    assert!(
        per_pid.values().all(|&n| n <= 2),
        "no worker ran more than 2 tasks: {per_pid:?}"
    );
}

#[test]
fn an_initializer_runs_first_in_every_worker() {
    assert!(!INITIALIZED.load(Ordering::SeqCst), "not in the parent");
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .initializer(mark_initialized())
        .build()
        .unwrap();
    // One task per worker, so every answer comes from a fresh worker.
    let futures: Vec<_> = (0..4).map(|_| executor.submit(was_initialized())).collect();
    for future in &futures {
        assert_eq!(future.result(), Ok(true));
    }
    assert!(!INITIALIZED.load(Ordering::SeqCst), "not in the parent");
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(failing_initializer())
        .build()
        .unwrap();
    let futures: Vec<_> = (0..3).map(|i| executor.submit(square_number(i))).collect();
    for result in futures.iter().map(|f| f.result()) {
        match result {
            Err(Error::Broken { reason }) => {
                assert!(reason.contains("initializer"), "{reason}");
                assert!(
                    reason.contains("the initializer refuses to run"),
                    "{reason}"
                );
            }
            other => panic!("expected Broken, got {other:?}"),
        }
    }
    // Broken for good: later submits fail at once.
    let future = executor.submit(square_number(9));
    assert!(future.done());
    assert!(
        matches!(future.result(), Err(Error::Broken { .. })),
        "{future:?}"
    );
}

// ---------------------------------------------------------------------------------------
// idle_spin: how long a worker that ran out of work polls before it sleeps
// ---------------------------------------------------------------------------------------

#[test]
fn idle_spin_over_10_ms_is_rejected() {
    let error = ProcessPoolExecutor::builder()
        .idle_spin(std::time::Duration::from_millis(11))
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        Error::InvalidArgument {
            message: "idle_spin must be at most 10 ms".to_owned()
        }
    );
}

/// Workers that sleep at once (Python's) and workers that poll for the longest allowed both
/// answer every round trip, and both leave at shutdown: a worker polling for work sees the
/// pool's exit frame as work.
#[test]
fn workers_serve_and_exit_whatever_their_idle_spin() {
    for spin in [
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(10),
    ] {
        let executor = ProcessPoolExecutor::builder()
            .max_workers(2)
            .idle_spin(spin)
            .build()
            .unwrap();
        for i in 0..20 {
            assert_eq!(executor.submit(square_number(i)).result(), Ok(i * i));
        }
        let pids = executor.worker_pids();
        assert!(!pids.is_empty());
        executor.shutdown(true, false);
        assert!(executor.worker_pids().is_empty(), "spin {spin:?}");
        for pid in pids {
            // Waited for and reaped: not even a zombie is left.
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "worker {pid} still exists after shutdown (spin {spin:?})"
            );
        }
    }
}
