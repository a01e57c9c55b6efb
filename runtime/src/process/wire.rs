//! The frames parent and worker exchange: a fixed header, then a body, on one socket.
//!
//! ```text
//! u32 LE  length of what follows (kind + id + body)
//! u8      kind
//! u64 LE  id: the task's id, the worker's pid, or the build identity
//! [u8]    body: a postcard-encoded task, result or error, or nothing
//! ```
//!
//! The envelope is written by hand rather than through serde so that a 64 MiB body is copied
//! once, not visited byte by byte, and so that a hostile length is rejected before anything is
//! allocated for it.

use std::io::{self, Read, Write};

/// Parent to worker: "I am your parent; here is my build identity" (id = identity, body =
/// [`Hello`]).
pub(crate) const HELLO: u8 = 1;
/// Parent to worker: run this call (body: see `call`).
pub(crate) const RUN: u8 = 2;
/// Parent to worker: finish what you have and exit.
pub(crate) const EXIT: u8 = 3;
/// Parent to worker: run this chunk of calls one after another (see `call`); the answer is
/// one `SUCCEEDED` with an outcome per call.
pub(crate) const RUN_BATCH: u8 = 4;
/// Parent to worker: run this call, as `RUN`; it was sent while nothing else waited, so the
/// next one is likely the same caller's, soon: if nothing follows it, watch for the next
/// frame for the hello's `idle_spin` before sleeping.
pub(crate) const RUN_THEN_WATCH: u8 = 5;

/// Worker to parent: handshake accepted (id = pid).
pub(crate) const READY: u8 = 16;
/// Worker to parent: handshake refused (body = the reason, UTF-8).
pub(crate) const REFUSED: u8 = 17;
/// Worker to parent: task `id` has started.
pub(crate) const STARTED: u8 = 18;
/// Worker to parent: task `id` succeeded (body = its run time, then the encoded output).
pub(crate) const SUCCEEDED: u8 = 19;
/// Worker to parent: task `id` failed (body = its run time, then the encoded `Error`).
pub(crate) const FAILED: u8 = 20;

/// A result's body starts with how long the call ran in the worker, in microseconds (u32 LE),
/// so that the parent decides whether to queue work behind it without counting its own delays.
pub(crate) const RUN_TIME_PREFIX: usize = 4;

/// The run time at the start of a result body; `None` if the body is too short.
pub(crate) fn ran_for(body: &[u8]) -> Option<std::time::Duration> {
    let micros = body.first_chunk::<RUN_TIME_PREFIX>()?;
    Some(std::time::Duration::from_micros(u64::from(
        u32::from_le_bytes(*micros),
    )))
}

/// The most `idle_spin` a pool may ask for, and a worker grants whatever its hello says: past
/// it, a worker would spend a core on nothing.
pub(crate) const MAX_IDLE_SPIN: std::time::Duration = std::time::Duration::from_millis(10);

/// The worker's settings, in the hello's body: how long it polls for work before it sleeps,
/// in microseconds (u32 LE). An empty or short body means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) idle_spin: std::time::Duration,
}

impl Hello {
    pub(crate) fn encode(self) -> [u8; 4] {
        let micros = u32::try_from(self.idle_spin.as_micros()).unwrap_or(u32::MAX);
        micros.to_le_bytes()
    }

    pub(crate) fn decode(body: &[u8]) -> Self {
        let micros = body
            .first_chunk::<4>()
            .map_or(0, |m| u32::from_le_bytes(*m));
        Self {
            idle_spin: std::time::Duration::from_micros(u64::from(micros)),
        }
    }
}

/// The id of a pool's initializer, run first in each worker; a worker whose initializer fails
/// reports it and exits. Jobs count from 1.
pub(crate) const INITIALIZER_ID: u64 = 0;

pub(crate) const HEADER: usize = 1 + 8;

/// Frames larger than this are refused on both sides: a corrupt or hostile length prefix must
/// not make the reader allocate gigabytes. Large enough for 64 MiB values with room to spare.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// One decoded frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) id: u64,
    pub(crate) body: Vec<u8>,
}

/// Appends a frame to `out`, so that several frames go out in one write.
pub(crate) fn encode(out: &mut Vec<u8>, kind: u8, id: u64, body: &[u8]) -> io::Result<()> {
    let len = HEADER + body.len();
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Starts a frame in `out` whose body the caller appends; [`end`] fills in its length. Saves
/// copying a large result from its own buffer into the frame.
pub(crate) fn begin(out: &mut Vec<u8>, kind: u8, id: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    start
}

/// Finishes the frame begun at `start`; a frame over [`MAX_FRAME`] is an error and is removed.
pub(crate) fn end(out: &mut Vec<u8>, start: usize) -> io::Result<()> {
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// The header of a frame whose body of `body_len` bytes is written separately (a large body
/// goes out from where it is, without being copied next to its header first).
pub(crate) fn header(kind: u8, id: u64, body_len: usize) -> io::Result<[u8; 4 + HEADER]> {
    let len = HEADER + body_len;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut header = [0_u8; 4 + HEADER];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind;
    header[5..].copy_from_slice(&id.to_le_bytes());
    Ok(header)
}

/// Writes one frame and flushes it.
pub(crate) fn send(writer: &mut impl Write, kind: u8, id: u64, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::new();
    encode(&mut frame, kind, id, body)?;
    writer.write_all(&frame)?;
    writer.flush()
}

/// Reads one frame. `Ok(None)` at a clean end of stream (the other side closed between
/// frames); a stream cut inside a frame, or a length out of bounds, is an error.
pub(crate) fn read(reader: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut body = Vec::new();
    Ok(read_into(reader, &mut body)?.map(|(kind, id)| Frame { kind, id, body }))
}

/// [`read`] into a buffer the caller keeps, so that a worker receiving large calls one after
/// another reuses one allocation instead of faulting in fresh pages for each. Returns the
/// frame's kind and id; its body replaces what `body` held.
pub(crate) fn read_into(
    reader: &mut impl Read,
    body: &mut Vec<u8>,
) -> io::Result<Option<(u8, u64)>> {
    body.clear();
    let mut prefix = [0_u8; 4];
    if !read_exact_or_eof(reader, &mut prefix)? {
        return Ok(None);
    }
    let body_len = body_len(prefix)?;
    let mut header = [0_u8; HEADER];
    reader.read_exact(&mut header).map_err(truncated)?;
    body.reserve(body_len.min(TRUSTED_LEN));
    reader
        .take(body_len as u64)
        .read_to_end(body)
        .map_err(truncated)?;
    if body.len() != body_len {
        return Err(truncated(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(parse_header(header)))
}

/// A length prefix is trusted this far when allocating (one allocation, no regrowth, for large
/// values); beyond it a body's buffer grows as bytes arrive, so that a hostile prefix cannot
/// reserve a gigabyte.
pub(crate) const TRUSTED_LEN: usize = 1 << 24;

/// Bytes of the fixed part of a frame: length prefix, kind, id.
pub(crate) const PREFIXED_HEADER: usize = 4 + HEADER;

/// The body length a frame's length prefix announces, if within bounds.
pub(crate) fn body_len(prefix: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(prefix) as usize;
    if !(HEADER..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is outside {HEADER}..={MAX_FRAME}"),
        ));
    }
    Ok(len - HEADER)
}

/// Kind and id, from the bytes after the length prefix.
pub(crate) fn parse_header(header: [u8; HEADER]) -> (u8, u64) {
    let id = u64::from_le_bytes(header[1..].try_into().expect("8 bytes"));
    (header[0], id)
}

/// Fills `buf`; false if the stream ended before its first byte.
fn read_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(truncated(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn truncated(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame")
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_settings_round_trip_and_default_to_none() {
        let hello = Hello {
            idle_spin: std::time::Duration::from_micros(50),
        };
        assert_eq!(Hello::decode(&hello.encode()), hello);
        // A parent that sends no settings (an empty body) asks for no spin.
        assert_eq!(Hello::decode(&[]), Hello::default());
        assert_eq!(Hello::decode(&[1, 2]), Hello::default());
        // Too long for the field: the most it holds, which the worker caps anyway.
        let huge = Hello {
            idle_spin: std::time::Duration::from_secs(1 << 40),
        };
        assert_eq!(
            Hello::decode(&huge.encode()).idle_spin,
            std::time::Duration::from_micros(u64::from(u32::MAX))
        );
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut stream = Vec::new();
        encode(&mut stream, RUN, 7, b"task").unwrap();
        encode(&mut stream, EXIT, 0, b"").unwrap();
        let mut reader = stream.as_slice();
        let first = read(&mut reader).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.id, first.body.as_slice()),
            (RUN, 7, &b"task"[..])
        );
        let second = read(&mut reader).unwrap().unwrap();
        assert_eq!((second.kind, second.id, second.body.len()), (EXIT, 0, 0));
        assert!(read(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_separate_header_matches_an_encoded_frame() {
        let mut whole = Vec::new();
        encode(&mut whole, RUN, 9, b"body").unwrap();
        let mut split = header(RUN, 9, 4).unwrap().to_vec();
        split.extend_from_slice(b"body");
        assert_eq!(whole, split);
    }

    #[test]
    fn frames_built_in_place_read_back() {
        let mut stream = Vec::new();
        let start = begin(&mut stream, SUCCEEDED, 3);
        stream.extend_from_slice(b"output");
        end(&mut stream, start).unwrap();
        let frame = read(&mut stream.as_slice()).unwrap().unwrap();
        assert_eq!(
            (frame.kind, frame.id, frame.body.as_slice()),
            (SUCCEEDED, 3, &b"output"[..])
        );
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_clean_end() {
        let mut stream = Vec::new();
        encode(&mut stream, RUN, 1, &[9; 100]).unwrap();
        for cut in [2, 6, 50] {
            let error = read(&mut &stream[..cut]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn gigantic_length_prefix_is_refused_before_allocating() {
        let mut stream = u32::MAX.to_le_bytes().to_vec();
        stream.extend_from_slice(&[RUN, 0, 0, 0, 0, 0, 0, 0, 0]);
        let error = read(&mut stream.as_slice()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("outside"), "{error}");
    }

    #[test]
    fn length_shorter_than_the_header_is_refused() {
        let stream = 3_u32.to_le_bytes();
        assert_eq!(
            read(&mut stream.as_slice()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_prefix_of_a_gigabyte_waits_for_bytes_instead_of_reserving_them() {
        // Exactly the limit: accepted as a length, but the buffer grows only as bytes come,
        // so a stream that stops early is a truncated frame, not a 1 GiB allocation.
        let mut stream = (MAX_FRAME as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&[RUN, 0, 0, 0, 0, 0, 0, 0, 0]);
        stream.extend_from_slice(&[0; 100]);
        let error = read(&mut stream.as_slice()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        // One byte over the limit: refused from the prefix alone.
        let over = (MAX_FRAME as u32 + 1).to_le_bytes();
        let error = read(&mut over.as_slice()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn random_bytes_end_in_an_error_or_a_clean_end() {
        // xorshift64: the same 20,000 inputs on every run.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut frames, mut errors, mut clean) = (0, 0, 0);
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the inputs get a plausible length prefix, so that whole frames occur too.
            if len >= 4 && next() % 2 == 0 {
                let claimed = (next() % (len as u64)) as u32;
                bytes[..4].copy_from_slice(&claimed.to_le_bytes());
            }
            let mut reader = bytes.as_slice();
            loop {
                match read(&mut reader) {
                    Ok(Some(frame)) => {
                        assert!(frame.body.len() < len);
                        frames += 1;
                    }
                    Ok(None) => {
                        clean += 1;
                        break;
                    }
                    Err(error) => {
                        assert!(
                            matches!(
                                error.kind(),
                                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                            ),
                            "{error}"
                        );
                        errors += 1;
                        break;
                    }
                }
            }
        }
        assert!(
            frames > 0 && errors > 0 && clean > 0,
            "{frames} {errors} {clean}"
        );
    }
}
