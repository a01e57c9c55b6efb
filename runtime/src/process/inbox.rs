//! `Inbox`: frames reassembled from whatever a non-blocking socket hands over, so that one
//! read takes in many small frames and a large body is read straight into its own buffer.

use std::io::{self, Read};

use super::wire::{self, Frame, HEADER, PREFIXED_HEADER};

/// Read this much at a time when no large body is being received.
const READ_CHUNK: usize = 64 * 1024;

/// A body larger than this is received into a buffer of its own rather than through the
/// shared one, so that its bytes are copied once.
const OWN_BUFFER: usize = READ_CHUNK;

/// What one read did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Bytes arrived; `drained` if the socket had fewer than were asked for, so that another
    /// read now would most likely find nothing.
    Bytes { drained: bool },
    /// Nothing to read yet.
    WouldBlock,
    /// The other side closed the stream.
    End,
}

/// Bytes read and not yet handed out as frames.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Initialised once and reused: its length is its capacity, so reads need no zeroing.
    buffer: Vec<u8>,
    /// The unread bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    /// A large frame whose body is being read into its own buffer.
    large: Option<Large>,
}

#[derive(Debug)]
struct Large {
    kind: u8,
    id: u64,
    /// What has arrived of the body; its capacity is reserved up to what the length prefix
    /// is trusted for, and grows from there as bytes arrive.
    body: Vec<u8>,
    len: usize,
}

/// Reads what is there of a large body, straight into its buffer (not zeroed first).
fn receive_body(source: &mut impl Read, large: &mut Large) -> io::Result<Received> {
    let missing = (large.len - large.body.len()) as u64;
    if missing == 0 {
        return Ok(Received::Bytes { drained: true }); // complete, waiting for `next_frame`
    }
    let before = large.body.len();
    // `read_to_end` keeps what it read when it stops at WouldBlock.
    let result = source.take(missing).read_to_end(&mut large.body);
    let got = large.body.len() - before;
    match result {
        Ok(_) if got == 0 => Ok(Received::End),
        Ok(_) => Ok(Received::Bytes { drained: false }),
        Err(error) if got > 0 && error.kind() == io::ErrorKind::WouldBlock => {
            Ok(Received::Bytes { drained: true })
        }
        Err(error) => would_block_or(error),
    }
}

fn would_block_or(error: io::Error) -> io::Result<Received> {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Received::WouldBlock),
        _ => Err(error),
    }
}

impl Inbox {
    /// Reads once from `source` (a large body: as much of it as is there).
    pub(crate) fn receive(&mut self, source: &mut impl Read) -> io::Result<Received> {
        if let Some(large) = &mut self.large {
            return receive_body(source, large);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buffer.len() - self.end < READ_CHUNK {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buffer.len() - self.end < READ_CHUNK {
            self.buffer.resize(self.end + READ_CHUNK, 0);
        }
        let room = self.buffer.len() - self.end;
        match source.read(&mut self.buffer[self.end..]) {
            Ok(0) => Ok(Received::End),
            Ok(n) => {
                self.end += n;
                Ok(Received::Bytes { drained: n < room })
            }
            Err(error) => would_block_or(error),
        }
    }

    /// The next complete frame, if one has arrived; an error for a length out of bounds.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if let Some(large) = &self.large {
            if large.body.len() < large.len {
                return Ok(None);
            }
            let Large { kind, id, body, .. } = self.large.take().expect("checked");
            return Ok(Some(Frame { kind, id, body }));
        }
        let unread = &self.buffer[self.start..self.end];
        let Some(fixed) = unread.first_chunk::<PREFIXED_HEADER>() else {
            return Ok(None);
        };
        let len = wire::body_len(*fixed.first_chunk::<4>().expect("4 of 13 bytes"))?;
        let (kind, id) = wire::parse_header(*fixed.last_chunk::<HEADER>().expect("9 of 13"));
        let arrived = &unread[PREFIXED_HEADER..];
        if arrived.len() >= len {
            let body = arrived[..len].to_vec();
            self.start += PREFIXED_HEADER + len;
            return Ok(Some(Frame { kind, id, body }));
        }
        if len > OWN_BUFFER {
            // What arrived of it moves to its own buffer; the rest is read straight there.
            let mut body = Vec::with_capacity(len.min(wire::TRUSTED_LEN));
            body.extend_from_slice(arrived);
            self.large = Some(Large {
                kind,
                id,
                body,
                len,
            });
            self.start = self.end;
        }
        Ok(None)
    }

    /// Whether bytes of an unfinished frame are waiting for the rest: the stream must not end
    /// here.
    pub(crate) fn is_mid_frame(&self) -> bool {
        self.large.is_some() || self.start < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::wire::{RUN, SUCCEEDED, encode};

    /// A source that hands over at most `step` bytes per read, then reports WouldBlock once
    /// between reads, as a non-blocking socket does when the peer is slow.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        blocked: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.blocked) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.blocked = true;
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn drain(stream: &[u8], step: usize) -> (Vec<Frame>, Received) {
        let mut source = Trickle {
            bytes: stream,
            step,
            blocked: false,
        };
        let mut inbox = Inbox::default();
        let mut frames = Vec::new();
        loop {
            let received = inbox.receive(&mut source).unwrap();
            while let Some(frame) = inbox.next_frame().unwrap() {
                frames.push(frame);
            }
            if received == Received::End {
                assert!(!inbox.is_mid_frame());
                return (frames, received);
            }
        }
    }

    #[test]
    fn small_and_large_frames_come_out_whole_whatever_the_read_sizes() {
        let large: Vec<u8> = (0..300_000_u32).map(|i| i as u8).collect();
        let mut stream = Vec::new();
        encode(&mut stream, RUN, 1, b"first").unwrap();
        encode(&mut stream, SUCCEEDED, 2, &large).unwrap();
        encode(&mut stream, RUN, 3, b"").unwrap();
        for step in [1, 7, 13, 4096, 65_536, 1 << 20] {
            let (frames, _) = drain(&stream, step);
            let got: Vec<_> = frames
                .iter()
                .map(|f| (f.kind, f.id, f.body.len()))
                .collect();
            assert_eq!(
                got,
                [(RUN, 1, 5), (SUCCEEDED, 2, large.len()), (RUN, 3, 0)],
                "step {step}"
            );
            assert_eq!(frames[0].body, b"first");
            assert_eq!(frames[1].body, large, "step {step}");
        }
    }

    #[test]
    fn a_stream_cut_inside_a_frame_leaves_it_mid_frame() {
        let mut stream = Vec::new();
        encode(&mut stream, RUN, 1, &[7; 100_000]).unwrap();
        for cut in [3, 20, 50_000] {
            let mut inbox = Inbox::default();
            let mut source = &stream[..cut];
            while inbox.receive(&mut source).unwrap() != Received::End {
                assert!(inbox.next_frame().unwrap().is_none());
            }
            assert!(inbox.is_mid_frame(), "cut at {cut}");
        }
    }

    #[test]
    fn a_gigantic_length_prefix_is_refused_before_allocating() {
        let mut stream = u32::MAX.to_le_bytes().to_vec();
        stream.extend_from_slice(&[RUN, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut inbox = Inbox::default();
        inbox.receive(&mut stream.as_slice()).unwrap();
        let error = inbox.next_frame().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
