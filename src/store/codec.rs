//! Record encoding: postcard, with errors that name the table.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Result, StoreError};

pub fn encode<T: Serialize>(table: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
        tree: table.to_string(),
        message: format!("cannot encode record: {e}"),
    })
}

pub fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        tree: table.to_string(),
        message: format!("cannot decode record: {e}"),
    })
}

/// How a log's records are stored inside its blocks: each record's stored form must say where
/// it ends, since a block holds them one after another.
pub trait LogRecord: Sized + Send + Sync + 'static {
    /// Appends the stored form of `self` to `out`.
    fn put(&self, out: &mut Vec<u8>) -> std::result::Result<(), String>;
    /// Reads the record at the front of `bytes`: the record and how many bytes it took.
    fn take(bytes: &[u8]) -> std::result::Result<(Self, usize), String>;
}

/// A record stored as a frame: a varint length, then that many bytes of a payload that can be
/// handed out as it is (see `RingLog::read_frames`).
pub trait Framed: LogRecord {}

/// Appends `payload` as a frame.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    push_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The frame at the front of `bytes`: where its payload lies, and where the next frame starts.
pub fn take_frame(bytes: &[u8]) -> std::result::Result<(std::ops::Range<usize>, usize), String> {
    let mut len = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let start = i + 1;
            let end = usize::try_from(len)
                .ok()
                .and_then(|n| start.checked_add(n))
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| format!("a record frame claims {len} bytes past the block's end"))?;
            return Ok((start..end, end));
        }
    }
    Err("a record frame with a truncated length".into())
}

/// Drop records keep their postcard form (postcard says where each record ends).
impl LogRecord for crate::base::event::DropRecord {
    fn put(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let bytes = postcard::to_allocvec(self).map_err(|e| e.to_string())?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn take(bytes: &[u8]) -> std::result::Result<(Self, usize), String> {
        let (record, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok((record, bytes.len() - rest.len()))
    }
}

/// Appends a varint.
pub fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}
