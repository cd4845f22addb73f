//! The outputs and drops logs as one service: their feeds, the one write path every origin takes
//! (with the policy each origin gets written down in [`Writer::policy`]), the server's own losses
//! ([`Logs::record_drop`], mirrored as internal alerts), the `falco_events` counts kept across
//! restarts, and the live limits (`outputs.rate`, capacities, byte budgets, drop alerts).

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::base::event::{stage, DropRecord, Origin, OutputEvent, Priority};
use crate::base::throttle::{DropAlertSettings, TokenBucket};
use crate::feed::{Feed, FeedError};
use crate::services::nodes::Nodes;
use crate::services::telemetry::Telemetry;
use crate::store::{Store, StoreError};

/// The rule name of the internal alerts that mirror drops.
pub const DROP_RULE: &str = "Falco internal: event drop";

/// Where `falco_events` counts are saved.
const SAVED_EVENTS: &str = "falco_events";

/// Who writes into the logs; each gets the policy [`Writer::policy`] states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Events evaluated here (`falco.inputs`, the audit webhook).
    Ingest,
    /// Falco's own alerts (its http_output, `send --alerts`).
    Falco,
    /// Records another falco-api node already stored, collected from the fleet stream.
    Fleet,
}

/// What the write path does for one [`Writer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Alerts pass the `outputs.rate` limiter (what it refuses is a drop of this server's).
    pub rate_limit: bool,
    /// Drops in the batch are mirrored as internal alerts (they are this server's own losses);
    /// otherwise they are stored as reported (the sender already alerted on them).
    pub mirror_drops: bool,
    /// The alerts' hostnames are counted as Falco nodes.
    pub track_nodes: bool,
}

impl Writer {
    pub const fn policy(self) -> Policy {
        match self {
            Writer::Ingest => Policy {
                rate_limit: true,
                mirror_drops: true,
                track_nodes: false,
            },
            Writer::Falco => Policy {
                rate_limit: true,
                mirror_drops: false,
                track_nodes: true,
            },
            // Limited and mirrored where they were first stored; counted by the node they name.
            Writer::Fleet => Policy {
                rate_limit: false,
                mirror_drops: false,
                track_nodes: true,
            },
        }
    }
}

/// One write: alerts and drops, with marks set in the same durable transaction as each.
#[derive(Default)]
pub struct Batch {
    pub alerts: Vec<OutputEvent>,
    pub drops: Vec<DropRecord>,
    /// Marks committed with the alerts (even when every alert is refused).
    pub alert_marks: Vec<(String, u64)>,
    /// Marks committed with the drops.
    pub drop_marks: Vec<(String, u64)>,
}

impl Batch {
    pub fn alerts(alerts: Vec<OutputEvent>) -> Batch {
        Batch {
            alerts,
            ..Batch::default()
        }
    }
}

/// What [`Logs::write`] stored, durable when it returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The outputs-log seqs of the stored alerts.
    pub seqs: Range<u64>,
    /// The drop records stored from the batch.
    pub drops: u64,
}

/// The live limits of the logs (from the runtime configuration).
#[derive(Clone, Debug)]
pub struct Limits {
    pub outputs_capacity: u64,
    pub drops_capacity: u64,
    pub outputs_max_bytes: u64,
    pub drops_max_bytes: u64,
    /// Seconds each log keeps a record (0: no age limit).
    pub outputs_max_age_secs: u64,
    pub drops_max_age_secs: u64,
    /// Alerts per second stored (0: unlimited), and burst.
    pub outputs_rate: f64,
    pub outputs_max_burst: f64,
    pub drop_alerts: DropAlertSettings,
    /// The configured hostname (empty: the machine's).
    pub hostname: String,
}

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

/// The alert limiter's (rate, burst) and bucket; `None` when unlimited.
type Limiter = Option<((f64, f64), TokenBucket)>;

/// The logs; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    pub outputs: Feed<OutputEvent>,
    pub drops: Feed<DropRecord>,
    store: Arc<Store>,
    nodes: Arc<Nodes>,
    telemetry: Arc<Telemetry>,
    drop_alerts: Arc<Mutex<(DropAlertSettings, TokenBucket)>>,
    alert_limiter: Arc<Mutex<Limiter>>,
    /// The machine's hostname (or FALCO_HOSTNAME), and the configured one (empty: none).
    machine_hostname: String,
    configured_hostname: Arc<RwLock<String>>,
    /// The outputs log's head when opened: alerts up to it were stored before this process and
    /// are counted by [`Logs::rebuild_counts`], later ones as they are stored.
    opened_at: u64,
}

impl Logs {
    /// The named consumers' acknowledged positions in both logs.
    pub fn consumers(&self) -> &crate::store::Consumers {
        self.store.consumers()
    }

    /// The stored outputs log, for reads (writes go through [`Logs::write`]).
    pub fn outputs_log(&self) -> &crate::store::RingLog<OutputEvent> {
        self.store.outputs()
    }

    /// The stored drops log, for reads.
    pub fn drops_log(&self) -> &crate::store::RingLog<DropRecord> {
        self.store.drops()
    }

    /// Starts the two log writers over `store`.
    pub fn start(
        store: Arc<Store>,
        nodes: Arc<Nodes>,
        telemetry: Arc<Telemetry>,
        drop_alerts: DropAlertSettings,
        configured_hostname: String,
    ) -> Logs {
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
        Logs {
            outputs,
            drops,
            store,
            nodes,
            telemetry,
            drop_alerts: Arc::new(Mutex::new((
                drop_alerts,
                TokenBucket::new(drop_alerts.rate, drop_alerts.max_burst),
            ))),
            alert_limiter: Arc::new(Mutex::new(None)),
            machine_hostname: crate::base::hostname(),
            configured_hostname: Arc::new(RwLock::new(configured_hostname)),
            opened_at,
        }
    }

    /// The hostname alerts and notices carry now.
    pub fn hostname(&self) -> String {
        let configured = self
            .configured_hostname
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if configured.is_empty() {
            self.machine_hostname.clone()
        } else {
            configured.clone()
        }
    }

    /// The machine's hostname (or FALCO_HOSTNAME), whatever is configured.
    pub fn machine_hostname(&self) -> &str {
        &self.machine_hostname
    }

    /// Trims records that outlived their log's age limit (see `RingLog::expire`).
    pub fn expire(&self) {
        let outputs = self.store.outputs();
        let drops = self.store.drops();
        for (name, result) in [
            (
                "outputs",
                (outputs.max_age_ns() > 0).then(|| outputs.expire()),
            ),
            ("drops", (drops.max_age_ns() > 0).then(|| drops.expire())),
        ] {
            if let Some(Err(e)) = result {
                tracing::error!(log = name, error = %e, "expiring old records failed");
            }
        }
    }

    /// Applies the live limits.
    pub fn apply(&self, l: &Limits) {
        self.store.outputs().set_capacity(l.outputs_capacity);
        self.store.drops().set_capacity(l.drops_capacity);
        self.store.outputs().set_max_bytes(l.outputs_max_bytes);
        self.store.drops().set_max_bytes(l.drops_max_bytes);
        let ns = |secs: u64| secs.saturating_mul(1_000_000_000);
        self.store
            .outputs()
            .set_max_age_ns(ns(l.outputs_max_age_secs));
        self.store.drops().set_max_age_ns(ns(l.drops_max_age_secs));
        {
            let mut guard = self
                .drop_alerts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let a = l.drop_alerts;
            if guard.0 != a {
                *guard = (a, TokenBucket::new(a.rate, a.max_burst));
            }
        }
        {
            let mut guard = self
                .alert_limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let wanted = (l.outputs_rate > 0.0).then_some((l.outputs_rate, l.outputs_max_burst));
            if guard.as_ref().map(|(p, _)| *p) != wanted {
                *guard = wanted.map(|(rate, burst)| ((rate, burst), TokenBucket::new(rate, burst)));
            }
        }
        *self
            .configured_hostname
            .write()
            .unwrap_or_else(PoisonError::into_inner) = l.hostname.clone();
    }

    /// The one write path: stores `batch` from `from` under its [`Policy`]; durable when this
    /// returns. Drops first, then alerts (a drop alert precedes the alerts that survived it).
    pub async fn write(
        &self,
        from: Writer,
        batch: Batch,
        source: &str,
        client: &str,
    ) -> Result<Written, FeedError> {
        let policy = from.policy();
        let Batch {
            mut alerts,
            drops,
            alert_marks,
            drop_marks,
        } = batch;
        let n_drops = drops.len() as u64;
        if policy.mirror_drops {
            for d in drops {
                self.record_drop(d).done().await;
            }
            if !drop_marks.is_empty() {
                self.drops.append_marked(Vec::new(), drop_marks).await?;
            }
        } else if !drops.is_empty() || !drop_marks.is_empty() {
            self.drops.append_marked(drops, drop_marks).await?;
        }
        if policy.track_nodes {
            for e in &alerts {
                self.nodes.observe(e);
            }
        }
        if policy.rate_limit {
            self.limit(&mut alerts, source, client);
        }
        let seqs = if alerts.is_empty() && alert_marks.is_empty() {
            0..0
        } else {
            self.outputs.append_marked(alerts, alert_marks).await?
        };
        Ok(Written {
            seqs,
            drops: n_drops,
        })
    }

    /// Keeps the alerts the `outputs.rate` limiter allows; records the rest as a drop.
    fn limit(&self, alerts: &mut Vec<OutputEvent>, source: &str, client: &str) {
        let kept = {
            let mut guard = self
                .alert_limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut() {
                None => alerts.len(),
                Some((_, bucket)) => (0..alerts.len()).take_while(|_| bucket.take(1.0)).count(),
            }
        };
        let dropped = (alerts.len() - kept) as u64;
        if dropped > 0 {
            alerts.truncate(kept);
            self.record_drop(DropRecord::now(
                stage::OUTPUTS_RATE_LIMITED,
                source,
                client,
                dropped,
                dropped + kept as u64,
                "alerts over outputs.rate were not stored".into(),
            ));
        }
    }

    /// Records a loss of this server's in the drops log, and mirrors it into the outputs log as
    /// an internal alert when the drop-alert threshold and rate allow. Never blocks the caller's
    /// runtime thread.
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
            .unwrap_or_else(PoisonError::into_inner);
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
                .with_origin(Origin::Internal)
                .with_fields([
                    ("n_drops", d.n_drops.to_string()),
                    ("n_evts", d.n_evts.to_string()),
                    ("stage", d.stage.clone()),
                    ("source", d.source.clone()),
                    ("client", d.client.clone()),
                ])
                .with_hostname(self.hostname()),
        )
    }

    /// Counts the alerts stored before this process into `falco_events` (from the saved counts
    /// and the alerts after them) and into the Falco nodes; then `falco_events` is ready. Blocks
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
            Some(bytes) => match crate::services::telemetry::saved_upto(&bytes) {
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
                .inspect(|(_, ev)| self.nodes.observe(ev))
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

    /// Lets the writers commit what they were given and stop, then saves the counts and flushes
    /// the store. Call once nothing writes any more.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.outputs.close().await;
        self.drops.close().await;
        let logs = self.clone();
        let _ = tokio::task::spawn_blocking(move || logs.save_counts()).await;
        self.store.flush()
    }
}
