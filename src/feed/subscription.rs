//! A subscription is a cursor over one log: it replays retained records from its position, then
//! follows the published head, reading the log itself in chunks bounded in records and bytes.
//! While it hands out one chunk it reads the next on the blocking pool, so a replay does not stall
//! its stream between chunks; it never holds more than those two, so a slow reader costs the
//! server a bounded amount of memory and never slows writers. If the log is trimmed past it, the
//! next item says how many records it lost.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{FeedError, Record, Shared};
use crate::store::{Chunk, RingLog, StoreError};

/// How a subscription reads its log: records decoded, or stored payloads as they are.
type Reader<T, V> = fn(&RingLog<T>, u64, u64, Chunk) -> Result<Vec<(u64, V)>, StoreError>;

type Read<V> = Result<Vec<(u64, V)>, StoreError>;

/// What is read from the store at a time (then the rest of the block where either is reached).
const CHUNK: Chunk = Chunk {
    records: 512,
    bytes: 1 << 20,
};
/// The first read asks for one record, i.e. the block it is in, so that a stream's first
/// record (a seek to a seq or a time) costs one block and not a chunk.
const FIRST_CHUNK: Chunk = Chunk {
    records: 1,
    bytes: 1,
};

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After the head as of opening: only records appended from now on.
    Live,
    /// After this seq (exclusive).
    After(u64),
    /// At the oldest retained record, with no loss reported (a consumer never seen before).
    Oldest,
}

/// What to do when the starting position has already been trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimPolicy {
    /// Refuse to open ([`FeedError::Trimmed`]).
    Fail,
    /// Start at the oldest retained record; the first item reports the loss.
    Report,
}

/// One step of a subscription.
#[derive(Debug, PartialEq)]
pub enum Item<T> {
    Record {
        seq: u64,
        record: T,
    },
    /// `count` records were trimmed before this subscription could read them; it goes on at
    /// `next_seq`.
    Lost {
        count: u64,
        next_seq: u64,
    },
}

type Filter<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// A subscription to a log of `T`, delivering `V`s: `T`s, or their stored payloads.
pub struct Subscription<T, V = T> {
    shared: Arc<Shared<T>>,
    read: Reader<T, V>,
    head: watch::Receiver<u64>,
    /// The last seq delivered, filtered out or reported lost.
    cursor: u64,
    /// `get`-style subscriptions end at this seq.
    until: Option<u64>,
    buffer: VecDeque<(u64, V)>,
    lost: Option<Item<V>>,
    filter: Option<Filter<V>>,
    /// Whether the first read was made.
    filled: bool,
    /// The next chunk, being read on the blocking pool, and the seq it reads up to.
    ahead: Option<(JoinHandle<Read<V>>, u64)>,
}

impl<T, V> Drop for Subscription<T, V> {
    fn drop(&mut self) {
        self.shared
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T: Record, V: Send + 'static> Subscription<T, V> {
    pub(super) fn open(
        shared: Arc<Shared<T>>,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
        read: Reader<T, V>,
    ) -> Result<Self, FeedError> {
        let mut head = shared.head.subscribe();
        let newest = *head.borrow_and_update();
        let oldest = shared.ring().bounds().oldest;
        let log = shared.name;
        let mut lost = None;
        let cursor = match start {
            Start::Live => newest,
            Start::Oldest => oldest.saturating_sub(1).min(newest),
            Start::After(requested) if requested > newest => {
                return Err(FeedError::Ahead {
                    log,
                    requested,
                    newest,
                });
            }
            Start::After(requested) if requested + 1 < oldest => {
                if policy == TrimPolicy::Fail {
                    return Err(FeedError::Trimmed {
                        log,
                        requested,
                        oldest,
                    });
                }
                lost = Some(Item::Lost {
                    count: oldest - 1 - requested,
                    next_seq: oldest,
                });
                oldest - 1
            }
            Start::After(requested) => requested,
        };
        shared
            .live
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Subscription {
            shared,
            read,
            head,
            cursor,
            until: (!follow).then_some(newest),
            buffer: VecDeque::new(),
            lost,
            filter: None,
            filled: false,
            ahead: None,
        })
    }

    /// Only records for which `filter` is true are delivered; the others still move the cursor.
    pub fn with_filter(mut self, filter: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Ends the subscription after `seq` (or earlier, where it already ends).
    pub fn ending_at(mut self, seq: u64) -> Self {
        self.until = Some(self.until.map_or(seq, |until| until.min(seq)));
        self
    }

    /// The last seq this subscription has passed (delivered, filtered out or lost).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next item; `None` when a non-following subscription reached its end or the log closed.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Option<Item<V>>, FeedError> {
        loop {
            if let Some(item) = self.next_read() {
                return Ok(Some(item));
            }
            if let Some((ahead, upto)) = self.ahead.as_mut() {
                // Awaiting through `&mut` keeps the read if this future is dropped.
                let read = ahead.await.map_err(|e| FeedError::Read {
                    log: self.shared.name,
                    message: e.to_string(),
                });
                let upto = *upto;
                self.ahead = None;
                self.take(read??, upto, true);
                continue;
            }
            let head = *self.head.borrow_and_update();
            let upto = self.until.map_or(head, |until| until.min(head));
            if self.cursor < upto {
                self.fill(upto)?;
                continue;
            }
            if self.until.is_some_and(|until| self.cursor >= until) {
                return Ok(None);
            }
            if self.head.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    /// The next item among those already read from the log, if any: no waiting and no read.
    /// Streams send these in a run, without going back to wait on anything else between them.
    pub fn next_read(&mut self) -> Option<Item<V>> {
        if let Some(lost) = self.lost.take() {
            return Some(lost);
        }
        while let Some((seq, record)) = self.buffer.pop_front() {
            self.cursor = seq;
            if self.filter.as_ref().is_none_or(|f| f(&record)) {
                return Some(Item::Record { seq, record });
            }
        }
        None
    }

    fn fill(&mut self, upto: u64) -> Result<(), FeedError> {
        let first = !self.filled;
        self.filled = true;
        let max = if first { FIRST_CHUNK } else { CHUNK };
        let chunk = (self.read)(self.shared.ring(), self.cursor, upto, max)?;
        // No read-ahead behind the first record: a stream that came for one record (a seek,
        // `--once`) leaves without making the server read a chunk it never sends.
        self.take(chunk, upto, !first);
        Ok(())
    }

    /// Buffers a chunk read after the cursor up to `upto`, noting any loss, and (if `ahead`)
    /// starts reading the next one if there is more up to `upto`.
    fn take(&mut self, chunk: Vec<(u64, V)>, upto: u64, ahead: bool) {
        let first = chunk.first().map_or(upto + 1, |(seq, _)| *seq);
        if first > self.cursor + 1 {
            // Trimmed while we were behind: everything before `first` is gone.
            let count = first - 1 - self.cursor;
            self.cursor = first - 1;
            self.lost = Some(Item::Lost {
                count,
                next_seq: first,
            });
        }
        let last = chunk.last().map(|(seq, _)| *seq);
        self.buffer.extend(chunk);
        match last {
            Some(last) if ahead && last < upto => self.read_ahead(last, upto),
            _ => {}
        }
    }

    fn read_ahead(&mut self, after: u64, upto: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, read) = (self.shared.clone(), self.read);
        let task = runtime.spawn_blocking(move || read(shared.ring(), after, upto, CHUNK));
        self.ahead = Some((task, upto));
    }
}
