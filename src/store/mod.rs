//! Persistent state, in one sled database. This module is the only place that touches sled: the
//! rest of the crate sees [`Store`], [`RingLog`] and [`Consumers`], whose records are encoded with
//! postcard.
//!
//! Layout (schema version [`SCHEMA_VERSION`]; `migrations/` at the top of the repository has one
//! step per change):
//! - `meta`: `schema_version` → u32 (big-endian).
//! - `ring.outputs`: the outputs log in blocks: `b` + first seq (u64, big-endian) → postcard
//!   `Vec<`[`crate::event::OutputEvent`]`>`; `o` → the oldest retained seq (see [`RingLog`]).
//! - `ring.drops`: the drops log, same layout, postcard [`crate::event::DropRecord`].
//! - `state`, `history`, `history.index`: versioned rules files, toggles and config (see
//!   [`Versioned`]); `meta` also holds the global `revision`.
//! - `consumers`: `<log>/<name>` → the consumer's acknowledged seq (u64, big-endian).

mod codec;
mod consumers;
mod migrate;
mod ring;
mod versioned;

use std::path::{Path, PathBuf};

pub use consumers::Consumers;
pub use migrate::SCHEMA_VERSION;
pub use ring::{Bounds, RingLog};
pub use versioned::{Change, Current, HistoryRecord, Versioned, WriteGuard};

use crate::event::{DropRecord, OutputEvent};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory {0} is in use by another falco-api process")]
    Locked(PathBuf),
    #[error(
        "the database in {path} has schema version {found}, newer than this binary's {supported}: \
         upgrade falco-api or use another data directory (the database was not modified)"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("migration {version} ({name}) failed: {message}")]
    Migration {
        version: u32,
        name: &'static str,
        message: String,
    },
    #[error("corrupt record in tree '{tree}': {message}")]
    Corrupt { tree: String, message: String },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Tunables fixed when the store opens.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many output events the outputs log retains.
    pub outputs_capacity: u64,
    /// How many drop records the drops log retains.
    pub drops_capacity: u64,
    /// Keep at least this many revisions of rules/config history (0: everything).
    pub history_retention: u64,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            outputs_capacity: 100_000,
            drops_capacity: 10_000,
            history_retention: 0,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The open database. Cheap to share behind an `Arc`; every method is thread-safe.
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    outputs: RingLog<OutputEvent>,
    drops: RingLog<DropRecord>,
    consumers: Consumers,
    versioned: Versioned,
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, running any pending migrations first.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store> {
        let path = dir.join("db");
        let db = open_db(&path, opts.cache_bytes)?;
        migrate::run(&db, &path)?;
        let outputs = RingLog::open(db.open_tree("ring.outputs")?, opts.outputs_capacity)?;
        let drops = RingLog::open(db.open_tree("ring.drops")?, opts.drops_capacity)?;
        let consumers = Consumers::new(db.open_tree("consumers")?);
        let versioned = Versioned::open(&db, opts.history_retention)?;
        Ok(Store {
            db,
            path,
            outputs,
            drops,
            consumers,
            versioned,
        })
    }

    pub fn outputs(&self) -> &RingLog<OutputEvent> {
        &self.outputs
    }

    pub fn drops(&self) -> &RingLog<DropRecord> {
        &self.drops
    }

    /// Rules files, toggles and config entries with their history.
    pub fn versioned(&self) -> &Versioned {
        &self.versioned
    }

    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    /// Writes everything to disk and fsyncs it.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32> {
        migrate::recorded_version(&self.db.open_tree(migrate::META_TREE)?).map(|v| v.unwrap_or(0))
    }
}

/// Helpers that build databases in old or foreign layouts, for tests and fixtures.
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    use super::{open_db, Result, StoreError};

    /// Writes a schema-1 database (the first layout) into `dir`.
    pub fn write_v1_database(dir: &Path, events: u64, consumer: (&str, u64)) -> Result<()> {
        let path = dir.join("db");
        let db = open_db(&path, 8 << 20)?;
        super::migrate::write_v1_fixture(&db, events, consumer).map_err(|message| {
            StoreError::Migration {
                version: 1,
                name: "fixture",
                message,
            }
        })
    }

    /// Marks the database in `dir` as written by schema `version`.
    pub fn force_schema_version(dir: &Path, version: u32) -> Result<()> {
        let db = open_db(&dir.join("db"), 8 << 20)?;
        super::migrate::force_version(&db, version)
    }
}

fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(1000));
    match config.open() {
        Ok(db) => Ok(db),
        // sled takes an exclusive file lock and reports a second opener with this message.
        Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
            Err(StoreError::Locked(path.to_path_buf()))
        }
        Err(e) => Err(e.into()),
    }
}
