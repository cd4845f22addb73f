//! `falco-api bench`: load generators that print numbers. Each run measures a baseline in the
//! same process so results can be read as ratios on a shared, noisy machine.

pub mod baseline;
pub mod crash;
pub mod fleet;
pub mod http;
pub mod ingest;
mod log_load;
pub mod metrics;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::base::event::{OutputEvent, Priority};
use crate::cli::client;
use crate::grpc;
use crate::proto::outputs::{service_client::ServiceClient, Request};
use crate::services::App;
use crate::store::StoreOptions;

#[derive(Args, Debug)]
pub struct LogBenchArgs {
    /// Events the outputs log retains (and replays).
    #[arg(long, default_value_t = 1_000_000)]
    pub capacity: u64,
    /// How many times the ring wraps before the disk is measured.
    #[arg(long, default_value_t = 5)]
    pub wraps: u64,
    /// Size of each event's output line in bytes.
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 16)]
    pub appenders: usize,
    /// Events per append call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The outputs log's byte budget in MiB (`outputs.max_bytes`; raise it to retain all of a
    /// large `--capacity`).
    #[arg(long, default_value_t = 1024)]
    pub max_mb: u64,
    /// Database page cache in MiB.
    #[arg(long, default_value_t = 256)]
    pub cache_mb: u64,
    /// Data directory for the run (default: a fresh temp directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write plain blocks (the layout before schema 9), to compare with the compressed default.
    #[arg(long)]
    pub plain: bool,
    /// Also publish as many events to JetStream (a nats-server started for the run, file
    /// storage) with as many in flight as the appenders hold, and print the append/publish ratio.
    #[arg(long)]
    pub jetstream: bool,
    /// Also append at this many events/s for 3 s, then while an online backup of the store runs,
    /// and print append latencies for both (0: skip).
    #[arg(long, default_value_t = 0)]
    pub backup_rate: u64,
}

/// Words Falco alert lines are made of; a sample line draws from them so that it compresses
/// about as well as real alerts rather than as a run of one byte.
const ALERT_WORDS: [&str; 32] = [
    "user=root",
    "user=www-data",
    "user_uid=0",
    "process=bash",
    "process=curl",
    "process=sh",
    "parent=runc",
    "parent=containerd-shim",
    "command=bash -c id",
    "command=cat /etc/shadow",
    "file=/etc/shadow",
    "file=/etc/passwd",
    "file=/root/.ssh/id_rsa",
    "terminal=34816",
    "container_name=api",
    "container_name=nginx",
    "image=ghcr.io/acme/api",
    "image=nginx",
    "k8s.ns=default",
    "k8s.ns=kube-system",
    "k8s.pod=api-7d9f",
    "evt_type=openat",
    "evt_type=execve",
    "exe_flags=EXE_WRITABLE",
    "connection=10.0.3.7:443->10.0.9.2:51234",
    "gparent=systemd",
    "ggparent=<NA>",
    "tty=0",
    "proc_exepath=/usr/bin/bash",
    "flags=O_RDONLY",
    "fd=3",
    "host=node-07",
];

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sample_event(i: u64, event_bytes: usize) -> OutputEvent {
    let mut line = format!(
        "12:00:00.{:09}: Warning Sensitive file opened (pid={} container_id={:012x})",
        i % 1_000_000_000,
        mix(i) % 40_000,
        mix(i ^ 7) >> 16
    );
    let mut k = 0;
    while line.len() < event_bytes {
        line.push(' ');
        line.push_str(ALERT_WORDS[(mix(i.wrapping_mul(31) + k) % 32) as usize]);
        k += 1;
    }
    line.truncate(event_bytes);
    OutputEvent::new(
        1_700_000_000_000_000_000 + i as i64,
        Priority::Warning,
        "bench",
        line,
        "k8s_audit",
    )
    .with_tags(["bench", "k8s"])
    .with_fields([("ka.verb", "create"), ("ka.user.name", "bench")])
    .with_hostname(format!("node-{:02}", i % 64))
}

/// The outputs log: append throughput, replay through `sub` against a bare stream, and disk use.
pub async fn log_bench(args: LogBenchArgs) -> anyhow::Result<i32> {
    let temp = tempfile_dir(&args.data_dir)?;
    let dir = temp.path.clone();
    let opts = StoreOptions {
        outputs_capacity: args.capacity,
        outputs_max_bytes: args.max_mb << 20,
        cache_bytes: args.cache_mb << 20,
        compression: if args.plain {
            crate::store::Compression::None
        } else {
            crate::store::Compression::Zstd
        },
        ..Default::default()
    };
    let app = App::open(&dir, &opts).context("open store")?;
    let socket = dir.join("bench.sock");
    let listener = grpc::bind_unix(&socket)?;
    let serving = tokio::spawn(grpc::serve_unix(app.clone(), listener));

    // 1. Append throughput (group commit: every append waits for its fsync'd batch).
    let total = args.capacity * (args.wraps + 1);
    println!(
        "log bench: {} events of {} B, capacity {}, {} appenders x {} per call",
        total, args.event_bytes, args.capacity, args.appenders, args.batch
    );
    let started = Instant::now();
    let per = total / args.appenders as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..args.appenders as u64 {
        let feed = app.logs.outputs.clone();
        let (batch, bytes) = (args.batch as u64, args.event_bytes);
        tasks.spawn(async move {
            let mut i = a * per;
            let end = i + per;
            while i < end {
                let n = batch.min(end - i);
                feed.append((i..i + n).map(|k| sample_event(k, bytes)).collect())
                    .await?;
                i += n;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let append_secs = started.elapsed().as_secs_f64();

    let appended = per * args.appenders as u64;
    println!(
        "append: {:.0} events/s ({:.1} MB/s of output lines), {appended} events in {append_secs:.1} s",
        appended as f64 / append_secs,
        appended as f64 * args.event_bytes as f64 / append_secs / 1e6
    );

    if args.jetstream {
        let window = args.appenders * args.batch;
        let bytes = args.event_bytes;
        let js_rate = log_load::jetstream_rate(&dir, appended, window, |i| {
            sample_event(i, bytes).output.into_bytes()
        })
        .await?;
        println!(
            "jetstream: {js_rate:.0} publishes/s of the same output lines ({window} in flight); \
             append/publish ratio {:.2}",
            appended as f64 / append_secs / js_rate
        );
    }

    // 2. Disk after the ring wrapped.
    app.store.flush()?;
    let retained = app.store.outputs().bounds();
    let encoded = app.store.outputs().encoded_bytes()?;
    let raw = app.store.outputs().raw_bytes()?;
    let on_disk = app.store.size_on_disk()?;
    println!(
        "disk: {} retained events, records {:.1} MB, stored {:.1} MB ({:.2}x smaller), on disk {:.1} MB ({:.2}x stored; {:.1} MB per 1M retained)",
        retained.len(),
        raw as f64 / 1e6,
        encoded as f64 / 1e6,
        raw as f64 / encoded.max(1) as f64,
        on_disk as f64 / 1e6,
        on_disk as f64 / encoded.max(1) as f64,
        on_disk as f64 / 1e6 * 1e6 / retained.len().max(1) as f64
    );

    let space = app.store.space()?;
    println!(
        "file: {:.1} MB ({:.1} MB of blocks on the device); pages in use {:.1} MB (stored {:.1} MB, metadata {:.1} MB, fragmented {:.1} MB)",
        space.file_bytes as f64 / 1e6,
        space.disk_bytes as f64 / 1e6,
        space.allocated_bytes as f64 / 1e6,
        space.stored_bytes as f64 / 1e6,
        space.metadata_bytes as f64 / 1e6,
        space.fragmented_bytes as f64 / 1e6
    );

    // 3. Replay everything retained through `sub`, against a bare stream of the same messages,
    // in interleaved rounds so that neither side alone meets the disk's write-back of the append
    // phase or a busy neighbour.
    let replay_n = retained.len();
    let channel = client::connect_unix(&socket).await?;
    let template = crate::proto::convert::event_response(1, sample_event(1, args.event_bytes));
    let stop = tokio_util::sync::CancellationToken::new();
    let (one, one_server) = start_baseline(&dir, "baseline-one", vec![template], replay_n, &stop)?;
    // The bare stream of the same messages sends the events appended, in turn from memory (at
    // most SAME_POOL of them: far more than any CPU cache holds, as the log's records are).
    let same_messages = (0..replay_n.min(SAME_POOL))
        .map(|i| crate::proto::convert::event_response(i + 1, sample_event(i, args.event_bytes)))
        .collect();
    let (same, same_server) =
        start_baseline(&dir, "baseline-same", same_messages, replay_n, &stop)?;
    let (one, same) = (
        client::connect_unix(&one).await?,
        client::connect_unix(&same).await?,
    );
    let mut decoded = Vec::new();
    for round in 1..=REPLAY_ROUNDS {
        let rates = [
            replay_n as f64 / replay_once(&channel, retained.oldest, replay_n).await?,
            replay_n as f64 / bare_once(&one, replay_n).await?,
            replay_n as f64 / bare_once(&same, replay_n).await?,
        ];
        println!(
            "replay round {round}: {:.0} events/s through sub from the log; bare stream {:.0} events/s (one message), {:.0} (the same messages); ratios {:.2}, {:.2}",
            rates[0],
            rates[1],
            rates[2],
            rates[0] / rates[1],
            rates[0] / rates[2]
        );
        decoded.push(rates);
    }
    print_ratios("", &decoded);
    // The same streams read by a client that does not decode the responses: what each server
    // side sends, with the client's decoding out of the shared cores.
    let mut raw = Vec::new();
    for _ in 0..REPLAY_ROUNDS {
        let from = Request {
            after_seq: Some(retained.oldest - 1),
            ..Default::default()
        };
        raw.push([
            replay_n as f64 / baseline::raw_get(&channel, from, replay_n).await?,
            replay_n as f64 / baseline::raw_get(&one, Request::default(), replay_n).await?,
            replay_n as f64 / baseline::raw_get(&same, Request::default(), replay_n).await?,
        ]);
    }
    stop.cancel();
    let _ = tokio::join!(one_server, same_server);
    print_ratios(", read without decoding", &raw);

    seek_bench(&app, &channel, replay_n).await?;
    if args.backup_rate > 0 {
        let bytes = args.event_bytes;
        let make = move |i| sample_event(i, bytes);
        log_load::backup_under_load(&app, &dir, args.backup_rate, &make).await?;
    }
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    Ok(0)
}

/// Rounds of replay and bare stream, interleaved.
const REPLAY_ROUNDS: usize = 5;
/// Most distinct messages the bare stream of the same messages holds in memory (about 300 MB
/// of 1 KiB alerts); a longer replay is sent them again, in turn.
const SAME_POOL: u64 = 200_000;

/// A bare stream's server task.
type Served = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Starts a bare stream of `messages` in turn (`count` per `get`) on a socket in `dir` named
/// after `name`; its socket and its server task.
fn start_baseline(
    dir: &std::path::Path,
    name: &str,
    messages: Vec<crate::proto::outputs::Response>,
    count: u64,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<(PathBuf, Served)> {
    let socket = dir.join(format!("{name}.sock"));
    let listener = grpc::bind_unix(&socket)?;
    let server = baseline::serve_baseline(listener, messages, count, stop.clone());
    Ok((socket, tokio::spawn(server)))
}

/// The median and range of replay's rate over each bare stream's, from rounds of
/// `[replay, one message, the same messages]` rates.
fn print_ratios(how: &str, rounds: &[[f64; 3]]) {
    let ratios = |of: usize| {
        let mut r: Vec<(f64, f64, f64)> =
            rounds.iter().map(|x| (x[0] / x[of], x[0], x[of])).collect();
        r.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, replay, bare) = r[r.len() / 2];
        format!(
            "median ratio {median:.2} of {} rounds (min {:.2}, max {:.2}); median round {replay:.0} against {bare:.0} events/s",
            r.len(),
            r[0].0,
            r[r.len() - 1].0
        )
    };
    println!("replay vs bare stream{how}: {}", ratios(1));
    println!(
        "replay vs bare stream of the same messages{how}: {}",
        ratios(2)
    );
}

/// Seconds to read `count` records from `oldest` through `sub`.
async fn replay_once(
    channel: &tonic::transport::Channel,
    oldest: u64,
    count: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let first = Request {
        after_seq: Some(oldest - 1),
        ..Default::default()
    };
    let (_tx, mut stream) = subscribe(channel, first).await?;
    for _ in 0..count {
        stream
            .message()
            .await?
            .context("replay stream ended early")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds to read the bare stream's `count` messages.
async fn bare_once(channel: &tonic::transport::Channel, count: u64) -> anyhow::Result<f64> {
    let mut bare = ServiceClient::new(channel.clone());
    let started = Instant::now();
    let mut stream = bare.get(Request::default()).await?.into_inner();
    let mut got = 0u64;
    while stream.message().await?.is_some() {
        got += 1;
    }
    anyhow::ensure!(got == count, "the bare stream sent {got} of {count}");
    Ok(started.elapsed().as_secs_f64())
}

/// Seeking to a time: `get` with `start_time` until its first record arrives, at times spread
/// over the log's stamps.
async fn seek_bench(
    app: &App,
    channel: &tonic::transport::Channel,
    retained: u64,
) -> anyhow::Result<()> {
    let log = app.store.outputs();
    let (Some(oldest), Some(newest)) = (log.oldest_time(), log.newest_time()) else {
        return Ok(());
    };
    let mut outputs = ServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut took = Vec::new();
    for k in 0..500u64 {
        let t = oldest + (newest - oldest) / 500 * k;
        let at = prost_types::Timestamp {
            seconds: (t / 1_000_000_000) as i64,
            nanos: (t % 1_000_000_000) as i32,
        };
        let started = Instant::now();
        let request = Request {
            start_time: Some(at),
            ..Default::default()
        };
        let mut stream = outputs.get(request).await?.into_inner();
        stream
            .message()
            .await?
            .context("no record at a retained time")?;
        took.push(started.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "seek: {} seeks by time in {retained} retained events, first record p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.len(),
        ms(took[took.len() / 2]),
        ms(took[took.len() * 99 / 100]),
        ms(took[took.len() - 1])
    );
    Ok(())
}

struct RunDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn tempfile_dir(given: &Option<PathBuf>) -> anyhow::Result<RunDir> {
    match given {
        Some(p) => Ok(RunDir {
            path: p.clone(),
            remove: false,
        }),
        None => {
            let path = std::env::temp_dir().join(format!("falco-api-bench-{}", std::process::id()));
            // Private from the start, as the store wants its data directory.
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(&path)?;
            Ok(RunDir { path, remove: true })
        }
    }
}

/// Durable commits/s with `clients` concurrent clients, each making `n / clients` rules puts
/// (its own file) and then as many config sets.
async fn concurrent_commits(
    channel: &tonic::transport::Channel,
    n: u64,
    clients: u64,
) -> anyhow::Result<(f64, f64)> {
    use crate::proto::configs::{service_client::ServiceClient as ConfigsClient, SetRequest};
    use crate::proto::rules::{service_client::ServiceClient as RulesClient, PutRequest};
    let per = (n / clients).max(1);
    let puts = clients_rate(clients, per, |c| {
        let mut rules = RulesClient::new(channel.clone());
        async move {
            for i in 0..per {
                let content = format!("- list: bench_names_{c}\n  items: [a{i}, b{i}]\n");
                let req = PutRequest {
                    name: format!("bench-{c}.yaml"),
                    content,
                    expected_revision: None,
                    comment: String::new(),
                };
                rules.put(req).await?;
            }
            Ok(())
        }
    })
    .await?;
    let sets = clients_rate(clients, per, |c| {
        let mut configs = ConfigsClient::new(channel.clone());
        async move {
            for i in 0..per {
                let values = [("hostname".to_string(), format!("bench-{c}-{i}"))].into();
                let req = SetRequest {
                    values,
                    expected_revision: None,
                    comment: String::new(),
                };
                configs.set(req).await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok((puts, sets))
}

/// Opens an outputs `sub` stream whose first request is `first`; the sender carries later
/// requests (acks, polls) and keeps the stream open while it lives.
pub(crate) async fn subscribe(
    channel: &tonic::transport::Channel,
    first: Request,
) -> anyhow::Result<(
    tokio::sync::mpsc::Sender<Request>,
    tonic::Streaming<crate::proto::outputs::Response>,
)> {
    let mut outputs = ServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(first).await?;
    let stream = outputs
        .sub(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

/// Runs `clients` tasks made by `client` (each doing `per` calls) at once; returns calls/s.
async fn clients_rate<F, Fut>(clients: u64, per: u64, mut client: F) -> anyhow::Result<f64>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        tasks.spawn(client(c));
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((per * clients) as f64 / started.elapsed().as_secs_f64())
}

#[derive(Args, Debug)]
pub struct ControlBenchArgs {
    /// Commits of each kind.
    #[arg(long, default_value_t = 300)]
    pub commits: u64,
    /// Reload-latency samples.
    #[arg(long, default_value_t = 5)]
    pub samples: u32,
}

/// Durable commits per second (rules `put`, config `set`) beside unary round trips with no
/// storage (`version`), and the time from a `put` returning to the first alert of the new rule.
pub async fn control_bench(args: ControlBenchArgs) -> anyhow::Result<i32> {
    use crate::proto::configs::{service_client::ServiceClient as ConfigsClient, SetRequest};
    use crate::proto::inputs::{
        service_client::ServiceClient as InputsClient, Event, Request as InputsRequest,
    };
    use crate::proto::rules::{service_client::ServiceClient as RulesClient, PutRequest};
    use crate::proto::version::{
        service_client::ServiceClient as VersionClient, Request as VersionRequest,
    };

    let temp = tempfile_dir(&None)?;
    let app = App::open(&temp.path, &StoreOptions::default())?;
    let socket = temp.path.join("bench.sock");
    let serving = tokio::spawn(grpc::serve_unix(app.clone(), grpc::bind_unix(&socket)?));
    let channel = client::connect_unix(&socket).await?;
    let n = args.commits;

    let mut rules = RulesClient::new(channel.clone());
    let started = Instant::now();
    for i in 0..n {
        let content = format!("- list: bench_names\n  items: [a{i}, b{i}]\n");
        rules
            .put(PutRequest {
                name: "bench.yaml".into(),
                content,
                expected_revision: None,
                comment: String::new(),
            })
            .await?;
    }
    let put_rate = n as f64 / started.elapsed().as_secs_f64();
    let mut configs = ConfigsClient::new(channel.clone());
    let started = Instant::now();
    for i in 0..n {
        let values = [("hostname".to_string(), format!("bench-{i}"))].into();
        configs
            .set(SetRequest {
                values,
                expected_revision: None,
                comment: String::new(),
            })
            .await?;
    }
    let set_rate = n as f64 / started.elapsed().as_secs_f64();
    let mut version = VersionClient::new(channel.clone());
    let started = Instant::now();
    for _ in 0..n {
        version.version(VersionRequest {}).await?;
    }
    let unary_rate = n as f64 / started.elapsed().as_secs_f64();
    let (put8, set8) = concurrent_commits(&channel, n, 8).await?;
    println!(
        "rules put (small file, durable): {put_rate:.0} commits/s; 8 clients: {put8:.0} commits/s"
    );
    println!(
        "config set (one key, durable): {set_rate:.0} commits/s; 8 clients: {set8:.0} commits/s"
    );
    println!("baseline unary round trip (version, no storage): {unary_rate:.0} calls/s");

    // Reload latency: events that only the new rule matches flow continuously.
    let mut inputs = InputsClient::new(channel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let sender = tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            seq += 1;
            let payload =
                serde_json::json!({"evt.type": "open", "fd.name": "/etc/new-target"}).to_string();
            let event = Event {
                source: "syscall".into(),
                payload: payload.into_bytes(),
                time: None,
                hostname: String::new(),
                seq,
            };
            if tx
                .send(InputsRequest {
                    events: vec![event],
                })
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    let mut acks = inputs
        .send(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
    let mut latencies = Vec::new();
    for s in 0..args.samples {
        let (_stx, mut stream) = subscribe(&channel, Request::default()).await?;
        let name = format!("new rule {s}");
        let content = format!(
            "- rule: {name}\n  desc: d\n  condition: evt.type = open and fd.name = /etc/new-target\n  output: x\n  priority: WARNING\n"
        );
        rules
            .put(PutRequest {
                name: format!("new{s}.yaml"),
                content,
                expected_revision: None,
                comment: String::new(),
            })
            .await?;
        let returned = Instant::now();
        loop {
            let r = stream.message().await?.context("stream ended")?;
            if r.rule == name {
                latencies.push(returned.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
        // Take the rule out again so the next sample's rule is the first match.
        rules
            .delete(crate::proto::rules::DeleteRequest {
                name: format!("new{s}.yaml"),
                expected_revision: None,
                comment: String::new(),
            })
            .await?;
    }
    sender.abort();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "put returned -> first alert of the new rule: median {:.2} ms, max {:.2} ms ({} samples, events every 0.2 ms)",
        latencies[latencies.len() / 2],
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    );
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    Ok(0)
}

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct ScratchDir(pub(crate) std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory for one benchmark run.
pub(crate) fn scratch_dir(name: &str) -> anyhow::Result<ScratchDir> {
    let dir = std::env::temp_dir().join(format!("falco-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(ScratchDir(dir))
}
