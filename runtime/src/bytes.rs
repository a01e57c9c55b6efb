//! `Vec<u8>` as one byte string: what `#[task]` uses for `Vec<u8>` arguments and results.
//!
//! serde encodes a `Vec<u8>` as a sequence, one element at a time; as a byte string it is
//! copied at once. In postcard both are a length followed by the bytes, so the wire does not
//! change, only the speed: a 1 MiB argument no longer costs a million calls.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// For `#[serde(with = "...")]` on a `Vec<u8>` field.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// For `#[serde(with = "...")]` on a `Vec<u8>` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(ByteBufVisitor)
}

/// `Task::__encode_output` for a `Vec<u8>` result.
pub fn encode_output_bytes(output: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), crate::Error> {
    crate::encode::append(&AsBytes(output), "a Vec<u8> result", out)
}

/// `Task::__decode_output` for a `Vec<u8>` result.
pub fn decode_output_bytes(bytes: &[u8]) -> Result<Vec<u8>, postcard::Error> {
    postcard::from_bytes::<ByteBuf>(bytes).map(|b| b.0)
}

/// `Task::__decode_output_owned` for a `Vec<u8>` result: the byte string at `body[at..]`,
/// moved to the front of `body` (the pages are already there; a copy into a fresh buffer
/// would fault in new ones).
pub fn decode_output_bytes_owned(mut body: Vec<u8>, at: usize) -> Result<Vec<u8>, postcard::Error> {
    let encoded = body
        .get(at..)
        .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
    let (len, prefix) = varint(encoded).ok_or(postcard::Error::DeserializeBadVarint)?;
    let start = at + prefix;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= body.len())
        .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
    body.truncate(end);
    body.drain(..start);
    Ok(body)
}

/// postcard's length prefix (LEB128) and how many bytes it took.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// A `Vec<u8>` result, serialized as a byte string.
#[derive(Debug)]
pub struct AsBytes<'a>(pub &'a Vec<u8>);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A `Vec<u8>` result, deserialized from a byte string.
#[derive(Debug)]
pub struct ByteBuf(pub Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(ByteBuf)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    // Self-describing formats may hand back a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_and_sequences_encode_alike_in_postcard() {
        let data = vec![0_u8, 1, 2, 255];
        let as_seq = postcard::to_stdvec(&data).unwrap();
        let as_bytes = postcard::to_stdvec(&AsBytes(&data)).unwrap();
        assert_eq!(as_seq, as_bytes);
        let back: ByteBuf = postcard::from_bytes(&as_seq).unwrap();
        assert_eq!(back.0, data);
    }

    #[test]
    fn an_owned_byte_string_is_decoded_in_place_after_its_prefix() {
        for len in [0, 1, 127, 128, 16_384, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut body = vec![9_u8; 4]; // what comes before, e.g. a run time
            encode_output_bytes(&data, &mut body).unwrap();
            let expected = decode_output_bytes(&body[4..]).unwrap();
            assert_eq!(
                decode_output_bytes_owned(body, 4).unwrap(),
                expected,
                "{len}"
            );
            assert_eq!(expected, data);
        }
    }

    #[test]
    fn a_short_or_malformed_owned_byte_string_is_an_error() {
        let mut body = Vec::new();
        encode_output_bytes(&vec![1; 300], &mut body).unwrap();
        let short = body[..body.len() - 1].to_vec();
        assert!(decode_output_bytes_owned(short, 0).is_err());
        assert!(
            decode_output_bytes_owned(vec![0xff; 11], 0).is_err(),
            "endless varint"
        );
        assert!(
            decode_output_bytes_owned(vec![], 1).is_err(),
            "start past the end"
        );
    }
}
