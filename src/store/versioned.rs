//! Versioned state: rules files, rule toggles and config entries as current state plus an
//! append-only history, all under one global revision counter (as etcd's). Each commit is one sled
//! transaction over the state, the history, its per-target index and the revision, flushed before
//! it returns. Every history entry holds the full new value of each target it changed, so the
//! state as of any retained revision can be rebuilt.
//!
//! Targets are namespaced strings: `file:<name>`, `rule:<name>`, `tag:<tag>`, `config:<key>`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::codec::{decode, decode_seq, encode};
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
    state: sled::Tree,
    history: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
    /// Serialises writers so that a caller can check preconditions and commit atomically.
    writer: Mutex<()>,
    /// Keep at least this many revisions of history (0: all).
    retention: u64,
}

/// Held while checking preconditions and committing.
pub struct WriteGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

const REVISION_KEY: &str = "revision";
const OLDEST_KEY: &str = "history.oldest";

fn index_key(target: &str, revision: u64) -> Vec<u8> {
    let mut k = target.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

impl Versioned {
    pub(super) fn open(db: &sled::Db, retention: u64) -> Result<Versioned> {
        Ok(Versioned {
            state: db.open_tree("state")?,
            history: db.open_tree("history")?,
            index: db.open_tree("history.index")?,
            meta: db.open_tree("meta")?,
            writer: Mutex::new(()),
            retention,
        })
    }

    pub fn lock(&self) -> WriteGuard<'_> {
        WriteGuard(self.writer.lock().expect("writer lock poisoned"))
    }

    /// The current global revision (0 before the first commit).
    pub fn revision(&self) -> Result<u64> {
        self.meta
            .get(REVISION_KEY)?
            .map_or(Ok(0), |v| decode_seq("meta", &v))
    }

    /// The oldest revision whose state can still be rebuilt.
    pub fn oldest_revision(&self) -> Result<u64> {
        self.meta
            .get(OLDEST_KEY)?
            .map_or(Ok(0), |v| decode_seq("meta", &v))
    }

    /// Every current target under `prefix` (e.g. `file:`), by target.
    pub fn current(&self, prefix: &str) -> Result<BTreeMap<String, Current>> {
        let mut out = BTreeMap::new();
        for item in self.state.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            out.insert(
                String::from_utf8_lossy(&k).into_owned(),
                decode("state", &v)?,
            );
        }
        Ok(out)
    }

    pub fn get(&self, target: &str) -> Result<Option<Current>> {
        self.state
            .get(target.as_bytes())?
            .map(|v| decode("state", &v))
            .transpose()
    }

    /// Every target under `prefix` as of `revision`, with the revision that set it.
    pub fn at(&self, prefix: &str, revision: u64) -> Result<BTreeMap<String, Current>> {
        let mut latest: BTreeMap<String, u64> = BTreeMap::new();
        for item in self.index.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item?;
            // target, a NUL, then the revision's 8 bytes (which may hold NULs themselves).
            let split = k.len().saturating_sub(9);
            let target = String::from_utf8_lossy(&k[..split]).into_owned();
            let rev = decode_seq("history.index", &k[split + 1..])?;
            if rev <= revision {
                latest.insert(target, rev);
            }
        }
        let mut out = BTreeMap::new();
        for (target, rev) in latest {
            let record = self.record(rev)?.ok_or_else(|| StoreError::Corrupt {
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
        self.history
            .get(revision.to_be_bytes())?
            .map(|v| decode("history", &v))
            .transpose()
    }

    /// History, newest first: entries older than `before` (0: from the newest), at most `limit`,
    /// for one target or (empty) all.
    pub fn history(&self, target: &str, before: u64, limit: usize) -> Result<Vec<HistoryRecord>> {
        let before = if before == 0 { u64::MAX } else { before };
        let mut out = Vec::new();
        if target.is_empty() {
            for item in self.history.range(..before.to_be_bytes()).rev().take(limit) {
                out.push(decode("history", &item?.1)?);
            }
        } else {
            let (lo, hi) = (index_key(target, 0), index_key(target, before));
            for item in self.index.range(lo..hi).rev().take(limit) {
                let (k, _) = item?;
                let rev = decode_seq("history.index", &k[k.len() - 8..])?;
                if let Some(r) = self.record(rev)? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Applies `changes` as one new revision (flushed before returning). Call with the guard
    /// from [`Versioned::lock`] held, after checking preconditions.
    pub fn commit(
        &self,
        _guard: &WriteGuard<'_>,
        action: &str,
        author: &str,
        comment: &str,
        changes: Vec<Change>,
    ) -> Result<u64> {
        let revision = self.revision()? + 1;
        let record = HistoryRecord {
            revision,
            time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            author: author.to_string(),
            comment: comment.to_string(),
            action: action.to_string(),
            changes,
        };
        let encoded = encode("history", &record)?;
        let states: Vec<(Vec<u8>, Option<Vec<u8>>)> = record
            .changes
            .iter()
            .map(|c| {
                let value = c
                    .value
                    .as_ref()
                    .map(|v| {
                        encode(
                            "state",
                            &Current {
                                value: v.clone(),
                                revision,
                            },
                        )
                    })
                    .transpose()?;
                Ok((c.target.as_bytes().to_vec(), value))
            })
            .collect::<Result<_>>()?;
        let result: std::result::Result<(), TransactionError<StoreError>> =
            (&self.state, &self.history, &self.index, &self.meta).transaction(
                |(state, history, index, meta)| {
                    for (target, value) in &states {
                        match value {
                            Some(v) => state.insert(target.as_slice(), v.as_slice())?,
                            None => state.remove(target.as_slice())?,
                        };
                    }
                    history.insert(&revision.to_be_bytes(), encoded.as_slice())?;
                    for c in &record.changes {
                        index.insert(index_key(&c.target, revision), &[])?;
                    }
                    meta.insert(REVISION_KEY, &revision.to_be_bytes())?;
                    Ok::<(), ConflictableTransactionError<StoreError>>(())
                },
            );
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        self.state.flush()?;
        self.trim(revision)?;
        Ok(revision)
    }

    /// Keeps at least `retention` revisions, and always each target's latest entry (so the current
    /// state can still be rebuilt); older revisions become unreachable as of-points.
    fn trim(&self, revision: u64) -> Result<()> {
        if self.retention == 0 || revision <= self.retention {
            return Ok(());
        }
        let cut = revision - self.retention;
        let oldest = self.oldest_revision()?;
        if cut <= oldest {
            return Ok(());
        }
        for rev in oldest.max(1)..cut {
            let Some(record) = self.record(rev)? else {
                continue;
            };
            let superseded = record.changes.iter().all(|c| {
                let next = self
                    .index
                    .range(index_key(&c.target, rev + 1)..index_key(&c.target, u64::MAX))
                    .next();
                matches!(next, Some(Ok(_)))
            });
            if superseded {
                for c in &record.changes {
                    self.index.remove(index_key(&c.target, rev))?;
                }
                self.history.remove(rev.to_be_bytes())?;
            }
        }
        self.meta.insert(OLDEST_KEY, &cut.to_be_bytes())?;
        Ok(())
    }
}
