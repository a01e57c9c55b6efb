//! A task call on the wire: how the parent writes one (or a chunk of them) and how a worker
//! runs it.
//!
//! ```text
//! call:   u16 LE name length, name, the arguments (postcard, as the task's own type)
//! chunk:  u16 LE name length, name, then per call: u32 LE length, the arguments
//! answer to a chunk: per call: u32 LE length, then 0 and the output, or 1 and the error
//! ```
//!
//! The arguments are encoded and decoded as the concrete task type, found by name in the
//! registry `#[task]` fills, not through typetag's type-erased path, which visits a
//! `Vec<u8>` byte by byte through a vtable (about 47 ms per MiB).

use crate::encode;
use crate::error::Error;
use crate::task::{self, Task};
use crate::unwind;

/// Appends the call `task` to `out`.
pub(crate) fn encode<T: Task>(task: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    push_name(T::NAME, out)?;
    encode::append(task, arguments_of::<T>(), out).inspect_err(|_| out.truncate(start))
}

/// Starts a chunk of calls of task type `T` in `out`; add them with [`encode_in_chunk`].
pub(crate) fn begin_chunk<T: Task>(out: &mut Vec<u8>) -> Result<(), Error> {
    push_name(T::NAME, out)
}

/// Appends one call to a chunk begun with [`begin_chunk`]; on error `out` is as it was.
pub(crate) fn encode_in_chunk<T: Task>(task: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode::append(task, arguments_of::<T>(), out).inspect_err(|_| out.truncate(start))?;
    patch_length(out, start);
    Ok(())
}

/// Runs the call in `body`, appending its encoded output to `out`. A panic is caught.
pub(crate) fn run(body: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let (run, arguments) = split(body)?;
    unwind::catch(|| run(arguments, out))?
}

/// Runs each call of the chunk in `body` in turn, appending the answer to `out`. The chunk
/// fails as a whole only if it is malformed; each call's own failure is in its item.
pub(crate) fn run_chunk(body: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let (run, mut rest) = split(body)?;
    while !rest.is_empty() {
        let (arguments, tail) = take_item(rest).ok_or_else(|| malformed("chunk"))?;
        rest = tail;
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(0);
        if let Err(error) = unwind::catch(|| run(arguments, out)).and_then(|ran| ran) {
            out.truncate(start + 4);
            out.push(1);
            encode::append(&error, "an error", out).expect("errors always encode");
        }
        patch_length(out, start);
    }
    Ok(())
}

/// The outcomes in the answer to a chunk, in call order; `None` if it is malformed.
pub(crate) fn chunk_answer(mut body: &[u8]) -> Option<Vec<Result<&[u8], Error>>> {
    let mut outcomes = Vec::new();
    while !body.is_empty() {
        let (item, rest) = take_item(body)?;
        body = rest;
        let (&tag, bytes) = item.split_first()?;
        outcomes.push(match tag {
            0 => Ok(bytes),
            _ => Err(
                postcard::from_bytes(bytes).unwrap_or_else(|e| Error::Serialization {
                    message: format!("cannot decode the error a worker sent: {e}"),
                }),
            ),
        });
    }
    Some(outcomes)
}

fn arguments_of<T: Task>() -> ArgumentsOf {
    ArgumentsOf(T::NAME)
}

/// "the arguments of task `name`", formatted only if an error needs it.
struct ArgumentsOf(&'static str);

impl std::fmt::Display for ArgumentsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the arguments of task `{}`", self.0)
    }
}

fn push_name(name: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    let len = u16::try_from(name.len()).map_err(|_| Error::Serialization {
        message: format!(
            "task name of {} bytes is over the 65535-byte limit of the wire",
            name.len()
        ),
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// The registered runner named at the start of `body`, and the bytes after the name.
fn split(body: &[u8]) -> Result<(task::RunFn, &[u8]), Error> {
    let (len, rest) = body
        .split_first_chunk::<2>()
        .ok_or_else(|| malformed("call"))?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return Err(malformed("call"));
    }
    let (name, rest) = rest.split_at(len);
    let name = std::str::from_utf8(name).map_err(|_| malformed("call"))?;
    let registration = task::find(name).ok_or_else(|| Error::Serialization {
        message: format!("no task named `{name}` is registered in this worker"),
    })?;
    Ok((registration.run(), rest))
}

fn take_item(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = body.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Writes the length of what follows the 4 bytes at `start`, into them.
fn patch_length(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start - 4).expect("frames are under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn malformed(what: &str) -> Error {
    Error::Serialization {
        message: format!("malformed {what} from the pool"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call body naming `name`, followed by `arguments`.
    fn call_named(name: &str, arguments: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        push_name(name, &mut body).unwrap();
        body.extend_from_slice(arguments);
        body
    }

    #[test]
    fn a_call_naming_an_unregistered_task_is_refused_with_its_name() {
        let body = call_named("no_such_crate::not_a_task", &[1, 2, 3]);
        let error = run(&body, &mut Vec::new()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no task named `no_such_crate::not_a_task` is registered"),
            "{error}"
        );
        let error = run_chunk(&body, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("not_a_task"), "{error}");
    }

    #[test]
    fn truncated_or_garbled_calls_are_malformed() {
        // Empty, one byte of the name length, a name longer than the body, a name not UTF-8.
        let mut long_name = 500_u16.to_le_bytes().to_vec();
        long_name.extend_from_slice(b"short");
        for body in [&[][..], &[7], &long_name, &[2, 0, 0xff, 0xfe]] {
            let error = run(body, &mut Vec::new()).unwrap_err();
            assert!(
                error.to_string().contains("malformed call"),
                "{body:?}: {error}"
            );
        }
    }

    #[test]
    fn a_chunk_answer_cut_inside_an_item_is_malformed() {
        let mut answer = 10_u32.to_le_bytes().to_vec();
        answer.extend_from_slice(&[0, 1, 2]);
        assert!(chunk_answer(&answer).is_none());
        // A whole item with an empty body (no tag) is malformed too.
        assert!(chunk_answer(&0_u32.to_le_bytes()).is_none());
        // An error item whose error does not decode becomes a Serialization error.
        let mut answer = 2_u32.to_le_bytes().to_vec();
        answer.extend_from_slice(&[1, 0xff]);
        let outcomes = chunk_answer(&answer).unwrap();
        assert!(matches!(outcomes[0], Err(Error::Serialization { .. })));
    }
}
