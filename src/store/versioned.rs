//! Versioned state: rules files, rule toggles and config entries as current state plus an
//! append-only history, all under one global revision counter (as etcd's). Each commit is one
//! write transaction over the state, the history, its per-target index and the revision. Every
//! history entry holds the full new value of each target it changed, so the state as of any
//! retained revision can be rebuilt.
//!
//! Durability is group-committed, as etcd batches its fsyncs: [`Versioned::commit`] writes the
//! transaction without an fsync under the writer lock, and the caller then waits in
//! [`Versioned::wait_durable`], where one fsync covers every commit made meanwhile by any
//! client. A reader may see a revision up to one fsync before it is durable (and a crash in that
//! window takes it back); its writer is answered only once it is durable.
//!
//! Targets are namespaced strings: `file:<name>`, `rule:<name>`, `tag:<tag>`, `config:<key>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::tables::{HISTORY, HISTORY_INDEX, HISTORY_OLDEST_KEY, META, REVISION_KEY, STATE};
use super::{Result, StoreError};

/// A target's current value and the revision that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub value: String,
    pub revision: u64,
}

/// One target changed by a commit: its new value, or `None` when removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub target: String,
    pub value: Option<String>,
}

/// One revision of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub revision: u64,
    pub time_ns: i64,
    pub author: String,
    pub comment: String,
    /// What was asked: put, delete, rollback, toggle, set, unset, import.
    pub action: String,
    pub changes: Vec<Change>,
}

pub struct Versioned {
    db: Arc<Database>,
    reserve: Arc<super::Reserve>,
    /// Serialises writers so that a caller can check preconditions and commit atomically. It
    /// guards no data, so a panic while it was held leaves nothing inconsistent: a poisoned lock
    /// is simply taken again.
    writer: Mutex<()>,
    /// Keep at least this many revisions of history (0: all).
    retention: u64,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

/// Which revisions are written, and which of them are durable.
#[derive(Default)]
struct SyncState {
    committed: u64,
    durable: u64,
    /// A waiter is running the fsync; the others wait for its result.
    syncing: bool,
    /// Writers between [`Versioned::lock`] and the end of their commit.
    writers: usize,
}

/// Held while checking preconditions and committing.
pub struct WriteGuard<'a> {
    lock: Option<MutexGuard<'a, ()>>,
    versioned: &'a Versioned,
}

impl WriteGuard<'_> {
    /// Lets the next writer in, then waits until `revision` is durable (sharing the fsync with
    /// whatever other writers committed meanwhile).
    pub fn durable(self, revision: u64) -> Result<()> {
        let versioned = self.versioned;
        drop(self);
        versioned.wait_durable(revision)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.versioned.sync_state().writers -= 1;
        self.versioned.synced.notify_all();
    }
}

/// How long the fsync waits for writers already under way, so that one fsync covers them too.
const GATHER: Duration = Duration::from_millis(2);

fn meta_value(txn: &ReadTransaction, key: &str) -> Result<u64> {
    Ok(txn.open_table(META)?.get(key)?.map_or(0, |v| v.value()))
}

impl Versioned {
    pub(super) fn open(
        db: Arc<Database>,
        reserve: Arc<super::Reserve>,
        retention: u64,
    ) -> Result<Versioned> {
        let revision = meta_value(&db.begin_read()?, REVISION_KEY)?;
        Ok(Versioned {
            db,
            reserve,
            writer: Mutex::new(()),
            retention,
            sync: Mutex::new(SyncState {
                committed: revision,
                durable: revision,
                syncing: false,
                writers: 0,
            }),
            synced: Condvar::new(),
        })
    }

    fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until every commit up to `revision` is durable. The first waiter runs one durable
    /// (fsynced) transaction covering every commit so far; the others wait for it.
    pub fn wait_durable(&self, revision: u64) -> Result<()> {
        let mut s = self.sync_state();
        let gather_until = Instant::now() + GATHER;
        loop {
            if s.durable >= revision {
                return Ok(());
            }
            if s.syncing {
                s = self.synced.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let now = Instant::now();
            if s.writers > 0 && now < gather_until {
                s = self
                    .synced
                    .wait_timeout(s, gather_until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            s.syncing = true;
            let target = s.committed;
            drop(s);
            // An empty transaction committed with `Durability::Immediate` makes every earlier
            // non-durable commit durable (redb orders commits).
            let result = self
                .db
                .begin_write()
                .map_err(StoreError::from)
                .and_then(|txn| Ok(txn.commit()?));
            s = self.sync_state();
            s.syncing = false;
            if result.is_ok() {
                s.durable = s.durable.max(target);
            }
            self.synced.notify_all();
            result?;
        }
    }

    pub fn lock(&self) -> WriteGuard<'_> {
        self.sync_state().writers += 1;
        WriteGuard {
            lock: Some(self.writer.lock().unwrap_or_else(PoisonError::into_inner)),
            versioned: self,
        }
    }

    /// The current global revision (0 before the first commit).
    pub fn revision(&self) -> Result<u64> {
        meta_value(&self.db.begin_read()?, REVISION_KEY)
    }

    /// The oldest revision whose state can still be rebuilt.
    pub fn oldest_revision(&self) -> Result<u64> {
        meta_value(&self.db.begin_read()?, HISTORY_OLDEST_KEY)
    }

    /// Every current target under `prefix` (e.g. `file:`), by target.
    pub fn current(&self, prefix: &str) -> Result<BTreeMap<String, Current>> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let mut out = BTreeMap::new();
        for item in state.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.insert(k.value().to_string(), decode("state", v.value())?);
        }
        Ok(out)
    }

    pub fn get(&self, target: &str) -> Result<Option<Current>> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let value = state.get(target)?;
        value.map(|v| decode("state", v.value())).transpose()
    }

    /// Every target under `prefix` as of `revision`, with the revision that set it.
    pub fn at(&self, prefix: &str, revision: u64) -> Result<BTreeMap<String, Current>> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(HISTORY_INDEX)?;
        let mut latest: BTreeMap<String, u64> = BTreeMap::new();
        for item in index.range((prefix, 0)..)? {
            let (k, _) = item?;
            let (target, rev) = k.value();
            if !target.starts_with(prefix) {
                break;
            }
            if rev <= revision {
                latest.insert(target.to_string(), rev);
            }
        }
        let mut out = BTreeMap::new();
        for (target, rev) in latest {
            let record = record_in(&txn, rev)?.ok_or_else(|| StoreError::Corrupt {
                tree: "history".into(),
                message: format!("index names revision {rev}, which is missing"),
            })?;
            if let Some(change) = record.changes.into_iter().find(|c| c.target == target) {
                if let Some(value) = change.value {
                    out.insert(
                        target,
                        Current {
                            value,
                            revision: rev,
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    pub fn record(&self, revision: u64) -> Result<Option<HistoryRecord>> {
        record_in(&self.db.begin_read()?, revision)
    }

    /// History, newest first: entries older than `before` (0: from the newest), at most `limit`,
    /// for one target or (empty) all.
    pub fn history(&self, target: &str, before: u64, limit: usize) -> Result<Vec<HistoryRecord>> {
        let before = if before == 0 { u64::MAX } else { before };
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        if target.is_empty() {
            let history = txn.open_table(HISTORY)?;
            for item in history.range(..before)?.rev().take(limit) {
                out.push(decode("history", item?.1.value())?);
            }
        } else {
            let index = txn.open_table(HISTORY_INDEX)?;
            for item in index
                .range((target, 0)..(target, before))?
                .rev()
                .take(limit)
            {
                let (_, rev) = item?.0.value();
                if let Some(r) = record_in(&txn, rev)? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Applies `changes` as one new revision, visible to the writer's own later checks at once
    /// and durable once [`Versioned::wait_durable`] returns for it: call that after releasing the
    /// guard from [`Versioned::lock`], before telling anyone the change is made.
    pub fn commit(
        &self,
        _guard: &WriteGuard<'_>,
        action: &str,
        author: &str,
        comment: &str,
        changes: Vec<Change>,
    ) -> Result<u64> {
        // Alone, a writer makes its own commit durable; with others under way, the fsync is
        // left to `wait_durable`, where one covers them all.
        let alone = {
            let s = self.sync_state();
            s.writers <= 1 && !s.syncing
        };
        self.reserve.check()?;
        let mut txn = self.db.begin_write()?;
        if !alone {
            txn.set_durability(Durability::None)?;
        }
        let revision = txn
            .open_table(META)?
            .get(REVISION_KEY)?
            .map_or(0, |v| v.value())
            + 1;
        let record = HistoryRecord {
            revision,
            time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            author: author.to_string(),
            comment: comment.to_string(),
            action: action.to_string(),
            changes,
        };
        write_record(&txn, &record)?;
        self.trim(&txn, revision)?;
        txn.commit()?;
        let mut s = self.sync_state();
        s.committed = revision;
        if alone {
            s.durable = s.durable.max(revision);
        }
        Ok(revision)
    }

    /// Keeps at least `retention` revisions, and always each target's latest entry (so the current
    /// state can still be rebuilt); older revisions become unreachable as of-points.
    fn trim(&self, txn: &WriteTransaction, revision: u64) -> Result<()> {
        if self.retention == 0 || revision <= self.retention {
            return Ok(());
        }
        let cut = revision - self.retention;
        let mut meta = txn.open_table(META)?;
        let oldest = meta.get(HISTORY_OLDEST_KEY)?.map_or(0, |v| v.value());
        if cut <= oldest {
            return Ok(());
        }
        let mut history = txn.open_table(HISTORY)?;
        let mut index = txn.open_table(HISTORY_INDEX)?;
        for rev in oldest.max(1)..cut {
            let Some(bytes) = history.get(rev)?.map(|v| v.value().to_vec()) else {
                continue;
            };
            let record: HistoryRecord = decode("history", &bytes)?;
            let mut superseded = true;
            for c in &record.changes {
                let target = c.target.as_str();
                if index
                    .range((target, rev + 1)..=(target, u64::MAX))?
                    .next()
                    .is_none()
                {
                    superseded = false;
                    break;
                }
            }
            if superseded {
                for c in &record.changes {
                    index.remove((c.target.as_str(), rev))?;
                }
                history.remove(rev)?;
            }
        }
        meta.insert(HISTORY_OLDEST_KEY, cut)?;
        Ok(())
    }
}

fn record_in(txn: &ReadTransaction, revision: u64) -> Result<Option<HistoryRecord>> {
    let history = txn.open_table(HISTORY)?;
    let value = history.get(revision)?;
    value.map(|v| decode("history", v.value())).transpose()
}

/// One revision in `txn`: each change applied to the state and indexed by target, the record
/// in the history, the revision as the newest.
fn write_record(txn: &WriteTransaction, record: &HistoryRecord) -> Result<()> {
    let revision = record.revision;
    let mut state = txn.open_table(STATE)?;
    let mut index = txn.open_table(HISTORY_INDEX)?;
    for c in &record.changes {
        match &c.value {
            Some(v) => {
                let current = Current {
                    value: v.clone(),
                    revision,
                };
                state.insert(c.target.as_str(), encode("state", &current)?.as_slice())?;
            }
            None => {
                state.remove(c.target.as_str())?;
            }
        }
        index.insert((c.target.as_str(), revision), ())?;
    }
    txn.open_table(HISTORY)?
        .insert(revision, encode("history", record)?.as_slice())?;
    txn.open_table(META)?.insert(REVISION_KEY, revision)?;
    Ok(())
}
