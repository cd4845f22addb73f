//! Beside a running Falco: its http_output posts, its file/program output through
//! `send --alerts`, its internal drop and metrics alerts, and the rules directory and config
//! file falco-api writes for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use falco_api::bench::http::{sample_alert, Poster};
use falco_api::config::HttpKind;
use falco_api::falco::sync::Targets;
use falco_api::proto::outputs::Request;
use falco_api::proto::sidecar::{self as pb, service_client::ServiceClient as SidecarClient};
use tokio_stream::StreamExt;

use crate::common::process::{
    cli_output, receiver_addr, serve_args, sigterm, spawn_serve, wait_exit, EXE,
};
use crate::common::{spawn_http, TestServer};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/falco")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

async fn receiver(server: &TestServer) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_http(&server.app, listener, HttpKind::Falco { mtls: false }, None);
    addr
}

/// Every alert in the log, as a legacy client drains it (`get` with an empty request).
async fn legacy_get(server: &TestServer) -> Vec<falco_api::proto::outputs::Response> {
    let mut client = server.outputs().await;
    let mut stream = client.get(Request::default()).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn falcos_http_output_alerts_are_stored_as_falco_wrote_them() {
    let server = TestServer::start(1000).await;
    let addr = receiver(&server).await;
    let mut falco = Poster::connect(addr).await.unwrap();
    let lines: Vec<String> = fixture("alerts.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let path = if i % 2 == 0 { "/" } else { "/falco" };
        let (status, body) = falco
            .post(path, "application/json", line.clone())
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("\"seq\":{}", i + 1)), "{body}");
    }
    for line in fixture("alerts.txt").lines() {
        let (status, body) = falco
            .post("/", "text/plain", line.to_string())
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    let alerts = legacy_get(&server).await;
    assert_eq!(alerts.len(), 9);
    let shell = &alerts[0];
    assert_eq!(shell.rule, "Terminal shell in container");
    assert_eq!(shell.priority, 5, "Notice");
    assert_eq!(shell.source, "syscall");
    assert_eq!(shell.hostname, "node-a");
    assert_eq!(shell.origin, "falco-http");
    let t = shell.time.unwrap();
    assert_eq!((t.seconds, t.nanos), (1_796_032_800, 100_000_001));
    assert_eq!(
        shell.tags,
        [
            "T1059",
            "container",
            "maturity_stable",
            "mitre_execution",
            "shell"
        ]
    );
    assert!(shell
        .output
        .starts_with("2026-11-30T10:00:00.100000001+0000: Notice A shell"));
    assert_eq!(shell.output_fields["k8s.ns.name"], "shop");
    assert_eq!(shell.output_fields["proc.tty"], "34816");
    assert_eq!(shell.output_fields["user.loginuid"], "-1");
    assert_eq!(
        alerts[1].output_fields["k8s.ns.name"], "<NA>",
        "null is Falco's <NA>"
    );
    assert_eq!(alerts[2].source, "k8s_audit");
    assert_eq!(
        alerts[2].output_fields["ka.req.pod.containers.image"],
        "[\"nginx:1.27\"]"
    );
    assert_eq!(
        (alerts[3].source.as_str(), alerts[3].priority),
        ("github", 2)
    );
    assert_eq!(alerts[4].rule, "Falco internal: syscall event drop");
    assert_eq!(alerts[5].output_fields["falco.evts_rate_sec"], "2450.5");
    let ptrace = &alerts[6];
    assert_eq!(ptrace.priority, 2, "Critical");
    assert!(
        ptrace.output.starts_with("Detected ptrace"),
        "{}",
        ptrace.output
    );
    assert_eq!(
        ptrace.hostname, "127.0.0.1",
        "a text line names no host: the poster's address"
    );
    let iso = alerts[7].time.unwrap();
    assert_eq!((iso.seconds, iso.nanos), (1_796_032_807, 0));

    // Falco's drop alerts are drops too, with its counters.
    let drops = crate::common::get_all_drops(&server).await;
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert_eq!(drops[0].stage, "falco_syscall_drop");
    assert_eq!((drops[0].n_drops, drops[0].n_evts), (1234, 10000));
    assert!(drops[0].message.contains("n_drops_buffer_open_exit=1200"));
    assert_eq!(drops[1].n_drops, 7);

    // And falco status knows the nodes.
    let mut sidecar = SidecarClient::new(server.channel().await);
    let status = sidecar
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let nodes: BTreeMap<&str, &pb::Node> = status
        .nodes
        .iter()
        .map(|n| (n.hostname.as_str(), n))
        .collect();
    let a = nodes["node-a"];
    assert_eq!(a.alerts, 4);
    assert_eq!(a.syscall_drops, 1234);
    assert_eq!(a.event_rate, 2450.5);
    assert_eq!(a.last_seen.unwrap().seconds, 1_796_032_805);
    assert!(a
        .metrics
        .iter()
        .any(|m| m.name == "scap.engine_name" && m.value == "modern_ebpf"));
    assert_eq!(nodes["node-b"].alerts, 2);
    server.stop().await;
}

#[tokio::test]
async fn what_is_not_a_falco_alert_is_refused_and_nothing_is_stored() {
    let server = TestServer::start(1000).await;
    let addr = receiver(&server).await;
    let mut falco = Poster::connect(addr).await.unwrap();
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "/",
            r#"{"rule":1,"priority":"Debug","time":"2026-11-30T10:00:00Z"}"#,
            400,
            "'rule' must be a string",
        ),
        (
            "/",
            r#"{"rule":"r","priority":"Debug"}"#,
            400,
            "'time' is missing",
        ),
        ("/falco", "{\"rule\":", 400, "invalid JSON"),
        ("/", "hello", 400, "expected 'TIME: Priority output'"),
        ("/", "", 400, "empty"),
        ("/elsewhere", "{}", 404, "POST /falco"),
    ];
    for (path, body, want, reason) in cases {
        let (status, text) = falco
            .post(path, "application/json", body.to_string())
            .await
            .unwrap();
        assert_eq!(status, *want, "{body}: {text}");
        assert!(text.contains(reason), "{body}: {text}");
    }
    let huge = format!("{{\"rule\":\"{}\"}}", "x".repeat(2 << 20));
    let (status, _) = falco.post("/", "application/json", huge).await.unwrap();
    assert_eq!(status, 413);
    // The connection was given up after the oversized body; a new one works.
    let mut falco = Poster::connect(addr).await.unwrap();
    let (status, _) = falco
        .post("/", "application/json", sample_alert(0, 0))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        server.app.logs.outputs.head(),
        1,
        "only the good alert is in the log"
    );
    server.stop().await;
}

#[tokio::test]
async fn many_falcos_posting_at_once_lose_and_double_nothing() {
    let server = TestServer::start(10_000).await;
    let addr = receiver(&server).await;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        tasks.spawn(async move {
            let mut falco = Poster::connect(addr).await.unwrap();
            for n in 0..100 {
                let (status, body) = falco
                    .post("/", "application/json", sample_alert(c, n))
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{body}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let alerts = legacy_get(&server).await;
    assert_eq!(alerts.len(), 1600);
    let seqs: Vec<u64> = alerts.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
    let markers: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a.output_fields["bench.n"].as_str())
        .collect();
    assert_eq!(markers.len(), 1600, "every alert once");
    server.stop().await;
}

fn tail_json(sock: &Path) -> Vec<serde_json::Value> {
    let out = cli_output(sock, &["tail", "--after", "0", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_alert_answered_200_survives_kill_9() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let args = serve_args(&data, &sock, &["--falco-http", "127.0.0.1:0"]);
    let mut running = spawn_serve(home.path(), &args);
    let addr = receiver_addr(&running.lines);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for c in 0..4u64 {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut falco = Poster::connect(addr).await.unwrap();
                for n in 0.. {
                    match falco
                        .post("/", "application/json", sample_alert(c, n))
                        .await
                    {
                        Ok((200, body)) => {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            let _ = tx.send((format!("{c}-{n}"), v["seq"].as_u64().unwrap()));
                        }
                        _ => return,
                    }
                }
            });
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(700)).await;
        running.child.kill().unwrap();
        let mut acked = BTreeMap::new();
        while let Some((marker, seq)) = rx.recv().await {
            acked.insert(marker, seq);
        }
        acked
    });
    let _ = running.child.wait();
    assert!(
        acked.len() > 50,
        "the flood ran: {} acknowledged",
        acked.len()
    );
    let mut running = spawn_serve(home.path(), &args);
    let stored: BTreeMap<String, u64> = tail_json(&sock)
        .iter()
        .map(|a| {
            (
                a["output_fields"]["bench.n"].as_str().unwrap().to_string(),
                a["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    for (marker, seq) in &acked {
        assert_eq!(
            stored.get(marker),
            Some(seq),
            "alert {marker} was answered 200 at seq {seq}"
        );
    }
    sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
}

fn markers(sock: &Path) -> Vec<String> {
    tail_json(sock)
        .iter()
        .map(|a| {
            a["output_fields"]["bench.n"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn wait_for(sock: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = markers(sock);
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn line(n: u64) -> String {
    sample_alert(9, n) + "\n"
}

fn follower(sock: &Path, file: &Path) -> std::process::Child {
    Command::new(EXE)
        .args(["send", "--alerts", "--follow", "--quiet", "--server"])
        .arg(sock)
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn send_alerts_follows_a_file_through_restarts_and_rotation() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let args = serve_args(&data, &sock, &[]);
    let mut running = spawn_serve(home.path(), &args);
    let file = home.path().join("falco-events.json");
    append(&file, &(line(0) + &line(1) + &line(2)));
    let mut f = follower(&sock, &file);
    assert_eq!(wait_for(&sock, 3).len(), 3);
    append(&file, &(line(3) + &line(4)));
    assert_eq!(wait_for(&sock, 5).len(), 5);
    f.kill().unwrap();
    let _ = f.wait();
    // While nobody reads: two lines and half of a third.
    let third = line(7);
    append(&file, &(line(5) + &line(6) + &third[..20]));
    let mut f = follower(&sock, &file);
    assert_eq!(wait_for(&sock, 7).len(), 7);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(markers(&sock).len(), 7, "half a line is not an alert yet");
    append(&file, &third[20..]);
    let want: Vec<String> = (0..8).map(|n| format!("9-{n}")).collect();
    assert_eq!(wait_for(&sock, 8), want, "the completed line once");
    // Rotation: Falco writes one more line to the old file, then a new file appears.
    let rotated = home.path().join("falco-events.json.1");
    std::fs::rename(&file, &rotated).unwrap();
    append(&rotated, &line(8));
    append(&file, &(line(9) + &line(10)));
    let got = wait_for(&sock, 11);
    sigterm(&f);
    let _ = f.wait();
    let want: Vec<String> = (0..11).map(|n| format!("9-{n}")).collect();
    assert_eq!(got, want, "every line once, in order");
    // Killed and restarted after the rotation, it does not read anything twice.
    let mut f = follower(&sock, &file);
    append(&file, &line(11));
    // Lines are read in order, so a line read twice would show before line 11 does.
    let want: Vec<String> = (0..12).map(|n| format!("9-{n}")).collect();
    assert_eq!(wait_for(&sock, 12), want, "nothing read twice");
    f.kill().unwrap();
    let _ = f.wait();

    // A whole file, and standard input as program_output writes it.
    let out = cli_output(
        &sock,
        &["send", "--alerts", "--quiet", "fixtures/falco/alerts.txt"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("3 alerts stored, 0 rejected, 1 Falco drop alerts"));
    let mut program = Command::new(EXE)
        .args(["send", "--alerts", "-", "--server"])
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = program.stdin.take().unwrap();
        stdin.write_all(fixture("alerts.jsonl").as_bytes()).unwrap();
        stdin.write_all(b"not an alert\n").unwrap();
    }
    let out = program.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected line fails the command"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 alerts stored, 1 rejected"));
    let all = tail_json(&sock);
    assert_eq!(all.len(), 12 + 3 + 6);
    assert_eq!(all[12]["origin"], "falco-file");
    assert_eq!(all[15]["origin"], "falco-program");
    sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
}

const RULES_A: &str = "- rule: Shell A\n  desc: a\n  condition: evt.type = execve and proc.name = bash\n  output: shell %proc.name\n  priority: WARNING\n  tags: [shell]\n";
const RULES_B: &str = "- rule: Open B\n  desc: b\n  condition: evt.type = openat\n  output: open %fd.name\n  priority: NOTICE\n";

/// The falco-api files of `dir`, loaded in Falco's order by falco-api's own loader: rule name →
/// enabled.
fn load_dir(dir: &Path) -> BTreeMap<String, bool> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("falco-api-") && n.ends_with(".yaml"))
        .collect();
    names.sort();
    let files: Vec<falco_api::engine::RulesFile> = names
        .iter()
        .map(|n| falco_api::engine::RulesFile {
            name: n.clone(),
            content: std::fs::read_to_string(dir.join(n)).unwrap(),
        })
        .collect();
    let set = falco_api::engine::RuleSet::load(&files, &Default::default())
        .unwrap_or_else(|e| panic!("{names:?} do not load: {}", e.error));
    set.infos()
        .iter()
        .map(|i| (i.name.clone(), i.enabled))
        .collect()
}

#[tokio::test]
async fn the_rules_directory_and_config_file_follow_every_change() {
    use falco_api::services::control::Change;
    let server = TestServer::start(1000).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("rules.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("local.yaml"), "# the operator's own file\n").unwrap();
    let config_file = outside.path().join("falco-api.yaml");
    falco_api::falco::sync::start(
        &server.app,
        Targets {
            rules_dir: Some(dir.clone()),
            config_file: Some(config_file.clone()),
        },
    );
    let app = server.app.clone();
    let run = move |f: Box<dyn FnOnce(&falco_api::services::App) + Send>| {
        let app = app.clone();
        async move { tokio::task::spawn_blocking(move || f(&app)).await.unwrap() }
    };
    run(Box::new(|app| {
        app.rules
            .put(
                "a",
                RULES_A,
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
        app.rules
            .put(
                "b.yaml",
                RULES_B,
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
        app.rules
            .toggle(
                &[],
                &["shell".into()],
                false,
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
    }))
    .await;
    let listing = |dir: &PathBuf| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        listing(&dir),
        [
            "falco-api-a+.yaml",
            "falco-api-b.yaml+.yaml",
            "falco-api-~toggles.yaml",
            "local.yaml"
        ]
        .map(String::from)
        .into()
    );
    let effective: BTreeMap<String, bool> = server
        .app
        .rules
        .effective()
        .0
        .iter()
        .map(|i| (i.name.clone(), i.enabled))
        .collect();
    assert_eq!(load_dir(&dir), effective);
    assert!(
        !effective["Shell A"],
        "the tag toggle reached Falco's files"
    );

    run(Box::new(|app| {
        app.rules
            .delete(
                "b.yaml",
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
        app.config
            .set(
                &[
                    ("priority".into(), "warning".into()),
                    ("ingest.queue_size".into(), "5000".into()),
                ]
                .into(),
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
    }))
    .await;
    assert!(
        !dir.join("falco-api-b.yaml+.yaml").exists(),
        "a deleted file goes"
    );
    assert!(
        dir.join("local.yaml").exists(),
        "a file falco-api did not write stays"
    );
    let text = std::fs::read_to_string(&config_file).unwrap();
    assert!(text.contains("priority: \"warning\""), "{text}");
    assert!(!text.contains("queue_size"), "{text}");

    // The directory cannot be written: the change is committed, the API says so, and the
    // retry loop catches up once it can be.
    std::fs::rename(&dir, outside.path().join("away")).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let (_, warnings) = tokio::task::spawn_blocking({
        let app = server.app.clone();
        move || {
            app.rules
                .put(
                    "c",
                    RULES_B,
                    Change {
                        expected: None,
                        author: "test",
                        comment: "",
                    },
                )
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said: Vec<String> = warnings.iter().map(|w| w.message.clone()).collect();
    assert!(
        said.iter()
            .any(|w| w.contains("was not written") && w.contains("behind by revision")),
        "{said:?}"
    );
    let behind = server.app.nodes.sync_states();
    assert!(
        behind
            .iter()
            .any(|(k, s)| *k == "rules_dir" && !s.error.is_empty()),
        "{behind:?}"
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(outside.path().join("away"), &dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !dir.join("falco-api-c+.yaml").exists() {
        assert!(Instant::now() < deadline, "the retry loop caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(load_dir(&dir).len(), 2);
    server.stop().await;
}

#[test]
fn falco_setup_prints_what_connects_falco() {
    let run = |args: &[&str]| {
        let out = Command::new(EXE)
            .args(["falco", "setup"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let http = run(&["--falco-http"]);
    assert!(
        http.contains("http_output:\n  enabled: true\n  url: \"http://127.0.0.1:2801/\""),
        "{http}"
    );
    assert!(http.contains("json_output: true") && http.contains("watch_config_files: true"));
    assert!(http.contains("rules_files:") && http.contains("output_rule: true"));
    let program = run(&[]);
    assert!(
        program.contains("program: \"falco-api send --alerts -"),
        "{program}"
    );
    // The snippet is YAML.
    let _: serde_json::Value = serde_saphyr::from_str(&http).unwrap();
}

#[tokio::test]
async fn the_sidecar_service_refuses_bad_requests_precisely() {
    let server = TestServer::start(1000).await;
    let sidecar = SidecarClient::new(server.channel().await);
    let send = |req: pb::AlertsRequest| {
        let mut sidecar = sidecar.clone();
        async move {
            let mut replies = sidecar
                .alerts(tokio_stream::iter(vec![req]))
                .await
                .unwrap()
                .into_inner();
            replies.message().await
        }
    };
    let status = send(pb::AlertsRequest {
        lines: vec![sample_alert(0, 0)],
        origin: "engine".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("falco-file or falco-program"),
        "{status:?}"
    );
    let status = send(pb::AlertsRequest {
        lines: vec![sample_alert(0, 0)],
        follow: "x".repeat(5000),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = sidecar
        .clone()
        .position(pb::PositionRequest {
            follow: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(server.app.logs.outputs.head(), 0, "nothing was stored");
    // A good request with one bad line stores the rest and names the bad one.
    let reply = send(pb::AlertsRequest {
        lines: vec![sample_alert(0, 1), "nonsense".into(), sample_alert(0, 2)],
        ..Default::default()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((reply.first_seq, reply.stored), (1, 2));
    assert_eq!(reply.rejected.len(), 1);
    assert_eq!(reply.rejected[0].index, 1);
    server.stop().await;
}

/// SIGTERM while a Falco post is half sent: the server finishes that request (the alert is
/// stored and answered 200), then exits 0 within the grace, and the alert is there after a
/// restart. Before the HTTP connections were drained, the process exited under it.
#[test]
fn sigterm_lets_a_post_in_progress_finish() {
    use std::io::{Read as _, Write as _};
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let args = serve_args(&data, &sock, &["--falco-http", "127.0.0.1:0"]);
    let mut running = spawn_serve(home.path(), &args);
    let addr = receiver_addr(&running.lines);
    let body = sample_alert(7, 1);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut post = std::net::TcpStream::connect(addr).unwrap();
    write!(
        post,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    post.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    sigterm(&running.child);
    std::thread::sleep(Duration::from_millis(500));
    post.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    post.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = post.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let status = wait_exit(&mut running.child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "within the 10 s grace"
    );
    let mut running = spawn_serve(home.path(), &args);
    let stored = tail_json(&sock);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["output_fields"]["bench.n"], "7-1");
    sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
}
