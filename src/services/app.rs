//! The services the server is made of, built once over one store (see [`App::open_with`]), and
//! the shutdown signal. `app::serve` (the composition root) builds one and hands each transport
//! the services it uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, Settings};
use crate::services::control::{Hooks, Rules, RuntimeConfig};
use crate::services::logs::Logs;
use crate::services::nodes::Nodes;
use crate::services::telemetry::Telemetry;
use crate::services::tokens::Tokens;
use crate::store::{Store, StoreError, StoreOptions};

/// The services, each a cheap `Clone` handle.
#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    /// The outputs and drops logs, and their one write path.
    pub logs: Logs,
    pub pipeline: Pipeline,
    /// Versioned rules files and toggles.
    pub rules: Rules,
    /// Versioned runtime configuration.
    pub config: RuntimeConfig,
    /// What runs after every committed rules or configuration change.
    pub hooks: Hooks,
    /// The Falco nodes that send alerts, and the state of what is written for them.
    pub nodes: Arc<Nodes>,
    /// Counters and histograms, and `falco_events`.
    pub telemetry: Arc<Telemetry>,
    /// Console tokens and sessions.
    pub tokens: Arc<Tokens>,
    /// Cancelled when the server shuts down; every long-running stream watches it.
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
}

impl App {
    /// Opens the store in `data_dir` (creating the directory) and starts the log writers and the
    /// pipeline workers.
    pub fn open(data_dir: &Path, opts: &StoreOptions) -> Result<App, StoreError> {
        Self::open_with(data_dir, opts, Settings::default(), Telemetry::default())
    }

    pub fn open_with(
        data_dir: &Path,
        opts: &StoreOptions,
        settings: Settings,
        telemetry: Telemetry,
    ) -> Result<App, StoreError> {
        let store = Arc::new(Store::open(data_dir, opts)?);
        let tokens = Arc::new(Tokens::open(store.clone())?);
        let telemetry = Arc::new(telemetry);
        let nodes: Arc<Nodes> = Arc::default();
        let logs = Logs::start(
            store.clone(),
            nodes.clone(),
            telemetry.clone(),
            settings.drop_alerts,
            settings.output.hostname.clone(),
        );
        let pipeline = Pipeline::start(
            settings,
            logs.machine_hostname().to_string(),
            telemetry.eval_seconds.clone(),
        );
        let hooks = Hooks::default();
        Ok(App {
            rules: Rules::new(store.clone(), pipeline.clone(), hooks.clone()),
            config: RuntimeConfig::new(
                store.clone(),
                pipeline.clone(),
                logs.clone(),
                hooks.clone(),
            ),
            store,
            logs,
            pipeline,
            hooks,
            nodes,
            telemetry,
            tokens,
            shutdown: CancellationToken::new(),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The hostname alerts and notices carry now.
    pub fn current_hostname(&self) -> String {
        self.logs.hostname()
    }

    /// Ends the background work, in order: streams are told to end, the evaluation threads finish
    /// the batches they hold and stop, the log writers commit what they were given and stop, and
    /// consumer positions are committed. Call once serving has stopped.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.shutdown.cancel();
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.close()).await;
        self.logs.close().await?;
        // The hooks hold the services that hold them.
        self.hooks.clear();
        Ok(())
    }
}
