//! Free space kept in reserve. redb stops accepting writes after a failed write to its file (the
//! database must be reopened), and a failed read of its file fails every later one, so the store
//! never lets a write reach a full disk: each write transaction first checks that the data
//! directory's filesystem has at least the reserve free, and is refused with
//! [`StoreError::NoSpace`] otherwise. Reads never check. Writes resume by themselves once space
//! is freed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Result, StoreError};

/// How long a free-space reading is trusted (writes come in bursts; statvfs is cheap but not
/// free).
const FRESH: Duration = Duration::from_millis(50);

pub struct Reserve {
    dir: PathBuf,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl Reserve {
    pub fn new(dir: &Path, min_free: u64) -> Reserve {
        Reserve {
            dir: dir.to_path_buf(),
            min_free,
            last: Mutex::new(None),
        }
    }

    fn free_bytes(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, free)) = *last {
            if at.elapsed() < FRESH {
                return Some(free);
            }
        }
        let stat = rustix::fs::statvfs(&self.dir).ok()?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        tracing::debug!(dir = %self.dir.display(), free, min = self.min_free, "free space");
        *last = Some((Instant::now(), free));
        Some(free)
    }

    /// Refuses a write while less than the reserve is free.
    pub fn check(&self) -> Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        match self.free_bytes() {
            Some(free) if free < self.min_free => Err(StoreError::NoSpace(format!(
                "the filesystem of the data directory {} has {} KiB free, less than the {} KiB \
                 kept in reserve (min_free_bytes); writes are refused until space is freed, \
                 reads go on",
                self.dir.display(),
                free >> 10,
                self.min_free >> 10
            ))),
            _ => Ok(()),
        }
    }
}
