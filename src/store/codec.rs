//! Record and key encoding: postcard for records, big-endian u64 for sequence keys (so sled's
//! byte order is numeric order).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Result, StoreError};

pub fn encode<T: Serialize>(tree: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
        tree: tree.to_string(),
        message: format!("cannot encode record: {e}"),
    })
}

pub fn decode<T: DeserializeOwned>(tree: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        tree: tree.to_string(),
        message: format!("cannot decode record: {e}"),
    })
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_seq(tree: &str, bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree: tree.to_string(),
        message: format!(
            "expected an 8-byte sequence number, found {} bytes",
            bytes.len()
        ),
    })?;
    Ok(u64::from_be_bytes(arr))
}
