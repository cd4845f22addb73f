//! The running service's shared state: the store, the live logs, the rules in force, the
//! pipeline, and the shutdown signal. A cheap `Clone` handle, passed to every service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio_util::sync::CancellationToken;

use crate::event::{stage, DropRecord, OutputEvent, Priority};
use crate::feed::{Feed, FeedError};
use crate::pipeline::{Pipeline, Settings};
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::Telemetry;
use crate::throttle::{DropAlertSettings, TokenBucket};

/// Everything the running server derives from the effective configuration.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub pipeline: Settings,
    pub outputs_capacity: u64,
    pub drops_capacity: u64,
    /// Bytes each log retains at most.
    pub outputs_max_bytes: u64,
    pub drops_max_bytes: u64,
    /// Alerts per second stored (0: unlimited), and burst.
    pub outputs_rate: f64,
    pub outputs_max_burst: f64,
    pub log_level: String,
}

/// Changes the log filter; returns why it could not.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The alert limiter's (rate, burst) and bucket; `None` when unlimited.
type Limiter = Option<((f64, f64), TokenBucket)>;

pub const DROP_RULE: &str = "Falco internal: event drop";

#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    pub outputs: Feed<OutputEvent>,
    pub drops: Feed<DropRecord>,
    pub pipeline: Pipeline,
    /// Cancelled when the server shuts down; every long-running stream watches it.
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    /// The machine's hostname (or FALCO_HOSTNAME); the `hostname` config key overrides it.
    pub hostname: String,
    drop_alerts: Arc<Mutex<(DropAlertSettings, TokenBucket)>>,
    /// `outputs.rate` / `outputs.max_burst`: `None` when unlimited.
    alert_limiter: Arc<Mutex<Limiter>>,
    /// Runtime keys the boot file set.
    boot_values: Arc<RwLock<BTreeMap<String, String>>>,
    /// Changes the log filter when `log_level` changes (given by the binary; absent in tests).
    log_reloader: Arc<OnceLock<LogReloader>>,
    /// Rules changes take turns compiling (see `control::rules`).
    pub rules_writer: Arc<Mutex<()>>,
    /// The Falco nodes that send alerts, and the state of what is written for them.
    pub nodes: Arc<crate::nodes::Nodes>,
    /// Called after every committed change (see [`App::committed`]).
    after_commit: Arc<RwLock<Vec<CommitHook>>>,
    /// Counters and histograms, and `falco_events`.
    pub telemetry: Arc<Telemetry>,
    /// Console tokens and sessions.
    pub tokens: Arc<crate::tokens::Tokens>,
    /// Set when this node's rules follow a fleet publisher (then local rules writes are refused).
    rules_publisher: Arc<RwLock<Option<String>>>,
    /// The outputs log's head when opened: alerts up to it were stored before this process and
    /// are counted by [`App::rebuild_counts`], later ones as they are stored.
    opened_at: u64,
}

/// Where `falco_events` counts are saved.
const SAVED_EVENTS: &str = "falco_events";

/// What was committed: a rules change or a configuration change, at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    Rules(u64),
    Config(u64),
}

/// Runs after a committed change; returns problems to report to the caller (the change stays).
pub type CommitHook = Box<dyn Fn(&App, Committed) -> Vec<String> + Send + Sync>;

/// A drop being recorded: await [`Recording::done`] to know it is in the drops log (dropping
/// it lets the recording go on).
pub struct Recording(Option<tokio::task::JoinHandle<()>>);

impl Recording {
    pub async fn done(self) {
        if let Some(task) = self.0 {
            let _ = task.await;
        }
    }
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
        let tokens = Arc::new(crate::tokens::Tokens::open(store.clone())?);
        let telemetry = Arc::new(telemetry);
        let outputs = Feed::start_observed(
            "outputs",
            store.clone(),
            Store::outputs,
            Some(telemetry.outputs_observer()),
        );
        let t = telemetry.clone();
        let drops = Feed::start_observed(
            "drops",
            store.clone(),
            Store::drops,
            Some(Box::new(move |drops, _, took| {
                t.drops_committed(drops, took)
            })),
        );
        let opened_at = outputs.head();
        let hostname = hostname();
        let alerts = settings.drop_alerts;
        let pipeline = Pipeline::start(settings, hostname.clone(), telemetry.eval_seconds.clone());
        Ok(App {
            store,
            outputs,
            drops,
            pipeline,
            shutdown: CancellationToken::new(),
            data_dir: data_dir.to_path_buf(),
            hostname,
            drop_alerts: Arc::new(Mutex::new((
                alerts,
                TokenBucket::new(alerts.rate, alerts.max_burst),
            ))),
            alert_limiter: Arc::new(Mutex::new(None)),
            boot_values: Arc::default(),
            log_reloader: Arc::default(),
            rules_writer: Arc::default(),
            nodes: Arc::default(),
            after_commit: Arc::default(),
            telemetry,
            tokens,
            rules_publisher: Arc::default(),
            opened_at,
        })
    }

    /// Counts the alerts stored before this process into `falco_events` (from the saved counts
    /// and the alerts after them) and into [`App::nodes`]; then `falco_events` is ready. Blocks
    /// (reads the log): run it off the async runtime.
    pub fn rebuild_counts(&self) {
        let events = &self.telemetry.events;
        let ring = self.store.outputs();
        let saved = match self.store.saved(SAVED_EVENTS) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saved falco_events counts; counting the log");
                None
            }
        };
        // Saved counts past the head (a log restored from an older copy) cannot be used.
        let counted_to = match saved {
            Some(bytes) => match crate::telemetry::saved_upto(&bytes) {
                Some(upto) if upto <= self.opened_at => events.restore(&bytes).unwrap_or(0),
                _ => 0,
            },
            None => 0,
        };
        let mut after = 0;
        loop {
            let batch = match ring.read(after, self.opened_at, 4096) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outputs log to rebuild its counts");
                    break;
                }
            };
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = *last;
            let fresh: Vec<OutputEvent> = batch
                .into_iter()
                .map(|(seq, ev)| {
                    self.nodes.observe(&ev);
                    (seq, ev)
                })
                .filter(|(seq, _)| *seq > counted_to)
                .map(|(_, ev)| ev)
                .collect();
            events.count(&fresh);
        }
        events.set_ready(self.opened_at);
    }

    /// Saves the `falco_events` counts when they changed (blocks; off the runtime).
    pub fn save_counts(&self) {
        if let Some(bytes) = self.telemetry.events.save() {
            if let Err(e) = self.store.save(SAVED_EVENTS, &bytes) {
                tracing::warn!(error = %e, "cannot save the falco_events counts");
            }
        }
    }

    /// Who publishes this node's rules, when they follow a fleet.
    pub fn rules_publisher(&self) -> Option<String> {
        self.rules_publisher
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_rules_publisher(&self, publisher: Option<String>) {
        *self
            .rules_publisher
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = publisher;
    }

    /// Adds to what runs after every committed change.
    pub fn set_commit_hook(&self, hook: CommitHook) {
        self.after_commit
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    /// Tells the commit hook about a durable change; returns what it reports.
    pub fn committed(&self, what: Committed) -> Vec<String> {
        self.after_commit
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .flat_map(|hook| hook(self, what))
            .collect()
    }

    /// Lets `log_level` changes reach the process's log filter.
    pub fn set_log_reloader(&self, f: LogReloader) {
        let _ = self.log_reloader.set(f);
    }

    /// Ends the background work, in order: streams are told to end, the evaluation threads finish
    /// the batches they hold and stop, the log writers commit what they were given and stop, and
    /// consumer positions are committed. Call once serving has stopped.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.shutdown.cancel();
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.close()).await;
        self.outputs.close().await;
        self.drops.close().await;
        let app = self.clone();
        let _ = tokio::task::spawn_blocking(move || app.save_counts()).await;
        self.store.flush()
    }

    pub fn boot_values(&self) -> BTreeMap<String, String> {
        self.boot_values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_boot_values(&self, values: BTreeMap<String, String>) {
        *self
            .boot_values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = values;
    }

    /// The hostname alerts and notices carry now.
    pub fn current_hostname(&self) -> String {
        let configured = self.pipeline.settings().output.hostname;
        if configured.is_empty() {
            self.hostname.clone()
        } else {
            configured
        }
    }

    /// Applies runtime settings live.
    pub fn apply_runtime(&self, r: Runtime) {
        self.pipeline.update(r.pipeline.clone());
        self.store.outputs().set_capacity(r.outputs_capacity);
        self.store.drops().set_capacity(r.drops_capacity);
        self.store.outputs().set_max_bytes(r.outputs_max_bytes);
        self.store.drops().set_max_bytes(r.drops_max_bytes);
        {
            let mut guard = self
                .drop_alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let a = r.pipeline.drop_alerts;
            if guard.0 != a {
                *guard = (a, TokenBucket::new(a.rate, a.max_burst));
            }
        }
        {
            let mut guard = self
                .alert_limiter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let wanted = (r.outputs_rate > 0.0).then_some((r.outputs_rate, r.outputs_max_burst));
            let same = guard.as_ref().map(|(p, _)| *p) == wanted;
            if !same {
                *guard = wanted.map(|(rate, burst)| ((rate, burst), TokenBucket::new(rate, burst)));
            }
        }
        if let Some(reload) = self.log_reloader.get() {
            if let Err(e) = reload(&r.log_level) {
                tracing::warn!(error = %e, "cannot change the log level");
            }
        }
    }

    /// Appends alerts to the outputs log through the `outputs.rate` limiter; what the limiter
    /// refuses is counted as a drop. Returns the seqs of the stored alerts.
    pub async fn commit_alerts(
        &self,
        events: Vec<OutputEvent>,
        source: &str,
        client: &str,
    ) -> Result<std::ops::Range<u64>, FeedError> {
        self.commit_alerts_marked(events, source, client, Vec::new())
            .await
    }

    /// [`App::commit_alerts`], setting `marks` in the same durable transaction (see
    /// [`Feed::append_marked`]); the marks are committed even when every alert is refused.
    pub async fn commit_alerts_marked(
        &self,
        mut events: Vec<OutputEvent>,
        source: &str,
        client: &str,
        marks: Vec<(String, u64)>,
    ) -> Result<std::ops::Range<u64>, FeedError> {
        if events.is_empty() && marks.is_empty() {
            return Ok(0..0);
        }
        let kept = {
            let mut guard = self
                .alert_limiter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.as_mut() {
                None => events.len(),
                Some((_, bucket)) => (0..events.len()).take_while(|_| bucket.take(1.0)).count(),
            }
        };
        let dropped = (events.len() - kept) as u64;
        if dropped > 0 {
            events.truncate(kept);
            self.record_drop(DropRecord::now(
                stage::OUTPUTS_RATE_LIMITED,
                source,
                client,
                dropped,
                dropped + kept as u64,
                "alerts over outputs.rate were not stored".into(),
            ));
        }
        if events.is_empty() && marks.is_empty() {
            return Ok(0..0);
        }
        self.outputs.append_marked(events, marks).await
    }

    /// Records a loss in the drops log, and mirrors it into the outputs log as an internal alert
    /// when the drop-alert threshold and rate allow. Never blocks the caller's runtime thread.
    pub fn record_drop(&self, record: DropRecord) -> Recording {
        let alert = self.drop_alert(&record);
        let drops = self.drops.clone();
        let outputs = self.outputs.clone();
        let work = async move {
            if let Err(e) = drops.append(vec![record]).await {
                tracing::error!(error = %e, "cannot record a drop");
            }
            if let Some(alert) = alert {
                if let Err(e) = outputs.append(vec![alert]).await {
                    tracing::error!(error = %e, "cannot record a drop alert");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => Recording(Some(handle.spawn(work))),
            Err(_) => {
                tracing::error!(
                    "record_drop called outside the runtime; the drop was not recorded"
                );
                Recording(None)
            }
        }
    }

    fn drop_alert(&self, d: &DropRecord) -> Option<OutputEvent> {
        let mut guard = self
            .drop_alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (settings, bucket) = &mut *guard;
        let ratio = if d.n_evts == 0 {
            1.0
        } else {
            d.n_drops as f64 / d.n_evts as f64
        };
        if ratio <= settings.threshold || !bucket.take(1.0) {
            return None;
        }
        let line = crate::engine::format::alert_line(
            d.time_ns,
            Priority::Debug,
            &format!(
                "{DROP_RULE}. {} events dropped at {} ({})",
                d.n_drops, d.stage, d.message
            ),
            false,
        );
        Some(
            OutputEvent::new(d.time_ns, Priority::Debug, DROP_RULE, line, "internal")
                .with_origin(crate::event::Origin::Internal)
                .with_fields([
                    ("n_drops", d.n_drops.to_string()),
                    ("n_evts", d.n_evts.to_string()),
                    ("stage", d.stage.clone()),
                    ("source", d.source.clone()),
                    ("client", d.client.clone()),
                ])
                .with_hostname(self.current_hostname()),
        )
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
