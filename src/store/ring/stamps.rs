//! When a log's records were appended: one stamp per append (its first seq → nanoseconds), kept
//! on disk in the append's transaction and in memory for time lookups. A stamp covers the records
//! from its seq up to the next stamp's; stamps never decrease along the log. Schemas 8–10 stamped
//! each block at its first seq, which reads the same way (a block's records were appended
//! together), so the records of one block may carry several stamps since blocks grow at their
//! tail (schema 11). Since schema 12 the stamps of the appends that grew the newest block are kept
//! in that block rather than in the table until a newer block starts (see `RingLog::grow_tail`).

use std::collections::VecDeque;

use redb::{ReadableTable, Table};

use super::super::Result;

#[derive(Clone, Copy, Debug)]
struct Stamp {
    seq: u64,
    time: u64,
}

/// A log's stamps in memory, oldest first.
#[derive(Debug, Default)]
pub(super) struct Stamps(VecDeque<Stamp>);

impl Stamps {
    /// Every stamp in `times`; one that goes back in time takes its predecessor's time.
    pub fn load(times: &impl ReadableTable<u64, u64>) -> Result<Self> {
        let mut out = VecDeque::new();
        let mut time = 0;
        for item in times.iter()? {
            let (seq, t) = item?;
            time = t.value().max(time);
            out.push_back(Stamp {
                seq: seq.value(),
                time,
            });
        }
        Ok(Stamps(out))
    }

    pub fn newest_time(&self) -> Option<u64> {
        self.0.back().map(|s| s.time)
    }

    /// When `seq` was appended: the time of the last stamp at or before it.
    pub fn time_of(&self, seq: u64) -> Option<u64> {
        let i = self.0.partition_point(|s| s.seq <= seq);
        i.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .or(self.0.front())
            .map(|s| s.time)
    }

    /// The first seq appended at or after `time`, if any was.
    pub fn first_seq_since(&self, time: u64) -> Option<u64> {
        let i = self.0.partition_point(|s| s.time < time);
        self.0.get(i).map(|s| s.seq)
    }

    /// The first seq appended after `time`, if any was.
    pub fn first_seq_after(&self, time: u64) -> Option<u64> {
        let i = self.0.partition_point(|s| s.time <= time);
        self.0.get(i).map(|s| s.seq)
    }

    /// Whether an append at `time` needs a stamp (the newest one says another time).
    pub fn needs(&self, time: u64) -> bool {
        self.newest_time() != Some(time)
    }

    /// The stamps of records after `seq`, as (seq, ns), oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let i = self.0.partition_point(|s| s.seq <= seq);
        self.0.range(i..).map(|s| (s.seq, s.time))
    }

    pub fn push(&mut self, seq: u64, time: u64) {
        if self.needs(time) {
            self.0.push_back(Stamp { seq, time });
        }
    }

    /// Drops the stamps of records before `first` (the first seq still on disk), keeping the
    /// one that covers `first`.
    pub fn trim_to(&mut self, first: u64) {
        let covering = self.0.partition_point(|s| s.seq <= first);
        self.0.drain(..covering.saturating_sub(1));
    }
}

/// [`Stamps::trim_to`] on disk, inside the trimming transaction.
pub(super) fn trim_stamps(times: &mut Table<u64, u64>, first: u64) -> Result<()> {
    let mut below = Vec::new();
    for item in times.range(..=first)? {
        below.push(item?.0.value());
    }
    below.pop();
    for seq in below {
        times.remove(seq)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(pairs: &[(u64, u64)]) -> Stamps {
        let mut s = Stamps::default();
        for &(seq, time) in pairs {
            s.push(seq, time);
        }
        s
    }

    #[test]
    fn a_time_finds_the_append_that_covers_it() {
        let s = stamps(&[(1, 10), (4, 20), (5, 20), (9, 30)]);
        assert_eq!(
            s.0.len(),
            3,
            "an append at the newest stamp's time adds none"
        );
        assert_eq!(s.first_seq_since(0), Some(1));
        assert_eq!(s.first_seq_since(11), Some(4));
        assert_eq!(s.first_seq_since(30), Some(9));
        assert_eq!(s.first_seq_since(31), None);
        assert_eq!(s.first_seq_after(20), Some(9));
        assert_eq!(s.first_seq_after(30), None);
        assert_eq!(s.time_of(3), Some(10));
        assert_eq!(s.time_of(8), Some(20));
        assert_eq!(s.time_of(100), Some(30));
    }

    #[test]
    fn trimming_keeps_the_stamp_covering_the_first_record() {
        let mut s = stamps(&[(1, 10), (4, 20), (9, 30)]);
        s.trim_to(6);
        assert_eq!(s.time_of(6), Some(20));
        assert_eq!(s.0.len(), 2);
        s.trim_to(9);
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.time_of(9), Some(30));
    }
}
