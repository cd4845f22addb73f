//! A bounded, append-only log of records keyed by sequence number: 1, 2, 3 … with no gaps, never
//! reused (also across restarts).
//!
//! Layout: records are stored in blocks, one sled entry per block (`b` + first seq, big-endian →
//! postcard `Vec<T>`), so a range read touches one sled entry per block rather than per record;
//! `o` holds the oldest retained seq. Trimming is exact logically (`o` moves) and removes a block
//! once all of it is trimmed, so at most one partial block is kept beyond capacity. An append and
//! the trim it causes are one atomic sled batch.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, decode_seq, encode};
use super::{Result, StoreError};

/// Most records in one block.
pub const BLOCK_RECORDS: usize = 256;
/// A block is closed once its encoding reaches this size.
const BLOCK_BYTES: usize = 256 * 1024;
const OLDEST_KEY: &[u8] = b"o";

/// The retained range. Empty when `oldest == newest + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest retained seq.
    pub oldest: u64,
    /// The newest seq ever appended (0 before the first append).
    pub newest: u64,
}

impl Bounds {
    pub fn len(&self) -> u64 {
        self.newest + 1 - self.oldest
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn block_key(first: u64) -> [u8; 9] {
    let mut key = [b'b'; 9];
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

fn block_first(tree: &str, key: &[u8]) -> Result<u64> {
    decode_seq(tree, key.get(1..).unwrap_or_default())
}

/// The record count at the front of a postcard `Vec` (a varint), without decoding the records.
fn block_len(tree: &str, bytes: &[u8]) -> Result<u64> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(StoreError::Corrupt {
        tree: tree.into(),
        message: "block without a record count".into(),
    })
}

/// Appends a postcard varint.
pub fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Encodes already-encoded records as one block (a postcard `Vec`).
pub fn encode_block(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(Vec::len).sum::<usize>() + 4);
    push_varint(&mut out, records.len() as u64);
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

pub struct RingLog<T> {
    tree: sled::Tree,
    name: String,
    // Held across the sled batch so sequence numbers are assigned and written in one order. No
    // `.await` ever happens under it.
    bounds: Mutex<Bounds>,
    capacity: AtomicU64,
    _record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> RingLog<T> {
    pub(super) fn open(tree: sled::Tree, capacity: u64) -> Result<Self> {
        let name = String::from_utf8_lossy(&tree.name()).into_owned();
        let last = tree.scan_prefix(b"b").next_back().transpose()?;
        let bounds = match last {
            Some((key, value)) => {
                let newest = block_first(&name, &key)? + block_len(&name, &value)? - 1;
                let oldest = match tree.get(OLDEST_KEY)? {
                    Some(v) => decode_seq(&name, &v)?,
                    None => 1,
                };
                Bounds { oldest, newest }
            }
            None => Bounds {
                oldest: 1,
                newest: 0,
            },
        };
        Ok(RingLog {
            tree,
            name,
            bounds: Mutex::new(bounds),
            capacity: AtomicU64::new(capacity.max(1)),
            _record: PhantomData,
        })
    }

    pub fn bounds(&self) -> Bounds {
        *self.bounds.lock().expect("ring log lock poisoned")
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Changes how many records are retained; a smaller capacity takes effect at the next append.
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// Appends `records` atomically and trims the log to capacity in the same batch. Returns the
    /// assigned sequence numbers. Not flushed: call [`RingLog::flush`] (group commit) before
    /// telling anyone the records are durable.
    pub fn append(&self, records: &[T]) -> Result<Range<u64>> {
        let encoded: Vec<Vec<u8>> = records
            .iter()
            .map(|r| encode(&self.name, r))
            .collect::<Result<_>>()?;
        let mut bounds = self.bounds.lock().expect("ring log lock poisoned");
        let first = bounds.newest + 1;
        let newest = bounds.newest + records.len() as u64;
        let mut batch = sled::Batch::default();
        let mut start = 0;
        while start < encoded.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < encoded.len() && end - start < BLOCK_RECORDS && bytes < BLOCK_BYTES {
                bytes += encoded[end].len();
                end += 1;
            }
            batch.insert(
                &block_key(first + start as u64),
                encode_block(&encoded[start..end]),
            );
            start = end;
        }
        let oldest = bounds
            .oldest
            .max((newest + 1).saturating_sub(self.capacity()));
        if oldest != bounds.oldest {
            batch.insert(OLDEST_KEY, &oldest.to_be_bytes());
            // Remove every block that ends before the new oldest.
            for item in self.tree.range(block_key(0)..block_key(oldest)) {
                let (key, value) = item?;
                let end = block_first(&self.name, &key)? + block_len(&self.name, &value)?;
                if end <= oldest {
                    batch.remove(key);
                } else {
                    break;
                }
            }
        }
        self.tree.apply_batch(batch)?;
        *bounds = Bounds { oldest, newest };
        Ok(first..newest + 1)
    }

    /// Durably writes everything appended so far (fsync).
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }

    /// Up to `max` retained records with `after < seq <= upto`, in order. Records trimmed
    /// concurrently are absent, so callers detect loss from the first seq returned.
    pub fn read(&self, after: u64, upto: u64, max: usize) -> Result<Vec<(u64, T)>> {
        let oldest = self.bounds().oldest;
        let from = after.max(oldest.saturating_sub(1)) + 1;
        if from > upto || max == 0 {
            return Ok(Vec::new());
        }
        // The block holding `from` starts at or before it.
        let start: Vec<u8> = match self.tree.range(block_key(0)..=block_key(from)).next_back() {
            Some(item) => item?.0.to_vec(),
            None => block_key(from).to_vec(),
        };
        let mut out = Vec::with_capacity(max.min((upto - after) as usize));
        for item in self.tree.range(start..=block_key(upto).to_vec()) {
            let (key, value) = item?;
            let first = block_first(&self.name, &key)?;
            let records: Vec<T> = decode(&self.name, &value)?;
            for (i, record) in records.into_iter().enumerate() {
                let seq = first + i as u64;
                if seq < from {
                    continue;
                }
                if seq > upto || out.len() == max {
                    return Ok(out);
                }
                out.push((seq, record));
            }
        }
        Ok(out)
    }

    /// The encoded size of the retained records' blocks (keys excluded).
    pub fn encoded_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for item in self.tree.scan_prefix(b"b") {
            total += item?.1.len() as u64;
        }
        Ok(total)
    }
}
