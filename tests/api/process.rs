//! The real binary, as an operator runs it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::process::{serve_args, sigterm, spawn_serve, spawn_serve_until, wait_exit, EXE};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn serve_with_no_flags_just_works_and_stops_cleanly_on_sigterm() {
    if is_root() {
        // As root the default is /var/lib/falco-api; run there only when it is free to use.
        let default = PathBuf::from("/var/lib/falco-api/falco-api.sock");
        assert!(
            !default.exists() || std::os::unix::net::UnixStream::connect(&default).is_err(),
            "another falco-api is already serving on the default socket"
        );
    }
    let home = tempfile::tempdir().unwrap();
    let mut running = spawn_serve(home.path(), &[]);
    let text = running.lines.join("\n");
    let data_dir = if is_root() {
        PathBuf::from("/var/lib/falco-api")
    } else {
        home.path().join(".local/share/falco-api")
    };
    assert!(
        text.contains(&format!("data directory: {}", data_dir.display())),
        "{text}"
    );
    let socket = data_dir.join("falco-api.sock");
    assert!(
        text.contains(&format!("listening on: unix://{}", socket.display())),
        "{text}"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");

    let version = Command::new(EXE)
        .args(["version", "--server"])
        .arg(format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    assert!(
        version.status.success(),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    let out = String::from_utf8_lossy(&version.stdout);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    let tail = Command::new(EXE)
        .args(["tail", "--once", "--json", "--after", "0", "--server"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    assert!(tail.stdout.is_empty(), "an empty log prints nothing");

    sigterm(&running.child);
    let status = wait_exit(&mut running.child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn a_bad_config_file_stops_the_server_before_it_binds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("boot.yaml");
    std::fs::write(
        &config,
        "data_dir: /tmp/x\noutputs:\n  capacity: 10\n  retain: 5\n",
    )
    .unwrap();
    let out = Command::new(EXE)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("retain"),
        "the unknown key is named: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing was bound or printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A config file that is not there is named, with the reason said once.
    let out = Command::new(EXE)
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read config file") && stderr.contains("missing.yaml"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    let rules = dir.path().join("bad.yaml");
    std::fs::write(
        &rules,
        "- rule: r\n  desc: d\n  condition: proc.nope = 1\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    let out = Command::new(EXE)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:3:14") && stderr.contains("nonexistent field proc.nope"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing was bound");

    std::fs::write(&config, "listen: ['0.0.0.0:5060']\n").unwrap();
    let out = Command::new(EXE)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mutual TLS"));
}

#[test]
fn a_restart_on_the_same_data_directory_serves_again() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let args = serve_args(&data, &sock, &[]);
    let mut running = spawn_serve(home.path(), &args);
    // Nothing is in the log yet; a consumer that drains it records its position.
    let drain = Command::new(EXE)
        .args([
            "tail",
            "--once",
            "--consumer",
            "cli",
            "--server",
            sock.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        drain.status.success(),
        "{}",
        String::from_utf8_lossy(&drain.stderr)
    );
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());

    let mut running = spawn_serve(home.path(), &args);
    let version = Command::new(EXE)
        .args(["version", "--server", sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(version.status.success());
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
}

/// `kill -9` while events stream in: after a restart the outputs log is a contiguous prefix, and
/// every alert of every acknowledged batch is in it (acknowledgements follow the fsync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_alert() {
    use falco_api::proto::inputs::{self, service_client::ServiceClient, Event};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let rules = home.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "- rule: every open\n  desc: d\n  condition: evt.type = open\n  output: \"n=%evt.num\"\n  priority: INFO\n",
    )
    .unwrap();
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        sock.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ];
    let mut running = spawn_serve(home.path(), &args);
    let channel = falco_api::cli::client::connect_unix(&sock).await.unwrap();
    let mut client = ServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    let sender = tokio::spawn(async move {
        for b in 0..100_000u64 {
            let events = (0..50u64)
                .map(|i| {
                    let seq = b * 50 + i + 1;
                    let payload =
                        serde_json::json!({"evt.type": "open", "proc.name": "x"}).to_string();
                    Event {
                        source: "syscall".into(),
                        payload: payload.into_bytes(),
                        time: None,
                        hostname: String::new(),
                        seq,
                    }
                })
                .collect();
            if tx.send(inputs::Request { events }).await.is_err() {
                break;
            }
        }
    });
    let mut stream = client
        .send(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Ok(Some(ack)) = stream.message().await {
        acked.push((
            ack.accepted_up_to,
            ack.first_output_seq,
            ack.last_output_seq,
        ));
        if acked.len() == 40 {
            // Mid-stream: more batches are queued and being evaluated right now.
            running.child.kill().unwrap();
            running.child.wait().unwrap();
        }
    }
    sender.abort();
    assert!(
        acked.len() >= 40,
        "only {} batches acknowledged",
        acked.len()
    );

    let server = crate::common::TestServer::start_in(&data, 10_000_000).await;
    let bounds = server.app.store.outputs().bounds();
    assert_eq!(bounds.oldest, 1);
    let all = server
        .app
        .store
        .outputs()
        .read(0, bounds.newest, usize::MAX)
        .unwrap();
    assert_eq!(
        all.len() as u64,
        bounds.newest,
        "a contiguous prefix 1..={}",
        bounds.newest
    );
    for (i, (seq, _)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
    }
    for (up_to, first, last) in acked {
        assert_eq!(last - first + 1, 50, "every event of a batch matched");
        assert!(
            last <= bounds.newest,
            "acknowledged alerts {first}..={last} missing (log ends at {})",
            bounds.newest
        );
        for (k, seq) in (first..=last).enumerate() {
            let ev = &all[seq as usize - 1].1;
            let n = up_to - 49 + k as u64;
            assert_eq!(
                ev.output_fields
                    .iter()
                    .find(|(f, _)| f == "evt.num")
                    .map(|(_, v)| v.clone()),
                Some(n.to_string())
            );
        }
    }
    server.stop().await;
}

/// `kill -9` right after a rules `put` returns: the change is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_put_keeps_the_change() {
    use falco_api::proto::configs::{service_client::ServiceClient as ConfigsClient, SetRequest};
    use falco_api::proto::rules::{
        service_client::ServiceClient as RulesClient, GetRequest, PutRequest,
    };

    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        sock.to_str().unwrap(),
    ];
    let mut running = spawn_serve(home.path(), &args);
    let channel = falco_api::cli::client::connect_unix(&sock).await.unwrap();
    let content = "- list: shells\n  items: [bash, zsh]\n";
    let put = PutRequest {
        name: "shells.yaml".into(),
        content: content.into(),
        expected_revision: Some(0),
        comment: "c".into(),
    };
    let revision = RulesClient::new(channel.clone())
        .put(put)
        .await
        .unwrap()
        .into_inner()
        .revision;
    let set = SetRequest {
        values: [("json_output".to_string(), "true".to_string())].into(),
        ..Default::default()
    };
    let config_revision = ConfigsClient::new(channel)
        .set(set)
        .await
        .unwrap()
        .into_inner()
        .revision;
    running.child.kill().unwrap();
    running.child.wait().unwrap();

    let mut running = spawn_serve(home.path(), &args);
    let channel = falco_api::cli::client::connect_unix(&sock).await.unwrap();
    let got = RulesClient::new(channel.clone())
        .get(GetRequest {
            name: "shells.yaml".into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.content.as_str(), got.revision), (content, revision));
    let cfg = ConfigsClient::new(channel)
        .get(falco_api::proto::configs::GetRequest {
            keys: vec!["json_output".into()],
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.entries[0].value, "true");
    assert_eq!(cfg.revision, config_revision);
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
}

/// The rules and config commands against a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_config_commands() {
    let server = crate::common::TestServer::start(1000).await;
    let sock = server.socket.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.yaml");
    let run = |args: Vec<String>| {
        let out = Command::new(EXE)
            .args(&args)
            .arg("--server")
            .arg(&sock)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    std::fs::write(&file, "- rule: R\n  desc: d\n  condition: evt.type = open\n  output: \"one %fd.name\"\n  priority: WARNING\n  tags: [t]\n").unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) =
        tokio::task::block_in_place(|| run(s(&["rules", "put", path, "-m", "first"])));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mine.yaml: revision 1"), "{out}");
    std::fs::write(&file, "- rule: R\n  desc: d\n  condition: evt.type = open\n  output: \"two %fd.name\"\n  priority: WARNING\n  tags: [t]\n").unwrap();
    let (code, _, err) =
        tokio::task::block_in_place(|| run(s(&["rules", "put", path, "--expect", "1"])));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        tokio::task::block_in_place(|| run(s(&["rules", "put", path, "--expect", "1"])));
    assert_ne!(code, 0);
    assert!(
        err.contains("not the expected 1") && err.contains("FailedPrecondition"),
        "{err}"
    );
    let (_, out, _) = tokio::task::block_in_place(|| run(s(&["rules", "history", "mine.yaml"])));
    assert!(
        out.contains("-  output: \"one %fd.name\"") && out.contains("+  output: \"two %fd.name\""),
        "a readable diff: {out}"
    );
    let (code, out, _) =
        tokio::task::block_in_place(|| run(s(&["rules", "disable", "--tag", "t"])));
    assert_eq!(code, 0);
    assert!(out.contains("disabled: revision 3"), "{out}");
    let (_, out, _) = tokio::task::block_in_place(|| run(s(&["rules", "effective"])));
    assert!(out.contains("disabled") && out.contains(" R "), "{out}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        run(s(&["config", "set", "json_output=true", "hostname=edge-1"]))
    });
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = tokio::task::block_in_place(|| run(s(&["config", "get", "hostname"])));
    assert!(
        out.contains("edge-1") && out.contains("(api, rev 4)"),
        "{out}"
    );
    let (_, out, _) = tokio::task::block_in_place(|| run(s(&["config", "history"])));
    assert!(
        out.contains("hostname:  -> edge-1") && out.contains("json_output: false -> true"),
        "{out}"
    );
    let (code, _, err) =
        tokio::task::block_in_place(|| run(s(&["config", "set", "ingest.queue_size=0"])));
    assert_ne!(code, 0);
    assert!(
        err.contains("ingest.queue_size") && err.contains("an integer from 1 to"),
        "{err}"
    );
    server.stop().await;
}

/// A boot config with a Unix socket and a mutual-TLS TCP listener; the CLI reaches both.
#[test]
fn serve_listens_on_the_socket_and_mutual_tls_tcp_at_once() {
    let home = tempfile::tempdir().unwrap();
    let certs = home.path().join("certs");
    let out = Command::new(EXE)
        .args(["certs", "generate", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_mode = std::fs::metadata(certs.join("client.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    let sock = home.path().join("s.sock");
    let config = home.path().join("boot.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {data}\nlisten: ['unix://{sock}', 'tcp://127.0.0.1:0']\ntls:\n  cert: {c}/server.crt\n  key: {c}/server.key\n  client_ca: {c}/ca.crt\nauth:\n  roles:\n    'cn:falco-api-client': [reader]\n",
            data = home.path().join("data").display(),
            sock = sock.display(),
            c = certs.display()
        ),
    )
    .unwrap();
    let mut running = spawn_serve_until(
        home.path(),
        &["--config", config.to_str().unwrap()],
        "listening on: tcp://",
    );
    let tcp = running
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on: tcp://"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(running
        .lines
        .iter()
        .any(|l| l == &format!("listening on: unix://{}", sock.display())));
    let version = Command::new(EXE)
        .args([
            "version",
            "--server",
            &format!("https://{tcp}"),
            "--tls-server-name",
            "localhost",
        ])
        .arg("--tls-ca")
        .arg(certs.join("ca.crt"))
        .arg("--tls-cert")
        .arg(certs.join("client.crt"))
        .arg("--tls-key")
        .arg(certs.join("client.key"))
        .output()
        .unwrap();
    assert!(
        version.status.success(),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    // The reader may not change rules; the message names the role.
    let rules = home.path().join("r.yaml");
    std::fs::write(&rules, "- list: x\n  items: [a]\n").unwrap();
    let put = Command::new(EXE)
        .args(["rules", "put"])
        .arg(&rules)
        .args([
            "--server",
            &format!("https://{tcp}"),
            "--tls-server-name",
            "localhost",
        ])
        .arg("--tls-ca")
        .arg(certs.join("ca.crt"))
        .arg("--tls-cert")
        .arg(certs.join("client.crt"))
        .arg("--tls-key")
        .arg(certs.join("client.key"))
        .output()
        .unwrap();
    assert!(!put.status.success());
    assert!(
        String::from_utf8_lossy(&put.stderr).contains("needs the role 'admin'"),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    // Plain TCP from the CLI is refused before connecting.
    let plain = Command::new(EXE)
        .args(["version", "--server", &format!("http://{tcp}")])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("mutual TLS"));
    // A second server on the same socket refuses to start and says why.
    let other = Command::new(EXE)
        .args(["serve", "--data-dir"])
        .arg(home.path().join("other"))
        .arg("--listen")
        .arg(&sock)
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another server is listening"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
}

/// Runs `falco-api bench ARGS`, which must succeed; returns what it printed.
fn bench(args: &[&str]) -> String {
    let out = Command::new(EXE).arg("bench").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number printed right after the first `marker` in `text` (0 when there is none).
fn number_after(text: &str, marker: &str) -> f64 {
    let rest = text.split_once(marker).map_or("", |(_, rest)| rest);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap_or(0.0)
}

/// The number printed right before the first `marker` in `text` (0 when there is none).
fn number_before(text: &str, marker: &str) -> f64 {
    let head = text.split_once(marker).map_or("", |(head, _)| head);
    let start = head
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    head[start..].parse().unwrap_or(0.0)
}

/// The crash soak, short: five rounds of load (with online backups, on a log small enough that
/// retention trims it), `kill -9` at a random moment, restart and check.
#[test]
fn a_short_crash_soak_finds_no_violation() {
    let _heavy = crate::common::heavy_blocking();
    let dir = tempfile::tempdir().unwrap();
    let stdout = bench(&[
        "crash",
        "--rounds",
        "5",
        "--max-run-ms",
        "400",
        // Small enough that every round trims what the round before acknowledged, even in a
        // slow debug build.
        "--capacity",
        "100",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains(", 0 violations"), "{stdout}");
    let alerts = number_after(last, " acknowledged items checked (");
    assert!(
        alerts > 0.0,
        "the soak acknowledged and checked alerts: {stdout}"
    );
    assert!(
        number_before(last, " backups restored") > 0.0,
        "backups were taken under load, restored and checked: {stdout}"
    );
    assert!(
        number_before(last, " acknowledged alerts trimmed by retention") > 0.0,
        "retention trimmed acknowledged alerts during the soak: {stdout}"
    );
}

/// `bench log`, small: it appends, compresses, replays and seeks by time, compares appends with
/// JetStream publishes and measures appends during a backup, and says so.
#[test]
fn the_log_bench_runs_and_prints_its_figures() {
    let _heavy = crate::common::heavy_blocking();
    let stdout = bench(&[
        "log",
        "--capacity",
        "3000",
        "--wraps",
        "1",
        "--appenders",
        "2",
        "--batch",
        "50",
        "--jetstream",
        "--backup-rate",
        "2000",
    ]);
    let ratio = number_after(&stdout, "MB (");
    assert!(ratio > 2.0, "alert text compresses: {stdout}");
    assert!(stdout.contains("disk: 3000 retained events"), "{stdout}");
    assert!(stdout.contains("seek: 500 seeks by time"), "{stdout}");
    // Replay read by a client that counts responses without decoding them, against the bare
    // stream read the same way.
    let raw = number_after(&stdout, "read without decoding: median ratio ");
    assert!(raw > 0.0, "{stdout}");
    // And against a bare stream of the same (distinct) messages, both ways of reading.
    let same = "replay vs bare stream of the same messages: median ratio ";
    assert!(number_after(&stdout, same) > 0.0, "{stdout}");
    let same_raw = "of the same messages, read without decoding: median ratio ";
    assert!(number_after(&stdout, same_raw) > 0.0, "{stdout}");
    // The same events published to a real JetStream (Debian's nats-server), as a ratio.
    assert!(
        stdout.contains("jetstream: ") && stdout.contains("append/publish ratio"),
        "{stdout}"
    );
    // Appends paced at 2000/s (2 per 1 ms tick) for 3 s, then during a backup.
    let backup = stdout
        .lines()
        .find(|l| l.starts_with("backup: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let quiet = number_after(backup, "without a backup: ");
    assert!(quiet > 1000.0, "{backup}");
    assert!(backup.contains("during the backup: "), "{backup}");
}
