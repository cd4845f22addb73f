//! Persistent state, in one redb database file (`falco-api.redb` in the data directory). This
//! module is the only place that touches the database crates: the rest of the crate sees
//! [`Store`], [`RingLog`], [`Consumers`] and [`Versioned`], whose records are encoded with
//! postcard, but for alerts: they are stored as the `falco.outputs.response` protobuf a
//! subscriber receives (see [`LogRecord`]; the encoding is `crate::proto::convert`'s).
//!
//! Every write is a redb write transaction committed with `Durability::Immediate`: when a write
//! returns, its data and the file's metadata have been fsynced. Consumer positions are the one
//! exception, batched into one such commit at most [`consumers::COMMIT_DELAY`] later (see
//! [`Consumers`]).
//!
//! Layout (schema version [`SCHEMA_VERSION`]; `migrations/` at the top of the repository has one
//! step per change, and step 6 converts a sled database written by earlier versions); the tables
//! are in [`tables`]:
//! - `meta`: `schema_version`, `revision`, `history.oldest`, `ring.<log>.oldest` → u64.
//! - `ring.outputs`, `ring.drops`: the logs in blocks (first seq → a block of records, see
//!   `block.rs`): alerts as length-framed protobuf, drop records as postcard.
//! - `ring.outputs.times`, `ring.drops.times`: when records were appended (the first seq of each
//!   append → ns), but for the appends that grew the newest block, whose stamps that block
//!   carries until a newer one starts.
//! - `state`, `history`, `history.index`: versioned rules files, toggles and config (see
//!   [`Versioned`]).
//! - `consumers`: `<log>/<name>` → the consumer's acknowledged seq.

mod backup;
mod block;
mod clock;
mod codec;
mod consumers;
mod migrate;
mod private;
mod ring;
mod space;
mod tables;
mod versioned;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

pub use backup::{
    restore, scratch_path as backup_scratch_path, summarize as summarize_backup,
    Summary as BackupSummary,
};
pub use block::Compression;
pub use clock::Clock;
pub use codec::{put_frame, take_frame, Framed, LogRecord};
pub use consumers::Consumers;
pub use migrate::{DB_FILE, LEGACY_DIR, LEGACY_KEPT, SCHEMA_VERSION};
pub use ring::{Bounds, Chunk, Retention, RingLog};
use ring::{LogEnv, LogTables};
pub use space::Reserve;
pub use versioned::{Change, Current, HistoryRecord, Versioned, WriteGuard};

use crate::base::event::{DropRecord, OutputEvent};

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
    #[error("corrupt record in table '{tree}': {message}")]
    Corrupt { tree: String, message: String },
    /// The data directory's filesystem is (nearly) full: the write was refused or failed, and
    /// nothing already stored was changed.
    #[error("no space left for the database: {0}")]
    NoSpace(String),
    /// The data directory or database could be read by other users and could not be tightened.
    #[error("the data directory must be private to falco-api's user: {path}: {message}")]
    Exposed { path: PathBuf, message: String },
    #[error("backup: {0}")]
    Backup(String),
    #[error("storage error: {0}")]
    Db(redb::Error),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        let full = match &e {
            redb::Error::Io(io) => {
                io.raw_os_error() == Some(libc::ENOSPC) || io.raw_os_error() == Some(libc::EDQUOT)
            }
            _ => false,
        };
        if full {
            StoreError::NoSpace(e.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

/// redb has one error type per operation; all of them convert into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        })*
    };
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError,
);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Tunables fixed when the store opens.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many output events the outputs log retains.
    pub outputs_capacity: u64,
    /// How many drop records the drops log retains.
    pub drops_capacity: u64,
    /// Bytes of records each log retains at most.
    pub outputs_max_bytes: u64,
    pub drops_max_bytes: u64,
    /// How long each log keeps a record, in nanoseconds (0: no age limit).
    pub outputs_max_age_ns: u64,
    pub drops_max_age_ns: u64,
    /// The clock blocks are stamped with (the system's, but for tests).
    pub clock: Clock,
    /// How new log blocks are written (zstd; plain only to measure against).
    pub compression: Compression,
    /// Keep at least this many revisions of rules/config history (0: everything).
    pub history_retention: u64,
    /// The database's page cache size in bytes.
    pub cache_bytes: u64,
    /// Writes are refused while the filesystem has less free space than this.
    pub min_free_bytes: u64,
    /// The data directory's permission bits (0700; 0750 when the socket's group needs it).
    pub dir_mode: u32,
    /// The data directory's group, when the socket inside it is shared with one.
    pub dir_gid: Option<u32>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            outputs_capacity: 100_000,
            drops_capacity: 10_000,
            outputs_max_bytes: 1 << 30,
            drops_max_bytes: 64 << 20,
            outputs_max_age_ns: 0,
            drops_max_age_ns: 0,
            clock: Clock::system(),
            compression: Compression::Zstd,
            history_retention: 0,
            cache_bytes: 64 * 1024 * 1024,
            min_free_bytes: 64 << 20,
            dir_mode: 0o700,
            dir_gid: None,
        }
    }
}

/// The database file's space, as redb accounts for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// The file's length.
    pub file_bytes: u64,
    /// What the file takes on the device (its allocated blocks): less than its length while
    /// the part redb has grown into is unwritten (a sparse extension).
    pub disk_bytes: u64,
    /// Pages in use (the rest of the file is free for reuse).
    pub allocated_bytes: u64,
    /// Keys and values.
    pub stored_bytes: u64,
    /// Branch pages and other metadata.
    pub metadata_bytes: u64,
    /// Unused bytes inside allocated pages.
    pub fragmented_bytes: u64,
}

const OUTPUTS_LOG: LogTables = LogTables {
    blocks: tables::RING_OUTPUTS,
    times: tables::RING_OUTPUTS_TIMES,
};
const DROPS_LOG: LogTables = LogTables {
    blocks: tables::RING_DROPS,
    times: tables::RING_DROPS_TIMES,
};

/// The open database. Cheap to share behind an `Arc`; every method is thread-safe.
pub struct Store {
    reserve: Arc<Reserve>,
    db: Arc<Database>,
    path: PathBuf,
    outputs: RingLog<OutputEvent>,
    drops: RingLog<DropRecord>,
    consumers: Consumers,
    versioned: Versioned,
    legacy_kept: Option<PathBuf>,
}

impl Store {
    /// Opens (creating it and `dir` if needed) the database in `dir`: converts a sled database left by an
    /// earlier version first, runs pending migrations, trims the logs to their capacities and
    /// compacts the file if it holds much more free space than data.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store> {
        private::dir(dir, opts.dir_mode, opts.dir_gid)?;
        private::file(&dir.join(DB_FILE))?;
        let opened = migrate::open(dir, opts.cache_bytes)?;
        private::file(&opened.path)?;
        if let Some(kept) = &opened.legacy_kept {
            private::dir(kept, 0o700, None)?;
        }
        let mut db = opened.db;
        let stale = backup::remove_scratch(dir);
        if stale > 0 {
            tracing::info!(
                files = stale,
                "removed temporary backup copies left by a server stopped during a backup"
            );
        }
        let trimmed = ring::trim(&db, OUTPUTS_LOG, opts.outputs_capacity)?
            + ring::trim(&db, DROPS_LOG, opts.drops_capacity)?;
        if trimmed > 0 {
            tracing::info!(records = trimmed, "trimmed the logs to their capacities");
        }
        compact_if_sparse(&mut db, &opened.path)?;
        let db = Arc::new(db);
        let reserve = Arc::new(Reserve::new(dir, opts.min_free_bytes));
        let outputs = RingLog::open(
            db.clone(),
            LogEnv {
                reserve: reserve.clone(),
                clock: opts.clock.clone(),
                compression: opts.compression,
            },
            OUTPUTS_LOG,
            Retention {
                capacity: opts.outputs_capacity,
                max_bytes: opts.outputs_max_bytes,
                max_age_ns: opts.outputs_max_age_ns,
            },
        )?;
        let drops = RingLog::open(
            db.clone(),
            LogEnv {
                reserve: reserve.clone(),
                clock: opts.clock.clone(),
                compression: opts.compression,
            },
            DROPS_LOG,
            Retention {
                capacity: opts.drops_capacity,
                max_bytes: opts.drops_max_bytes,
                max_age_ns: opts.drops_max_age_ns,
            },
        )?;
        let consumers = Consumers::open(db.clone(), reserve.clone())?;
        let versioned = Versioned::open(db.clone(), reserve.clone(), opts.history_retention)?;
        Ok(Store {
            reserve,
            db,
            path: opened.path,
            outputs,
            drops,
            consumers,
            versioned,
            legacy_kept: opened.legacy_kept,
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

    /// Makes everything written so far durable. Every write but a consumer acknowledgement
    /// already is when it returns; this commits pending consumer positions.
    pub fn flush(&self) -> Result<()> {
        self.consumers.commit_pending()
    }

    /// Bytes the database file occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| redb::Error::from(e).into())
    }

    /// Where the database file's bytes go (one read of redb's own accounting).
    pub fn space(&self) -> Result<Space> {
        let txn = self.db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let meta = std::fs::metadata(&self.path).map_err(redb::Error::from)?;
        Ok(Space {
            file_bytes: meta.len(),
            disk_bytes: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
        })
    }

    /// Writes a point-in-time copy of the whole store to the new file `dest` (see
    /// [`backup`]); consumer positions not yet committed are committed first, so the copy has
    /// every acknowledgement made before the call.
    pub fn backup(&self, dest: &Path) -> Result<BackupSummary> {
        self.consumers.commit_pending()?;
        backup::write(&self.db, dest)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the sled database converted at this start was kept, if one was.
    pub fn legacy_kept(&self) -> Option<&Path> {
        self.legacy_kept.as_deref()
    }

    /// Saves a component's derived state under `name`, durably (refused like any write when the
    /// disk reserve is reached).
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.reserve.check()?;
        let txn = self.db.begin_write()?;
        txn.open_table(tables::SAVED)?.insert(name, bytes)?;
        txn.commit()?;
        Ok(())
    }

    /// What [`Store::save`] saved under `name`.
    pub fn saved(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(tables::SAVED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(name)?.map(|v| v.value().to_vec()))
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32> {
        let txn = self.db.begin_read()?;
        migrate::recorded_version(&txn).map(|v| v.unwrap_or(0))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.consumers.close() {
            tracing::error!(error = %e, "committing consumer positions at close failed");
        }
    }
}

/// Compacts the file when it is much larger than the pages in use (after a capacity reduction,
/// or a layout conversion), so the disk stays bounded by what retention needs.
fn compact_if_sparse(db: &mut Database, path: &Path) -> Result<()> {
    let used = {
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        stats.allocated_pages() * stats.page_size() as u64
    };
    let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if file <= used + used / 2 + COMPACT_SLACK {
        return Ok(());
    }
    let started = std::time::Instant::now();
    while db.compact()? {}
    let after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        before_bytes = file,
        after_bytes = after,
        in_use_bytes = used,
        millis = started.elapsed().as_millis() as u64,
        "compacted the database file"
    );
    Ok(())
}

/// Free space below which compaction is not worth a start-up pause.
const COMPACT_SLACK: u64 = 16 << 20;

/// Helpers that build databases in old or foreign layouts, for tests and fixtures.
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    use super::Result;

    /// Writes a schema-1 sled database (the first layout) into `dir`.
    pub fn write_v1_database(dir: &Path, events: u64, consumer: (&str, u64)) -> Result<()> {
        super::migrate::write_v1_fixture(dir, events, consumer)
    }

    /// Marks the database in `dir` as written by schema `version`.
    pub fn force_schema_version(dir: &Path, version: u32) -> Result<()> {
        super::migrate::force_version(dir, version)
    }
}
