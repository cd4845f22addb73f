//! Hostile input, from any role, must not crash, hang or wedge the server: every case gets a
//! precise error, the server goes on serving, and writes still work afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use falco_api::proto::configs::{service_client::ServiceClient as ConfigsClient, SetRequest};
use falco_api::proto::rules::{self, service_client::ServiceClient as RulesClient};
use tonic::Code;

use crate::common::process::{cli_output, EXE};
use crate::common::TestServer;

fn hostile(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(name);
    (name.to_string(), std::fs::read_to_string(path).unwrap())
}

fn rule_with(condition: &str) -> String {
    format!(
        "- rule: Deep\n  desc: d\n  condition: {condition}\n  output: o\n  priority: WARNING\n  source: syscall\n"
    )
}

/// The generated cases: (file name, content, what the error must say).
fn generated() -> Vec<(String, String, &'static str)> {
    let nots = format!("{}evt.type = open", "not ".repeat(100_000));
    let lowers = format!(
        "{}proc.name{} = bash",
        "tolower(".repeat(5_000),
        ")".repeat(5_000)
    );
    let mut chain = String::from("- macro: m0\n  condition: evt.type = open\n");
    for i in 1..20_000 {
        chain.push_str(&format!(
            "- macro: m{i}\n  condition: m{} and proc.name = x{i}\n",
            i - 1
        ));
    }
    chain.push_str(&rule_with("m19999"));
    let mut doubling = String::from("- macro: d0\n  condition: evt.type = open\n");
    for i in 1..64 {
        doubling.push_str(&format!(
            "- macro: d{i}\n  condition: (d{p} and d{p})\n",
            p = i - 1
        ));
    }
    doubling.push_str(&rule_with("d63"));
    vec![
        (
            "nots.yaml".into(),
            rule_with(&nots),
            "exceeded max depth limit of 1000",
        ),
        (
            "lowers.yaml".into(),
            rule_with(&lowers),
            "exceeded max depth limit of 1000",
        ),
        (
            "chain.yaml".into(),
            chain,
            "the condition with its macros expanded nests deeper than 1000",
        ),
        ("doubling.yaml".into(), doubling, "more than 200000 parts"),
    ]
}

fn committed() -> Vec<(String, String, &'static str)> {
    [
        ("billion-laughs.yaml", "expands to more than"),
        (
            "override-nonexistent.yaml",
            "Item has no mapping for key 'condition'",
        ),
        (
            "exception-append-shape.yaml",
            "Fields and values lists must have equal length",
        ),
        (
            "exception-append-scalar.yaml",
            "with a single field, values must be scalars",
        ),
    ]
    .into_iter()
    .map(|(file, says)| {
        let (name, content) = hostile(file);
        (name, content, says)
    })
    .collect()
}

async fn still_writable(server: &TestServer, round: usize) {
    let mut configs = ConfigsClient::new(server.channel().await);
    configs
        .set(SetRequest {
            values: [("hostname".to_string(), format!("after-{round}"))].into(),
            expected_revision: None,
            comment: String::new(),
        })
        .await
        .expect("config writes still work");
    let mut rules = RulesClient::new(server.channel().await);
    rules
        .put(rules::PutRequest {
            name: "fine.yaml".into(),
            content: rule_with("evt.type = open"),
            expected_revision: None,
            comment: String::new(),
        })
        .await
        .expect("rules writes still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rules_get_precise_errors_and_the_server_goes_on() {
    let server = TestServer::start(100).await;
    let mut rules = RulesClient::new(server.channel().await);
    for (round, (name, content, says)) in generated().into_iter().chain(committed()).enumerate() {
        let started = Instant::now();
        let validated = rules
            .validate(rules::ValidateRequest {
                files: vec![rules::RulesFile {
                    name: name.clone(),
                    content: content.clone(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: validate failed as a call: {e}"))
            .into_inner();
        assert!(!validated.ok, "{name} must not validate");
        let error = &validated.errors[0];
        assert!(error.message.contains(says), "{name}: {error:?}");
        assert!(
            error.line > 0 && error.column > 0,
            "{name}: located: {error:?}"
        );
        let put = rules
            .put(rules::PutRequest {
                name: name.clone(),
                content,
                expected_revision: None,
                comment: String::new(),
            })
            .await
            .expect_err("refused");
        assert_eq!(put.code(), Code::InvalidArgument, "{name}: {put:?}");
        assert!(put.message().contains(says), "{name}: {}", put.message());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            started.elapsed()
        );
        still_writable(&server, round).await;
    }
    server.stop().await;
}

#[test]
fn eval_validate_reports_hostile_files_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, says) in generated().into_iter().chain(committed()) {
        let path: PathBuf = dir.path().join(&name);
        std::fs::write(&path, content).unwrap();
        let out = Command::new(EXE)
            .args(["eval", "--validate", "-r"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// `falco-api tail … | head -1`: the reader goes away; the command ends quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_command_quietly() {
    let server = TestServer::start(10_000).await;
    server.append(2_000).await;
    let sock = server.socket.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; '{EXE}' tail --after 0 --once --json --server '{sock}' | head -1; echo \"status=$?\" >&2"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.trim() == "status=141" || stderr.trim() == "status=0",
        "quiet, with a broken-pipe status: {stderr}"
    );
    server.stop().await;
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Starts `serve` under `ulimit` settings; returns the child and its stderr file.
fn serve_with_ulimit(dir: &Path, ulimit: &str) -> (std::process::Child, PathBuf, PathBuf) {
    let sock = dir.join("s.sock");
    let log = dir.join("stderr");
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{ulimit} && exec '{EXE}' serve --data-dir '{}' --listen '{}' 2>'{}'",
            dir.display(),
            sock.display(),
            log.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, sock, log)
}

fn version_ok(sock: &Path) -> bool {
    let out = Command::new(EXE)
        .args(["version", "--server"])
        .arg(sock)
        .output()
        .unwrap();
    out.status.success()
}

/// 400 idle connections against a 256-descriptor soft limit: the server raises the limit (or,
/// with the hard limit at 256 too, caps its connections to fit), does not spin, and serves again
/// once they close.
#[test]
fn idle_connections_past_the_descriptor_limit_do_not_spin_or_wedge() {
    for (ulimit, says) in [
        ("ulimit -Sn 256", "raised the open-files limit"),
        ("ulimit -n 256", "connection cap reached"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, sock, log) = serve_with_ulimit(dir.path(), ulimit);
        let pid = child.id();
        let conns: Vec<_> = (0..400)
            .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
            .collect();
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(3));
        let burned = cpu_ticks(pid) - before;
        // 100 ticks a second: spinning on both cores for 3 s would be 600.
        assert!(
            burned < 60,
            "{ulimit}: {burned} ticks of CPU in 3 s while idle"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains(says), "{ulimit}: {logged}");
        drop(conns);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !version_ok(&sock) {
            assert!(
                Instant::now() < deadline,
                "{ulimit}: the server did not recover"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait();
    }
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The data directory on a small filesystem that fills: writes fail with RESOURCE_EXHAUSTED
/// naming the directory, reads go on, nothing acknowledged is lost, and writes succeed again once
/// space is freed. Needs a size-limited tmpfs (root); skipped with a message where mounting fails.
#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipped: cannot mount a size-limited tmpfs here ({other:?})");
            return;
        }
    }
    let _unmount = Unmount(mnt.clone());
    let data = mnt.join("data");
    let config = dir.path().join("falco-api.yaml");
    std::fs::write(&config, "min_free_bytes: 4194304\n").unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rule_with("evt.type = open")).unwrap();
    let events = dir.path().join("events.jsonl");
    let lines: String = (0..200)
        .map(|i| format!("{{\"evt.type\": \"open\", \"proc.name\": \"p{i}\"}}\n"))
        .collect();
    std::fs::write(&events, lines).unwrap();
    let sock = dir.path().join("s.sock");
    let mut child = Command::new(EXE)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(&sock)
        .arg("--rules")
        .arg(&rules)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !version_ok(&sock) {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let send = |sock: &Path| {
        cli_output(
            sock,
            &["send", "--source", "syscall", events.to_str().unwrap()],
        )
    };
    let count = |sock: &Path| {
        let out = cli_output(sock, &["tail", "--after", "0", "--once", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(send(&sock).status.success());
    assert!(cli_output(&sock, &["config", "set", "hostname=before"])
        .status
        .success());
    assert_eq!(count(&sock), 200);

    // Fill the filesystem to 2 MiB short of full.
    let stat = rustix::fs::statvfs(&mnt).unwrap();
    let free = stat.f_bavail * stat.f_frsize;
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; (free - (2 << 20)) as usize]).unwrap();
    // The server reads the free space at most every 50 ms (the reserve absorbs that window).
    std::thread::sleep(Duration::from_millis(100));

    let refused = cli_output(&sock, &["config", "set", "hostname=during"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("ResourceExhausted"), "{err}");
    assert!(
        err.contains(data.to_str().unwrap()),
        "names the data directory: {err}"
    );
    let refused = send(&sock);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ResourceExhausted"));
    // Reads go on, and what was acknowledged is all there.
    assert_eq!(count(&sock), 200);
    let got = cli_output(&sock, &["config", "get", "hostname"]);
    assert!(String::from_utf8_lossy(&got.stdout).contains("before"));

    std::fs::remove_file(&filler).unwrap();
    // Writes work again as soon as the space is back (no restart).
    crate::common::wait_until_blocking(
        "a write after the space came back",
        Duration::from_secs(10),
        || {
            cli_output(&sock, &["config", "set", "hostname=after"])
                .status
                .success()
        },
    );
    assert!(send(&sock).status.success());
    assert_eq!(count(&sock), 400);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
