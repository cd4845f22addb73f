//! `falco-api bench crash`: the crash soak. Runs the server as a child process with a small
//! outputs log (so that retention trims it every round, by count and by bytes) and, each round,
//! drives concurrent inputs, consumer acknowledgements, config compare-and-swap changes and online
//! backups, `kill -9`s it at a random moment, restarts it and checks every promise the README
//! makes: every acknowledged alert and change is there unless retention trimmed it (oldest
//! first), the logs are contiguous, seqs, oldest seqs and revisions never go back, retention
//! holds, a consumer's stored position is never behind what it acknowledged more than the
//! documented batching delay before the crash, and every completed backup restores into a data
//! directory holding everything acknowledged before it was asked for.

mod backups;
mod verify;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tonic::transport::Channel;

use crate::cli::client;
use crate::proto::configs::{self, service_client::ServiceClient as ConfigsClient};
use crate::proto::inputs::{self, service_client::ServiceClient as InputsClient};
use crate::proto::outputs;
use backups::Limits;

/// How long a consumer acknowledgement may wait before it is durable (README, store docs).
const CONSUMER_DELAY: Duration = Duration::from_millis(250);
/// How often the load asks for a backup.
const BACKUP_EVERY: Duration = Duration::from_millis(120);

#[derive(Args, Debug)]
pub struct CrashBenchArgs {
    /// Kill-and-restart rounds.
    #[arg(long, default_value_t = 100)]
    pub rounds: u32,
    /// Longest time the load runs before the kill, in milliseconds (the kill comes at a random
    /// moment up to this).
    #[arg(long, default_value_t = 800)]
    pub max_run_ms: u64,
    /// Alerts the outputs log retains (small, so that every round trims).
    #[arg(long, default_value_t = 1500)]
    pub capacity: u64,
    /// Stored bytes of alerts the outputs log retains (the smallest budget the server takes, so
    /// that bytes trim too: each alert carries 0-1.5 KiB of incompressible padding).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_bytes: u64,
    /// Data directory (default: a fresh temp directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server binary (default: this one).
    #[arg(long)]
    pub server: Option<PathBuf>,
}

/// What was acknowledged before a kill.
#[derive(Default)]
struct Acked {
    /// (outputs seq, marker) of every alert of every acknowledged inputs batch.
    alerts: Vec<(u64, String)>,
    /// The last acknowledged config change: (revision, hostname value).
    config: Option<(u64, String)>,
    /// Consumer acknowledgements sent: (when, seq).
    consumer: Vec<(Instant, u64)>,
    /// The highest outputs seq any reply or stream showed.
    seen_head: u64,
    /// Backups completed.
    backups: Vec<backups::Taken>,
    /// Backup streams that ended cleanly without their summary (never expected).
    incomplete_backups: u64,
    /// When the server was killed.
    killed_at: Option<Instant>,
}

/// A small xorshift generator: the soak needs unpredictable moments, not statistics.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const RULES: &str = "- rule: Soak\n  desc: every open\n  condition: evt.type = open\n  output: \"soak %proc.name %proc.cmdline\"\n  priority: WARNING\n  source: syscall\n";

/// 0-1.5 KiB of text that does not compress, different for every `n`.
fn padding(n: u64) -> String {
    let mut rng = Rng(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = rng.below(1536) as usize;
    (0..len)
        .map(|_| char::from(b'!' + rng.below(94) as u8))
        .collect()
}

/// Totals over the whole soak.
#[derive(Default)]
struct Totals {
    /// Alerts, config changes, consumer positions and backups checked.
    kinds: [u64; 4],
    trimmed: u64,
    /// Kills that landed while the server was writing a backup (its temporary copy was left).
    kills_in_backup: u64,
    /// How many alerts the outputs log retained at the last check.
    retained: u64,
    violations: Vec<String>,
}

impl Totals {
    fn checked(&self) -> u64 {
        self.kinds.iter().sum()
    }

    fn add(&mut self, round: u32, report: verify::Report) {
        for (total, n) in self.kinds.iter_mut().zip(report.kinds) {
            *total += n;
        }
        self.trimmed += report.trimmed;
        self.retained = (report.seen.head + 1).saturating_sub(report.seen.oldest);
        self.violations.extend(
            report
                .violations
                .into_iter()
                .map(|v| format!("round {round}: {v}")),
        );
    }
}

pub async fn crash_bench(args: CrashBenchArgs) -> anyhow::Result<i32> {
    let (dir, remove) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("falco-api-crash-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let exe = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    // The soak's own files live beside the server's data directory, never in it.
    let scratch = dir.with_extension("soak");
    std::fs::create_dir_all(&scratch)?;
    let limits = Limits {
        capacity: args.capacity,
        max_bytes: args.max_bytes,
    };
    let rules = scratch.join("soak.yaml");
    std::fs::write(&rules, RULES)?;
    let config = scratch.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "outputs:\n  capacity: {}\n  max_bytes: {}\n",
            limits.capacity, limits.max_bytes
        ),
    )?;
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1);
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut before = Acked::default();
    let mut seen = verify::Seen::default();
    for round in 0..=args.rounds {
        let mut child = spawn(&exe, &dir, &rules, &config)?;
        let socket = dir.join("s.sock");
        let channel = wait_for(&socket, &mut child).await?;
        // Check what the previous round was told.
        let report = verify::verify(&channel, &before, seen, limits).await?;
        seen = report.seen;
        totals.add(round, report);
        for name in backups::leftovers(&dir) {
            totals.violations.push(format!(
                "round {round}: a temporary backup copy was left behind: {name}"
            ));
        }
        if round == args.rounds {
            kill(&mut child, false);
            break;
        }
        let acked = Arc::new(Mutex::new(Acked {
            config: before.config.clone(),
            seen_head: seen.head,
            ..Default::default()
        }));
        let run_for = Duration::from_millis(50 + rng.below(args.max_run_ms));
        let load = tokio::spawn(drive(
            channel.clone(),
            acked.clone(),
            round,
            scratch.clone(),
        ));
        tokio::time::sleep(run_for).await;
        kill(&mut child, true);
        totals.kills_in_backup += u64::from(!backups::leftovers(&dir).is_empty());
        acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .killed_at = Some(Instant::now());
        load.abort();
        let _ = load.await;
        let mut a = acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        before = std::mem::take(&mut *a);
        drop(channel);
        check_backups(round, &before, limits, &scratch, &mut totals)?;
        if round % 10 == 9 {
            println!(
                "round {}: {} acknowledged items checked, {} violations",
                round + 1,
                totals.checked(),
                totals.violations.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let [alerts, changes, positions, restored] = totals.kinds;
    println!(
        "crash soak: {} rounds in {:.1} s (redb store), {} acknowledged items checked \
         ({alerts} alerts, {changes} config changes, {positions} consumer positions, \
         {restored} backups restored), {} acknowledged alerts trimmed by retention \
         (capacity {}, max_bytes {}; {} retained at the end), {} kills during a backup, \
         {} violations",
        args.rounds,
        started.elapsed().as_secs_f64(),
        totals.checked(),
        totals.trimmed,
        limits.capacity,
        limits.max_bytes,
        totals.retained,
        totals.kills_in_backup,
        totals.violations.len()
    );
    for v in totals.violations.iter().take(20) {
        println!("violation: {v}");
    }
    Ok(if totals.violations.is_empty() { 0 } else { 1 })
}

/// Restores and checks every backup the round completed.
fn check_backups(
    round: u32,
    acked: &Acked,
    limits: Limits,
    scratch: &Path,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    if acked.incomplete_backups > 0 {
        totals.violations.push(format!(
            "round {round}: {} backup streams ended without their summary",
            acked.incomplete_backups
        ));
    }
    for taken in &acked.backups {
        let found = backups::verify(taken, &acked.alerts, limits, scratch)?;
        totals.kinds[3] += 1;
        totals
            .violations
            .extend(found.into_iter().map(|v| format!("round {round}: {v}")));
    }
    Ok(())
}

fn spawn(exe: &Path, dir: &Path, rules: &Path, config: &Path) -> anyhow::Result<Child> {
    Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(dir.join("s.sock"))
        .arg("--rules")
        .arg(rules)
        .arg("--log-level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the server")
}

async fn wait_for(socket: &Path, child: &mut Child) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the server exited at start: {status}");
        }
        if let Ok(channel) = client::connect_unix(socket).await {
            let mut version =
                crate::proto::version::service_client::ServiceClient::new(channel.clone());
            if version
                .version(crate::proto::version::Request {})
                .await
                .is_ok()
            {
                return Ok(channel);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(child: &mut Child, hard: bool) {
    let signal = if hard { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Runs the four kinds of load until aborted.
async fn drive(channel: Channel, acked: Arc<Mutex<Acked>>, round: u32, scratch: PathBuf) {
    let inputs = send_events(channel.clone(), acked.clone(), round);
    let consumer = consume(channel.clone(), acked.clone());
    let config = change_config(channel.clone(), acked.clone(), round);
    let backups = backups::take(channel, acked, scratch, BACKUP_EVERY);
    let _ = tokio::join!(inputs, consumer, config, backups);
}

async fn send_events(channel: Channel, acked: Arc<Mutex<Acked>>, round: u32) -> anyhow::Result<()> {
    let mut client = InputsClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = client
        .send(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut pending = std::collections::VecDeque::new();
    let mut seq = 0u64;
    loop {
        let markers: Vec<String> = (0..20).map(|i| format!("r{round}-b{seq}-{i}")).collect();
        let events = markers
            .iter()
            .enumerate()
            .map(|(i, m)| inputs::Event {
                source: "syscall".into(),
                payload: serde_json::json!({
                    "evt.type": "open",
                    "proc.name": m,
                    "proc.cmdline": padding(seq * 20 + i as u64),
                })
                .to_string()
                .into_bytes(),
                time: None,
                hostname: String::new(),
                seq: seq * 20 + i as u64 + 1,
            })
            .collect();
        tx.send(inputs::Request { events }).await?;
        pending.push_back(markers);
        seq += 1;
        let Some(reply) = responses.message().await? else {
            return Ok(());
        };
        let markers = pending.pop_front().unwrap_or_default();
        if reply.last_output_seq >= reply.first_output_seq && reply.first_output_seq > 0 {
            let mut a = acked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, m) in markers.into_iter().enumerate() {
                a.alerts.push((reply.first_output_seq + i as u64, m));
            }
            a.seen_head = a.seen_head.max(reply.last_output_seq);
        }
    }
}

async fn consume(channel: Channel, acked: Arc<Mutex<Acked>>) -> anyhow::Result<()> {
    let first = outputs::Request {
        consumer: "soak".into(),
        from_oldest: true,
        ..Default::default()
    };
    let (tx, mut stream) = super::subscribe(&channel, first).await?;
    while let Some(message) = stream.message().await? {
        if message.seq == 0 {
            continue;
        }
        tx.send(outputs::Request {
            ack: message.seq,
            ..Default::default()
        })
        .await?;
        let mut a = acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        a.consumer.push((Instant::now(), message.seq));
        a.seen_head = a.seen_head.max(message.seq);
    }
    Ok(())
}

async fn change_config(
    channel: Channel,
    acked: Arc<Mutex<Acked>>,
    round: u32,
) -> anyhow::Result<()> {
    let mut client = ConfigsClient::new(channel);
    // Start from what the server has: the last change before a kill may have landed unanswered.
    let now = client
        .get(configs::GetRequest {
            keys: vec!["hostname".into()],
            revision: 0,
        })
        .await?
        .into_inner();
    let mut expected = now.entries.first().map_or(0, |e| e.revision);
    for i in 0.. {
        let value = format!("soak-{round}-{i}");
        let reply = client
            .set(configs::SetRequest {
                values: [("hostname".to_string(), value.clone())].into(),
                expected_revision: Some(expected),
                comment: String::new(),
            })
            .await?;
        let revision = reply.into_inner().revision;
        expected = revision;
        acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config = Some((revision, value));
    }
    Ok(())
}
