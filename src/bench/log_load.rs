//! Two optional parts of `falco-api bench log`: appends paced at a steady rate with and without
//! an online backup running (the latency a backup costs writers), and bare JetStream publishes of
//! the same events beside the log's append rate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::services::App;

/// Appends per second are paced in ticks of this length.
const TICK: Duration = Duration::from_millis(1);
/// How long appends run without a backup, as the baseline.
const QUIET: Duration = Duration::from_secs(3);

/// Makes the `i`th sample event.
pub(super) type Make = dyn Fn(u64) -> crate::base::event::OutputEvent + Sync;

fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * pct / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn describe(mut took: Vec<Duration>) -> String {
    took.sort();
    format!(
        "{} appends, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.len(),
        percentile(&took, 50),
        percentile(&took, 99),
        took.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    )
}

/// Appends `rate` events per second (`make(i)` makes event `i`, from `from`), one append task
/// per tick, until `done` says so; returns each append's latency (call to durable answer).
async fn paced(
    app: &App,
    rate: u64,
    from: u64,
    make: &Make,
    done: impl Fn() -> bool,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let per_tick = (rate / 1000).max(1);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = from;
    while !done() {
        ticks.tick().await;
        let batch: Vec<_> = (i..i + per_tick).map(make).collect();
        i += per_tick;
        let feed = app.logs.outputs.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            feed.append(batch).await?;
            anyhow::Ok(started.elapsed())
        });
    }
    let mut took = Vec::new();
    while let Some(r) = tasks.join_next().await {
        took.push(r??);
    }
    Ok((took, i))
}

/// Appends at `rate`/s for a few seconds, then again while a backup of the whole store is
/// written to `dir`, and prints both latency distributions and what the backup took.
pub(super) async fn backup_under_load(
    app: &App,
    dir: &Path,
    rate: u64,
    make: &Make,
) -> anyhow::Result<()> {
    let from = app.logs.outputs.head() + 1;
    let quiet_until = Instant::now() + QUIET;
    let (quiet, next) = paced(app, rate, from, make, || Instant::now() >= quiet_until).await?;
    let file = dir.join("bench.backup");
    let _ = std::fs::remove_file(&file);
    let store = app.store.clone();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let backup = tokio::task::spawn_blocking({
        let (file, finished) = (file.clone(), finished.clone());
        move || {
            let summary = store.backup(&file);
            finished.store(true, std::sync::atomic::Ordering::Release);
            summary
        }
    });
    let is_done = || finished.load(std::sync::atomic::Ordering::Acquire);
    let (during, _) = paced(app, rate, next, make, is_done).await?;
    let summary = backup.await??;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    println!(
        "backup: {:.1} MB copied in {secs:.1} s ({:.0} MB/s) while appending {rate} events/s; \
         appends without a backup: {}; during the backup: {}",
        summary.bytes as f64 / 1e6,
        summary.bytes as f64 / 1e6 / secs,
        describe(quiet),
        describe(during)
    );
    Ok(())
}

/// Publishes `n` messages of `body(i)` to a fresh JetStream stream (file storage, R1, on a
/// nats-server started for the run) with up to `window` awaiting their acks; returns msgs/s.
pub(super) async fn jetstream_rate(
    dir: &Path,
    n: u64,
    window: usize,
    body: impl Fn(u64) -> Vec<u8>,
) -> anyhow::Result<f64> {
    let (_server, url) = super::fleet::start_nats(&dir.join("nats"))?;
    let js = jetstream::new(async_nats::connect(url.as_str()).await?);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::with_capacity(window);
    for i in 0..n {
        if pending.len() >= window.max(1) {
            if let Some(ack) = pending.pop_front() {
                ack.await?;
            }
        }
        pending.push_back(js.publish("bench.alerts", body(i).into()).await?);
    }
    for ack in pending {
        ack.await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
