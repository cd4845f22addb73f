//! `falco-api bench crash`: the crash soak. Runs the server as a child process and, each round,
//! drives concurrent inputs, consumer acknowledgements and config compare-and-swap changes,
//! `kill -9`s it at a random moment, restarts it and checks every promise the README makes:
//! every acknowledged alert and change is there, the outputs and drops logs are contiguous, seqs
//! and revisions never go back, and a consumer's stored position is never behind what it
//! acknowledged more than the documented batching delay before the crash.

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
use crate::proto::outputs::{self, service_client::ServiceClient as OutputsClient};

/// How long a consumer acknowledgement may wait before it is durable (README, store docs).
const CONSUMER_DELAY: Duration = Duration::from_millis(250);

#[derive(Args, Debug)]
pub struct CrashBenchArgs {
    /// Kill-and-restart rounds.
    #[arg(long, default_value_t = 100)]
    pub rounds: u32,
    /// Longest time the load runs before the kill, in milliseconds (the kill comes at a random
    /// moment up to this).
    #[arg(long, default_value_t = 800)]
    pub max_run_ms: u64,
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

const RULES: &str = "- rule: Soak\n  desc: every open\n  condition: evt.type = open\n  output: \"soak %proc.name\"\n  priority: WARNING\n  source: syscall\n";

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
    let rules = dir.join("soak.yaml");
    std::fs::write(&rules, RULES)?;
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1);
    let started = Instant::now();
    let (mut checked, mut violations) = (0u64, Vec::new());
    let mut kinds = [0u64; 3];
    let mut before = Acked::default();
    let mut last_consumer = 0u64;
    let mut last_revision = 0u64;
    let mut verified_head = 0u64;
    for round in 0..=args.rounds {
        let mut child = spawn(&exe, &dir, &rules)?;
        let socket = dir.join("s.sock");
        let channel = wait_for(&socket, &mut child).await?;
        // Check what the previous round was told.
        let report = verify(
            &channel,
            &before,
            verified_head,
            last_consumer,
            last_revision,
        )
        .await?;
        verified_head = report.head;
        checked += report.checked;
        for (total, n) in kinds.iter_mut().zip(report.kinds) {
            *total += n;
        }
        for v in report.violations {
            violations.push(format!("round {round}: {v}"));
        }
        last_consumer = report.consumer_position;
        last_revision = report.revision;
        if round == args.rounds {
            kill(&mut child, false);
            break;
        }
        let acked = Arc::new(Mutex::new(Acked {
            config: before.config.clone(),
            seen_head: report.head,
            ..Default::default()
        }));
        let run_for = Duration::from_millis(50 + rng.below(args.max_run_ms));
        let load = tokio::spawn(drive(channel.clone(), acked.clone(), round));
        tokio::time::sleep(run_for).await;
        kill(&mut child, true);
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
        if round % 10 == 9 {
            println!(
                "round {}: {checked} acknowledged items checked, {} violations",
                round + 1,
                violations.len()
            );
        }
    }
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "crash soak: {} rounds in {:.1} s (redb store), {checked} acknowledged items checked \
         ({} alerts, {} config changes, {} consumer positions), {} violations",
        args.rounds,
        started.elapsed().as_secs_f64(),
        kinds[0],
        kinds[1],
        kinds[2],
        violations.len()
    );
    for v in violations.iter().take(20) {
        println!("violation: {v}");
    }
    Ok(if violations.is_empty() { 0 } else { 1 })
}

fn spawn(exe: &Path, dir: &Path, rules: &Path) -> anyhow::Result<Child> {
    Command::new(exe)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(dir.join("s.sock"))
        .arg("--rules")
        .arg(rules)
        .arg("--outputs-capacity")
        .arg("100000000")
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

/// Runs the three kinds of load until aborted.
async fn drive(channel: Channel, acked: Arc<Mutex<Acked>>, round: u32) {
    let inputs = send_events(channel.clone(), acked.clone(), round);
    let consumer = consume(channel.clone(), acked.clone());
    let config = change_config(channel, acked, round);
    let _ = tokio::join!(inputs, consumer, config);
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
                payload: serde_json::json!({"evt.type": "open", "proc.name": m})
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

struct Report {
    checked: u64,
    /// Alerts, config changes and consumer positions checked.
    kinds: [u64; 3],
    violations: Vec<String>,
    consumer_position: u64,
    revision: u64,
    head: u64,
}

/// Checks what the last round was told against the restarted server. The outputs log is read
/// from `verified` on (what earlier rounds checked is append-only history; the soak never trims).
async fn verify(
    channel: &Channel,
    acked: &Acked,
    verified: u64,
    last_consumer: u64,
    last_revision: u64,
) -> anyhow::Result<Report> {
    let mut violations = Vec::new();
    let mut outputs = OutputsClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut stream = outputs
        .get(outputs::Request {
            after_seq: Some(verified),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut log = std::collections::HashMap::new();
    let mut expected_seq = verified + 1;
    while let Some(m) = stream.message().await? {
        if m.seq != expected_seq {
            violations.push(format!(
                "outputs log not contiguous: seq {} where {expected_seq} was due",
                m.seq
            ));
        }
        expected_seq = m.seq + 1;
        log.insert(
            m.seq,
            m.output_fields
                .get("proc.name")
                .cloned()
                .unwrap_or_default(),
        );
    }
    let head = expected_seq - 1;
    if head < acked.seen_head {
        violations.push(format!(
            "outputs head went back from {} to {head}",
            acked.seen_head
        ));
    }
    let mut checked = 0u64;
    let mut kinds = [0u64; 3];
    for (seq, marker) in &acked.alerts {
        checked += 1;
        kinds[0] += 1;
        match log.get(seq) {
            Some(found) if found == marker => {}
            Some(found) => {
                violations.push(format!("seq {seq} holds {found}, acknowledged as {marker}"))
            }
            None => violations.push(format!(
                "acknowledged alert {marker} (seq {seq}) is missing"
            )),
        }
    }
    // Drops: contiguous too.
    let mut drops = crate::proto::drops::service_client::ServiceClient::new(channel.clone());
    let mut stream = drops
        .get(crate::proto::drops::Request {
            after_seq: Some(0),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut next = 1u64;
    while let Some(d) = stream.message().await? {
        if d.seq != next {
            violations.push(format!(
                "drops log not contiguous: seq {} where {next} was due",
                d.seq
            ));
        }
        next = d.seq + 1;
    }
    // Config: the last acknowledged change is there, and revisions never went back.
    let mut configs = ConfigsClient::new(channel.clone());
    let got = configs
        .get(configs::GetRequest {
            keys: vec!["hostname".into()],
            revision: 0,
        })
        .await?
        .into_inner();
    let revision = got.revision;
    if revision < last_revision {
        violations.push(format!(
            "revision went back from {last_revision} to {revision}"
        ));
    }
    if let Some((acked_rev, value)) = &acked.config {
        checked += 1;
        kinds[1] += 1;
        let entry = got.entries.first();
        match entry {
            Some(e) if e.revision > *acked_rev => {}
            Some(e) if e.revision == *acked_rev && &e.value == value => {}
            other => violations.push(format!(
                "acknowledged config change {value} (revision {acked_rev}) is missing: {other:?}"
            )),
        }
    }
    // The consumer: never behind what it acknowledged more than the batching delay before.
    let position = consumer_position(channel, head).await?;
    let killed_at = acked.killed_at.unwrap_or_else(Instant::now);
    let durable = acked
        .consumer
        .iter()
        .filter(|(at, _)| killed_at.duration_since(*at) > CONSUMER_DELAY)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0);
    if !acked.consumer.is_empty() {
        checked += 1;
        kinds[2] += 1;
    }
    if position < durable.max(last_consumer.min(head)) {
        violations.push(format!(
            "consumer position {position} is behind {} (acknowledged more than {CONSUMER_DELAY:?} before the kill, or stored before)",
            durable.max(last_consumer)
        ));
    }
    Ok(Report {
        checked,
        kinds,
        violations,
        consumer_position: position,
        revision,
        head,
    })
}

/// The consumer's stored position: a `sub` that names it, without acknowledging anything,
/// resumes right after it.
async fn consumer_position(channel: &Channel, head: u64) -> anyhow::Result<u64> {
    let first = outputs::Request {
        consumer: "soak".into(),
        from_oldest: true,
        ..Default::default()
    };
    let (_tx, mut stream) = super::subscribe(channel, first).await?;
    match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
        Ok(Ok(Some(m))) if m.seq > 0 => Ok(m.seq - 1),
        Ok(Ok(Some(m))) => Ok(m
            .output_fields
            .get("next_seq")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1)
            - 1),
        // Nothing after it: it is at the head.
        _ => Ok(head),
    }
}
