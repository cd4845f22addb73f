//! The running service's shared state: the store, the live logs, and the shutdown signal. A cheap
//! `Clone` handle, passed to every service.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::event::OutputEvent;
use crate::feed::Feed;
use crate::store::{Store, StoreError, StoreOptions};

#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    pub outputs: Feed<OutputEvent>,
    /// Cancelled when the server shuts down; every long-running stream watches it.
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    pub hostname: String,
}

impl App {
    /// Opens the store in `data_dir` (creating the directory) and starts the log writers.
    pub fn open(data_dir: &Path, opts: &StoreOptions) -> Result<App, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Sled(e.into()))?;
        let store = Arc::new(Store::open(data_dir, opts)?);
        let outputs = Feed::start("outputs", store.clone(), Store::outputs);
        Ok(App {
            store,
            outputs,
            shutdown: CancellationToken::new(),
            data_dir: data_dir.to_path_buf(),
            hostname: hostname(),
        })
    }
}

/// `FALCO_HOSTNAME` if set (as Falco does), else the kernel's host name.
pub fn hostname() -> String {
    if let Ok(name) = std::env::var("FALCO_HOSTNAME") {
        if !name.is_empty() {
            return name;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
