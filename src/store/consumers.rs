//! Durable consumer positions: for each log and consumer name, the highest seq the consumer has
//! acknowledged. Positions only move forward.

use super::codec::{decode_seq, seq_key};
use super::Result;

pub struct Consumers {
    tree: sled::Tree,
}

impl Consumers {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Consumers { tree }
    }

    fn key(log: &str, name: &str) -> Vec<u8> {
        format!("{log}/{name}").into_bytes()
    }

    /// The acknowledged position, or `None` for a consumer never seen before.
    pub fn get(&self, log: &str, name: &str) -> Result<Option<u64>> {
        self.tree
            .get(Self::key(log, name))?
            .map(|v| decode_seq("consumers", &v))
            .transpose()
    }

    /// Records `seq` as acknowledged unless the stored position is already further. Returns the
    /// position now stored. Not flushed; the store flushes periodically and at shutdown.
    pub fn advance(&self, log: &str, name: &str, seq: u64) -> Result<u64> {
        let stored = self.tree.update_and_fetch(Self::key(log, name), |old| {
            let old = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            Some(seq_key(old.map_or(seq, |o| o.max(seq))).to_vec())
        })?;
        match stored {
            Some(v) => decode_seq("consumers", &v),
            None => Ok(seq),
        }
    }

    /// Every consumer of `log` with its position, by name.
    pub fn list(&self, log: &str) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{log}/");
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((name, decode_seq("consumers", &v)?));
        }
        Ok(out)
    }
}
