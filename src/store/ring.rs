//! A bounded, append-only log of records keyed by sequence number: 1, 2, 3 … with no gaps, never
//! reused (also across restarts: trimming always keeps the newest record, so the last key on disk
//! is the last seq ever assigned). Appends and the trim they cause are one atomic sled batch.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, decode_seq, encode, seq_key};
use super::Result;

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
        let bounds = match (tree.first()?, tree.last()?) {
            (Some((first, _)), Some((last, _))) => Bounds {
                oldest: decode_seq(&name, &first)?,
                newest: decode_seq(&name, &last)?,
            },
            _ => Bounds {
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
        let mut bounds = self.bounds.lock().expect("ring log lock poisoned");
        let first = bounds.newest + 1;
        let newest = bounds.newest + records.len() as u64;
        let mut batch = sled::Batch::default();
        for (i, record) in records.iter().enumerate() {
            batch.insert(&seq_key(first + i as u64), encode(&self.name, record)?);
        }
        let capacity = self.capacity();
        let oldest = bounds.oldest.max((newest + 1).saturating_sub(capacity));
        for seq in bounds.oldest..oldest {
            batch.remove(&seq_key(seq));
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

    /// Up to `max` retained records with `after < seq <= upto`, in order. A record trimmed
    /// concurrently is simply absent, so callers detect loss from the first seq returned.
    pub fn read(&self, after: u64, upto: u64, max: usize) -> Result<Vec<(u64, T)>> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(max.min((upto - after) as usize));
        for item in self
            .tree
            .range(seq_key(after + 1)..=seq_key(upto))
            .take(max)
        {
            let (key, value) = item?;
            out.push((decode_seq(&self.name, &key)?, decode(&self.name, &value)?));
        }
        Ok(out)
    }

    /// The encoded size of the retained records (keys excluded).
    pub fn encoded_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for item in self.tree.iter() {
            total += item?.1.len() as u64;
        }
        Ok(total)
    }
}
