//! Reading a ring log: records in chunks bounded in records and bytes, or their stored payloads
//! as they are, and sums over the stored blocks.

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::super::block::{block_frames, decode_block, footprint, raw_len, BLOCK_RECORDS};
use super::super::codec::{Framed, LogRecord};
use super::super::Result;
use super::RingLog;

/// How much one read may return: it stops at the end of the block in which either count is
/// reached, so it returns at most one block beyond them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub records: usize,
    /// Bytes of stored forms (uncompressed), counted a block at a time.
    pub bytes: u64,
}

impl Chunk {
    /// Bounded only in records.
    pub fn records(records: usize) -> Self {
        Chunk {
            records,
            bytes: u64::MAX,
        }
    }
}

impl<T: LogRecord> RingLog<T> {
    /// Retained records with `after < seq <= upto`, in order: at least `max` of them when there
    /// are, and then the rest of the block the `max`-th one is in (so at most `max` plus one
    /// block's worth), because that block is decoded already; a reader going on from the last
    /// seq returned then starts at a block boundary and never decodes a block twice. Records
    /// trimmed concurrently are absent, so callers detect loss from the first seq returned.
    pub fn read(&self, after: u64, upto: u64, max: usize) -> Result<Vec<(u64, T)>> {
        self.read_with(after, upto, Chunk::records(max), decode_block)
    }

    /// [`RingLog::read`] bounded by `chunk` in records and in bytes.
    pub fn read_chunk(&self, after: u64, upto: u64, chunk: Chunk) -> Result<Vec<(u64, T)>> {
        self.read_with(after, upto, chunk, decode_block)
    }

    /// [`RingLog::read`] with each block's records made by `unpack`, stopping at the end of the
    /// block in which `chunk`'s record count or byte count is reached.
    fn read_with<V>(
        &self,
        after: u64,
        upto: u64,
        chunk: Chunk,
        unpack: fn(&str, &[u8]) -> Result<Vec<V>>,
    ) -> Result<Vec<(u64, V)>> {
        let max = chunk.records;
        let oldest = self.bounds().oldest;
        let from = after.max(oldest.saturating_sub(1)) + 1;
        if from > upto || max == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(self.tables.blocks)?;
        // The block holding `from` starts at or before it.
        let start = match blocks.range(..=from)?.next_back() {
            Some(item) => item?.0.value(),
            None => from,
        };
        let mut out = Vec::with_capacity(max.min((upto - after) as usize).min(BLOCK_RECORDS));
        let mut bytes = 0u64;
        for item in blocks.range(start..=upto)? {
            if out.len() >= max || bytes >= chunk.bytes {
                break;
            }
            let (first, block) = item?;
            let first = first.value();
            bytes += raw_len(self.name(), block.value())?;
            for (i, record) in unpack(self.name(), block.value())?.into_iter().enumerate() {
                let seq = first + i as u64;
                if seq < from {
                    continue;
                }
                if seq > upto {
                    return Ok(out);
                }
                out.push((seq, record));
            }
        }
        Ok(out)
    }

    /// `size` summed over the retained blocks as stored.
    fn sum_blocks(&self, size: impl Fn(&[u8]) -> Result<u64>) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(self.tables.blocks)?;
        let mut total = 0u64;
        for item in blocks.iter()? {
            total += size(item?.1.value())?;
        }
        Ok(total)
    }

    /// The stored size of the retained records' blocks (keys excluded).
    pub fn encoded_bytes(&self) -> Result<u64> {
        self.sum_blocks(|block| Ok(block.len() as u64))
    }

    /// The file space the retained blocks take, summed from the blocks on disk (what
    /// [`RingLog::retained_bytes`] keeps in memory).
    pub fn footprint_bytes(&self) -> Result<u64> {
        self.sum_blocks(|block| Ok(footprint(block.len() as u64)))
    }

    /// What the retained records' blocks would take uncompressed (their stored forms).
    pub fn raw_bytes(&self) -> Result<u64> {
        self.sum_blocks(|block| raw_len(self.name(), block))
    }

    /// How many blocks hold the retained records.
    pub fn blocks(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(self.tables.blocks)?.len()?)
    }

    /// How many stamps the time table holds (the newest block carries the rest).
    pub fn table_stamps(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(self.tables.times)?.len()?)
    }
}

impl<T: Framed> RingLog<T> {
    /// [`RingLog::read`], handing out each record's stored payload as it is instead of decoding
    /// it (the pass-through path: alerts are stored as the protobuf a subscriber receives).
    pub fn read_frames(&self, after: u64, upto: u64, chunk: Chunk) -> Result<Vec<(u64, Bytes)>> {
        self.read_with(after, upto, chunk, block_frames)
    }
}
