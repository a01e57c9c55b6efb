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
}
