//! The fleet over real NATS servers (Debian's nats-server, JetStream on, loopback, temp dirs):
//! a node forwards, a collector collects; NATS outages, a kill -9 of the forwarder, and the
//! leader of a replicated stream killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use falco_api::base::event::{DropRecord, OutputEvent};
use falco_api::config::FleetConfig;
use falco_api::pipeline::Settings;
use falco_api::services::control::Change;

use crate::common::events::{send_all, syscall_event, SYSCALL_RULES};
use crate::common::process::{cli_output, serve_args, spawn_serve, wait_exit};
use crate::common::{free_port, packaged, wait_until, TestServer};

/// One nats-server with JetStream, optionally in a cluster.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub name: String,
    dir: PathBuf,
    cluster: Option<(u16, Vec<u16>)>,
    extra: Vec<String>,
}

impl Nats {
    pub fn start(dir: &Path, name: &str) -> Nats {
        let mut n = Nats {
            child: None,
            port: free_port(),
            name: name.to_string(),
            dir: dir.join(name),
            cluster: None,
            extra: Vec::new(),
        };
        n.run();
        n
    }

    /// Three servers in one JetStream cluster.
    pub fn cluster(dir: &Path) -> Vec<Nats> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut all: Vec<Nats> = (0..3)
            .map(|i| Nats {
                child: None,
                port: free_port(),
                name: format!("n{i}"),
                dir: dir.join(format!("n{i}")),
                cluster: Some((routes[i], routes.clone())),
                extra: Vec::new(),
            })
            .collect();
        for n in &mut all {
            n.run();
        }
        all
    }

    /// A server with TLS (a certificate for localhost from `certs`) that asks for a password.
    pub fn start_guarded(dir: &Path, certs: &Path) -> Nats {
        let mut n = Nats {
            child: None,
            port: free_port(),
            name: "guarded".into(),
            dir: dir.join("guarded"),
            cluster: None,
            extra: Vec::new(),
        };
        n.extra = vec![
            "--tls".into(),
            "--tlscert".into(),
            certs.join("server.crt").display().to_string(),
            "--tlskey".into(),
            certs.join("server.key").display().to_string(),
            "--user".into(),
            "falco".into(),
            "--pass".into(),
            "s3cret".into(),
        ];
        n.run();
        n
    }

    fn run(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut cmd = Command::new(packaged(
            "NATS_SERVER",
            "/usr/sbin/nats-server",
            "nats-server",
        ));
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--server_name", &self.name])
            .arg("-sd")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((own, routes)) = &self.cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--cluster_name", "falco-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{own}")])
                .args(["--routes", &routes.join(",")]);
        }
        self.child = Some(cmd.spawn().expect("start nats-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn fleet(url: &str, forward: bool, collect: bool) -> FleetConfig {
    FleetConfig {
        url: url.to_string(),
        forward,
        collect,
        window: 256,
        consumer: "central".into(),
        stream: "FALCO".into(),
        replicas: 1,
        duplicate_window_secs: 120,
        rules_bucket: "falco-rules".into(),
        ..Default::default()
    }
}

/// Every alert in a server's outputs log.
pub fn alerts(server: &TestServer) -> Vec<OutputEvent> {
    let ring = server.app.store.outputs();
    ring.read(0, ring.bounds().newest, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

pub fn drops(server: &TestServer) -> Vec<DropRecord> {
    let ring = server.app.store.drops();
    ring.read(0, ring.bounds().newest, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// Waits until nothing more can reach the collector: `node`'s forwarder (when given) has
/// published its whole outputs log, and the collector's durable consumer on the NATS at `urls`
/// has nothing pending or unacknowledged. The positive signal a count needs before it asserts
/// that nothing arrived twice (instead of a fixed sleep).
async fn wait_settled(urls: &str, node: Option<&TestServer>, within: Duration) {
    let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().unwrap()).collect();
    let js = async_nats::jetstream::new(async_nats::connect(addrs).await.unwrap());
    let names = fleet(urls, false, true);
    let idle = || async {
        let stream = js.get_stream(&names.stream).await.ok()?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&names.consumer).await.ok()?;
        let info = consumer.info().await.ok()?;
        Some(info.num_pending == 0 && info.num_ack_pending == 0)
    };
    let deadline = Instant::now() + within;
    loop {
        let forwarded = node.is_none_or(|n| {
            let at = n
                .app
                .store
                .consumers()
                .get("outputs", falco_api::fleet::FORWARDER);
            at.unwrap() == Some(n.app.logs.outputs.head())
        });
        if forwarded && idle().await == Some(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not settle within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `falco-api.yaml` in `home` that forwards to the NATS at `url` with a 64-message window.
fn forwarding_config(home: &Path, url: &str) -> PathBuf {
    let config = home.join("falco-api.yaml");
    std::fs::write(
        &config,
        format!("fleet:\n  nats:\n    url: {url}\n  window: 64\n"),
    )
    .unwrap();
    config
}

fn batch(first: u64, n: u64) -> Vec<falco_api::proto::inputs::Event> {
    (first..first + n)
        .map(|i| syscall_event(i, "open", "/etc/shadow"))
        .collect()
}

fn ids(events: &[OutputEvent]) -> Vec<[u8; 16]> {
    events.iter().map(|e| e.id).collect()
}

/// Asserts that the collector holds the node's alerts once each, in order; on a difference it
/// says where and how (missing, doubled or moved) rather than printing both lists whole.
fn assert_same_alerts(collected: &[OutputEvent], sent: &[OutputEvent]) {
    let (got, want) = (ids(collected), ids(sent));
    if got == want {
        return;
    }
    let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
    let index = |list: &[[u8; 16]], id: &[u8; 16]| list.iter().position(|x| x == id);
    let unique: std::collections::HashSet<_> = got.iter().collect();
    panic!(
        "every alert once, in order: the collector's {} alerts and the node's {} differ first at \
         index {at}; the collector holds {} distinct; there the collector has the node's alert \
         #{:?} and the node has one the collector holds at #{:?}",
        got.len(),
        want.len(),
        unique.len(),
        got.get(at).and_then(|id| index(&want, id)),
        want.get(at).and_then(|id| index(&got, id)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_forwards_and_the_collector_holds_the_same_records() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), "solo");
    let node = TestServer::start_with(10_000, Settings::default(), &[SYSCALL_RULES]).await;
    let central = TestServer::start(10_000).await;
    // This node sends protobuf bodies (the other tests: Falco's JSON); the collector reads both.
    let mut node_cfg = fleet(&nats.url(), true, false);
    node_cfg.protobuf = true;
    falco_api::fleet::start(&node.app, &node_cfg);
    falco_api::fleet::start(&central.app, &fleet(&nats.url(), false, true));
    send_all(&node, vec![batch(1, 50), batch(51, 50)]).await;
    node.app
        .logs
        .drops
        .append(vec![DropRecord::now(
            "ingest_queue_full",
            "syscall",
            "uid:7",
            3,
            9,
            "full".into(),
        )])
        .await
        .unwrap();
    wait_until("collection", Duration::from_secs(20), || {
        central.app.logs.outputs.head() == 100 && central.app.logs.drops.head() == 1
    })
    .await;
    let (mine, theirs) = (alerts(&node), alerts(&central));
    assert_eq!(theirs, mine, "the same records, in the same order");
    assert_eq!(drops(&central), drops(&node));
    // Hostname filters work on the collector (it is the node's hostname, kept).
    let host = node.app.current_hostname();
    assert!(theirs.iter().all(|e| e.hostname == host));
    let tail = |h: &str| {
        let out = cli_output(
            &central.socket,
            &["tail", "--after", "0", "--once", "--json", "--hostname", h],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    assert_eq!(tail(&host), 100);
    assert_eq!(tail("some-other-node"), 0);
    node.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_10_s_while_alerts_flow_loses_and_doubles_nothing() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path(), "solo");
    let node = TestServer::start_with(100_000, Settings::default(), &[SYSCALL_RULES]).await;
    let central = TestServer::start(100_000).await;
    falco_api::fleet::start(&node.app, &fleet(&nats.url(), true, false));
    falco_api::fleet::start(&central.app, &fleet(&nats.url(), false, true));
    let mut next = 1;
    let mut flow = |n: u64| {
        let b = batch(next, n);
        next += n;
        b
    };
    send_all(&node, vec![flow(200)]).await;
    wait_until("the first alerts", Duration::from_secs(20), || {
        central.app.logs.outputs.head() == 200
    })
    .await;
    nats.kill();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        send_all(&node, vec![flow(100)]).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nats.restart();
    send_all(&node, vec![flow(100)]).await;
    let total = node.app.logs.outputs.head();
    assert!(total > 1000, "{total}");
    wait_until(
        "everything after the outage",
        Duration::from_secs(60),
        || central.app.logs.outputs.head() >= total,
    )
    .await;
    wait_settled(&nats.url(), Some(&node), Duration::from_secs(30)).await;
    assert_eq!(
        central.app.logs.outputs.head(),
        total,
        "no duplicate arrived late"
    );
    assert_same_alerts(&alerts(&central), &alerts(&node));
    node.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_forwarder_mid_stream_loses_and_doubles_nothing() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), "solo");
    let central = TestServer::start(100_000).await;
    falco_api::fleet::start(&central.app, &fleet(&nats.url(), false, true));
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let rules = home.path().join("rules.yaml");
    std::fs::write(&rules, SYSCALL_RULES).unwrap();
    let config = forwarding_config(home.path(), &nats.url());
    let args = serve_args(
        &data,
        &sock,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let events = home.path().join("events.jsonl");
    let lines: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"evt.type\":\"open\",\"fd.name\":\"/etc/shadow\",\"proc.name\":\"p{i}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&events, lines).unwrap();
    let mut running = spawn_serve(home.path(), &args);
    assert!(
        running.lines.iter().any(|l| l.starts_with("fleet: NATS")),
        "{:?}",
        running.lines
    );
    let out = cli_output(
        &sock,
        &["send", "--source", "syscall", events.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    // Forwarding is under way, not finished: kill -9 now.
    wait_until("some forwarding", Duration::from_secs(20), || {
        central.app.logs.outputs.head() > 0
    })
    .await;
    running.child.kill().unwrap();
    let _ = running.child.wait();
    let at_kill = central.app.logs.outputs.head();
    let mut running = spawn_serve(home.path(), &args);
    wait_until(
        "the rest after the restart",
        Duration::from_secs(60),
        || central.app.logs.outputs.head() >= 20_000,
    )
    .await;
    wait_settled(&nats.url(), None, Duration::from_secs(30)).await;
    let collected = alerts(&central);
    assert_eq!(
        collected.len(),
        20_000,
        "every alert once (killed at {at_kill})"
    );
    let mut names: Vec<&str> = collected
        .iter()
        .map(|e| {
            e.output_fields
                .iter()
                .find(|(k, _)| k == "proc.name")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 20_000, "no duplicates");
    println!("fleet: forwarder killed with {at_kill} of 20000 alerts collected; all 20000 once after restart");
    crate::common::process::sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_of_a_replicated_stream_killed_mid_stream_loses_and_doubles_nothing() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Nats::cluster(dir.path());
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let mut cfg = fleet(&urls, true, false);
    cfg.replicas = 3;
    let node = TestServer::start_with(100_000, Settings::default(), &[SYSCALL_RULES]).await;
    let central = TestServer::start(100_000).await;
    falco_api::fleet::start(&node.app, &cfg);
    let mut central_cfg = cfg.clone();
    central_cfg.forward = false;
    central_cfg.collect = true;
    falco_api::fleet::start(&central.app, &central_cfg);
    let mut next = 1;
    let mut flow = |n: u64| {
        let b = batch(next, n);
        next += n;
        b
    };
    send_all(&node, vec![flow(300)]).await;
    wait_until(
        "the first alerts through the cluster",
        Duration::from_secs(60),
        || central.app.logs.outputs.head() == 300,
    )
    .await;
    // Who leads the stream now?
    let addrs: Vec<async_nats::ServerAddr> =
        servers.iter().map(|s| s.url().parse().unwrap()).collect();
    let client = async_nats::connect(addrs).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("FALCO").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader");
    let victim = servers.iter_mut().find(|s| s.name == leader).unwrap();
    for round in 0..10 {
        send_all(&node, vec![flow(100)]).await;
        if round == 3 {
            victim.kill();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = node.app.logs.outputs.head();
    wait_until(
        "everything through the new leader",
        Duration::from_secs(60),
        || central.app.logs.outputs.head() >= total,
    )
    .await;
    wait_settled(&urls, Some(&node), Duration::from_secs(30)).await;
    assert_eq!(central.app.logs.outputs.head(), total);
    assert_same_alerts(&alerts(&central), &alerts(&node));
    println!("fleet: stream leader {leader} killed; {total} alerts collected once each");
    node.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_change_reaches_the_following_nodes_and_a_bad_one_is_refused_and_reported() {
    let _heavy = crate::common::HEAVY.lock().await;
    use falco_api::config::FleetRules;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), "solo");
    let named = |host: &str| {
        let mut s = Settings::default();
        s.output.hostname = host.to_string();
        s
    };
    let publisher = TestServer::start_with(1000, named("publisher"), &[]).await;
    let followers = [
        TestServer::start_with(1000, named("follower-1"), &[]).await,
        TestServer::start_with(1000, named("follower-2"), &[]).await,
    ];
    let mut cfg = fleet(&nats.url(), false, false);
    cfg.rules = FleetRules::Publish;
    falco_api::fleet::start(&publisher.app, &cfg);
    cfg.rules = FleetRules::Follow;
    for f in &followers {
        falco_api::fleet::start(&f.app, &cfg);
    }
    let rule = |name: &str, field: &str| {
        format!("- rule: {name}\n  desc: d\n  condition: evt.type = open and {field} = /etc/shadow\n  output: \"{name} %proc.name\"\n  priority: WARNING\n")
    };
    let app = publisher.app.clone();
    let r1 = tokio::task::spawn_blocking(move || {
        app.rules.put(
            "fleet.yaml",
            &rule("Shadow", "fd.name"),
            Change {
                expected: Some(0),
                author: "cn:ops",
                comment: "first",
            },
        )
    })
    .await
    .unwrap()
    .unwrap()
    .0;
    let reports = |want: u64| {
        let publisher = publisher.app.clone();
        move || {
            let nodes = publisher.nodes.fleet.list();
            nodes.len() == 2
                && nodes
                    .iter()
                    .all(|n| n.applied_revision == want && n.error.is_empty())
        }
    };
    wait_until(
        "both followers at the first revision",
        Duration::from_secs(20),
        reports(r1),
    )
    .await;
    for f in &followers {
        let (files, _) = f.app.rules.list(0).unwrap();
        assert_eq!(files["fleet.yaml"].value, rule("Shadow", "fd.name"));
        let h = f.app.rules.history("fleet.yaml", 0, 1).unwrap();
        assert_eq!(h[0].author, "fleet:publisher");
        // Local writes are refused, naming the publisher.
        assert_eq!(f.app.rules.publisher().as_deref(), Some("publisher"));
        let e = f
            .app
            .rules
            .put(
                "local.yaml",
                &rule("L", "fd.name"),
                Change {
                    expected: Some(0),
                    author: "uid:0",
                    comment: "",
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("follow the fleet"), "{e}");
    }

    // A newer publisher's change using a field this engine lacks: refused, reported, and the
    // followers keep their rules. (Written to the bucket directly, as a newer engine would.)
    let client = async_nats::connect(nats.url()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("falco-rules")
        .await
        .unwrap();
    let bad = serde_json::json!({"name": "fleet.yaml", "content": rule("Shadow", "proc.field_from_the_future"), "revision": 99});
    kv.put(
        format!("files.{}", hex::encode("fleet.yaml")),
        bad.to_string().into(),
    )
    .await
    .unwrap();
    kv.put("head", serde_json::json!({"revision": 99, "publisher": "newer-node", "author": "cn:x", "comment": ""}).to_string().into()).await.unwrap();
    wait_until("both refusals reported", Duration::from_secs(20), || {
        let nodes = publisher.app.nodes.fleet.list();
        nodes.len() == 2
            && nodes
                .iter()
                .all(|n| n.seen_revision == 99 && !n.error.is_empty())
    })
    .await;
    for n in publisher.app.nodes.fleet.list() {
        assert_eq!(n.applied_revision, r1, "still at the last good revision");
        assert!(
            n.error.contains("proc.field_from_the_future"),
            "{}",
            n.error
        );
    }
    for f in &followers {
        let (files, _) = f.app.rules.list(0).unwrap();
        assert_eq!(
            files["fleet.yaml"].value,
            rule("Shadow", "fd.name"),
            "previous rules kept"
        );
        assert!(f.app.rules.effective().0.iter().any(|r| r.name == "Shadow"));
    }
    // fleet status on the publisher shows the refusals (exit 1: nodes behind or refusing).
    let out = crate::common::process::cli_output(&publisher.socket, &["fleet", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("REFUSED revision 99"), "{text}");

    // The real publisher's next change (valid) brings them back.
    let app = publisher.app.clone();
    let r2 = tokio::task::spawn_blocking(move || {
        app.rules.put(
            "more.yaml",
            &rule("Passwd", "fd.name"),
            Change {
                expected: Some(0),
                author: "cn:ops",
                comment: "second",
            },
        )
    })
    .await
    .unwrap()
    .unwrap()
    .0;
    wait_until(
        "both followers at the second revision",
        Duration::from_secs(20),
        reports(r2),
    )
    .await;
    for f in &followers {
        let (files, _) = f.app.rules.list(0).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            files["fleet.yaml"].value,
            rule("Shadow", "fd.name"),
            "the publisher's state, not the newer node's"
        );
    }
    // A tuning on the publisher travels like any file; a follower cannot tune locally.
    let alert = falco_api::base::event::OutputEvent::new(
        0,
        falco_api::base::event::Priority::Warning,
        "Shadow",
        "Shadow cat",
        "syscall",
    )
    .with_fields([("proc.name", "cat")]);
    let seq = publisher
        .app
        .logs
        .outputs
        .append(vec![alert])
        .await
        .unwrap()
        .start;
    let ask = falco_api::services::control::rules::TuneAsk {
        seq,
        fields: vec!["proc.name".into()],
        days: 7,
        examples: 3,
        ..Default::default()
    };
    let app = publisher.app.clone();
    let asked = ask.clone();
    let r3 = tokio::task::spawn_blocking(move || {
        app.rules.tune(
            app.logs.outputs_log(),
            &asked,
            Change::by("cn:ops", "cat is fine"),
        )
    })
    .await
    .unwrap()
    .unwrap()
    .revision;
    wait_until(
        "both followers at the tuning's revision",
        Duration::from_secs(20),
        reports(r3),
    )
    .await;
    let tuning = falco_api::services::control::rules::TUNING_FILE;
    let published = publisher.app.rules.get(tuning, 0).unwrap().value;
    for f in &followers {
        assert_eq!(f.app.rules.get(tuning, 0).unwrap().value, published);
        let seq = f
            .app
            .logs
            .outputs
            .append(vec![falco_api::base::event::OutputEvent::new(
                0,
                falco_api::base::event::Priority::Warning,
                "Passwd",
                "Passwd vi",
                "syscall",
            )
            .with_fields([("proc.name", "vi")])])
            .await
            .unwrap()
            .start;
        let mut local = ask.clone();
        local.seq = seq;
        let app = f.app.clone();
        let e = tokio::task::spawn_blocking(move || {
            app.rules
                .tune(app.logs.outputs_log(), &local, Change::by("uid:0", ""))
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(e.to_string().contains("follow the fleet"), "{e}");
    }
    let out = crate::common::process::cli_output(&publisher.socket, &["fleet", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    publisher.stop().await;
    for f in followers {
        f.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_trimmed_before_they_were_forwarded_are_a_drop_with_their_count() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path(), "solo");
    let node = TestServer::start_with(100, Settings::default(), &[SYSCALL_RULES]).await;
    let central = TestServer::start(10_000).await;
    falco_api::fleet::start(&node.app, &fleet(&nats.url(), true, false));
    falco_api::fleet::start(&central.app, &fleet(&nats.url(), false, true));
    send_all(&node, vec![batch(1, 50)]).await;
    wait_until("the first 50", Duration::from_secs(20), || {
        central.app.logs.outputs.head() == 50
    })
    .await;
    nats.kill();
    // 300 more while NATS is away: the node's log keeps 100, so 200 are never forwarded.
    for i in 0..3 {
        send_all(&node, vec![batch(51 + i * 100, 100)]).await;
    }
    nats.restart();
    wait_until("the retained alerts", Duration::from_secs(60), || {
        central.app.logs.outputs.head() >= 150
    })
    .await;
    wait_until("the drop record", Duration::from_secs(20), || {
        drops(&node)
            .iter()
            .any(|d| d.stage == falco_api::fleet::LAGGED_STAGE)
    })
    .await;
    let lagged: Vec<DropRecord> = drops(&node)
        .into_iter()
        .filter(|d| d.stage == falco_api::fleet::LAGGED_STAGE)
        .collect();
    let lost: u64 = lagged.iter().map(|d| d.n_drops).sum();
    assert_eq!(lost, 200, "{lagged:?}");
    // What arrived: the first 50 and the 100 the node kept, once each.
    wait_settled(&nats.url(), Some(&node), Duration::from_secs(30)).await;
    let got = alerts(&central);
    let mut seen: Vec<[u8; 16]> = got.iter().map(|e| e.id).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), got.len());
    // The loss itself is also an internal alert on the node, forwarded like any other.
    let notices = alerts(&node)
        .iter()
        .filter(|e| e.rule == falco_api::services::logs::DROP_RULE)
        .count() as u64;
    assert_eq!(central.app.logs.outputs.head(), 150 + notices);
    node.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_over_tls_with_a_password_and_refused_with_a_wrong_one() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::common::localhost_certs();
    let nats = Nats::start_guarded(dir.path(), certs.path());
    let url = format!("tls://localhost:{}", nats.port);
    let with = |password: &str, forward: bool| {
        let mut c = fleet(&url, forward, !forward);
        c.tls_ca = Some(certs.path().join("ca.crt"));
        c.user_password = Some(("falco".into(), password.into()));
        c
    };
    let node = TestServer::start_with(10_000, Settings::default(), &[SYSCALL_RULES]).await;
    let central = TestServer::start(10_000).await;
    let intruder = TestServer::start(10_000).await;
    falco_api::fleet::start(&node.app, &with("s3cret", true));
    falco_api::fleet::start(&central.app, &with("s3cret", false));
    falco_api::fleet::start(&intruder.app, &with("wrong", false));
    send_all(&node, vec![batch(1, 40)]).await;
    wait_until("collection over TLS", Duration::from_secs(20), || {
        central.app.logs.outputs.head() == 40
    })
    .await;
    assert_eq!(ids(&alerts(&central)), ids(&alerts(&node)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        intruder.app.logs.outputs.head(),
        0,
        "a wrong password collects nothing"
    );
    node.stop().await;
    central.stop().await;
    intruder.stop().await;
}

/// The joined lifecycle: SIGTERM while Falcos flood the http_output receiver and the node
/// forwards to the fleet. The process exits 0 within `shutdown_grace_secs` (10 s by default);
/// every alert it answered 200 is in its log after a restart and reaches the collector, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_http_flood_and_a_fleet_forward_keeps_every_answered_alert() {
    use falco_api::bench::http::{sample_alert, Poster};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), "solo");
    let central = TestServer::start(1_000_000).await;
    falco_api::fleet::start(&central.app, &fleet(&nats.url(), false, true));
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let config = forwarding_config(home.path(), &nats.url());
    let args = serve_args(
        &data,
        &sock,
        &[
            "--config",
            config.to_str().unwrap(),
            "--falco-http",
            "127.0.0.1:0",
        ],
    );
    let mut running = spawn_serve(home.path(), &args);
    let addr =
        crate::common::process::printed_addr(&running.lines, "falco http_output receiver: http://");
    // Four Falcos post until the server stops answering; each keeps what was answered 200.
    let stopping = Arc::new(AtomicBool::new(false));
    let mut falcos = tokio::task::JoinSet::new();
    for c in 0..4u64 {
        let stopping = stopping.clone();
        falcos.spawn(async move {
            let mut answered = Vec::new();
            let mut falco = Poster::connect(addr).await.unwrap();
            for n in 0.. {
                match falco
                    .post("/", "application/json", sample_alert(c, n))
                    .await
                {
                    Ok((200, _)) => answered.push(format!("{c}-{n}")),
                    outcome => {
                        // Before the signal, every post is answered 200.
                        assert!(stopping.load(Ordering::SeqCst), "{outcome:?}");
                        // After it, a new connection is refused once the listener closed.
                        match Poster::connect(addr).await {
                            Ok(again) => falco = again,
                            Err(_) => break,
                        }
                    }
                }
            }
            answered
        });
    }
    wait_until("forwarding under way", Duration::from_secs(30), || {
        central.app.logs.outputs.head() >= 2_000
    })
    .await;
    stopping.store(true, Ordering::SeqCst);
    let signalled = Instant::now();
    crate::common::process::sigterm(&running.child);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut running.child, Duration::from_secs(30));
        (status, signalled.elapsed())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.0);
    assert!(
        status.1 < Duration::from_secs(11),
        "exited {:?} after SIGTERM, past the 10 s grace",
        status.1
    );
    let mut answered = Vec::new();
    while let Some(one) = falcos.join_next().await {
        answered.extend(one.unwrap());
    }
    assert!(answered.len() >= 2_000, "{} answered", answered.len());
    let mut running = spawn_serve(home.path(), &args);
    // In the node's own log...
    let out = cli_output(&sock, &["tail", "--after", "0", "--once", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let local: std::collections::BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["output_fields"]["bench.n"].as_str().unwrap().to_string()
        })
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|a| !local.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "answered 200 but not stored: {missing:?}"
    );
    // ...and, once, at the collector.
    let stored = local.len() as u64;
    wait_until(
        "the rest forwarded after the restart",
        Duration::from_secs(60),
        || central.app.logs.outputs.head() >= stored,
    )
    .await;
    wait_settled(&nats.url(), None, Duration::from_secs(30)).await;
    let collected = alerts(&central);
    let mut markers: Vec<&str> = collected
        .iter()
        .map(|e| {
            e.output_fields
                .iter()
                .find(|(k, _)| k == "bench.n")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    markers.sort_unstable();
    let before = markers.len();
    markers.dedup();
    assert_eq!(before, markers.len(), "no alert forwarded twice");
    for a in &answered {
        assert!(
            markers.binary_search(&a.as_str()).is_ok(),
            "{a} not forwarded"
        );
    }
    println!(
        "lifecycle: {} alerts answered 200 before the exit ({:?} after SIGTERM), {} stored, all forwarded once",
        answered.len(),
        status.1,
        stored
    );
    crate::common::process::sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
    central.stop().await;
}
