//! Opening the database file: converting a sled database left by an earlier version (schemas 1–5,
//! brought to 5 first), then running the steps in `migrations/` forward. A database whose recorded
//! schema is newer than this binary's is refused before anything is written to it.

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{Database, ReadTransaction, ReadableDatabase, TableError};

use super::tables::{self, META, SCHEMA_VERSION_KEY};
use super::{Result, StoreError};

#[path = "../../migrations/mod.rs"]
mod steps;

/// The database file in the data directory.
pub const DB_FILE: &str = "falco-api.redb";
/// The sled database directory of versions before schema 6.
pub const LEGACY_DIR: &str = "db";
/// Where a converted sled database is kept until the user removes it.
pub const LEGACY_KEPT: &str = "db.sled-old";
/// The redb file being written by a conversion; renamed to [`DB_FILE`] once complete.
const CONVERTING: &str = "falco-api.redb.converting";

/// The schema this binary writes.
pub const SCHEMA_VERSION: u32 = steps::SCHEMA_VERSION;

pub struct Opened {
    pub db: Database,
    pub path: PathBuf,
    pub legacy_kept: Option<PathBuf>,
}

/// Opens the database in `dir`, converting and migrating as needed.
pub fn open(dir: &Path, cache_bytes: u64) -> Result<Opened> {
    let path = dir.join(DB_FILE);
    let legacy = dir.join(LEGACY_DIR);
    let legacy_kept = if legacy.is_dir() {
        Some(convert_legacy(dir, &legacy, &path)?)
    } else {
        None
    };
    let db = open_db(dir, &path, cache_bytes)?;
    upgrade(&db, &path)?;
    Ok(Opened {
        db,
        path,
        legacy_kept,
    })
}

fn open_db(dir: &Path, path: &Path, cache_bytes: u64) -> Result<Database> {
    // A new database file is made 0600 here; redb would create it with the process's umask.
    match crate::base::files::create_new_private(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Exposed {
                path: path.to_path_buf(),
                message: format!("cannot create it: {e}"),
            })
        }
    }
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes as usize);
    match builder.create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(e) => Err(e.into()),
    }
}

pub fn recorded_version(txn: &ReadTransaction) -> Result<Option<u32>> {
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let version = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
    version
        .map(|v| {
            u32::try_from(v).map_err(|_| StoreError::Corrupt {
                tree: "meta".into(),
                message: format!("schema_version {v} is out of range"),
            })
        })
        .transpose()
}

/// Brings a redb database to [`SCHEMA_VERSION`] and makes sure every table exists.
fn upgrade(db: &Database, path: &Path) -> Result<()> {
    let found = recorded_version(&db.begin_read()?)?;
    if let Some(found) = found.filter(|f| *f > SCHEMA_VERSION) {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let found = found.unwrap_or(SCHEMA_VERSION);
    for step in steps::STEPS.iter().filter(|s| s.version > found) {
        tracing::info!(
            version = step.version,
            name = step.name,
            "migrating the database"
        );
        let txn = db.begin_write()?;
        (step.apply)(&txn).map_err(|message| StoreError::Migration {
            version: step.version,
            name: step.name,
            message,
        })?;
        txn.open_table(META)?
            .insert(SCHEMA_VERSION_KEY, u64::from(step.version))?;
        txn.commit()?;
    }
    let txn = db.begin_write()?;
    {
        txn.open_table(META)?
            .insert(SCHEMA_VERSION_KEY, u64::from(SCHEMA_VERSION))?;
        txn.open_table(tables::CONSUMERS)?;
        txn.open_table(tables::STATE)?;
        txn.open_table(tables::HISTORY)?;
        txn.open_table(tables::HISTORY_INDEX)?;
        txn.open_table(tables::RING_OUTPUTS)?;
        txn.open_table(tables::RING_DROPS)?;
        txn.open_table(tables::RING_OUTPUTS_TIMES)?;
        txn.open_table(tables::RING_DROPS_TIMES)?;
    }
    txn.commit()?;
    Ok(())
}

fn legacy_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Migration {
        version: steps::REDB_VERSION,
        name: steps::REDB_STEP_NAME,
        message: e.to_string(),
    }
}

/// Opens a sled database. sled takes an exclusive file lock, and its flusher thread can hold it
/// for a moment after the last handle is dropped, so a lock is waited for up to 2 s before it
/// is reported as another process's.
fn open_sled(path: &Path, dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(8 << 20)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(legacy_error(e)),
        }
    }
}

fn legacy_version(db: &sled::Db) -> Result<u32> {
    let meta = db.open_tree("meta").map_err(legacy_error)?;
    let Some(bytes) = meta.get(SCHEMA_VERSION_KEY).map_err(legacy_error)? else {
        return Ok(0);
    };
    let arr: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
        tree: "meta".into(),
        message: format!("schema_version has {} bytes, expected 4", bytes.len()),
    })?;
    Ok(u32::from_be_bytes(arr))
}

/// Converts the sled database in `legacy` into `path` (unless an earlier, interrupted start
/// already did), then moves `legacy` aside. Returns where it was kept.
fn convert_legacy(dir: &Path, legacy: &Path, path: &Path) -> Result<PathBuf> {
    // A conversion interrupted after its rename has its redb file already: only the sled
    // directory is left to set aside.
    if !path.exists() {
        convert_sled(dir, legacy, path)?;
    }
    let mut kept = dir.join(LEGACY_KEPT);
    let mut n = 1;
    while kept.exists() {
        n += 1;
        kept = dir.join(format!("{LEGACY_KEPT}.{n}"));
    }
    std::fs::rename(legacy, &kept).map_err(legacy_error)?;
    sync_dir(dir)?;
    tracing::warn!(
        database = %path.display(),
        kept = %kept.display(),
        "the sled database of an earlier falco-api was converted; it is kept until you remove it"
    );
    Ok(kept)
}

/// Brings the sled database to its last schema, then copies it into a new redb file beside it,
/// made durable and renamed into place at `path`.
fn convert_sled(dir: &Path, legacy: &Path, path: &Path) -> Result<()> {
    let sled = open_sled(legacy, dir)?;
    let found = legacy_version(&sled)?;
    if found >= steps::REDB_VERSION {
        return Err(StoreError::TooNew {
            path: legacy.to_path_buf(),
            found,
            supported: steps::REDB_VERSION - 1,
        });
    }
    upgrade_sled(&sled, found)?;
    let converting = dir.join(CONVERTING);
    match std::fs::remove_file(&converting) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(legacy_error(e)),
    }
    let copied = {
        let target = Database::create(&converting)?;
        steps::v6_redb::apply(&sled, &target).map_err(legacy_error)?
    };
    drop(sled);
    File::open(&converting)
        .and_then(|f| f.sync_all())
        .map_err(legacy_error)?;
    std::fs::rename(&converting, path).map_err(legacy_error)?;
    sync_dir(dir)?;
    tracing::info!(
        blocks = copied.blocks,
        consumers = copied.consumers,
        revisions = copied.revisions,
        states = copied.states,
        "converted the sled database to redb"
    );
    Ok(())
}

/// Runs the sled schema steps after version `found`, each recorded and flushed as it ends.
fn upgrade_sled(sled: &sled::Db, found: u32) -> Result<()> {
    let meta = sled.open_tree("meta").map_err(legacy_error)?;
    for step in &steps::LEGACY_STEPS[found as usize..] {
        tracing::info!(
            version = step.version,
            name = step.name,
            "migrating the sled database"
        );
        (step.apply)(sled).map_err(|message| StoreError::Migration {
            version: step.version,
            name: step.name,
            message,
        })?;
        meta.insert(SCHEMA_VERSION_KEY, &step.version.to_be_bytes())
            .map_err(legacy_error)?;
        sled.flush().map_err(legacy_error)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(legacy_error)
}

/// Writes a schema-1 sled database into `dir`, for the migration tests and for regenerating
/// `fixtures/db-v1`.
pub fn write_v1_fixture(dir: &Path, events: u64, consumer: (&str, u64)) -> Result<()> {
    let db = open_sled(&dir.join(LEGACY_DIR), dir)?;
    steps::write_v1_fixture(&db, events, consumer).map_err(|message| StoreError::Migration {
        version: 1,
        name: "fixture",
        message,
    })
}

/// Records `version` without running anything: only for tests of the refusal path.
pub fn force_version(dir: &Path, version: u32) -> Result<()> {
    let db = Database::create(dir.join(DB_FILE))?;
    let txn = db.begin_write()?;
    txn.open_table(META)?
        .insert(SCHEMA_VERSION_KEY, u64::from(version))?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file is born 0600: it is never, not even until the store tightens it, readable by
    /// others under a umask of 022 (as the tests run), and nothing warns about it.
    #[test]
    fn a_new_database_file_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), 1 << 20).unwrap();
        let mode = std::fs::metadata(&opened.path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn step_numbers_are_consecutive() {
        for (i, step) in steps::LEGACY_STEPS.iter().enumerate() {
            assert_eq!(
                step.version as usize,
                i + 1,
                "step {} is out of order",
                step.name
            );
        }
        assert_eq!(steps::REDB_VERSION as usize, steps::LEGACY_STEPS.len() + 1);
        for (i, step) in steps::STEPS.iter().enumerate() {
            assert_eq!(step.version, steps::REDB_VERSION + 1 + i as u32);
        }
        assert_eq!(
            SCHEMA_VERSION,
            steps::REDB_VERSION + steps::STEPS.len() as u32
        );
    }
}
