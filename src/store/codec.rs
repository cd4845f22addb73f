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
