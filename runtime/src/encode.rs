//! Encoding values with postcard, with the error message a failing `Serialize` gave.
//!
//! postcard reports every custom serialization error as the same `SerdeSerCustom`, dropping
//! the message (`S::Error::custom("...")`) that says what went wrong. On that path only, the
//! value is walked again by [`MessageProbe`], a serializer that writes nothing and keeps the
//! first custom message, so the user sees why their argument or result could not be sent.

use std::fmt::Display;

use serde::Serialize;
use serde::ser;

use crate::error::Error;

/// postcard's encoding of `value`; on failure, [`Error::Serialization`] naming `what` and the
/// message the value's `Serialize` gave.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(
    value: &T,
    what: impl Display,
) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(value).map_err(|error| {
        let message = match value.serialize(MessageProbe) {
            Err(Probed(message)) => message,
            Ok(()) => error.to_string(),
        };
        Error::Serialization {
            message: format!("cannot encode {what}: {message}"),
        }
    })
}

/// Appends postcard's encoding of `value` to `out`; errors as [`to_bytes`].
pub(crate) fn append<T: Serialize + ?Sized>(
    value: &T,
    what: impl Display,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = out.len();
    postcard::serialize_with_flavor(value, AppendTo(out)).map_err(|_| {
        out.truncate(start);
        match to_bytes(value, &what) {
            Err(error) => error,
            // A value that fails only once: nothing more to say about it.
            Ok(_) => Error::Serialization {
                message: format!("cannot encode {what}"),
            },
        }
    })
}

/// A postcard output that appends to a buffer it does not own, a slice at a time (one copy
/// for a byte string, where an `Extend<u8>` output takes its bytes one by one).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The message a `Serialize` impl failed with.
#[derive(Debug)]
struct Probed(String);

impl Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Probed {}

impl ser::Error for Probed {
    fn custom<M: Display>(message: M) -> Self {
        Probed(message.to_string())
    }
}

/// Accepts every value and writes nothing: only a `Serialize` impl's own error gets out.
struct MessageProbe;

macro_rules! accept {
    ($($method:ident($($ty:ty),*);)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<(), Probed> {
            Ok(())
        }
    )*};
}

impl ser::Serializer for MessageProbe {
    type Ok = ();
    type Error = Probed;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    accept! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Probed> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Probed> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Probed> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Probed> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Probed> {
        Ok(self)
    }
}

/// The compound forms: each element is probed in turn.
macro_rules! compound {
    ($($trait:ident :: $method:ident $(($key:ident))?;)*) => {$(
        impl ser::$trait for MessageProbe {
            type Ok = ();
            type Error = Probed;

            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result<(), Probed> {
                $(let _ = $key;)?
                value.serialize(MessageProbe)
            }

            fn end(self) -> Result<(), Probed> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
    SerializeStruct::serialize_field(key);
    SerializeStructVariant::serialize_field(key);
}

impl ser::SerializeMap for MessageProbe {
    type Ok = ();
    type Error = Probed;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Probed> {
        key.serialize(MessageProbe)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Probed> {
        value.serialize(MessageProbe)
    }

    fn end(self) -> Result<(), Probed> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom(
                "the socket handle cannot leave this process",
            ))
        }
    }

    #[derive(Serialize)]
    struct Holder {
        fine: Vec<u32>,
        nested: Option<(u8, Refuses)>,
    }

    #[test]
    fn the_message_of_a_failing_serialize_is_kept() {
        let holder = Holder {
            fine: vec![1, 2],
            nested: Some((3, Refuses)),
        };
        let error = to_bytes(&holder, "the argument").unwrap_err();
        assert_eq!(
            error.to_string(),
            "serialization failed: cannot encode the argument: the socket handle cannot leave \
             this process"
        );
    }

    #[test]
    fn values_that_serialize_are_postcard() {
        assert_eq!(to_bytes(&(1_u8, 2_u8), "x").unwrap(), [1, 2]);
    }
}
