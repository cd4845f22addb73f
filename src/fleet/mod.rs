//! A fleet of falco-api servers over NATS JetStream: each node forwards its alerts and drops to a
//! stream ([`forward`]); a central falco-api collects the stream into its own logs ([`collect`]).
//! JetStream's semantics match the logs': a stream is a log with sequence numbers, a durable
//! consumer is a named position, `Nats-Msg-Id` removes re-published duplicates.
//!
//! The local log is the buffer: the forwarder's position (an internal consumer of each log)
//! moves only after JetStream's PubAck, so a NATS outage or a crash means re-sending, never
//! losing; a record the local log trims before it was forwarded is recorded as a drop
//! (`fleet_forward_lagged`). The collector acknowledges to JetStream only after its local append
//! is durable, and keeps the stream sequence it reached in the same transaction, so a
//! redelivery is recognised exactly.

pub mod rules;
pub mod wire;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use async_nats::jetstream::{self, consumer, stream};
use tokio_stream::StreamExt;

use crate::base::event::{DropRecord, OutputEvent};
use crate::config::{FleetConfig, FleetRules};
use crate::feed::{Feed, Item, Record as LogRecord, Start, TrimPolicy};
use crate::services::logs::{Batch, Writer};
use crate::services::App;

/// The forwarders' consumer names (in each log's consumer table).
pub const FORWARDER: &str = "fleet-forward";
/// Drop stage for records trimmed locally before they were forwarded.
pub const LAGGED_STAGE: &str = "fleet_forward_lagged";
/// Collected UUIDs remembered for de-duplication (beyond JetStream's own window).
const RECENT_IDS: usize = 1_000_000;
/// Messages the collector appends in one durable commit at most.
const COLLECT_BATCH: usize = 2_000;

/// Connects to NATS (retrying in the background until it answers).
pub async fn connect(cfg: &FleetConfig, name: &str) -> Result<async_nats::Client, String> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).clamp(100, 1000))
        });
    if let Some(f) = &cfg.creds_file {
        opts = opts
            .credentials_file(f)
            .await
            .map_err(|e| format!("fleet.nats.creds_file {}: {e}", f.display()))?;
    }
    if let Some((user, password)) = &cfg.user_password {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &cfg.token {
        opts = opts.token(token.clone());
    }
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = cfg
        .url
        .split(',')
        .map(|u| {
            u.trim()
                .parse()
                .map_err(|e| format!("fleet.nats.url '{u}': {e}"))
        })
        .collect::<Result<_, _>>()?;
    opts.connect(addrs)
        .await
        .map_err(|e| format!("NATS {}: {e}", cfg.url))
}

/// The stream's settings from the config.
pub fn stream_config(cfg: &FleetConfig) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![
            format!("{}.>", wire::ALERTS_PREFIX),
            format!("{}.>", wire::DROPS_PREFIX),
        ],
        num_replicas: cfg.replicas,
        max_age: Duration::from_secs(cfg.max_age_secs),
        max_bytes: if cfg.max_bytes == 0 {
            -1
        } else {
            cfg.max_bytes as i64
        },
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        ..Default::default()
    }
}

/// The stream, created with the config's settings if it does not exist (used as it is if it
/// does); retried until NATS answers or the server stops.
async fn stream_of(
    app: &App,
    js: &jetstream::Context,
    cfg: &FleetConfig,
) -> Option<stream::Stream> {
    let mut warned = false;
    loop {
        match js.get_or_create_stream(stream_config(cfg)).await {
            Ok(s) => return Some(s),
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, stream = %cfg.stream, "cannot open the fleet stream yet; retrying");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = app.shutdown.cancelled() => return None,
        }
    }
}

/// Starts the forwarders and the collector the config asks for; they stop after their last
/// acknowledged record once shutdown begins, and the returned tracker says when they all have.
pub fn start(app: &App, cfg: &FleetConfig) -> TaskTracker {
    let tasks = TaskTracker::new();
    tasks.close();
    if cfg.url.is_empty() || !(cfg.forward || cfg.collect || cfg.rules != FleetRules::Own) {
        return tasks;
    }
    if cfg.forward {
        // From the moment forwarding is configured, every record is forwarded or reported lost:
        // a forwarder that never ran starts at the oldest record kept now.
        let consumers = app.logs.consumers();
        for (log, oldest) in [
            ("outputs", app.logs.outputs.oldest()),
            ("drops", app.logs.drops.oldest()),
        ] {
            if let Ok(None) = consumers.get(log, FORWARDER) {
                if let Err(e) = consumers.advance(log, FORWARDER, oldest.saturating_sub(1)) {
                    tracing::warn!(log, error = %e, "cannot record the fleet forwarder's start");
                }
            }
        }
    }
    if cfg.rules == FleetRules::Follow {
        // Refuse local rules writes from the start, before the bucket is reached.
        app.rules
            .set_publisher(Some(format!("the fleet bucket {}", cfg.rules_bucket)));
    }
    let app = app.clone();
    let cfg = cfg.clone();
    let spawner = tasks.clone();
    tasks.spawn(async move {
        let tasks = spawner;
        let client = match connect(&cfg, &format!("falco-api {}", app.current_hostname())).await {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "the fleet is off"),
        };
        let js = jetstream::new(client);
        match cfg.rules {
            FleetRules::Publish => {
                tasks.spawn(rules::publish(app.clone(), js.clone(), cfg.clone()));
            }
            FleetRules::Follow => {
                tasks.spawn(rules::follow(app.clone(), js.clone(), cfg.clone()));
            }
            FleetRules::Own => {}
        }
        if !(cfg.forward || cfg.collect) || stream_of(&app, &js, &cfg).await.is_none() {
            return;
        }
        if cfg.forward {
            let host = app.current_hostname();
            let protobuf = cfg.protobuf;
            tasks.spawn(forward(
                app.clone(),
                js.clone(),
                app.logs.outputs.clone(),
                "outputs",
                cfg.window,
                move |seq, ev: &OutputEvent| wire::alert(seq, ev, protobuf),
            ));
            tasks.spawn(forward(
                app.clone(),
                js.clone(),
                app.logs.drops.clone(),
                "drops",
                cfg.window,
                move |seq, d: &DropRecord| wire::drop_record(seq, d, &host),
            ));
        }
        if cfg.collect {
            tasks.spawn(collect(app.clone(), js, cfg));
        }
    });
    tasks
}

/// Forwards one log from the forwarder's position, with at most `window` publishes awaiting
/// their PubAck; the position moves only past acknowledged records. A failure (NATS away, an
/// ack timing out) starts again from the position after a pause: what was published but not
/// acknowledged is published again, and JetStream drops the copies by `Nats-Msg-Id`.
pub async fn forward<T, F>(
    app: App,
    js: jetstream::Context,
    feed: Feed<T>,
    log: &'static str,
    window: usize,
    message: F,
) where
    T: LogRecord,
    F: Fn(u64, &T) -> (String, async_nats::HeaderMap, Vec<u8>) + Send + Sync + 'static,
{
    let mut pause = Duration::from_millis(200);
    loop {
        if app.shutdown.is_cancelled() {
            return;
        }
        match forward_once(&app, &js, &feed, log, window, &message).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(log, error = %e, "fleet forwarding paused; resuming from the last acknowledged record");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = app.shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

async fn forward_once<T, F>(
    app: &App,
    js: &jetstream::Context,
    feed: &Feed<T>,
    log: &'static str,
    window: usize,
    message: &F,
) -> Result<(), String>
where
    T: LogRecord,
    F: Fn(u64, &T) -> (String, async_nats::HeaderMap, Vec<u8>) + Send + Sync + 'static,
{
    let consumers = app.logs.consumers();
    let position = consumers.get(log, FORWARDER).map_err(|e| e.to_string())?;
    let start = Start::After(position.unwrap_or(0));
    let mut sub = feed
        .subscribe(start, TrimPolicy::Report, true)
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<(u64, jetstream::context::PublishAckFuture)>(window);
    let client = js.client();
    let publisher = async {
        loop {
            let item = tokio::select! {
                i = sub.next() => i.map_err(|e| e.to_string())?,
                _ = app.shutdown.cancelled() => return Ok::<(), String>(()),
            };
            match item {
                None => return Ok(()),
                Some(Item::Record { seq, record }) => {
                    // The local log is the buffer: nothing is handed to a disconnected client
                    // (which would hold it in memory and send it late).
                    if client.connection_state() != async_nats::connection::State::Connected {
                        return Err("NATS is not connected".into());
                    }
                    let (subject, headers, body) = message(seq, &record);
                    let ack = js
                        .publish_with_headers(subject, headers, body.into())
                        .await
                        .map_err(|e| format!("publish: {e}"))?;
                    if tx.send((seq, ack)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Item::Lost { count, next_seq }) => {
                    app.logs.record_drop(DropRecord::now(
                        LAGGED_STAGE,
                        "internal",
                        FORWARDER,
                        count,
                        count,
                        format!(
                            "{count} {log} records were trimmed from the local log before they were forwarded to the fleet (next forwarded: seq {next_seq})"
                        ),
                    ));
                }
            }
        }
    };
    let acker = async {
        while let Some((seq, ack)) = rx.recv().await {
            ack.await
                .map_err(|e| format!("no PubAck for {log} seq {seq}: {e}"))?;
            consumers
                .advance(log, FORWARDER, seq)
                .map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    tokio::select! {
        r = publisher => r,
        r = acker => r,
    }
}

/// UUIDs appended lately, to drop a record that reached the stream twice (a re-publish after
/// JetStream's de-duplication window).
struct RecentIds {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

impl RecentIds {
    fn new() -> Self {
        RecentIds {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time `id` is seen.
    fn insert(&mut self, id: [u8; 16]) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Seeds with the newest records of a log.
    fn seed<T: LogRecord>(&mut self, ring: &crate::store::RingLog<T>, id: impl Fn(&T) -> [u8; 16]) {
        let b = ring.bounds();
        let from = b.newest.saturating_sub(100_000);
        if let Ok(records) = ring.read(from, b.newest, 100_000) {
            for (_, r) in records {
                self.insert(id(&r));
            }
        }
    }
}

/// The mark (in each log) holding the stream sequence the collector has appended up to.
fn mark_name(cfg: &FleetConfig) -> String {
    format!("fleet:{}:{}", cfg.stream, cfg.consumer)
}

/// Collects the fleet stream into this server's logs, for ever: a durable pull consumer; each
/// batch is appended (alerts and drops, each with the stream sequence reached as a mark in the
/// same transaction) and only then acknowledged.
pub async fn collect(app: App, js: jetstream::Context, cfg: FleetConfig) {
    let mut recent = RecentIds::new();
    recent.seed(app.logs.outputs_log(), |e: &OutputEvent| e.id);
    recent.seed(app.logs.drops_log(), |d: &DropRecord| d.id);
    loop {
        if app.shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = collect_once(&app, &js, &cfg, &mut recent).await {
            tracing::warn!(error = %e, "fleet collection paused; resuming");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = app.shutdown.cancelled() => return,
        }
    }
}

async fn collect_once(
    app: &App,
    js: &jetstream::Context,
    cfg: &FleetConfig,
    recent: &mut RecentIds,
) -> Result<(), String> {
    let Some(stream) = stream_of(app, js, cfg).await else {
        return Ok(());
    };
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &cfg.consumer,
            consumer::pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(30),
                filter_subject: cfg.collect_filter.clone().unwrap_or_default(),
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", cfg.consumer))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(COLLECT_BATCH)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mark = mark_name(cfg);
    loop {
        let first = tokio::select! {
            m = messages.next() => m,
            _ = app.shutdown.cancelled() => return Ok(()),
        };
        let Some(first) = first else {
            return Err("the consumer's message stream ended".into());
        };
        let mut batch = vec![first.map_err(|e| e.to_string())?];
        while batch.len() < COLLECT_BATCH {
            match tokio::time::timeout(Duration::from_millis(2), messages.next()).await {
                Ok(Some(m)) => batch.push(m.map_err(|e| e.to_string())?),
                _ => break,
            }
        }
        let outputs_mark = app
            .logs
            .outputs
            .mark(&mark)
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let drops_mark = app
            .logs
            .drops
            .mark(&mark)
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let (mut alerts, mut drops) = (Vec::new(), Vec::new());
        let (mut alerts_to, mut drops_to) = (0u64, 0u64);
        for m in &batch {
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            match wire::decode(m.subject.as_str(), m.headers.as_ref(), &m.payload) {
                Ok(wire::Record::Alert(ev)) => {
                    alerts_to = seq;
                    if seq > outputs_mark && recent.insert(ev.id) {
                        alerts.push(ev);
                    }
                }
                Ok(wire::Record::Drop(d)) => {
                    drops_to = seq;
                    if seq > drops_mark && recent.insert(d.id) {
                        drops.push(d);
                    }
                }
                Err(e) => {
                    tracing::warn!(subject = %m.subject, stream_seq = seq, error = %e, "a fleet message that is no falco-api record was skipped");
                }
            }
        }
        let mut stored = Batch {
            alerts,
            drops,
            ..Batch::default()
        };
        if alerts_to > outputs_mark {
            stored.alert_marks.push((mark.clone(), alerts_to));
        } else {
            stored.alerts.clear();
        }
        if drops_to > drops_mark {
            stored.drop_marks.push((mark.clone(), drops_to));
        } else {
            stored.drops.clear();
        }
        app.logs
            .write(Writer::Fleet, stored, "fleet", &cfg.consumer)
            .await
            .map_err(|e| e.to_string())?;
        // Durable here: acknowledge everything up to the batch's last message.
        if let Some(last) = batch.last() {
            last.ack().await.map_err(|e| format!("ack: {e}"))?;
        }
    }
}
