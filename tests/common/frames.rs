//! Frame kinds and layout from `runtime/src/process/wire.rs`, written out here so that the
//! hostile-frame tests build their frames independently of the encoder they attack.

pub(crate) const RUN: u8 = 2;
pub(crate) const EXIT: u8 = 3;
pub(crate) const RUN_THEN_WATCH: u8 = 5;
pub(crate) const READY: u8 = 16;
pub(crate) const REFUSED: u8 = 17;
pub(crate) const STARTED: u8 = 18;
pub(crate) const SUCCEEDED: u8 = 19;
pub(crate) const FAILED: u8 = 20;

/// One frame: length prefix (u32 LE) of kind + id + body, then kind, id (u64 LE), body.
pub(crate) fn raw_frame(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = ((9 + body.len()) as u32).to_le_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    out
}
