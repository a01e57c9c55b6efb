//! Hostile input on the worker's socket: truncated frames, gigantic length prefixes, calls
//! naming task types that are not registered, random and mutated bytes. The decoders answer
//! each with an error, never a panic, a hang or an allocation the input asks for; a real
//! worker process answers an unknown task with a failed result and goes on, and leaves on a
//! broken stream instead of waiting for bytes that will not come.
//!
//! The decoders are driven through the same hidden entry points as the fuzz target in
//! `fuzz/` (`__private::fuzzing`), over real encoded frames of the tasks below.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use concurrent_futures::__private::fuzzing::{
    self, MAX_FRAME, chunk_frame, hello_frame, parent_reads, run_frame, worker_reads,
};
use concurrent_futures::{Error, task};

concurrent_futures::enable_test_support!();

mod common;
use common::frames::{EXIT, FAILED, READY, REFUSED, RUN, STARTED, SUCCEEDED, raw_frame};

#[task]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[task]
fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

#[task]
fn describe(name: String, values: Vec<i32>, flag: Option<bool>) -> String {
    format!("{name}: {} values, {flag:?}", values.len())
}

/// A call body naming `name` (u16 LE length, then the name), then `arguments`.
fn call_body(name: &str, arguments: &[u8]) -> Vec<u8> {
    let mut body = (name.len() as u16).to_le_bytes().to_vec();
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(arguments);
    body
}

/// A valid stream of every kind of call the tasks above make, one after another.
fn valid_stream() -> Vec<u8> {
    let mut stream = hello_frame();
    stream.extend(run_frame(1, &square(12)).unwrap());
    stream.extend(run_frame(2, &echo(vec![1, 2, 3, 255])).unwrap());
    stream.extend(run_frame(3, &describe("xs".to_owned(), vec![-1, 7], Some(true))).unwrap());
    stream.extend(chunk_frame(4, &[square(2), square(3), square(4)]).unwrap());
    stream.extend(raw_frame(EXIT, 0, &[]));
    stream
}

#[test]
fn real_frames_decode_and_run() {
    let decoded = worker_reads(&valid_stream());
    assert_eq!(decoded.frames, 6);
    assert_eq!(decoded.ran, 4, "{decoded:?}");
    assert!(decoded.refused.is_empty(), "{decoded:?}");
    assert_eq!(decoded.stream_error, None);
}

#[test]
fn a_call_naming_an_unregistered_task_type_is_refused_by_name() {
    let body = call_body("hostile_frames::not_registered", &[5]);
    let decoded = worker_reads(&raw_frame(RUN, 1, &body));
    assert_eq!((decoded.frames, decoded.ran), (1, 0));
    assert_eq!(decoded.refused.len(), 1);
    assert!(
        decoded.refused[0].contains("no task named `hostile_frames::not_registered`"),
        "{decoded:?}"
    );
}

#[test]
fn every_truncation_of_a_valid_stream_is_an_error_or_ends_between_frames() {
    let stream = valid_stream();
    let whole = worker_reads(&stream);
    let (mut cut_inside, mut cut_between) = (0, 0);
    for cut in 0..stream.len() {
        let decoded = worker_reads(&stream[..cut]);
        assert!(decoded.frames < whole.frames, "cut at {cut}");
        match &decoded.stream_error {
            Some(error) => {
                assert!(error.contains("stream ended inside a frame"), "{error}");
                cut_inside += 1;
            }
            None => cut_between += 1,
        }
    }
    // Six frame boundaries (counting the empty stream), every other cut inside a frame.
    assert_eq!(cut_between, 6);
    assert_eq!(cut_inside, stream.len() - 6);
}

#[test]
fn a_length_prefix_of_gigabytes_is_refused_with_a_clear_error() {
    for claimed in [MAX_FRAME as u32 + 1, u32::MAX] {
        let mut stream = claimed.to_le_bytes().to_vec();
        stream.extend_from_slice(&[RUN; 64]);
        let decoded = worker_reads(&stream);
        let error = decoded.stream_error.expect("refused");
        assert!(error.contains("outside 9..=1073741824"), "{error}");
        assert_eq!(decoded.frames, 0);
    }
}

/// xorshift64: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_and_random_streams_are_decoded_without_panicking() {
    let valid = valid_stream();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut ran, mut refused, mut broken) = (0, 0, 0);
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 4 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            // Flip a few bytes of a valid stream: lengths, kinds, names and arguments.
            let mut input = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len());
                input[at] = rng.next() as u8;
            }
            input
        };
        let decoded = worker_reads(&input);
        ran += decoded.ran;
        refused += decoded.refused.len();
        broken += usize::from(decoded.stream_error.is_some());
        let from_worker = parent_reads::<Square>(&input);
        refused += from_worker.refused.len();
    }
    // The mutations reach every outcome: calls that still run, calls refused, streams broken.
    assert!(
        ran > 0 && refused > 0 && broken > 0,
        "{ran} {refused} {broken}"
    );
}

#[test]
fn results_from_a_worker_are_decoded_or_refused() {
    let mut stream = fuzzing::succeeded_frame::<Square>(1, &144).unwrap();
    stream.extend(fuzzing::failed_frame(2, &Error::Cancelled).unwrap());
    stream.extend(raw_frame(SUCCEEDED, 3, &[0, 0])); // no room for the run time
    stream.extend(raw_frame(FAILED, 4, &[0, 0, 0, 0, 0xff])); // not an Error
    let decoded = parent_reads::<Square>(&stream);
    assert_eq!(decoded.frames, 4);
    assert_eq!(decoded.ran, 2, "{decoded:?}");
    assert!(
        decoded.refused[0].contains("without its run time"),
        "{decoded:?}"
    );
    assert_eq!(decoded.refused.len(), 2, "{decoded:?}");
}

/// This test binary started as a worker, as the pool starts it, on a socket we hold.
fn start_worker() -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "__concurrent_futures_worker_entry",
            "--exact",
            "--nocapture",
            "--quiet",
        ])
        .env("CONCURRENT_FUTURES_WORKER", "0")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A worker that hangs fails the read instead of blocking the test.
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (child, ours)
}

/// Waits for the worker to exit, failing the test instead of hanging if it does not.
fn exit_of(child: Child) -> (ExitStatus, String) {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let output = child.wait_with_output().unwrap();
        let _ = tx.send(output);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("worker {pid} still runs 60 s after its input broke");
        }
    }
}

/// Reads frames until the worker closes its end: (kind, id, body) each.
fn frames_from(mut socket: &UnixStream) -> Vec<(u8, u64, Vec<u8>)> {
    let mut bytes = Vec::new();
    socket.read_to_end(&mut bytes).unwrap();
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 13 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let id = u64::from_le_bytes(rest[5..13].try_into().unwrap());
        frames.push((rest[4], id, rest[13..4 + len].to_vec()));
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "a partial frame from the worker");
    frames
}

#[test]
fn a_worker_answers_an_unregistered_task_with_an_error_and_goes_on() {
    let (child, socket) = start_worker();
    let pid = child.id();
    let mut input = hello_frame();
    input.extend(raw_frame(
        RUN,
        1,
        &call_body("nobody::registered_this", &[]),
    ));
    input.extend(run_frame(2, &square(7)).unwrap());
    input.extend(raw_frame(EXIT, 0, &[]));
    (&socket).write_all(&input).unwrap();
    let frames = frames_from(&socket);
    let (status, stderr) = exit_of(child);
    assert!(status.success(), "{status}: {stderr}");
    let kinds: Vec<(u8, u64)> = frames.iter().map(|(kind, id, _)| (*kind, *id)).collect();
    assert_eq!(
        kinds,
        [
            (READY, u64::from(pid)),
            (STARTED, 1),
            (FAILED, 1),
            (STARTED, 2),
            (SUCCEEDED, 2)
        ]
    );
    let error: Error = postcard::from_bytes(&frames[2].2[4..]).unwrap();
    assert!(
        matches!(&error, Error::Serialization { message } if message.contains("no task named `nobody::registered_this`")),
        "{error:?}"
    );
    assert_eq!(postcard::from_bytes::<u64>(&frames[4].2[4..]).unwrap(), 49);
}

#[test]
fn a_worker_leaves_on_a_gigantic_length_prefix_without_waiting_for_it() {
    let (child, socket) = start_worker();
    let mut input = hello_frame();
    input.extend_from_slice(&u32::MAX.to_le_bytes());
    input.extend_from_slice(&[RUN; 9]);
    (&socket).write_all(&input).unwrap();
    // Our end stays open: the worker must decide from the prefix alone.
    let (status, stderr) = exit_of(child);
    assert_eq!(status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("broken stream from the pool") && stderr.contains("outside"),
        "{stderr}"
    );
    drop(socket);
}

#[test]
fn a_worker_refuses_a_parent_of_another_build() {
    let (child, socket) = start_worker();
    let mut hello = hello_frame();
    hello[5] ^= 1; // another build identity
    (&socket).write_all(&hello).unwrap();
    let frames = frames_from(&socket);
    let (status, _) = exit_of(child);
    assert_eq!(status.code(), Some(70));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, REFUSED);
    assert!(String::from_utf8_lossy(&frames[0].2).contains("another binary"));
}

#[test]
fn a_worker_refuses_a_call_before_the_handshake() {
    let (child, socket) = start_worker();
    (&socket)
        .write_all(&run_frame(1, &square(3)).unwrap())
        .unwrap();
    let frames = frames_from(&socket);
    let (status, stderr) = exit_of(child);
    assert_eq!(status.code(), Some(70), "{stderr}");
    assert!(frames.is_empty(), "the call did not run: {frames:?}");
    assert!(stderr.contains("expected a hello frame"), "{stderr}");
}

#[test]
fn a_worker_fed_random_bytes_after_the_handshake_exits_with_an_error_or_cleanly() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..8 {
        let (child, socket) = start_worker();
        let mut input = hello_frame();
        input.extend((0..64 + rng.below(512)).map(|_| rng.next() as u8));
        (&socket).write_all(&input).unwrap();
        // End of input: a worker waiting inside a frame sees the stream cut.
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let (status, stderr) = exit_of(child);
        assert!(
            matches!(status.code(), Some(0 | 70)),
            "{status}: {stderr} (a panic exits 101, a crash has no code)"
        );
    }
}
