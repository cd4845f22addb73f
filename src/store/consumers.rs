//! Durable consumer positions: for each log and consumer name, the highest seq the consumer has
//! acknowledged. Positions only move forward.
//!
//! Acknowledgements arrive once per event a client prints (`tail --consumer` acks every event),
//! so a durable commit for each would cost one fsync per event. They are batched instead: an
//! acknowledgement is visible at once to every reader of this process and committed durably
//! (fsynced) by a background thread at most [`COMMIT_DELAY`] later, in one transaction with every
//! other position acknowledged meanwhile, and at shutdown. After a crash a consumer may be sent
//! again what it acknowledged in the last [`COMMIT_DELAY`]: at-least-once, never fewer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::CONSUMERS;
use super::Result;

/// The longest an acknowledged position waits before it is durable.
pub const COMMIT_DELAY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Positions {
    /// Every known position (durable or not): what readers see.
    all: HashMap<String, u64>,
    /// Positions acknowledged since the last commit.
    dirty: BTreeMap<String, u64>,
    closing: bool,
}

struct Shared {
    db: Arc<Database>,
    reserve: Arc<super::Reserve>,
    positions: Mutex<Positions>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Positions> {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits the dirty positions in one durable transaction. On failure they stay dirty.
    fn commit(&self) -> Result<()> {
        let dirty = std::mem::take(&mut self.lock().dirty);
        if dirty.is_empty() {
            return Ok(());
        }
        let result = (|| {
            self.reserve.check()?;
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(CONSUMERS)?;
                for (key, seq) in &dirty {
                    table.insert(key.as_str(), *seq)?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        if result.is_err() {
            let mut p = self.lock();
            for (key, seq) in dirty {
                let e = p.dirty.entry(key).or_insert(seq);
                *e = (*e).max(seq);
            }
        }
        result
    }
}

pub struct Consumers {
    shared: Arc<Shared>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl Consumers {
    pub(super) fn open(db: Arc<Database>, reserve: Arc<super::Reserve>) -> Result<Self> {
        let mut all = HashMap::new();
        {
            let txn = db.begin_read()?;
            for item in txn.open_table(CONSUMERS)?.iter()? {
                let (k, v) = item?;
                all.insert(k.value().to_string(), v.value());
            }
        }
        let shared = Arc::new(Shared {
            db,
            reserve,
            positions: Mutex::new(Positions {
                all,
                ..Default::default()
            }),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let committer = std::thread::Builder::new()
            .name("consumers-commit".into())
            .spawn(move || commit_loop(&worker))
            .expect("cannot spawn the consumer commit thread");
        Ok(Consumers {
            shared,
            committer: Mutex::new(Some(committer)),
        })
    }

    fn key(log: &str, name: &str) -> String {
        format!("{log}/{name}")
    }

    /// The acknowledged position, or `None` for a consumer never seen before.
    pub fn get(&self, log: &str, name: &str) -> Result<Option<u64>> {
        Ok(self.shared.lock().all.get(&Self::key(log, name)).copied())
    }

    /// Records `seq` as acknowledged unless the stored position is already further. Returns the
    /// position now stored. Durable within [`COMMIT_DELAY`] (see the module docs).
    pub fn advance(&self, log: &str, name: &str, seq: u64) -> Result<u64> {
        let key = Self::key(log, name);
        let mut p = self.shared.lock();
        let now = p.all.get(&key).map_or(seq, |old| (*old).max(seq));
        if p.all.get(&key) != Some(&now) {
            p.all.insert(key.clone(), now);
            p.dirty.insert(key, now);
            self.shared.wake.notify_one();
        }
        Ok(now)
    }

    /// Every consumer of `log` with its position, by name.
    pub fn list(&self, log: &str) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{log}/");
        let mut out: Vec<(String, u64)> = self
            .shared
            .lock()
            .all
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|n| (n.to_string(), *v)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Commits every acknowledged position now.
    pub fn commit_pending(&self) -> Result<()> {
        self.shared.commit()
    }

    /// Commits what is pending and stops the background thread.
    pub(super) fn close(&self) -> Result<()> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
        self.shared.commit()
    }
}

fn commit_loop(shared: &Shared) {
    loop {
        {
            let mut p = shared.lock();
            while p.dirty.is_empty() && !p.closing {
                p = shared.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            if p.closing {
                return;
            }
        }
        // Let acknowledgements gather for a while, then commit them together.
        std::thread::sleep(COMMIT_DELAY / 2);
        if let Err(e) = shared.commit() {
            tracing::error!(error = %e, "committing consumer positions failed; retrying");
            std::thread::sleep(COMMIT_DELAY);
        }
    }
}
