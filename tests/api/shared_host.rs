//! Safe on a host shared with Falco and other users: a private data directory, connections that
//! send nothing or stay behind never stop intake, every HTTP path bounded in bytes, sessions that
//! really end, requests from other sites refused, and Falco's rules directory never written
//! through a link or waited on.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use falco_api::base::event::{OutputEvent, Priority};
use falco_api::config::{HttpEndpoint, HttpKind};
use falco_api::grpc::{self, ServerOptions};
use falco_api::http::HttpOptions;
use falco_api::net::Limits;
use falco_api::store::{Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::process::{printed_addr, serve_args, sigterm, spawn_serve, wait_exit, EXE};
use crate::common::TestServer;

const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_root() -> bool {
    falco_api::net::own_uid() == 0
}

/// Whether user `nobody` can read `path` (only meaningful as root, which can switch to it).
fn nobody_reads(path: &Path) -> bool {
    Command::new("cat")
        .arg(path)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Short limits so the tests see timeouts act.
fn short_limits() -> Limits {
    Limits {
        first_byte_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        header_read_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// Serves `endpoint` (with `limits`) for `app` on a loopback port.
async fn serve_endpoint(
    app: &falco_api::services::App,
    endpoint: impl FnOnce(std::net::SocketAddr) -> HttpEndpoint,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = endpoint(addr);
    let router = falco_api::http::router(app.clone(), &[&endpoint]);
    let opts = HttpOptions {
        tls,
        limits,
        ..Default::default()
    };
    tokio::spawn(falco_api::http::serve(app.clone(), listener, router, opts));
    addr
}

/// A plain HTTP/1.1 request on a new connection; the status and the whole answer.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A Falco alert as http_output posts it, with an output of `size` bytes.
fn falco_alert(hostname: &str, rule: &str, n: u64, size: usize) -> String {
    serde_json::json!({
        "hostname": hostname,
        "output": format!("alert {n} {}", "x".repeat(size)),
        "output_fields": {"proc.name": "cat", "n": n},
        "priority": "Warning",
        "rule": rule,
        "source": "syscall",
        "tags": ["filesystem"],
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    })
    .to_string()
}

/// Falco's receiver for `server`, with the default limits.
async fn receiver(server: &TestServer) -> std::net::SocketAddr {
    serve_endpoint(
        &server.app,
        |a| HttpEndpoint::new(HttpKind::Falco { mtls: false }, a, false, 1 << 20),
        Limits::default(),
        None,
    )
    .await
}

// ---- 1. the data directory ----

#[tokio::test]
async fn the_data_directory_is_private_and_a_loose_one_is_tightened() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = parent.path().join("data");
    let store = Store::open(&dir, &StoreOptions::default()).unwrap();
    let db = store.path().to_path_buf();
    store.save("console.key", &[7; 32]).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    if is_root() {
        assert!(!nobody_reads(&db), "user nobody read the database");
    }
    drop(store);

    // Left loose by an earlier version (umask 022): tightened at the next start.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    if is_root() {
        assert!(
            nobody_reads(&db),
            "the loosened file is readable (test setup)"
        );
    }
    let store = Store::open(&dir, &StoreOptions::default()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    if is_root() {
        assert!(!nobody_reads(&db));
    }
    drop(store);

    // With a socket group, the group may reach the socket inside (and nothing more).
    let shared = parent.path().join("shared");
    let gid = rustix::process::getgid().as_raw();
    let opts = StoreOptions {
        dir_mode: 0o750,
        dir_gid: Some(gid),
        ..Default::default()
    };
    let store = Store::open(&shared, &opts).unwrap();
    assert_eq!(mode(&shared), 0o750);
    assert_eq!(mode(store.path()), 0o600);
}

/// The real binary: every file it writes is its user's alone (database, Falco's rules directory
/// and config file), user `nobody` reads none of it and so cannot take the session key to forge
/// a console cookie; refused sign-ins are logged at a rate, not one line each.
#[test]
fn serve_writes_nothing_another_user_can_read() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let rules_d = home.path().join("rules.d");
    std::fs::create_dir(&rules_d).unwrap();
    std::fs::set_permissions(&rules_d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let falco_config = home.path().join("falco-api.yaml");
    let rules = home.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "- rule: Open\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n",
    )
    .unwrap();
    let config = home.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "falco:\n  rules_dir: {}\n  config_file: {}\nconsole:\n  listen: 127.0.0.1:0\n",
            rules_d.display(),
            falco_config.display()
        ),
    )
    .unwrap();
    let mut args = serve_args(&data, &sock, &["--rules", rules.to_str().unwrap()]);
    args.extend(["--config", config.to_str().unwrap()]);
    let mut running = spawn_serve(home.path(), &args);
    let console = printed_addr(&running.lines, "web console: http://");

    let db = data.join(falco_api::store::DB_FILE);
    assert_eq!(mode(&data), 0o700, "{:?}", running.lines);
    assert_eq!(mode(&db), 0o600);
    let written: Vec<_> = std::fs::read_dir(&rules_d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!written.is_empty(), "the rules reached Falco's directory");
    for f in written.iter().chain([&falco_config]) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    if is_root() {
        assert!(!nobody_reads(&db), "user nobody read the database");
        for f in &written {
            assert!(!nobody_reads(f), "user nobody read {}", f.display());
        }
    }

    // 300 refused sign-ins: a few log lines, with counts.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for _ in 0..300 {
            let (status, _) = request(
                console,
                "POST",
                "/console/api/login",
                &[("Content-Type", "application/json")],
                br#"{"token":"fapi_guess"}"#,
            )
            .await;
            assert_eq!(status, 401);
        }
    });
    sigterm(&running.child);
    let status = wait_exit(&mut running.child, Duration::from_secs(20));
    assert!(status.success());
    let mut log = String::new();
    std::io::Read::read_to_string(running.child.stderr.as_mut().unwrap(), &mut log).unwrap();
    let lines = log.matches("console sign-in refused").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines for 300 refusals:\n{log}"
    );
}

// ---- 2. connections that send nothing ----

/// 1,000 idle connections and 100 that send a request head byte by byte (slowloris) from the
/// same address Falco posts from: a real alert is still answered 200 within 2 s, and every one
/// of them is closed within the configured times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_http_connections_never_stop_alert_intake() {
    let _heavy = crate::common::HEAVY.lock().await;
    falco_api::net::listen::raise_open_files_limit();
    let server = TestServer::start(10_000).await;
    let addr = serve_endpoint(
        &server.app,
        |a| HttpEndpoint::new(HttpKind::Falco { mtls: false }, a, false, 1 << 20),
        short_limits(),
        None,
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
        slow.push(s);
    }
    let drip = tokio::spawn(async move {
        for _ in 0..20 {
            for s in &mut slow {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        slow
    });
    let started = Instant::now();
    let (status, body) = request(
        addr,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
        falco_alert("node-a", "Real alert", 1, 10).as_bytes(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(server.app.logs.outputs.head(), 1);

    // Idle ones: first byte within 2 s; slow ones: the whole head within 2 s.
    assert_eq!(
        crate::common::still_open(idle, Duration::from_secs(5)).await,
        0
    );
    let slow = drip.await.unwrap();
    assert_eq!(
        crate::common::still_open(slow, Duration::from_secs(1)).await,
        0
    );
    server.stop().await;
}

/// The same over the Unix socket: 1,100 connections that never send the HTTP/2 preface do not
/// keep `version` waiting, and are closed within the first-byte timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_preface_never_stop_grpc_calls_on_the_socket() {
    let _heavy = crate::common::HEAVY.lock().await;
    falco_api::net::listen::raise_open_files_limit();
    let server = TestServer::start(100).await;
    let sock = server.dir.join("limited.sock");
    let listener = grpc::bind_unix(&sock).unwrap();
    let opts = ServerOptions {
        limits: short_limits(),
        ..Default::default()
    };
    tokio::spawn(grpc::serve_unix_with(server.app.clone(), listener, opts));
    let mut idle = Vec::new();
    for _ in 0..1100 {
        // The listen backlog may be full for a moment while the server accepts.
        let mut tries = 0;
        let c = loop {
            match tokio::net::UnixStream::connect(&sock).await {
                Ok(c) => break c,
                Err(e) if tries < 200 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        idle.push(c);
    }
    let started = Instant::now();
    let channel = tokio::time::timeout(
        Duration::from_secs(2),
        falco_api::cli::client::connect_unix(&sock),
    )
    .await
    .expect("connected within 2 s")
    .unwrap();
    let mut client = falco_api::proto::version::service_client::ServiceClient::new(channel);
    let version = tokio::time::timeout(
        Duration::from_secs(2),
        client.version(falco_api::proto::version::Request {}),
    )
    .await
    .expect("answered within 2 s")
    .unwrap();
    assert!(!version.into_inner().version.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));

    let open = crate::common::still_open(idle, Duration::from_secs(5)).await;
    assert_eq!(open, 0, "connections without a preface still open");
    // A client that keeps a stream open is not idle: it outlives the idle timeout.
    let channel = falco_api::cli::client::connect_unix(&sock).await.unwrap();
    let mut outputs = falco_api::proto::outputs::service_client::ServiceClient::new(channel);
    let mut stream = outputs
        .sub(tokio_stream::StreamExt::chain(
            tokio_stream::iter(vec![falco_api::proto::outputs::Request::default()]),
            tokio_stream::pending(),
        ))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.append(1).await;
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream is still served")
        .unwrap();
    assert!(got.is_some());
    server.stop().await;
}

/// An mTLS endpoint asks for the certificate in the handshake: a client without one never
/// reaches HTTP. A TLS client that stalls its handshake is closed after
/// `tls.handshake_timeout_secs`, not a built-in 10 s.
#[tokio::test]
async fn mtls_endpoints_need_the_certificate_in_the_handshake_and_handshakes_are_bounded() {
    let certs = crate::common::localhost_certs();
    let read = |f: &str| std::fs::read(certs.path().join(f)).unwrap();
    let server = TestServer::start(100).await;
    let acceptor = falco_api::http::tls_acceptor(
        &read("server.crt"),
        &read("server.key"),
        Some(&read("ca.crt")),
        true,
    )
    .unwrap();
    let limits = Limits {
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let addr = serve_endpoint(
        &server.app,
        |a| HttpEndpoint::new(HttpKind::Metrics { mtls: true }, a, true, 0),
        limits,
        Some(acceptor),
    )
    .await;

    let connector = crate::common::tls_client(&read("ca.crt"));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut answer = Vec::new();
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        let _ = tls
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    }
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "an anonymous client got an HTTP answer: {}",
        String::from_utf8_lossy(&answer)
    );

    // One byte of a hello, then nothing: closed after the 1 s handshake timeout.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16]).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(8), stalled.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
}

// ---- 3. /metrics ----

fn snapshot(node: &str, fields: usize) -> String {
    let mut output_fields = serde_json::Map::new();
    for i in 0..fields {
        output_fields.insert(format!("falco.made_up_{node}_{i}"), serde_json::json!(i));
    }
    serde_json::json!({
        "hostname": node,
        "output": "Falco metrics snapshot",
        "output_fields": output_fields,
        "priority": "Informational",
        "rule": "Falco internal: metrics snapshot",
        "source": "internal",
        "tags": [],
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    })
    .to_string()
}

/// Posters cannot grow a scrape without bound: snapshot series have a budget, label values are
/// cut, and `falco_events` holds a byte budget as well as a count of label sets.
#[tokio::test]
async fn whoever_can_post_cannot_blow_up_the_scrape() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(100_000).await;
    let receiver = receiver(&server).await;
    let metrics = serve_endpoint(
        &server.app,
        |a| HttpEndpoint::new(HttpKind::Metrics { mtls: false }, a, false, 0),
        Limits::default(),
        None,
    )
    .await;
    for node in 0..50 {
        let (status, body) = request(
            receiver,
            "POST",
            "/",
            &[],
            snapshot(&format!("node-{node}"), 4000).as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for n in 0..20 {
        let rule = format!("{n}-{}", "r".repeat(900 * 1024));
        let (status, body) = request(
            receiver,
            "POST",
            "/",
            &[],
            falco_alert("node-x", &rule, n, 10).as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let started = Instant::now();
    let (status, text) = request(metrics, "GET", "/metrics", &[], b"").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let snapshot_samples = text
        .lines()
        .filter(|l| l.starts_with("falcosecurity_falco_made_up"))
        .count();
    assert!(
        (1..=10_000).contains(&snapshot_samples),
        "{snapshot_samples} snapshot samples"
    );
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a line of {longest} bytes");
    assert!(text.len() < 2 << 20, "a scrape of {} bytes", text.len());
    // The series sum still counts every alert.
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("falco_events{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total as u64, 70);
    eprintln!("scrape of {} bytes in {took:?}", text.len());
    server.stop().await;
}

// ---- 4, 5, 6. the console ----

/// Signs in with a new token named `name`; the cookie and the CSRF value.
async fn sign_in(
    server: &TestServer,
    console: std::net::SocketAddr,
    name: &str,
) -> (String, String) {
    let token = server
        .app
        .tokens
        .create(name, "admin", 0, "test")
        .unwrap()
        .0;
    let (status, text) = request(
        console,
        "POST",
        "/console/api/login",
        &[("Content-Type", "application/json")],
        format!("{{\"token\":\"{token}\"}}").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let csrf = serde_json::from_str::<serde_json::Value>(body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

async fn console_with_stall(server: &TestServer, stall: Duration) -> std::net::SocketAddr {
    serve_endpoint(
        &server.app,
        |a| {
            let mut e = HttpEndpoint::new(HttpKind::Console, a, false, 4 << 20);
            e.stall_timeout = stall;
            e
        },
        Limits::default(),
        None,
    )
    .await
}

fn big_event(i: u64, output_bytes: usize) -> OutputEvent {
    let mut ev = crate::common::event(i);
    ev.output = format!("{i} {}", crate::common::noise(output_bytes, i));
    ev.priority = Priority::Warning;
    ev.time_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    ev
}

/// A live-alerts reader that stops reading is disconnected after the stall timeout with at
/// most a bounded buffer sent its way, instead of pinning every alert in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_live_alerts_reader_is_disconnected_not_buffered() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(100_000).await;
    let console = console_with_stall(&server, Duration::from_secs(2)).await;
    let (cookie, _) = sign_in(&server, console, "watcher").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(console).await.unwrap();
    s.write_all(
        format!(
            "GET /console/api/alerts/stream HTTP/1.1\r\nHost: {console}\r\nCookie: {cookie}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 512];
    let n = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));
    // 40 MB of list views for a reader that reads nothing.
    for chunk in 0..20u64 {
        let events = (0..500).map(|i| big_event(chunk * 500 + i, 4000)).collect();
        server.app.logs.outputs.append(events).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = n;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => received += k,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream was never closed ({received} bytes read)"
    );
    assert!(
        received < 16 << 20,
        "{received} bytes reached a reader that stopped reading"
    );
    server.stop().await;
}

/// `/alerts` is bounded in bytes whatever the alerts' size: list views are cut, and the whole
/// alert comes from `/alert?seq=`; the overview counts 1 MiB alerts without holding them.
#[tokio::test]
async fn console_answers_are_bounded_in_bytes() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(100_000).await;
    let console = console_with_stall(&server, Duration::from_secs(30)).await;
    let (cookie, _) = sign_in(&server, console, "reader").await;
    let events = (0..40).map(|i| big_event(i, 1 << 20)).collect();
    server.app.logs.outputs.append(events).await.unwrap();
    let (status, text) = request(
        console,
        "GET",
        "/console/api/alerts?limit=2000",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let body: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 40);
    assert!(text.len() < 1 << 20, "an answer of {} bytes", text.len());
    assert!(alerts.iter().all(|a| a["truncated"] == true));
    assert!(text.contains("no-store") && text.contains("nosniff"));
    let seq = alerts[0]["seq"].as_u64().unwrap();
    let (status, text) = request(
        console,
        "GET",
        &format!("/console/api/alert?seq={seq}"),
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let full: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(full["output"].as_str().unwrap().len() > 1 << 20);
    assert_eq!(full["truncated"], false);
    let (status, _) = request(
        console,
        "GET",
        "/console/api/alert?seq=999",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 404);
    let (status, text) = request(
        console,
        "GET",
        "/console/api/overview",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"alerts_last_day\":40"), "{text}");

    // The declared 4 MiB body limit is the one applied: 3 MiB passes, 5 MiB does not.
    let (admin_cookie, admin_csrf) = sign_in(&server, console, "admin").await;
    let rules = |size: usize| {
        serde_json::json!({
            "name": "big.yaml",
            "content": format!("# {}\n- list: l\n  items: [a]\n", "c".repeat(size)),
        })
        .to_string()
    };
    let headers = [
        ("Cookie", admin_cookie.as_str()),
        ("X-CSRF-Token", admin_csrf.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, text) = request(
        console,
        "POST",
        "/console/api/rules/validate",
        &headers,
        rules(3 << 20).as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let (status, _) = request(
        console,
        "POST",
        "/console/api/rules/validate",
        &headers,
        rules(5 << 20).as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    server.stop().await;
}

/// Revoking a token ends its open live stream; logging out ends the session on the server (a
/// copied cookie changes nothing afterwards); a token whose name has dots signs in; rotating
/// the key ends every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_the_server() {
    let server = TestServer::start(1000).await;
    let console = console_with_stall(&server, Duration::from_secs(30)).await;
    let (cookie, _) = sign_in(&server, console, "ops.watcher").await;
    let mut s = TcpStream::connect(console).await.unwrap();
    s.write_all(
        format!(
            "GET /console/api/alerts/stream HTTP/1.1\r\nHost: {console}\r\nCookie: {cookie}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("event: hello") {
        let n = s.read(&mut buf).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    server.app.tokens.revoke("ops.watcher").unwrap();
    // The answer ends (its last chunk, or the connection).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.ends_with("0\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
    .await;
    assert!(seen.contains("event: ended"), "{seen}");
    assert!(
        ended.is_ok(),
        "the stream stayed open after the revocation: {seen}"
    );

    let (cookie, csrf) = sign_in(&server, console, "admin").await;
    let set = |cookie: String, csrf: String| async move {
        request(
            console,
            "POST",
            "/console/api/config/set",
            &[
                ("Cookie", cookie.as_str()),
                ("X-CSRF-Token", csrf.as_str()),
                ("Content-Type", "application/json"),
            ],
            br#"{"key":"outputs.rate","value":"9"}"#,
        )
        .await
        .0
    };
    assert_eq!(set(cookie.clone(), csrf.clone()).await, 200);
    let (status, _) = request(
        console,
        "POST",
        "/console/api/logout",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        set(cookie, csrf).await,
        401,
        "a copied cookie still worked after logout"
    );

    let (cookie, csrf) = sign_in(&server, console, "admin.two").await;
    assert_eq!(set(cookie.clone(), csrf.clone()).await, 200);
    let mut tokens =
        falco_api::proto::tokens::service_client::ServiceClient::new(server.channel().await);
    tokens
        .rotate_key(falco_api::proto::tokens::RotateKeyRequest {})
        .await
        .unwrap();
    assert_eq!(
        set(cookie, csrf).await,
        401,
        "a session outlived the key rotation"
    );
    server.stop().await;
}

// ---- 7. the byte budget ----

/// A log keeps at most its byte budget, trimming the oldest first, across a restart too; a
/// poster over its byte rate is answered 429 and recorded as a drop.
#[tokio::test]
async fn the_logs_are_bounded_in_bytes_and_posters_in_byte_rate() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        outputs_max_bytes: 2 << 20,
        ..Default::default()
    };
    {
        let store = Store::open(dir.path(), &opts).unwrap();
        for i in 0..100 {
            store.outputs().append(&[big_event(i, 100_000)]).unwrap();
        }
        let retained = store.outputs().retained_bytes();
        assert!(retained <= (2 << 20) + 120_000, "{retained} bytes retained");
        assert_eq!(retained, store.outputs().footprint_bytes().unwrap());
        let bounds = store.outputs().bounds();
        assert_eq!(bounds.newest, 100);
        assert!(bounds.oldest > 70, "{bounds:?}");
        // A 100 KB event takes a 128 KiB run of pages, which is what the budget counts.
        assert!(bounds.len() >= 15, "{bounds:?}");
    }
    let smaller = StoreOptions {
        outputs_max_bytes: 1 << 20,
        ..Default::default()
    };
    let store = Store::open(dir.path(), &smaller).unwrap();
    assert!(store.outputs().retained_bytes() <= (1 << 20) + 120_000);
    assert_eq!(store.outputs().bounds().newest, 100);
    drop(store);

    let server = TestServer::start(1000).await;
    let receiver = serve_endpoint(
        &server.app,
        |a| {
            let mut e = HttpEndpoint::new(HttpKind::Falco { mtls: false }, a, false, 1 << 20);
            e.client_bytes_per_sec = 100_000;
            e
        },
        Limits::default(),
        None,
    )
    .await;
    let big = falco_alert("node-a", "Big", 1, 600_000);
    let (first, _) = request(receiver, "POST", "/", &[], big.as_bytes()).await;
    let (second, body) = request(receiver, "POST", "/", &[], big.as_bytes()).await;
    assert_eq!((first, second), (200, 429), "{body}");
    assert_eq!(server.app.logs.outputs.head(), 1);
    // The drop record is written beside the answer; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let recorded = loop {
        let drops = crate::common::get_all_drops(&server).await;
        let found = drops
            .iter()
            .any(|d| d.stage == "rate_limited" && d.message.contains("client_bytes_per_sec"));
        if found || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(recorded, "no rate_limited drop record");
    server.stop().await;
}

// ---- 8, 9, 14. send --alerts ----

/// `falco-api send --alerts --quiet FILE` against the server at `sock`.
async fn send_alerts(sock: &Path, file: &Path) -> std::process::Output {
    let (sock, file) = (sock.to_path_buf(), file.to_path_buf());
    tokio::task::spawn_blocking(move || {
        Command::new(EXE)
            .args(["send", "--alerts", "--quiet", "--server"])
            .arg(&sock)
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn alert_line(n: u64, pad: usize) -> String {
    serde_json::json!({
        "hostname": "node-f",
        "output": format!("file alert {n}"),
        "output_fields": {"pad": "p".repeat(pad), "n": n},
        "priority": "Warning",
        "rule": "File alert",
        "source": "syscall",
        "tags": [],
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    })
    .to_string()
}

/// 500 lines of 40 KB go in batches under the message limit; a line over 1 MiB is named and
/// stepped past (also when it has no newline yet, in `--follow`); a non-UTF-8 line does not end
/// the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_alerts_cuts_batches_by_bytes_and_steps_past_what_it_cannot_send() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    let mut text = String::new();
    for n in 0..500 {
        text.push_str(&alert_line(n, 40_000));
        text.push('\n');
    }
    std::fs::write(&file, &text).unwrap();
    let out = send_alerts(&server.socket, &file).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.app.logs.outputs.head(), 500);

    // A good line, one with bytes that are not UTF-8, a line over 1 MiB, a good line.
    let mixed = dir.path().join("mixed.jsonl");
    let mut bytes = alert_line(1, 10).into_bytes();
    bytes.push(b'\n');
    let odd = alert_line(2, 10);
    let (before, after) = odd.split_once("file alert 2").unwrap();
    bytes.extend_from_slice(before.as_bytes());
    bytes.extend_from_slice(b"file alert \xff\xfe 2");
    bytes.extend_from_slice(after.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(alert_line(3, 2 << 20).as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(alert_line(4, 10).as_bytes());
    bytes.push(b'\n');
    std::fs::write(&mixed, &bytes).unwrap();
    let out = send_alerts(&server.socket, &mixed).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("line 3 skipped"), "{stderr}");
    assert!(stdout.contains("3 alerts stored, 1 rejected"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped line is a failure to report"
    );
    assert_eq!(server.app.logs.outputs.head(), 503);

    // --follow: an oversized line, first without its newline, then completed.
    let followed = dir.path().join("falco.jsonl");
    std::fs::write(&followed, format!("{}\n", alert_line(10, 10))).unwrap();
    let child = Command::new(EXE)
        .args(["send", "--alerts", "--follow", "--server"])
        .arg(&server.socket)
        .arg(&followed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wait_head = |want: u64| {
        let app = server.app.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while app.logs.outputs.head() < want && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            app.logs.outputs.head()
        }
    };
    assert_eq!(wait_head(504).await, 504);
    let append = |b: &[u8]| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&followed)
            .unwrap()
            .write_all(b)
            .unwrap();
    };
    append(&vec![b'z'; 3 << 20]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&vec![b'z'; 1 << 20]);
    append(b"\n");
    append(format!("{}\n", alert_line(11, 10)).as_bytes());
    assert_eq!(
        wait_head(505).await,
        505,
        "the line after the oversized one came through"
    );
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped: 4194305 bytes"), "{stderr}");
    server.stop().await;
}

// ---- 11. other sites ----

/// A page of another site cannot post into the loopback receiver, and a DNS-rebinding name
/// cannot read it; same-origin and non-browser posts go through, and answers carry
/// `nosniff` and `no-store`.
#[tokio::test]
async fn requests_from_other_sites_are_refused() {
    let server = TestServer::start(1000).await;
    let receiver = receiver(&server).await;
    let alert = falco_alert("node-a", "R", 1, 10);
    let post = |headers: Vec<(&'static str, String)>| {
        let alert = alert.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(receiver, "POST", "/", &h, alert.as_bytes()).await
        }
    };
    let (status, text) = post(vec![("Host", "attacker.example:2801".into())]).await;
    assert_eq!(status, 421, "{text}");
    assert!(text.contains("allowed_hosts"), "{text}");
    let (status, _) = post(vec![("Origin", "http://attacker.example".into())]).await;
    assert_eq!(status, 403);
    let (status, _) = post(vec![("Sec-Fetch-Site", "cross-site".into())]).await;
    assert_eq!(status, 403);
    let (status, _) = post(vec![("Origin", "null".into())]).await;
    assert_eq!(status, 403);
    assert_eq!(
        server.app.logs.outputs.head(),
        0,
        "nothing forged was stored"
    );
    let (status, text) = post(vec![("Origin", format!("http://{receiver}"))]).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.ends_with("{\"seq\":1,\"stored\":1}"),
        "the documented answer: {text}"
    );
    let (status, text) = post(vec![("Host", format!("localhost:{}", receiver.port()))]).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("x-content-type-options: nosniff"), "{text}");
    assert!(text.contains("cache-control: no-store"), "{text}");
    server.stop().await;
}

// ---- 12. Falco's rules directory ----

/// A link planted at the temporary's name or at a file's own name is replaced, never written
/// through (its target stays as it was); a FIFO at a file's name does not hang the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_directory_is_never_written_through_a_link_or_waited_on() {
    use falco_api::services::control::Change;
    let server = TestServer::start(1000).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("rules.d");
    std::fs::create_dir(&dir).unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(".falco-api-a+.yaml.falco-api-tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("falco-api-b+.yaml")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(dir.join("falco-api-c+.yaml"))
        .status()
        .unwrap()
        .success());
    falco_api::falco::sync::start(
        &server.app,
        falco_api::falco::sync::Targets {
            rules_dir: Some(dir.clone()),
            config_file: None,
        },
    );
    let rule =
        "- rule: R\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n";
    let app = server.app.clone();
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            app.rules.put("a", rule, Change::by("test", "")).unwrap();
            app.rules
                .put("b", &rule.replace("R\n", "S\n"), Change::by("test", ""))
                .unwrap();
            app.rules
                .put("c", &rule.replace("R\n", "T\n"), Change::by("test", ""))
                .unwrap();
        }),
    )
    .await;
    assert!(done.is_ok(), "a rules change hung on the FIFO");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    for name in [
        "falco-api-a+.yaml",
        "falco-api-b+.yaml",
        "falco-api-c+.yaml",
    ] {
        let meta = std::fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is {meta:?}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(dir.join("falco-api-b+.yaml"))
        .unwrap()
        .contains("rule: S"));
    server.stop().await;
}

// ---- 13. the webhook ----

/// kube-apiserver's batches can pass the ingest payload limit: an `EventList` of 1.6 MB is
/// split into its events and every one evaluated.
#[tokio::test]
async fn a_large_event_list_is_split_not_refused() {
    let server = TestServer::start(10_000).await;
    let hook = serve_endpoint(
        &server.app,
        |a| HttpEndpoint::new(HttpKind::Webhook, a, false, 12 << 20),
        Limits::default(),
        None,
    )
    .await;
    let items: Vec<serde_json::Value> = (0..400)
        .map(|i| {
            serde_json::json!({
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "auditID": format!("id-{i}"),
                "stage": "ResponseComplete",
                "verb": "get",
                "requestURI": format!("/api/v1/namespaces/default/pods/p{i}?{}", "q".repeat(3900)),
                "stageTimestamp": "2026-12-01T02:00:00.000000Z",
            })
        })
        .collect();
    let list =
        serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
            .to_string();
    assert!(list.len() > 1_600_000, "{}", list.len());
    let (status, text) = request(
        hook,
        "POST",
        "/k8s-audit",
        &[("Content-Type", "application/json")],
        list.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"evaluated\":400"), "{text}");
    // One event alone over the limit is still refused, with the reason.
    let one =
        serde_json::json!({"kind": "Event", "auditID": "x", "requestURI": "r".repeat(1_100_000)})
            .to_string();
    let (status, text) = request(hook, "POST", "/k8s-audit", &[], one.as_bytes()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_payload_bytes"), "{text}");
    server.stop().await;
}

// ---- 15. TLS files ----

/// `tls.cert: /dev/zero` (or a FIFO) is refused at once, not read forever.
#[test]
fn tls_files_that_are_not_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for cert in [Path::new("/dev/zero"), fifo.as_path()] {
        let config = dir.path().join("c.yaml");
        std::fs::write(
            &config,
            format!(
                "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
                cert.display(),
                cert.display(),
                cert.display()
            ),
        )
        .unwrap();
        let started = Instant::now();
        let out = Command::new(EXE)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
