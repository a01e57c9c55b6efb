//! Worker processes: the re-exec contract, the build identity, the wire, the worker loop.

pub(crate) mod backoff;
pub(crate) mod call;
pub(crate) mod entry;
pub(crate) mod identity;
pub(crate) mod inbox;
pub(crate) mod wire;
mod worker;
