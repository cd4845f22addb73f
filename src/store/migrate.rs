//! Runs the steps in `migrations/` forward at open. A database whose recorded schema is newer than
//! this binary's is refused before anything is written to it.

use std::path::Path;

use super::{Result, StoreError};

#[path = "../../migrations/mod.rs"]
mod steps;

pub use steps::write_v1_fixture;

pub const META_TREE: &str = "meta";
const VERSION_KEY: &str = "schema_version";

/// The schema this binary writes.
pub const SCHEMA_VERSION: u32 = steps::STEPS.len() as u32;

/// Records `version` without running anything: only for tests of the refusal path.
pub fn force_version(db: &sled::Db, version: u32) -> Result<()> {
    db.open_tree(META_TREE)?
        .insert(VERSION_KEY, &version.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

pub fn recorded_version(meta: &sled::Tree) -> Result<Option<u32>> {
    let Some(bytes) = meta.get(VERSION_KEY)? else {
        return Ok(None);
    };
    let arr: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
        tree: META_TREE.into(),
        message: format!("schema_version has {} bytes, expected 4", bytes.len()),
    })?;
    Ok(Some(u32::from_be_bytes(arr)))
}

/// Brings the database to [`SCHEMA_VERSION`]. Returns the version it found.
pub fn run(db: &sled::Db, path: &Path) -> Result<u32> {
    let meta = db.open_tree(META_TREE)?;
    let found = recorded_version(&meta)?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for step in &steps::STEPS[found as usize..] {
        tracing::info!(
            version = step.version,
            name = step.name,
            "migrating the database"
        );
        (step.apply)(db).map_err(|message| StoreError::Migration {
            version: step.version,
            name: step.name,
            message,
        })?;
        meta.insert(VERSION_KEY, &step.version.to_be_bytes())?;
        db.flush()?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_numbers_are_consecutive() {
        for (i, step) in steps::STEPS.iter().enumerate() {
            assert_eq!(
                step.version as usize,
                i + 1,
                "step {} is out of order",
                step.name
            );
        }
    }
}
