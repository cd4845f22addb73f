//! A bounded, append-only log of records keyed by sequence number: 1, 2, 3 … with no gaps, never
//! reused (also across restarts).
//!
//! Layout: records are stored in blocks, one table entry per block (first seq → a block, see
//! [`super::block`]: records in their stored forms, usually zstd-compressed), so a range read
//! touches one entry per block rather than per record; the `meta` table holds the oldest
//! retained seq under `<table>.oldest`. Trimming is exact logically (the
//! oldest seq moves) and removes a block once all of it is trimmed, so at most one partial block is
//! kept beyond capacity. An append and the trim it causes are one durable write transaction;
//! redb reuses the pages the trim frees, which keeps the file bounded however often the ring wraps.
//!
//! An append of a few records adds them to the newest block (re-encoded in the append's
//! transaction) while that block stays under a compressed block's size and wholly retained, so
//! alerts that arrive one at a time still share blocks and compress together.
//!
//! Besides the record count, a log is bounded in bytes and in age. Every append is stamped with
//! the time it was made (a second table, its first seq → nanoseconds, written in the append's
//! transaction and never decreasing along the log; see [`stamps`]). The file space (see
//! [`footprint`]) of every block and the stamps are kept in memory: an append that takes the
//! total past `max_bytes` trims whole blocks, oldest first, in the same transaction, and records
//! appended longer than `max_age` ago are trimmed at the next append or [`RingLog::expire`]. The
//! newest block always stays on disk (it records the newest seq), though age may trim it
//! logically. The same in-memory stamps turn a time into a seq by binary search
//! ([`RingLog::first_seq_since`]).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::block::{
    block_is_open, block_len, block_stamps, build_blocks, footprint, Compression, Growing,
    OPEN_GROWTH_BYTES,
};
use super::clock::Clock;
use super::codec::LogRecord;
use super::tables::META;
use super::Result;

mod read;
mod stamps;
pub use read::Chunk;
use stamps::{trim_stamps, Stamps};

type Blocks = TableDefinition<'static, u64, &'static [u8]>;
type Times = TableDefinition<'static, u64, u64>;

/// The tables of one log: its blocks, and when their records were appended.
#[derive(Clone, Copy)]
pub(super) struct LogTables {
    pub blocks: Blocks,
    pub times: Times,
}

/// Every limit a log is held to.
#[derive(Clone, Copy, Debug)]
struct Limits {
    capacity: u64,
    max_bytes: u64,
    /// Records appended before this time (ns) are expired; 0 when age is unlimited.
    cutoff: u64,
}

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

/// Marks live in `meta` under their own prefix, apart from the store's own keys.
fn mark_key(key: &str) -> String {
    format!("mark:{key}")
}

fn oldest_key(table: Blocks) -> String {
    format!("{}.oldest", table.name())
}

/// The bounds recorded in the database for the log in `table`.
pub(super) fn read_bounds(db: &Database, table: Blocks) -> Result<Bounds> {
    let txn = db.begin_read()?;
    let blocks = txn.open_table(table)?;
    let Some((first, block)) = blocks.last()? else {
        return Ok(Bounds {
            oldest: 1,
            newest: 0,
        });
    };
    let newest = first.value() + block_len(table.name(), block.value())? - 1;
    let oldest = txn
        .open_table(META)?
        .get(oldest_key(table).as_str())?
        .map_or(1, |v| v.value());
    Ok(Bounds { oldest, newest })
}

/// Trims the log in `table` to `capacity` records (used at open, when the configured capacity
/// may have shrunk). Returns how many records were trimmed.
pub(super) fn trim(db: &Database, t: LogTables, capacity: u64) -> Result<u64> {
    let bounds = read_bounds(db, t.blocks)?;
    let oldest = (bounds.newest + 1)
        .saturating_sub(capacity.max(1))
        .max(bounds.oldest);
    if oldest == bounds.oldest {
        return Ok(0);
    }
    let txn = db.begin_write()?;
    trim_in(&txn, t, oldest)?;
    txn.commit()?;
    Ok(oldest - bounds.oldest)
}

/// Records `oldest` and removes every block that ends before it but the newest, and the stamps
/// of their records, inside `txn`.
fn trim_in(txn: &redb::WriteTransaction, t: LogTables, oldest: u64) -> Result<()> {
    txn.open_table(META)?
        .insert(oldest_key(t.blocks).as_str(), oldest)?;
    let mut blocks = txn.open_table(t.blocks)?;
    let newest_block = blocks.last()?.map(|(first, _)| first.value());
    let mut doomed = Vec::new();
    for item in blocks.range(0..oldest)? {
        let (first, block) = item?;
        let end = first.value() + block_len(t.blocks.name(), block.value())?;
        if end > oldest || Some(first.value()) == newest_block {
            break;
        }
        doomed.push(first.value());
    }
    let Some(&last) = doomed.last() else {
        return Ok(());
    };
    for first in doomed {
        blocks.remove(first)?;
    }
    let kept = blocks
        .range(last..)?
        .next()
        .transpose()?
        .map(|(k, _)| k.value());
    if let Some(kept) = kept {
        trim_stamps(&mut txn.open_table(t.times)?, kept)?;
    }
    Ok(())
}

/// A stored block: its first seq, how many records it holds and the file space it takes (see
/// [`footprint`]).
#[derive(Clone, Copy, Debug)]
struct BlockSize {
    first: u64,
    records: u64,
    bytes: u64,
}

/// The retained range, the blocks holding it and when their records were appended.
struct State {
    bounds: Bounds,
    blocks: VecDeque<BlockSize>,
    /// The stamps of the records; those after the newest block's first seq are kept in that
    /// block (see [`super::block::block_stamps`]), not yet in the time table.
    stamps: Stamps,
    /// The newest block as it grows, when known (its records, at most a compressed block's
    /// gathering size, and its open frame): growing it then needs no read or decompression.
    tail: Option<Growing>,
    /// Whether the newest block is stored as an open frame, to be closed when a newer starts.
    tail_open: bool,
    bytes: u64,
}

/// What a log's tables say when it opens.
struct Loaded {
    /// Every block, oldest first.
    blocks: VecDeque<BlockSize>,
    /// The stamps of their records, the time table's and the newest block's.
    stamps: Stamps,
    /// Whether the newest block is an open frame.
    tail_open: bool,
}

/// Reads every block's size, the time table, and the newest block's stamps and codec.
fn load(db: &Database, t: LogTables) -> Result<Loaded> {
    let txn = db.begin_read()?;
    let table = txn.open_table(t.blocks)?;
    let mut blocks = VecDeque::new();
    for item in table.iter()? {
        let (first, block) = item?;
        blocks.push_back(BlockSize {
            first: first.value(),
            records: block_len(t.blocks.name(), block.value())?,
            bytes: footprint(block.value().len() as u64),
        });
    }
    let mut stamps = Stamps::load(&txn.open_table(t.times)?)?;
    let mut tail_open = false;
    if let Some((first, block)) = table.last()? {
        tail_open = block_is_open(t.blocks.name(), block.value())?;
        for (offset, time) in block_stamps(t.blocks.name(), block.value())? {
            let seq = first.value().saturating_add(offset);
            stamps.push(seq, time.max(stamps.newest_time().unwrap_or(0)));
        }
    }
    Ok(Loaded {
        blocks,
        stamps,
        tail_open,
    })
}

/// The newest block after records were added to it (see [`RingLog::grow_tail`]).
struct Grown {
    block: BlockSize,
    /// Whether it is an open frame.
    open: bool,
}

/// How many of `blocks` (oldest first) go, and the oldest seq after, so that the log holds at
/// most `capacity` records up to `newest`, at most `max_bytes`, and nothing before `fresh` (the
/// first seq appended at or after the age cutoff). The newest block stays on disk whatever the
/// limits (age may still trim it logically).
fn plan_trim<'a>(
    blocks: impl Iterator<Item = &'a BlockSize>,
    count: usize,
    mut total: u64,
    (oldest, newest, fresh): (u64, u64, u64),
    limits: Limits,
) -> (usize, u64, u64) {
    let mut oldest = oldest
        .max((newest + 1).saturating_sub(limits.capacity))
        .max(fresh);
    let mut gone = 0;
    for b in blocks {
        let end = b.first + b.records;
        if count - gone == 1 {
            break;
        }
        if end <= oldest || total > limits.max_bytes {
            gone += 1;
            total -= b.bytes;
            oldest = oldest.max(end);
        } else {
            break;
        }
    }
    (gone, oldest, total)
}

impl State {
    /// Drops the stamps of records in blocks no longer on disk, after `gone` blocks were trimmed.
    fn trimmed_blocks(&mut self, gone: usize) {
        if let (true, Some(front)) = (gone > 0, self.blocks.front()) {
            self.stamps.trim_to(front.first);
        }
    }
}

/// The first seq appended at or after `limits`' age cutoff (`none`, the seq after the newest,
/// when no record was), or 0 when age is unlimited.
fn fresh_from(stamps: &Stamps, limits: Limits, none: u64) -> u64 {
    if limits.cutoff == 0 {
        return 0;
    }
    stamps.first_seq_since(limits.cutoff).unwrap_or(none)
}

/// Writes built blocks (see [`build_blocks`]) as new blocks from seq `first` inside `txn`.
fn write_blocks(
    txn: &redb::WriteTransaction,
    t: LogTables,
    built: &[(Range<usize>, Vec<u8>)],
    first: u64,
) -> Result<Vec<BlockSize>> {
    let mut blocks = txn.open_table(t.blocks)?;
    let mut added = Vec::new();
    for (part, block) in built {
        let start = first + part.start as u64;
        blocks.insert(start, block.as_slice())?;
        added.push(BlockSize {
            first: start,
            records: part.len() as u64,
            bytes: footprint(block.len() as u64),
        });
    }
    Ok(added)
}

/// Appends of fewer stored bytes than this cut and compress their blocks under the log's lock,
/// and only when they do not grow the newest block (which such appends grow as an open frame).
const BUILD_EARLY_BYTES: usize = OPEN_GROWTH_BYTES;

pub struct RingLog<T> {
    db: Arc<Database>,
    reserve: Arc<super::Reserve>,
    tables: LogTables,
    clock: Clock,
    compression: Compression,
    // Held across the write transaction so sequence numbers are assigned and written in one
    // order. No `.await` ever happens under it.
    state: Mutex<State>,
    capacity: AtomicU64,
    max_bytes: AtomicU64,
    /// Nanoseconds; 0: no age limit.
    max_age: AtomicU64,
    _record: PhantomData<fn() -> T>,
}

/// What a log shares with the rest of the store.
pub(super) struct LogEnv {
    pub reserve: Arc<super::Reserve>,
    pub clock: Clock,
    pub compression: Compression,
}

/// How a log is bounded: records, bytes, and age in nanoseconds (0: unlimited).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub capacity: u64,
    pub max_bytes: u64,
    pub max_age_ns: u64,
}

impl<T: LogRecord> RingLog<T> {
    pub(super) fn open(
        db: Arc<Database>,
        env: LogEnv,
        tables: LogTables,
        retention: Retention,
    ) -> Result<Self> {
        let bounds = read_bounds(&db, tables.blocks)?;
        let Loaded {
            blocks,
            stamps,
            tail_open,
        } = load(&db, tables)?;
        let bytes = blocks.iter().map(|b| b.bytes).sum();
        let log = RingLog {
            db,
            reserve: env.reserve,
            tables,
            clock: env.clock,
            compression: env.compression,
            state: Mutex::new(State {
                bounds,
                blocks,
                stamps,
                tail: None,
                tail_open,
                bytes,
            }),
            capacity: AtomicU64::new(retention.capacity.max(1)),
            max_bytes: AtomicU64::new(retention.max_bytes.max(1)),
            max_age: AtomicU64::new(retention.max_age_ns),
            _record: PhantomData,
        };
        log.expire()?;
        Ok(log)
    }

    fn name(&self) -> &str {
        self.tables.blocks.name()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn bounds(&self) -> Bounds {
        self.lock().bounds
    }

    /// The file space the retained blocks take (what `max_bytes` bounds; see [`footprint`]).
    pub fn retained_bytes(&self) -> u64 {
        self.lock().bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Changes how many bytes are retained; a smaller budget takes effect at the next append.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes.max(1), Ordering::Relaxed);
    }

    /// The age limit in nanoseconds (0: none).
    pub fn max_age_ns(&self) -> u64 {
        self.max_age.load(Ordering::Relaxed)
    }

    /// Changes the age limit (0: none); it takes effect at the next append or
    /// [`RingLog::expire`].
    pub fn set_max_age_ns(&self, max_age_ns: u64) {
        self.max_age.store(max_age_ns, Ordering::Relaxed);
    }

    fn limits(&self) -> Limits {
        let max_age = self.max_age_ns();
        Limits {
            capacity: self.capacity(),
            max_bytes: self.max_bytes(),
            cutoff: if max_age == 0 {
                0
            } else {
                self.clock.now().saturating_sub(max_age)
            },
        }
    }

    /// Trims the log to its limits now: at open, when they may have shrunk, and periodically so
    /// that records age out of a log nobody appends to. Returns how many records went.
    pub fn expire(&self) -> Result<u64> {
        let mut state = self.lock();
        let limits = self.limits();
        let Bounds { oldest, newest } = state.bounds;
        let fresh = fresh_from(&state.stamps, limits, newest + 1);
        let (gone, oldest, total) = plan_trim(
            state.blocks.iter(),
            state.blocks.len(),
            state.bytes,
            (oldest, newest, fresh),
            limits,
        );
        if gone == 0 && oldest == state.bounds.oldest {
            return Ok(0);
        }
        let txn = self.db.begin_write()?;
        trim_in(&txn, self.tables, oldest)?;
        txn.commit()?;
        let trimmed = oldest - state.bounds.oldest;
        tracing::info!(
            log = self.name(),
            records = trimmed,
            "trimmed the log to its capacity, byte budget and age limit"
        );
        state.blocks.drain(..gone);
        state.trimmed_blocks(gone);
        state.bytes = total;
        state.bounds.oldest = oldest;
        Ok(trimmed)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Changes how many records are retained; a smaller capacity takes effect at the next append.
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// When the oldest retained record was appended (ns), if any is retained.
    pub fn oldest_time(&self) -> Option<u64> {
        let state = self.lock();
        if state.bounds.is_empty() {
            return None;
        }
        state.stamps.time_of(state.bounds.oldest)
    }

    /// When the newest record was appended (ns), if the log has one.
    pub fn newest_time(&self) -> Option<u64> {
        self.lock().stamps.newest_time()
    }

    /// The first retained seq appended at or after `time` (ns); the newest seq + 1 when none
    /// was. A binary search over the stamps in memory.
    pub fn first_seq_since(&self, time: u64) -> u64 {
        let state = self.lock();
        let seq = state
            .stamps
            .first_seq_since(time)
            .unwrap_or(state.bounds.newest + 1);
        seq.max(state.bounds.oldest)
    }

    /// The last seq appended at or before `time` (ns); the oldest retained seq - 1 when none.
    pub fn last_seq_until(&self, time: u64) -> u64 {
        let state = self.lock();
        let seq = state
            .stamps
            .first_seq_after(time)
            .map_or(state.bounds.newest, |seq| seq - 1);
        seq.max(state.bounds.oldest - 1)
    }

    /// Appends `records` and trims the log to capacity in one write transaction, durable (data
    /// and metadata fsynced) when this returns. Returns the assigned sequence numbers.
    pub fn append(&self, records: &[T]) -> Result<Range<u64>> {
        self.append_marked(records, &[])
    }

    /// [`RingLog::append`], also setting `marks` (named positions in the `meta` table, such as
    /// how far a followed file was read) in the same transaction: the records and the marks
    /// are durable together or not at all.
    pub fn append_marked(&self, records: &[T], marks: &[(String, u64)]) -> Result<Range<u64>> {
        let encoded: Vec<Vec<u8>> = records
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                r.put(&mut out)
                    .map_err(|message| super::StoreError::Corrupt {
                        tree: self.name().to_string(),
                        message: format!("cannot encode record: {message}"),
                    })?;
                Ok(out)
            })
            .collect::<Result<_>>()?;
        // Cut and compressed before the lock, unless small enough that it likely grows the
        // newest block instead.
        let raw_bytes: usize = encoded.iter().map(Vec::len).sum();
        let early = (self.compression == Compression::None || raw_bytes >= BUILD_EARLY_BYTES)
            .then(|| build_blocks(&encoded, self.compression));
        let mut state = self.lock();
        let bounds = state.bounds;
        let first = bounds.newest + 1;
        let newest = bounds.newest + records.len() as u64;
        let time = self
            .clock
            .now()
            .max(state.stamps.newest_time().unwrap_or(0));
        self.reserve.check()?;
        let txn = self.db.begin_write()?;
        let stamp = state.stamps.needs(time).then_some((first, time));
        // Taken, not borrowed: if this append fails, the next one reads the block again.
        let mut growing = state.tail.take();
        let grown = self.grow_tail(&txn, &state, &mut growing, &encoded, stamp)?;
        let open = grown.as_ref().is_some_and(|g| g.open);
        let (added, replaced, tail) = match grown {
            Some(Grown { block, .. }) => (vec![block], state.blocks.back().copied(), growing),
            None => {
                let built = early.unwrap_or_else(|| build_blocks(&encoded, self.compression));
                let (added, replaced) =
                    self.start_blocks(&txn, &state, growing, &built, first, stamp)?;
                let raw = built
                    .last()
                    .map(|(part, _)| Growing::new(encoded[part.clone()].concat()));
                (added, replaced, raw)
            }
        };
        let kept = state.blocks.len() - usize::from(replaced.is_some());
        let total = state.bytes - replaced.map_or(0, |b| b.bytes)
            + added.iter().map(|b| b.bytes).sum::<u64>();
        let limits = self.limits();
        let fresh = fresh_from(&state.stamps, limits, first);
        let (gone, oldest, total) = plan_trim(
            state.blocks.iter().take(kept).chain(added.iter()),
            kept + added.len(),
            total,
            (bounds.oldest, newest, fresh),
            limits,
        );
        if gone > 0 || oldest != bounds.oldest {
            trim_in(&txn, self.tables, oldest)?;
        }
        if !marks.is_empty() {
            let mut meta = txn.open_table(META)?;
            for (key, value) in marks {
                meta.insert(mark_key(key).as_str(), *value)?;
            }
        }
        txn.commit()?;
        if replaced.is_some() {
            state.blocks.pop_back();
        }
        let from_old = gone.min(state.blocks.len());
        state.blocks.drain(..from_old);
        state.blocks.extend(added.into_iter().skip(gone - from_old));
        state.stamps.push(first, time);
        state.tail = tail.filter(|_| self.compression == Compression::Zstd);
        state.tail_open = open;
        state.trimmed_blocks(gone);
        state.bytes = total;
        state.bounds = Bounds { oldest, newest };
        Ok(first..newest + 1)
    }

    /// Adds `encoded` records to the newest block inside `txn` when it can take them (see
    /// [`Growing::grow`]) and stays wholly retained, with `stamp` (if the append needs one) kept
    /// in the block beside the stamps it already held there rather than in the time table (one
    /// table less written per append). Returns the block as it now is, the stamps it keeps and
    /// whether it is an open frame; `growing` is the block as it grows (read from the table
    /// when `None`). Only compressed logs grow blocks (`Compression::None` keeps the layout it
    /// compares against). A tail block that cannot be read is left as it is, and the records
    /// start a new block.
    fn grow_tail(
        &self,
        txn: &redb::WriteTransaction,
        state: &State,
        growing: &mut Option<Growing>,
        encoded: &[Vec<u8>],
        stamp: Option<(u64, u64)>,
    ) -> Result<Option<Grown>> {
        let Some(&tail) = state.blocks.back() else {
            return Ok(None);
        };
        let records = tail.records + encoded.len() as u64;
        if self.compression != Compression::Zstd
            || tail.first < state.bounds.oldest
            || records > self.capacity()
        {
            return Ok(None);
        }
        let offsets: Vec<(u64, u64)> = state
            .stamps
            .after(tail.first)
            .chain(stamp)
            .map(|(seq, time)| (seq - tail.first, time))
            .collect();
        let mut blocks = txn.open_table(self.tables.blocks)?;
        if growing.is_none() {
            *growing = self.read_tail(&blocks, tail)?;
        }
        let Some((block, open)) = growing
            .as_mut()
            .and_then(|g| g.grow(tail.records, encoded, &offsets))
        else {
            return Ok(None);
        };
        blocks.insert(tail.first, block.as_slice())?;
        let grown = BlockSize {
            first: tail.first,
            records,
            bytes: footprint(block.len() as u64),
        };
        Ok(Some(Grown { block: grown, open }))
    }

    /// The newest block as stored, to grow or close; `None` (with a warning) if it cannot be read.
    fn read_tail(
        &self,
        blocks: &redb::Table<u64, &[u8]>,
        tail: BlockSize,
    ) -> Result<Option<Growing>> {
        let Some(stored) = blocks.get(tail.first)? else {
            return Ok(None);
        };
        match Growing::read(self.name(), stored.value()) {
            Ok(growing) => Ok(Some(growing)),
            Err(e) => {
                tracing::warn!(log = self.name(), error = %e, "cannot read the newest block; starting a new one");
                Ok(None)
            }
        }
    }

    /// Writes `built` blocks from seq `first` inside `txn` for records the newest block did not
    /// take. That block stops growing: its stamps and `stamp` go to the time table, and if it
    /// is an open frame it is closed (`growing` is it as it grew, when known). Returns the
    /// blocks added and the block they replace (the closed one, also among those added).
    fn start_blocks(
        &self,
        txn: &redb::WriteTransaction,
        state: &State,
        growing: Option<Growing>,
        built: &[(Range<usize>, Vec<u8>)],
        first: u64,
        stamp: Option<(u64, u64)>,
    ) -> Result<(Vec<BlockSize>, Option<BlockSize>)> {
        let mut added = Vec::new();
        let mut replaced = None;
        if let (true, Some(&tail)) = (state.tail_open, state.blocks.back()) {
            let mut blocks = txn.open_table(self.tables.blocks)?;
            let growing = match growing {
                Some(growing) => Some(growing),
                None => self.read_tail(&blocks, tail)?,
            };
            if let Some(growing) = growing {
                let closed = growing.close(tail.records);
                blocks.insert(tail.first, closed.as_slice())?;
                replaced = Some(tail);
                added.push(BlockSize {
                    bytes: footprint(closed.len() as u64),
                    ..tail
                });
            }
        }
        added.extend(write_blocks(txn, self.tables, built, first)?);
        let grew = state
            .blocks
            .back()
            .map(|tail| state.stamps.after(tail.first));
        let moved: Vec<_> = grew.into_iter().flatten().chain(stamp).collect();
        if !moved.is_empty() {
            let mut times = txn.open_table(self.tables.times)?;
            for (seq, time) in moved {
                times.insert(seq, time)?;
            }
        }
        Ok((added, replaced))
    }

    /// A mark set by [`RingLog::append_marked`].
    pub fn mark(&self, key: &str) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(mark_key(key).as_str())?.map(|v| v.value()))
    }
}
