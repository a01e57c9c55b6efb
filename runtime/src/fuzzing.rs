//! The decoders a worker and its parent run on what arrives over their socket, callable on
//! arbitrary bytes: what the fuzz targets in `fuzz/` and the hostile-frame tests drive. Not
//! public API.
//!
//! Both entry points take a whole byte stream as the other side might send it, read frames
//! until the stream ends or breaks, and decode every body they know, exactly as the real
//! loops do. Whatever the input, they must come back with an error or a clean end: never a
//! panic, a hang, or an allocation the input's length prefixes ask for.

use crate::error::Error;
use crate::process::inbox::{Inbox, Received};
use crate::process::{call, identity, wire};
use crate::task::Task;

/// What a stream decoded into: how many frames were read whole, how many bodies decoded, how
/// many were refused (a malformed call, an unregistered task name, arguments or a result that
/// do not decode), and why the stream stopped if it did not end cleanly between frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Frames read whole.
    pub frames: usize,
    /// Worker side: calls (or chunks of calls) that decoded and ran. Parent side: results
    /// and errors that decoded.
    pub ran: usize,
    /// Calls or result bodies that were refused with an error.
    pub refused: Vec<String>,
    /// The frame reader's error, if the stream was cut or a length was out of bounds.
    pub stream_error: Option<String>,
}

/// What a worker does with `stream` from its parent: every `RUN` body runs as a call and
/// every `RUN_BATCH` body as a chunk, through the task registry of this process. (The real
/// worker also checks the handshake first and stops at the first unexpected kind; here every
/// frame is decoded, to reach the call decoder with as much of the input as possible.)
pub fn worker_reads(mut stream: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut out = Vec::new();
    loop {
        let frame = match wire::read(&mut stream) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                decoded.stream_error = Some(error.to_string());
                break;
            }
        };
        decoded.frames += 1;
        out.clear();
        let outcome = match frame.kind {
            wire::RUN | wire::RUN_THEN_WATCH => call::run(&frame.body, &mut out),
            wire::RUN_BATCH => call::run_chunk(&frame.body, &mut out),
            _ => continue,
        };
        match outcome {
            Ok(()) => decoded.ran += 1,
            Err(error) => decoded.refused.push(error.to_string()),
        }
    }
    decoded
}

/// What a parent does with `stream` from a worker whose calls are of task type `T`: the
/// stream arrives in reads of uneven sizes, as from the non-blocking socket the parent reads,
/// and is reassembled into frames by the parent's own `Inbox`; every `SUCCEEDED` body is read
/// as a run time then `T`'s output (taking the buffer, as the parent does), and also as the
/// answer to a chunk of `T` calls; every `FAILED` body as a run time then an [`Error`].
pub fn parent_reads<T: Task>(stream: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut inbox = Inbox::default();
    let mut source = UnevenReads {
        bytes: stream,
        reads: 0,
    };
    loop {
        match inbox.receive(&mut source) {
            Ok(Received::End) => {
                if inbox.is_mid_frame() {
                    decoded.stream_error = Some("stream ended inside a frame".to_owned());
                }
                return decoded;
            }
            Ok(_) => {}
            Err(error) => {
                decoded.stream_error = Some(error.to_string());
                return decoded;
            }
        }
        loop {
            match inbox.next_frame() {
                Ok(Some(frame)) => parent_decodes::<T>(frame, &mut decoded),
                Ok(None) => break,
                Err(error) => {
                    decoded.stream_error = Some(error.to_string());
                    return decoded;
                }
            }
        }
    }
}

fn parent_decodes<T: Task>(frame: wire::Frame, decoded: &mut Decoded) {
    decoded.frames += 1;
    if !matches!(frame.kind, wire::SUCCEEDED | wire::FAILED) {
        return;
    }
    // The parent refuses a result frame without its run time (a protocol error).
    if wire::ran_for(&frame.body).is_none() {
        decoded
            .refused
            .push("result frame without its run time".to_owned());
        return;
    }
    let body = &frame.body[wire::RUN_TIME_PREFIX..];
    if frame.kind == wire::FAILED {
        match postcard::from_bytes::<Error>(body) {
            Ok(_) => decoded.ran += 1,
            Err(error) => decoded.refused.push(error.to_string()),
        }
        return;
    }
    // The same body read both ways a parent may read it: the answer to a chunk of calls
    // (whose outputs are then decoded one by one), or one call's output.
    let chunk = call::chunk_answer(body).is_some_and(|outcomes| {
        outcomes
            .into_iter()
            .flatten()
            .all(|bytes| T::__decode_output(bytes).is_ok())
    });
    match T::__decode_output_owned(frame.body, wire::RUN_TIME_PREFIX) {
        Ok(_) => decoded.ran += 1,
        Err(_) if chunk => decoded.ran += 1,
        Err(error) => decoded.refused.push(error.to_string()),
    }
}

/// Hands `bytes` over in reads of 1 byte to 64 KiB, with a "would block" between some of them,
/// as a non-blocking socket does when the writer is slower than the reader.
struct UnevenReads<'a> {
    bytes: &'a [u8],
    reads: usize,
}

impl std::io::Read for UnevenReads<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        const SIZES: [usize; 6] = [13, 1, 4096, 7, 65_536, 200];
        self.reads += 1;
        if self.reads.is_multiple_of(5) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = SIZES[self.reads % SIZES.len()]
            .min(out.len())
            .min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// The frame a parent sends to run `task`: real bytes for seed corpora and tests.
pub fn run_frame<T: Task>(id: u64, task: &T) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    call::encode(task, &mut body)?;
    frame(wire::RUN, id, &body)
}

/// The frame a parent sends to run `tasks` as one chunk.
pub fn chunk_frame<T: Task>(id: u64, tasks: &[T]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    call::begin_chunk::<T>(&mut body)?;
    for task in tasks {
        call::encode_in_chunk(task, &mut body)?;
    }
    frame(wire::RUN_BATCH, id, &body)
}

/// The handshake a parent built from this very binary sends first.
pub fn hello_frame() -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(&mut out, wire::HELLO, identity::build_identity(), &[])
        .expect("an empty frame fits");
    out
}

/// The frame a worker sends back for a call of `T` that returned `output`.
pub fn succeeded_frame<T: Task>(id: u64, output: &T::Output) -> Result<Vec<u8>, Error> {
    let mut body = vec![0; wire::RUN_TIME_PREFIX];
    T::__encode_output(output, &mut body)?;
    frame(wire::SUCCEEDED, id, &body)
}

/// The frame a worker sends back for a call that failed with `error`.
pub fn failed_frame(id: u64, error: &Error) -> Result<Vec<u8>, Error> {
    let mut body = vec![0; wire::RUN_TIME_PREFIX];
    body.extend_from_slice(
        &postcard::to_stdvec(error).map_err(|e| Error::Serialization {
            message: e.to_string(),
        })?,
    );
    frame(wire::FAILED, id, &body)
}

/// The largest frame either side accepts, in bytes (kind + id + body).
pub const MAX_FRAME: usize = wire::MAX_FRAME;

fn frame(kind: u8, id: u64, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    wire::encode(&mut out, kind, id, body).map_err(|e| Error::Serialization {
        message: e.to_string(),
    })?;
    Ok(out)
}
