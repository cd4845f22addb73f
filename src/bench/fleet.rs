//! `falco-api bench fleet`: forwarding throughput from a node's outputs log to a local
//! nats-server (JetStream, file storage, R1), beside bare async-nats JetStream publishes of the
//! same messages with the same window measured in the same run, then the collector's append
//! rate from that stream.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use clap::Args;

use crate::base::event::{OutputEvent, Priority};
use crate::config::FleetConfig;
use crate::services::App;
use crate::store::StoreOptions;

#[derive(Args, Debug)]
pub struct FleetBenchArgs {
    /// Alerts to forward.
    #[arg(long, default_value_t = 500_000)]
    pub alerts: u64,
    /// Publishes awaiting their PubAck at most (fleet.window).
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// A NATS server to use (default: start /usr/sbin/nats-server with JetStream in a temp dir).
    #[arg(long)]
    pub nats: Option<String>,
}

pub(super) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn start_nats(dir: &std::path::Path) -> anyhow::Result<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    let child = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("{binary}: {e} (install Debian's nats-server, or pass --nats)")
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((Server(child), format!("nats://127.0.0.1:{port}")))
}

fn sample(i: u64) -> OutputEvent {
    let time = 1_796_032_800_000_000_000 + i as i64;
    OutputEvent::new(
        time,
        Priority::Warning,
        "Read sensitive file untrusted",
        format!("12:00:00.000000000: Warning Sensitive file opened for reading by non-trusted program (file=/etc/shadow process=cat n={i})"),
        "syscall",
    )
    .with_hostname("node-1")
    .with_fields([
        ("fd.name", "/etc/shadow".to_string()),
        ("proc.name", "cat".to_string()),
        ("user.name", "root".to_string()),
        ("bench.n", i.to_string()),
    ])
}

pub async fn fleet_bench(args: FleetBenchArgs) -> anyhow::Result<i32> {
    let scratch = super::scratch_dir("fleet")?;
    let _nats;
    let url = match &args.nats {
        Some(u) => u.clone(),
        None => {
            let (server, url) = start_nats(&scratch.0.join("nats"))?;
            _nats = server;
            url
        }
    };
    let n = args.alerts.max(1);
    println!(
        "fleet bench: {n} alerts, window {}, NATS {url} (JetStream, file storage, R1)",
        args.window
    );
    let client = async_nats::connect(url.as_str()).await?;
    let js = jetstream::new(client);

    // Baseline: the same messages published straight to a stream, same window.
    let mut base_cfg = crate::fleet::stream_config(&FleetConfig {
        stream: "BASE".into(),
        replicas: 1,
        duplicate_window_secs: 120,
        ..Default::default()
    });
    base_cfg.subjects = vec!["base.>".into()];
    js.get_or_create_stream(base_cfg).await?;
    let messages: Arc<Vec<_>> = Arc::new(
        (1..=n)
            .map(|i| {
                let (subject, headers, body) = crate::fleet::wire::alert(i, &sample(i), false);
                (subject.replacen("falco.alerts", "base", 1), headers, body)
            })
            .collect(),
    );
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(args.window.max(1));
    let publisher = {
        let js = js.clone();
        let messages = messages.clone();
        tokio::spawn(async move {
            for (subject, headers, body) in messages.iter() {
                let ack = js
                    .publish_with_headers(subject.clone(), headers.clone(), body.clone().into())
                    .await?;
                if tx.send(ack).await.is_err() {
                    break;
                }
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    let mut acked = 0u64;
    while let Some(ack) = rx.recv().await {
        ack.await?;
        acked += 1;
    }
    publisher.await??;
    let base_rate = acked as f64 / started.elapsed().as_secs_f64();
    println!("baseline: bare async-nats JetStream publishes: {base_rate:.0} msgs/s");

    // Forwarding from a node's log.
    let opts = StoreOptions {
        outputs_capacity: n * 2,
        cache_bytes: 256 << 20,
        ..Default::default()
    };
    let node = App::open(&scratch.0.join("node"), &opts)?;
    let mut next = 1;
    while next <= n {
        let chunk: Vec<OutputEvent> = (next..=(next + 9_999).min(n)).map(sample).collect();
        next += chunk.len() as u64;
        node.logs.outputs.append(chunk).await?;
    }
    let cfg = FleetConfig {
        url: url.clone(),
        forward: true,
        window: args.window,
        stream: "FALCO".into(),
        consumer: "bench-collector".into(),
        replicas: 1,
        duplicate_window_secs: 120,
        ..Default::default()
    };
    js.get_or_create_stream(crate::fleet::stream_config(&cfg))
        .await?;
    let started = Instant::now();
    let forwarding = tokio::spawn(crate::fleet::forward(
        node.clone(),
        js.clone(),
        node.logs.outputs.clone(),
        "outputs",
        args.window,
        |seq, ev: &OutputEvent| crate::fleet::wire::alert(seq, ev, false),
    ));
    let consumers = node.store.consumers();
    while consumers
        .get("outputs", crate::fleet::FORWARDER)?
        .unwrap_or(0)
        < n
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let forward_rate = n as f64 / started.elapsed().as_secs_f64();
    node.shutdown.cancel();
    let _ = forwarding.await;
    node.close().await?;
    println!(
        "forwarding: {forward_rate:.0} alerts/s from the outputs log to JetStream; forwarding/baseline ratio {:.2}",
        forward_rate / base_rate
    );

    // Collecting the stream into a central log.
    let central = App::open(&scratch.0.join("central"), &opts)?;
    let started = Instant::now();
    let collecting = tokio::spawn(crate::fleet::collect(central.clone(), js.clone(), cfg));
    while central.logs.outputs.head() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let collect_rate = n as f64 / started.elapsed().as_secs_f64();
    central.shutdown.cancel();
    let _ = collecting.await;
    central.close().await?;
    println!("collecting: {collect_rate:.0} alerts/s appended (durably) from the stream");
    Ok(0)
}
