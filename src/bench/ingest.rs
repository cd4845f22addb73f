//! `falco-api bench ingest`: the whole pipeline under load — N input streams, M subscribers —
//! against a bare bidi stream carrying the same payloads with no evaluation or storage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::client;
use crate::engine::{LoadOptions, RuleSet, RulesFile};
use crate::grpc;
use crate::pipeline::Settings;
use crate::proto::inputs::{self, service_client::ServiceClient as InputsClient, Event};
use crate::proto::outputs::{service_client::ServiceClient as OutputsClient, Request};
use crate::services::App;
use crate::store::StoreOptions;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Small syscall-style events (`{"evt.type": …, "proc.name": …, "fd.name": …}`).
    Syscall,
    /// k8s audit events from a file (JSON lines), against k8s audit rules.
    K8s,
}

#[derive(Args, Debug)]
pub struct IngestBenchArgs {
    #[arg(long, value_enum, default_value = "syscall")]
    pub kind: Kind,
    /// Events to send in all.
    #[arg(long, default_value_t = 400_000)]
    pub events: u64,
    /// Concurrent input streams.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Concurrent `sub` subscribers.
    #[arg(long, default_value_t = 4)]
    pub subscribers: usize,
    /// Events per request message.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Fraction of events that match a rule (for k8s: the share of corpus events, which nearly
    /// all match; the rest is a benign audit event that matches none; 1.0 sends only the corpus).
    #[arg(long, default_value_t = 0.1)]
    pub match_rate: f64,
    /// Offered load in events/s over all streams (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// For --kind k8s: the events file (JSON lines of audit events).
    #[arg(long)]
    pub k8s_events: Option<PathBuf>,
    /// For --kind k8s: rules files (default: the corpus' k8saudit 0.18.0 rules).
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// A routine audit event (a service account reading a configmap) that no k8s audit rule flags.
const BENIGN_AUDIT_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5f0c7e4e-1111-2222-3333-444455556666","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps/app-config","verb":"get","user":{"username":"system:serviceaccount:default:app","uid":"1234","groups":["system:serviceaccounts","system:serviceaccounts:default","system:authenticated"]},"sourceIPs":["10.0.0.12"],"userAgent":"app/1.4.2 (linux/amd64)","objectRef":{"resource":"configmaps","namespace":"default","name":"app-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-01-01T00:00:00.000000Z","stageTimestamp":"2024-01-01T00:00:00.001000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding"}}"#;

const SYSCALL_RULES: &str = r#"
- rule: sensitive open
  desc: bench
  condition: evt.type in (open, openat) and fd.name startswith /etc/sensitive
  output: "%proc.name opened %fd.name"
  priority: WARNING
- rule: shell exec
  desc: bench
  condition: evt.type = execve and proc.name in (bash, sh, zsh)
  output: "shell %proc.name"
  priority: NOTICE
"#;

fn corpus_dir() -> PathBuf {
    std::env::var_os("FALCO_API_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/corpus"))
}

/// The payloads to cycle through, and the rules to load.
pub(super) fn workload(args: &IngestBenchArgs) -> anyhow::Result<(Vec<Vec<u8>>, Vec<RulesFile>)> {
    match args.kind {
        Kind::Syscall => {
            let every = if args.match_rate > 0.0 {
                (1.0 / args.match_rate).round().max(1.0) as usize
            } else {
                usize::MAX
            };
            let payloads = (0..1000usize)
                .map(|i| {
                    let fd = if i % every == 0 { format!("/etc/sensitive/{i}") } else { format!("/var/lib/app/{i}") };
                    serde_json::json!({"evt.type": "openat", "proc.name": "app", "fd.name": fd, "proc.pid": i})
                        .to_string()
                        .into_bytes()
                })
                .collect();
            Ok((
                payloads,
                vec![RulesFile {
                    name: "bench.yaml".into(),
                    content: SYSCALL_RULES.into(),
                }],
            ))
        }
        Kind::K8s => {
            let events = match &args.k8s_events {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => {
                    let dir = corpus_dir().join("falco-legacy/test/trace_files/k8s_audit");
                    let mut all = String::new();
                    for entry in std::fs::read_dir(&dir)
                        .with_context(|| format!("no corpus at {}", dir.display()))?
                    {
                        all.push_str(&std::fs::read_to_string(entry?.path())?);
                        all.push('\n');
                    }
                    all
                }
            };
            let corpus: Vec<Vec<u8>> = events
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| crate::engine::extract::split_audit_payload(v).ok())
                .flatten()
                .map(|e| e.to_string().into_bytes())
                .collect();
            anyhow::ensure!(!corpus.is_empty(), "no audit events found");
            let share = args.match_rate.clamp(0.0, 1.0);
            let matching = ((1000.0 * share).round() as usize).max(1);
            let payloads = (0..1000)
                .map(|i| {
                    if i < matching {
                        corpus[i % corpus.len()].clone()
                    } else {
                        BENIGN_AUDIT_EVENT.as_bytes().to_vec()
                    }
                })
                .collect();
            let rule_paths = if args.rules.is_empty() {
                vec![corpus_dir()
                    .join("plugins/k8saudit-0.18.0/plugins/k8saudit/rules/k8s_audit_rules.yaml")]
            } else {
                args.rules.clone()
            };
            Ok((
                payloads,
                crate::engine::files::read_rules_files(&rule_paths).map_err(anyhow::Error::msg)?,
            ))
        }
    }
}

fn source(kind: Kind) -> &'static str {
    match kind {
        Kind::Syscall => "syscall",
        Kind::K8s => "k8s_audit",
    }
}

/// Sends `total` events over `streams` streams to `socket`; returns (events/s, acks' alert count, drops).
pub(super) async fn drive(
    socket: &std::path::Path,
    payloads: Arc<Vec<Vec<u8>>>,
    args: &IngestBenchArgs,
) -> anyhow::Result<(f64, u64, u64)> {
    let per_stream = args.events / args.streams as u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..args.streams {
        let channel = client::connect_unix(socket).await?;
        let mut client = InputsClient::new(channel).max_encoding_message_size(256 << 20);
        let payloads = payloads.clone();
        let (batch, src, rate) = (args.batch as u64, source(args.kind), args.rate);
        let streams = args.streams as u64;
        tasks.spawn(async move {
            let (tx, rx) = mpsc::channel(8);
            let sender = tokio::spawn(async move {
                let mut seq = 0u64;
                let per_batch_interval = (rate > 0)
                    .then(|| Duration::from_secs_f64(batch as f64 * streams as f64 / rate as f64));
                let mut next = tokio::time::Instant::now();
                while seq < per_stream {
                    let n = batch.min(per_stream - seq);
                    let time = crate::proto::convert::timestamp(now_ns());
                    let events = (0..n)
                        .map(|i| {
                            let k = (s as u64 * 7919 + seq + i) as usize % payloads.len();
                            Event {
                                source: src.into(),
                                payload: payloads[k].clone(),
                                time: Some(time),
                                hostname: String::new(),
                                seq: seq + i + 1,
                            }
                        })
                        .collect();
                    seq += n;
                    if tx.send(inputs::Request { events }).await.is_err() {
                        break;
                    }
                    if let Some(interval) = per_batch_interval {
                        next += interval;
                        tokio::time::sleep_until(next).await;
                    }
                }
            });
            let mut stream = client.send(ReceiverStream::new(rx)).await?.into_inner();
            let (mut alerts, mut dropped, mut done) = (0u64, 0u64, 0u64);
            while done < per_stream {
                let Some(ack) = stream.message().await? else {
                    break;
                };
                if ack.last_output_seq > 0 {
                    alerts += ack.last_output_seq - ack.first_output_seq + 1;
                }
                dropped += ack.dropped;
                done = done.max(ack.accepted_up_to) + ack.dropped;
            }
            sender.abort();
            Ok::<_, anyhow::Error>((alerts, dropped))
        });
    }
    let (mut alerts, mut dropped) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, d) = r??;
        alerts += a;
        dropped += d;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        (per_stream * args.streams as u64) as f64 / secs,
        alerts,
        dropped,
    ))
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

pub async fn ingest_bench(args: IngestBenchArgs) -> anyhow::Result<i32> {
    let (payloads, rules) = workload(&args)?;
    anyhow::ensure!(!payloads.is_empty(), "no events to send");
    let payloads = Arc::new(payloads);
    let set = RuleSet::load(&rules, &LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("rules: {e}"))?;
    let scratch = super::scratch_dir("ingest")?;
    let dir = scratch.0.clone();
    let opts = StoreOptions {
        outputs_capacity: args.events.max(1000) * 2,
        cache_bytes: 256 << 20,
        ..Default::default()
    };
    let app = App::open_with(
        &dir,
        &opts,
        Settings::default(),
        crate::services::telemetry::Telemetry::default(),
    )?;
    app.pipeline.set_rules(set);
    let socket = dir.join("bench.sock");
    let serving = tokio::spawn(grpc::serve_unix(app.clone(), grpc::bind_unix(&socket)?));
    println!(
        "ingest bench: {} {} events, {} streams x {} per batch, {} subscribers, offered rate {}",
        args.events,
        source(args.kind),
        args.streams,
        args.batch,
        args.subscribers,
        if args.rate == 0 {
            "max".to_string()
        } else {
            format!("{}/s", args.rate)
        }
    );

    // Subscribers, live from now; each records alert latencies (event time → receipt).
    let mut subs = tokio::task::JoinSet::new();
    for _ in 0..args.subscribers {
        let mut client = OutputsClient::new(client::connect_unix(&socket).await?);
        let (tx, rx) = mpsc::channel(1);
        tx.send(Request::default()).await?;
        let mut stream = client.sub(ReceiverStream::new(rx)).await?.into_inner();
        subs.spawn(async move {
            let _keep = tx;
            let mut latencies = Vec::new();
            let mut first = None;
            let mut last = Instant::now();
            while let Ok(Ok(Some(r))) =
                tokio::time::timeout(Duration::from_secs(3), stream.message()).await
            {
                let t = r
                    .time
                    .map(|t| t.seconds * 1_000_000_000 + t.nanos as i64)
                    .unwrap_or(0);
                latencies.push(now_ns() - t);
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
            let n = latencies.len();
            (n, if secs > 0.0 { n as f64 / secs } else { 0.0 }, latencies)
        });
    }

    let (rate, alerts, dropped) = drive(&socket, payloads.clone(), &args).await?;
    let mut per_sub = Vec::new();
    let mut all_latencies = Vec::new();
    while let Some(r) = subs.join_next().await {
        let (n, alerts_per_s, lat) = r?;
        per_sub.push((n, alerts_per_s));
        all_latencies.extend(lat);
    }
    all_latencies.sort_unstable();
    let drops = app.logs.drops.head();
    println!("ingest: {rate:.0} events/s end to end ({alerts} alerts, {dropped} events dropped, {drops} drop records)");
    for (i, (n, per_s)) in per_sub.iter().enumerate() {
        println!("subscriber {i}: {n} alerts, {per_s:.0} alerts/s");
    }
    println!(
        "latency input -> subscriber: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&all_latencies, 0.5),
        percentile(&all_latencies, 0.99),
        percentile(&all_latencies, 1.0)
    );
    println!("peak RSS: {:.0} MB", peak_rss_mb());
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;

    // Baseline: the same payloads over a bare bidi stream, acknowledged without evaluation.
    let base_socket = dir.join("baseline.sock");
    let stop = tokio_util::sync::CancellationToken::new();
    let base = tokio::spawn(super::baseline::serve_baseline_inputs(
        grpc::bind_unix(&base_socket)?,
        stop.clone(),
    ));
    let (base_rate, _, _) = drive(&base_socket, payloads, &args).await?;
    stop.cancel();
    let _ = base.await;
    println!(
        "baseline bare bidi stream: {base_rate:.0} events/s; pipeline/baseline ratio {:.2}",
        rate / base_rate
    );
    Ok(0)
}
