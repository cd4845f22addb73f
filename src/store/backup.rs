//! Online backup and restore. A backup is a point-in-time copy of the whole database — both logs
//! with their block stamps and oldest seqs, rules files, toggles and config with their history,
//! consumer positions, console tokens and saved counters — taken from one read transaction, which
//! is a snapshot in redb: appends and changes go on while it is copied, and none of them is in
//! it. The copy is a redb file of its own (the format the server opens), written in batches and
//! made durable by its final commit. Restore checks such a file and installs it as the database of
//! a new data directory.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError, TableHandle, Value,
};

use super::migrate::{self, DB_FILE, SCHEMA_VERSION};
use super::ring::read_bounds;
use super::tables::{self, META, REVISION_KEY};
use super::{private, Bounds, Result, StoreError};

/// Temporary copies the server makes while streaming a backup are named `backup-<uuid>` plus
/// this, in the data directory.
const SCRATCH_SUFFIX: &str = ".redb.partial";

/// A new name for the temporary copy of a backup in the data directory `dir`.
pub fn scratch_path(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("backup-{}{SCRATCH_SUFFIX}", uuid::Uuid::now_v7()))
}

/// Removes temporary backup copies a server killed during a backup left in `dir`; returns how
/// many went. Run at open, before anything can start a backup.
pub(super) fn remove_scratch(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("backup-")
            && name.ends_with(SCRATCH_SUFFIX)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Entries copied per commit of the copy at most, so a large store never sits in one
/// transaction's memory.
const BATCH: usize = 1024;
/// Bytes copied per commit at most.
const BATCH_BYTES: usize = 1 << 20;
/// The copy's page cache. Its commits are not durable, so what they write waits in redb's write
/// buffer (half of this) and then in the kernel's page cache; a small buffer keeps the pages
/// moving on to the kernel, and [`Pace`] has the kernel write them out as the copy goes.
const COPY_CACHE: usize = 8 << 20;
/// Bytes of entries copied between two requests that the kernel write the copy's dirty pages
/// out (and drop them from its cache). Without them one final fsync of a whole 570 MB copy
/// stalled the server's own commits (appends at 10k/s) for 200 ms. Appends at 10k/s during a
/// backup of a 1.1 GB store (`bench log --backup-rate`), p99: 21.4 ms with a durable commit per
/// MiB, 12.3 ms with this every 4 MiB, 10.3 ms every MiB.
const WRITEBACK_BYTES: u64 = 1 << 20;
/// Bytes of entries per second a backup copies at most, so that it leaves the disk and a core to
/// the server's own commits.
const BACKUP_RATE: u64 = 128 << 20;

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub schema_version: u32,
    pub outputs: Bounds,
    pub drops: Bounds,
    /// The global rules/config revision.
    pub revision: u64,
    /// Named consumers (both logs).
    pub consumers: u64,
    /// The backup file's size.
    pub bytes: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = |b: &Bounds| {
            if b.is_empty() {
                format!("empty (last seq {})", b.newest)
            } else {
                format!("seq {}..{} ({} records)", b.oldest, b.newest, b.len())
            }
        };
        writeln!(f, "outputs log:  {}", log(&self.outputs))?;
        writeln!(f, "drops log:    {}", log(&self.drops))?;
        writeln!(f, "revision:     {} (rules and config)", self.revision)?;
        writeln!(f, "consumers:    {}", self.consumers)?;
        writeln!(f, "schema:       {}", self.schema_version)?;
        write!(f, "size:         {} bytes", self.bytes)
    }
}

fn backup_error(message: impl fmt::Display) -> StoreError {
    StoreError::Backup(message.to_string())
}

/// Copies the table `def` of `snap` into `out` in commits of at most [`BATCH`] entries and
/// [`BATCH_BYTES`], not durable: the copy's last commit makes it durable. A table the snapshot
/// does not have is skipped.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    snap: &ReadTransaction,
    out: &Database,
    def: TableDefinition<K, V>,
    pace: &mut Pace,
) -> Result<()> {
    let source = match snap.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut items = source.iter()?;
    loop {
        let mut txn = out.begin_write()?;
        txn.set_durability(Durability::None)?;
        let (mut copied, mut bytes) = (0, 0);
        let mut full = false;
        {
            let mut table = txn.open_table(def)?;
            for item in items.by_ref() {
                let (k, v) = item?;
                bytes += K::as_bytes(&k.value()).as_ref().len();
                bytes += V::as_bytes(&v.value()).as_ref().len();
                table.insert(k.value(), v.value())?;
                copied += 1;
                if copied == BATCH || bytes >= BATCH_BYTES {
                    full = true;
                    break;
                }
            }
        }
        txn.commit()?;
        pace.copied(bytes as u64);
        if !full {
            return Ok(());
        }
    }
}

/// Keeps the copy under [`BACKUP_RATE`], sleeping between commits when it runs ahead, and has
/// the kernel write the copy out every [`WRITEBACK_BYTES`].
struct Pace<'f> {
    file: &'f std::fs::File,
    started: std::time::Instant,
    bytes: u64,
    written_back: u64,
}

impl<'f> Pace<'f> {
    fn new(file: &'f std::fs::File) -> Self {
        Pace {
            file,
            started: std::time::Instant::now(),
            bytes: 0,
            written_back: 0,
        }
    }

    fn copied(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.bytes - self.written_back >= WRITEBACK_BYTES {
            self.written_back = self.bytes;
            // POSIX_FADV_DONTNEED starts the writeback of the file's dirty pages without waiting
            // for it (nor for a journal commit, as an fsync would) and drops the clean ones. Only
            // advice: if it fails, the final commit's fsync writes what is left.
            let _ = rustix::fs::fadvise(self.file, 0, None, rustix::fs::Advice::DontNeed);
        }
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / BACKUP_RATE as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Every table of the database, copied from one snapshot. A table not named here fails the
/// backup instead of being left out of it.
fn copy_all(snap: &ReadTransaction, out: &Database, file: &std::fs::File) -> Result<()> {
    let known = [
        META.name(),
        tables::CONSUMERS.name(),
        tables::STATE.name(),
        tables::SAVED.name(),
        tables::HISTORY.name(),
        tables::HISTORY_INDEX.name(),
        tables::RING_OUTPUTS.name(),
        tables::RING_DROPS.name(),
        tables::RING_OUTPUTS_TIMES.name(),
        tables::RING_DROPS_TIMES.name(),
    ];
    for table in snap.list_tables()? {
        if !known.contains(&table.name()) {
            return Err(backup_error(format!(
                "the database has a table this binary does not know how to copy: {}",
                table.name()
            )));
        }
    }
    let mut pace = Pace::new(file);
    copy_table(snap, out, META, &mut pace)?;
    copy_table(snap, out, tables::CONSUMERS, &mut pace)?;
    copy_table(snap, out, tables::STATE, &mut pace)?;
    copy_table(snap, out, tables::SAVED, &mut pace)?;
    copy_table(snap, out, tables::HISTORY, &mut pace)?;
    copy_table(snap, out, tables::HISTORY_INDEX, &mut pace)?;
    copy_table(snap, out, tables::RING_OUTPUTS, &mut pace)?;
    copy_table(snap, out, tables::RING_DROPS, &mut pace)?;
    copy_table(snap, out, tables::RING_OUTPUTS_TIMES, &mut pace)?;
    copy_table(snap, out, tables::RING_DROPS_TIMES, &mut pace)?;
    // The one durable commit: everything copied reaches the disk, most of it already written out.
    let mut txn = out.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// Writes a backup of `db` (as of now) to the new file `dest` (mode 0600), durably.
pub(super) fn write(db: &Database, dest: &Path) -> Result<Summary> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| backup_error(format!("cannot create {}: {e}", dest.display())))?;
    let snap = db.begin_read()?;
    let written = (|| {
        let out = Database::builder()
            .set_cache_size(COPY_CACHE)
            .create(dest)?;
        copy_all(&snap, &out, &file)?;
        drop(out);
        sync_parent(dest)?;
        summarize(dest)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    written
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| backup_error(format!("cannot sync {}: {e}", parent.display())))
}

/// What the backup (or database) file at `path` holds; refuses one that is not a falco-api
/// database or is newer than this binary.
pub fn summarize(path: &Path) -> Result<Summary> {
    let db = Database::builder()
        .create(path)
        .map_err(|e| backup_error(format!("{} is not a falco-api backup: {e}", path.display())))?;
    let txn = db.begin_read()?;
    let schema_version = migrate::recorded_version(&txn)?
        .ok_or_else(|| backup_error(format!("{} holds no falco-api schema", path.display())))?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let revision = txn
        .open_table(META)?
        .get(REVISION_KEY)?
        .map_or(0, |v| v.value());
    let consumers = match txn.open_table(tables::CONSUMERS) {
        Ok(t) => t.len()?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    drop(txn);
    let outputs = read_bounds(&db, tables::RING_OUTPUTS)?;
    let drops = read_bounds(&db, tables::RING_DROPS)?;
    drop(db);
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(Summary {
        schema_version,
        outputs,
        drops,
        revision,
        consumers,
        bytes,
    })
}

/// Makes the data directory `dir` (created 0700, or an existing empty one) from the backup
/// `file`; refuses a directory that holds anything. The database is written beside its final
/// name and renamed into place once complete and synced.
pub fn restore(file: &Path, dir: &Path) -> Result<Summary> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(backup_error(format!(
                "{} is not empty: restore only makes a new data directory (nothing was changed)",
                dir.display()
            )));
        }
    }
    let summary = summarize(file)?;
    private::dir(dir, 0o700, None)?;
    let partial = dir.join(format!("{DB_FILE}.restoring"));
    let copied = (|| -> std::io::Result<()> {
        let mut source = std::fs::File::open(file)?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        std::io::copy(&mut source, &mut target)?;
        target.flush()?;
        target.sync_all()?;
        std::fs::rename(&partial, dir.join(DB_FILE))
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(backup_error(format!("cannot write {}: {e}", dir.display())));
    }
    sync_parent(&dir.join(DB_FILE))?;
    Ok(summary)
}
