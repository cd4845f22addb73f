//! The data directory is its owner's alone: created 0700 (0750 when the socket's group must reach
//! the socket inside it), the database file 0600. A directory or file found looser at start is
//! tightened, with a warning; one that cannot be tightened stops the server with the reason.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::{Result, StoreError};

/// Creates `dir` with `mode` (and group `gid`), or tightens an existing one to it.
pub fn dir(dir: &Path, mode: u32, gid: Option<u32>) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| exposed(dir, format!("cannot create it: {e}")))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| exposed(dir, e.to_string()))?;
    if !meta.is_dir() {
        return Err(exposed(dir, "it is not a directory".into()));
    }
    if let Some(gid) = gid {
        if meta.gid() != gid {
            std::os::unix::fs::chown(dir, None, Some(gid))
                .map_err(|e| exposed(dir, format!("cannot give it to group {gid}: {e}")))?;
        }
    }
    tighten(dir, meta.mode(), mode)
}

/// Makes `file` readable by its owner only (if it exists).
pub fn file(file: &Path) -> Result<()> {
    match std::fs::metadata(file) {
        Ok(meta) => tighten(file, meta.mode(), 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(exposed(file, e.to_string())),
    }
}

/// Removes every permission bit of `path` beyond `allowed`.
fn tighten(path: &Path, found: u32, allowed: u32) -> Result<()> {
    let bits = found & 0o777;
    if bits & !allowed == 0 {
        return Ok(());
    }
    let wanted = bits & allowed;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).map_err(|e| {
        exposed(
            path,
            format!(
                "its mode {bits:04o} lets other users read it, and it cannot be changed to {wanted:04o}: {e}"
            ),
        )
    })?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{bits:04o}"),
        now = format!("{wanted:04o}"),
        "tightened the permissions of the data directory (other users could read the database)"
    );
    Ok(())
}

fn exposed(path: &Path, message: String) -> StoreError {
    StoreError::Exposed {
        path: path.to_path_buf(),
        message,
    }
}
