//! `falco-api bench metrics`: what counting costs ingest — the ingest benchmark run with the
//! instruments on (and a Prometheus-like scrape every second) and off, interleaved so drift on
//! a shared machine hits both alike — and how long one scrape of `--series` label sets takes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::base::event::{OutputEvent, Priority};
use crate::config::HttpKind;
use crate::engine::{LoadOptions, RuleSet};
use crate::pipeline::Settings;
use crate::services::telemetry::Telemetry;
use crate::services::App;
use crate::store::StoreOptions;

use super::ingest::{drive, workload, IngestBenchArgs, Kind};

#[derive(Args, Debug)]
pub struct MetricsBenchArgs {
    /// Events per ingest run.
    #[arg(long, default_value_t = 400_000)]
    pub events: u64,
    /// Fraction of events that match a rule, as in `bench ingest` (1.0: every event is an
    /// alert to count).
    #[arg(long, default_value_t = 0.1)]
    pub match_rate: f64,
    /// Ingest runs with metrics on, and as many off.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// `falco_events` label sets in the scrape measurement.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Scrapes measured.
    #[arg(long, default_value_t = 30)]
    pub scrapes: usize,
}

fn ingest_args(events: u64, match_rate: f64) -> IngestBenchArgs {
    IngestBenchArgs {
        kind: Kind::Syscall,
        events,
        streams: 4,
        subscribers: 0,
        batch: 500,
        match_rate,
        rate: 0,
        k8s_events: None,
        rules: Vec::new(),
    }
}

/// One ingest run on a fresh store; events/s.
async fn ingest_once(
    args: &IngestBenchArgs,
    payloads: Arc<Vec<Vec<u8>>>,
    rules: &[crate::engine::RulesFile],
    metrics: bool,
    round: usize,
) -> anyhow::Result<f64> {
    let scratch = super::scratch_dir(&format!("metrics-{round}-{metrics}"))?;
    let opts = StoreOptions {
        outputs_capacity: args.events.max(1000) * 2,
        cache_bytes: 256 << 20,
        ..Default::default()
    };
    let app = App::open_with(
        &scratch.0,
        &opts,
        Settings::default(),
        Telemetry::new(crate::services::telemetry::DEFAULT_MAX_SERIES, metrics),
    )?;
    app.logs.rebuild_counts();
    let set = RuleSet::load(rules, &LoadOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    app.pipeline.set_rules(set);
    let socket = scratch.0.join("bench.sock");
    let serving = tokio::spawn(crate::grpc::serve_unix(
        app.clone(),
        crate::grpc::bind_unix(&socket)?,
    ));
    // With metrics on, a scraper renders the exposition every second, as Prometheus would.
    let scraper = metrics.then(|| {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let a = app.clone();
                let _ =
                    tokio::task::spawn_blocking(move || crate::services::metrics::render(&a)).await;
            }
        })
    });
    let (rate, alerts, _) = drive(&socket, payloads, args).await?;
    if let Some(s) = scraper {
        s.abort();
    }
    if metrics {
        crate::services::metrics::settle(&app, Duration::from_secs(5)).await;
        anyhow::ensure!(
            app.telemetry.events.total() == alerts,
            "falco_events counted {} of {alerts} alerts",
            app.telemetry.events.total()
        );
    }
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    app.close().await?;
    Ok(rate)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A distinct alert for label set `i`: 50 rules × hosts × a few namespaces and pods.
fn distinct_alert(i: usize) -> OutputEvent {
    let mut e = OutputEvent::new(
        0,
        Priority::ALL[i % 8],
        format!("Rule number {} of the bench", i % 50),
        "x",
        "syscall",
    )
    .with_hostname(format!("node-{:04}.cluster.example", i / 50))
    .with_fields([
        ("k8s.ns.name", format!("namespace-{}", i % 7)),
        ("k8s.pod.name", format!("pod-{i}-7d4b9c")),
    ]);
    e.tags = vec!["container".into(), "mitre_execution".into(), "shell".into()];
    e
}

pub async fn metrics_bench(args: MetricsBenchArgs) -> anyhow::Result<i32> {
    let ingest = ingest_args(args.events, args.match_rate);
    let (payloads, rules) = workload(&ingest)?;
    let payloads = Arc::new(payloads);
    println!(
        "metrics bench: {} rounds of {} syscall events ({:.0}% match a rule), metrics on and off, interleaved",
        args.rounds,
        args.events,
        args.match_rate * 100.0
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for metrics in order {
            let rate = ingest_once(&ingest, payloads.clone(), &rules, metrics, round).await?;
            println!(
                "round {round}: metrics {}: {rate:.0} events/s",
                if metrics { "on " } else { "off" }
            );
            if metrics { &mut on } else { &mut off }.push(rate);
        }
    }
    let (on_m, off_m) = (median(&mut on), median(&mut off));
    println!(
        "ingest median: metrics on {on_m:.0} events/s, off {off_m:.0} events/s; on/off ratio {:.3}",
        on_m / off_m
    );

    // The counting itself: alerts of 100 label sets, counted one commit of 1,000 at a time.
    let counter = Telemetry::new(crate::services::telemetry::DEFAULT_MAX_SERIES, true);
    let batch: Vec<OutputEvent> = (0..1000).map(|i| distinct_alert(i % 100)).collect();
    let t = Instant::now();
    let commits = 1000;
    for c in 0..commits {
        counter.events.count_stored(&batch, c as u64);
    }
    println!(
        "counting falco_events: {:.0} ns an alert ({} alerts, 100 label sets)",
        t.elapsed().as_nanos() as f64 / (commits * batch.len()) as f64,
        commits * batch.len()
    );

    // One scrape of `series` label sets: rendering alone, and a GET over HTTP.
    let scratch = super::scratch_dir("metrics-scrape")?;
    let app = App::open_with(
        &scratch.0,
        &StoreOptions::default(),
        Settings::default(),
        Telemetry::new(args.series, true),
    )?;
    app.logs.rebuild_counts();
    let alerts: Vec<OutputEvent> = (0..args.series).map(distinct_alert).collect();
    app.telemetry.events.count(&alerts);
    anyhow::ensure!(app.telemetry.events.series() == args.series);
    let mut render_ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..args.scrapes.max(1) {
        let t = Instant::now();
        bytes = crate::services::metrics::render(&app).len();
        render_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let addr = super::http::serve_endpoint(&app, HttpKind::Metrics { mtls: false }).await?;
    let mut client = super::http::Poster::connect(addr).await?;
    let mut get_ms = Vec::new();
    for _ in 0..args.scrapes.max(1) {
        let t = Instant::now();
        let (status, _, body) = client.get("/metrics", None).await?;
        get_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "scrape answered {status}");
        bytes = body.len();
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "scrape of {} falco_events series ({:.1} MB of text): render median {:.1} ms, max {:.1} ms; HTTP GET median {:.1} ms, max {:.1} ms",
        args.series,
        bytes as f64 / 1e6,
        median(&mut render_ms.clone()),
        max(&render_ms),
        median(&mut get_ms.clone()),
        max(&get_ms)
    );
    app.shutdown.cancel();
    app.close().await?;
    Ok(0)
}
