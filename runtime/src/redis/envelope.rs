//! What travels through Redis, byte by byte: a task's body, a result's value, and the
//! HMAC-SHA256 that signs both when a shared key is set.
//!
//! ```text
//! task entry:  id, reply (the submitter's reply stream), body, sig (hex, with a key)
//! body:        u8 flags (bit 0: idempotent), u32 LE max deliveries, u32 LE result TTL in
//!              seconds, u64 LE timeout in ms (0: none), the call (task name, arguments)
//! result:      0, or 1 and a 32-byte MAC (signed); then u8 tag (0: output, 1: error),
//!              then the output bytes or the postcard-encoded error
//! ```
//!
//! The signature covers the task id and the reply stream as well as the body, and results
//! are signed under another label, so no signed piece can be moved onto another task or
//! passed off as a result.
//!
//! One kind of result is never signed: a worker's notice that it rejected a task for its
//! signature, which it cannot sign with a key the submitter shares. An executor with a key
//! accepts an unsigned result only when it is such a rejection ([`Error::DeadLetter`]): a
//! forged one can fail a future, which anyone who can write to the server can do anyway, but
//! never give it a value.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;

/// The shared secret that signs envelopes and results, when one is set.
#[derive(Clone)]
pub(crate) struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("Key(..)")
    }
}

impl Key {
    pub(crate) fn new(secret: impl Into<Vec<u8>>) -> Self {
        Key(secret.into())
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
        // Any byte string is a valid HMAC key.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        for part in parts {
            // Length-prefixed, so that moving bytes from one part to the next changes the MAC.
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signature of a task entry, hex-encoded for the stream field.
    pub(crate) fn sign_task(&self, id: &str, reply: &str, body: &[u8]) -> String {
        let tag = self
            .mac(b"cf-task\0", &[id.as_bytes(), reply.as_bytes(), body])
            .finalize()
            .into_bytes();
        hex(&tag)
    }

    /// Checks a task entry's signature in constant time.
    pub(crate) fn verify_task(
        &self,
        id: &str,
        reply: &str,
        body: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<(), String> {
        let Some(sig) = sig else {
            return Err("the task is not signed, and this worker requires a signature".to_owned());
        };
        let bad = || "the task's signature does not match this worker's key".to_owned();
        let tag = unhex(sig).ok_or_else(bad)?;
        self.mac(b"cf-task\0", &[id.as_bytes(), reply.as_bytes(), body])
            .verify_slice(&tag)
            .map_err(|_| bad())
    }

    /// The MAC of a result's value, bound to the task id.
    fn result_mac(&self, id: &str, value: &[u8]) -> HmacSha256 {
        self.mac(b"cf-result\0", &[id.as_bytes(), value])
    }
}

/// The per-task settings a worker reads before running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) idempotent: bool,
    pub(crate) max_deliveries: u32,
    /// How long the worker keeps the result, in seconds.
    pub(crate) result_ttl: u32,
    pub(crate) timeout: Option<Duration>,
}

const HEADER_LEN: usize = 1 + 4 + 4 + 8;

/// A task's body: its settings, then the encoded call.
pub(crate) fn encode_body(settings: Settings, call: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(HEADER_LEN + call.len());
    body.push(u8::from(settings.idempotent));
    body.extend_from_slice(&settings.max_deliveries.to_le_bytes());
    body.extend_from_slice(&settings.result_ttl.to_le_bytes());
    let timeout_ms = settings.timeout.map_or(0, |t| {
        // Rounded up, and at least 1, so that a sub-millisecond (or zero) timeout is not
        // "none": that would run the task with no timeout at all.
        u64::try_from(t.as_nanos().div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    });
    body.extend_from_slice(&timeout_ms.to_le_bytes());
    body.extend_from_slice(call);
    body
}

/// The settings and the call of a body; `None` if it is too short to be one.
pub(crate) fn decode_body(body: &[u8]) -> Option<(Settings, &[u8])> {
    let (header, call) = body.split_at_checked(HEADER_LEN)?;
    let max_deliveries = u32::from_le_bytes(header[1..5].try_into().ok()?);
    let result_ttl = u32::from_le_bytes(header[5..9].try_into().ok()?);
    let timeout_ms = u64::from_le_bytes(header[9..17].try_into().ok()?);
    Some((
        Settings {
            idempotent: header[0] & 1 == 1,
            max_deliveries,
            result_ttl,
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
        },
        call,
    ))
}

/// A result as stored under its key and announced: the output bytes or the error, signed
/// with `key` when there is one.
pub(crate) fn encode_result(
    key: Option<&Key>,
    id: &str,
    outcome: &Result<Vec<u8>, Error>,
) -> Vec<u8> {
    let mut value = Vec::new();
    match outcome {
        Ok(output) => {
            value.reserve(1 + output.len());
            value.push(0);
            value.extend_from_slice(output);
        }
        Err(error) => {
            value.push(1);
            value.extend_from_slice(&postcard::to_stdvec(error).expect("errors always encode"));
        }
    }
    let mut stored = Vec::with_capacity(1 + MAC_LEN + value.len());
    match key {
        Some(key) => {
            stored.push(1);
            stored.extend_from_slice(&key.result_mac(id, &value).finalize().into_bytes());
        }
        None => stored.push(0),
    }
    stored.extend_from_slice(&value);
    stored
}

/// Reads a stored result: `Ok(output bytes)` or the task's error. With `key`, a result must
/// be signed with it (but for a worker's rejection notice, see the module docs); a malformed
/// result is an error of its own.
pub(crate) fn decode_result<'a>(
    key: Option<&Key>,
    id: &str,
    stored: &'a [u8],
) -> Result<&'a [u8], Error> {
    let malformed = || Error::Serialization {
        message: format!("malformed result for task {id}"),
    };
    let (value, verified) = match stored.split_first() {
        Some((0, value)) => (value, false),
        Some((1, signed)) => {
            let (tag, value) = signed.split_at_checked(MAC_LEN).ok_or_else(malformed)?;
            let verified = match key {
                Some(key) => key.result_mac(id, value).verify_slice(tag).is_ok(),
                // An executor without a key does not check what it cannot.
                None => false,
            };
            if key.is_some() && !verified {
                return Err(Error::Serialization {
                    message: format!(
                        "the result of task {id} is not signed with this executor's key: \
                         rejected"
                    ),
                });
            }
            (value, verified)
        }
        _ => return Err(malformed()),
    };
    let outcome = match value.split_first() {
        Some((0, output)) => Ok(output),
        Some((1, error)) => {
            Err(
                postcard::from_bytes(error).unwrap_or_else(|e| Error::Serialization {
                    message: format!("cannot decode the error of task {id}: {e}"),
                }),
            )
        }
        _ => return Err(malformed()),
    };
    match outcome {
        Ok(_) | Err(_) if key.is_none() || verified => outcome,
        Err(Error::DeadLetter { reason }) => Err(Error::DeadLetter { reason }),
        _ => Err(Error::Serialization {
            message: format!("the result of task {id} is not signed: rejected"),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let settings = Settings {
            idempotent: true,
            max_deliveries: 7,
            result_ttl: 60,
            timeout: Some(Duration::from_millis(1500)),
        };
        let body = encode_body(settings, b"call");
        assert_eq!(decode_body(&body), Some((settings, &b"call"[..])));
        assert_eq!(decode_body(&body[..5]), None);
        for short in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(999),
        ] {
            let body = encode_body(
                Settings {
                    timeout: Some(short),
                    ..settings
                },
                b"call",
            );
            let decoded = decode_body(&body).map(|(s, _)| s.timeout);
            assert_eq!(decoded, Some(Some(Duration::from_millis(1))), "{short:?}");
        }
    }

    #[test]
    fn a_signature_covers_id_reply_and_body() {
        let key = Key::new("secret");
        let sig = key.sign_task("t1", "r", b"body");
        assert!(
            key.verify_task("t1", "r", b"body", Some(sig.as_bytes()))
                .is_ok()
        );
        assert!(
            key.verify_task("t2", "r", b"body", Some(sig.as_bytes()))
                .is_err()
        );
        assert!(
            key.verify_task("t1", "r2", b"body", Some(sig.as_bytes()))
                .is_err()
        );
        assert!(
            key.verify_task("t1", "r", b"bodz", Some(sig.as_bytes()))
                .is_err()
        );
        assert!(key.verify_task("t1", "r", b"body", None).is_err());
        let other = Key::new("other");
        assert!(
            other
                .verify_task("t1", "r", b"body", Some(sig.as_bytes()))
                .is_err()
        );
    }

    #[test]
    fn results_are_bound_to_their_task() {
        let key = Key::new("secret");
        let stored = encode_result(Some(&key), "t1", &Ok(vec![9, 9]));
        assert_eq!(decode_result(Some(&key), "t1", &stored), Ok(&[9, 9][..]));
        assert!(decode_result(Some(&key), "t2", &stored).is_err());
        let failed = encode_result(None, "t1", &Err(Error::ShutDown));
        assert_eq!(decode_result(None, "t1", &failed), Err(Error::ShutDown));
        // A keyed executor takes no unsigned value, but does take a rejection notice.
        let unsigned = encode_result(None, "t1", &Ok(vec![1]));
        assert!(
            decode_result(Some(&key), "t1", &unsigned)
                .unwrap_err()
                .is_serialization()
        );
        let rejected = encode_result(None, "t1", &Err(Error::DeadLetter { reason: "r".into() }));
        assert!(
            decode_result(Some(&key), "t1", &rejected)
                .unwrap_err()
                .is_dead_letter()
        );
        // An executor without a key reads signed results.
        assert_eq!(decode_result(None, "t1", &stored), Ok(&[9, 9][..]));
    }
}
