//! `GET /metrics`: falco-exporter's `falco_events` and the server's own series, across
//! restarts, with the series limit, and scraped by a real Prometheus that answers the
//! falco-exporter dashboard's queries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use falco_api::bench::http::{sample_alert, Poster};
use falco_api::config::HttpKind;
use falco_api::pipeline::Settings;

use crate::common::events::{send_all, syscall_event, SYSCALL_RULES};
use crate::common::process::receiver_addr;
use crate::common::process::{cli_output, serve_args, sigterm, spawn_serve, wait_exit};
use crate::common::{free_port, packaged, spawn_http, TestServer};

const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Samples of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse().expect("sample value"))
        })
        .collect()
}

fn family_sum(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

fn events_series(labels: [&str; 7]) -> String {
    let pairs: Vec<String> = falco_api::services::telemetry::EVENT_LABELS
        .iter()
        .zip(labels)
        .map(|(n, v)| format!("{n}=\"{v}\""))
        .collect();
    format!("falco_events{{{}}}", pairs.join(","))
}

async fn scrape(addr: SocketAddr) -> (u16, String, String) {
    let mut client = Poster::connect(addr).await.unwrap();
    client
        .get("/metrics", Some(OPENMETRICS_ACCEPT))
        .await
        .unwrap()
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn fixture_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/falco/alerts.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_exposition_has_falco_exporters_series_and_the_servers_own() {
    let server = TestServer::start_with(10_000, Settings::default(), &[SYSCALL_RULES]).await;
    let (l, metrics) = listener().await;
    spawn_http(&server.app, l, HttpKind::Metrics { mtls: false }, None);
    let (l, receiver) = listener().await;
    spawn_http(&server.app, l, HttpKind::Falco { mtls: false }, None);

    // The engine: 3 shadow reads (tags filesystem, mitre), 2 execs (no tags), 1 that matches
    // nothing.
    let mut events = Vec::new();
    for i in 1..=3 {
        events.push(syscall_event(i, "open", "/etc/shadow"));
    }
    events.push(syscall_event(4, "execve", ""));
    events.push(syscall_event(5, "execve", ""));
    events.push(syscall_event(6, "close", "/tmp/x"));
    send_all(&server, vec![events]).await;
    // Falco's http_output: every fixture alert (k8s fields, a null, a drop alert, a snapshot).
    let lines = fixture_lines();
    let mut falco = Poster::connect(receiver).await.unwrap();
    for line in &lines {
        let (status, body) = falco
            .post("/", "application/json", line.clone())
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // A call that succeeds and one that fails, for the gRPC counts.
    let mut version =
        falco_api::proto::version::service_client::ServiceClient::new(server.channel().await);
    version
        .version(falco_api::proto::version::Request {})
        .await
        .unwrap();
    let mut rules =
        falco_api::proto::rules::service_client::ServiceClient::new(server.channel().await);
    let missing = rules
        .get(falco_api::proto::rules::GetRequest {
            name: "nope.yaml".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, content_type, text) = scrape(metrics).await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type, "text/plain; version=0.0.4",
        "the 0.0.4 text even when OpenMetrics is offered"
    );
    assert!(text.contains("# TYPE falco_events counter\n"), "{text}");
    assert!(!text.contains("falco_events_total"));
    let s = samples(&text);
    let host = server.app.current_hostname();
    let host = host.as_str();
    let expect = [
        (
            [
                "shadow read",
                "4",
                host,
                "syscall",
                "",
                "",
                ",filesystem,mitre,",
            ],
            3.0,
        ),
        (["any exec", "7", host, "syscall", "", "", ",,"], 2.0),
        (
            [
                "Terminal shell in container",
                "5",
                "node-a",
                "syscall",
                "shop",
                "web-7d4b9c",
                ",T1059,container,maturity_stable,mitre_execution,shell,",
            ],
            1.0,
        ),
        (
            [
                "Create HostNetwork Pod",
                "4",
                "node-b",
                "k8s_audit",
                "",
                "",
                ",k8s,",
            ],
            1.0,
        ),
    ];
    for (labels, count) in expect {
        let series = events_series(labels);
        assert_eq!(s.get(&series), Some(&count), "{series} in\n{text}");
    }
    let head = server.app.logs.outputs.head();
    assert_eq!(head, 5 + lines.len() as u64);
    assert_eq!(
        family_sum(&s, "falco_events"),
        head as f64,
        "one count per stored alert"
    );
    assert_eq!(s["falco_api_log_head_seq{log=\"outputs\"}"], head as f64);
    assert_eq!(s["falco_api_log_records{log=\"outputs\"}"], head as f64);
    assert_eq!(s["falco_api_log_oldest_seq{log=\"outputs\"}"], 1.0);
    assert_eq!(s["falco_api_log_max_age_seconds{log=\"outputs\"}"], 0.0);
    assert_eq!(
        s["falco_api_log_max_bytes{log=\"drops\"}"],
        (64u64 << 20) as f64
    );
    let retained = s["falco_api_log_retained_bytes{log=\"outputs\"}"];
    assert!(retained > 0.0, "{retained}");
    let age = s["falco_api_log_oldest_age_seconds{log=\"outputs\"}"];
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(s["falco_api_alerts_appended_total{origin=\"engine\"}"], 5.0);
    assert_eq!(
        s["falco_api_alerts_appended_total{origin=\"falco-http\"}"],
        lines.len() as f64
    );
    assert_eq!(
        s["falco_api_inputs_events_total{result=\"accepted\",source=\"syscall\"}"],
        6.0
    );
    assert_eq!(
        s["falco_api_grpc_requests_total{code=\"OK\",method=\"/falco.version.service/version\"}"],
        1.0
    );
    assert_eq!(
        s["falco_api_grpc_requests_total{code=\"NOT_FOUND\",method=\"/falco.rules.service/get\"}"],
        1.0
    );
    assert_eq!(
        s["falco_api_http_requests_total{endpoint=\"POST /\",status=\"200\"}"],
        lines.len() as f64
    );
    assert_eq!(s["falco_api_rules_loaded"], 2.0);
    assert!(s["falco_api_commit_duration_seconds_count{log=\"outputs\"}"] >= 1.0);
    assert!(s["falco_api_evaluation_duration_seconds_count"] >= 1.0);
    assert_eq!(s["falco_api_ingest_queue_depth"], 0.0);
    assert!(s["falco_api_ingest_queue_capacity"] > 0.0);
    // Falco's drop alert became a drop record; its node's snapshot is exposed as Falco names it.
    assert_eq!(
        s["falco_api_dropped_events_total{stage=\"falco_syscall_drop\"}"],
        1234.0
    );
    assert_eq!(
        s["falcosecurity_scap_n_drops_total{hostname=\"node-a\"}"],
        1234.0
    );
    assert_eq!(
        s["falco_api_falco_node_syscall_drops_total{hostname=\"node-a\"}"],
        1234.0
    );
    assert!(s.keys().any(|k| k.starts_with("falco_api_build_info{")
        && k.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))));

    // Elsewhere: 404, counted as unmatched; the scrapes themselves are counted.
    let mut client = Poster::connect(metrics).await.unwrap();
    let (status, _, _) = client.get("/nope", None).await.unwrap();
    assert_eq!(status, 404);
    let (_, _, text) = scrape(metrics).await;
    let s = samples(&text);
    assert_eq!(
        s["falco_api_http_requests_total{endpoint=\"GET unmatched\",status=\"404\"}"],
        1.0
    );
    assert!(s["falco_api_http_requests_total{endpoint=\"GET /metrics\",status=\"200\"}"] >= 1.0);
    // With mtls, a scraper without a client certificate is refused.
    let (l, guarded) = listener().await;
    spawn_http(&server.app, l, HttpKind::Metrics { mtls: true }, None);
    let (status, _, body) = scrape(guarded).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("falco_events"));
    server.stop().await;
}

/// The metrics address `serve` printed.
fn metrics_addr(lines: &[String]) -> SocketAddr {
    crate::common::process::printed_addr(lines, "prometheus metrics: http://")
}

/// Scrapes until the counts are ready (503 while the log is counted at start).
async fn scrape_ready(addr: SocketAddr) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, text) = scrape(addr).await;
        if status == 200 {
            return samples(&text);
        }
        assert_eq!(status, 503, "{text}");
        assert!(Instant::now() < deadline, "metrics never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events_only(s: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    s.iter()
        .filter(|(k, _)| k.starts_with("falco_events{"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn falco_events_survive_restarts_and_kill_9_and_fold_past_max_series() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let config = home.path().join("falco-api.yaml");
    std::fs::write(
        &config,
        "metrics:\n  listen: 127.0.0.1:0\n  max_series: 3\nfalco:\n  listen: 127.0.0.1:0\n",
    )
    .unwrap();
    let args = serve_args(&data, &sock, &["--config", config.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 5 hosts × 4 alerts: 5 label sets, 3 kept, the other 2 hosts' 8 alerts folded.
    let post = |lines: &[String], n: u64, first: u64| {
        let addr = receiver_addr(lines);
        rt.block_on(async move {
            let mut falco = Poster::connect(addr).await.unwrap();
            for i in first..first + n {
                let (status, body) = falco
                    .post("/", "application/json", sample_alert(i % 5, i))
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{body}");
            }
        })
    };
    let mut running = spawn_serve(home.path(), &args);
    post(&running.lines, 20, 0);
    let first = rt.block_on(scrape_ready(metrics_addr(&running.lines)));
    let events = events_only(&first);
    assert_eq!(
        events.len(),
        4,
        "3 label sets and the overflow series: {events:?}"
    );
    let overflow = events
        .iter()
        .find(|(k, _)| k.contains(falco_api::services::telemetry::OVERFLOW_RULE))
        .expect("an overflow series");
    assert_eq!(*overflow.1, 8.0);
    assert_eq!(events.values().sum::<f64>(), 20.0);
    let stats = cli_output(&sock, &["tail", "--stats", "--once"]);
    let stats_text = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success(), "{stats:?}");
    assert!(
        stats_text.contains("falco_events: 4 series, 20 alerts"),
        "{stats_text}"
    );
    assert!(stats_text.contains("head         20"), "{stats_text}");

    // A clean stop saves the counts; the restart serves them unchanged.
    sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
    let mut running = spawn_serve(home.path(), &args);
    let again = rt.block_on(scrape_ready(metrics_addr(&running.lines)));
    assert_eq!(
        events_only(&again),
        events,
        "the same counts after a restart"
    );

    // More alerts, then kill -9 (the saved counts are older): saved + the log after them.
    post(&running.lines, 10, 20);
    let before_kill = events_only(&rt.block_on(scrape_ready(metrics_addr(&running.lines))));
    assert_eq!(before_kill.values().sum::<f64>(), 30.0);
    running.child.kill().unwrap();
    let _ = running.child.wait();
    let mut running = spawn_serve(home.path(), &args);
    let after_kill = events_only(&rt.block_on(scrape_ready(metrics_addr(&running.lines))));
    assert_eq!(
        after_kill, before_kill,
        "kill -9 loses and doubles no count"
    );
    sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
}

// ---- a real Prometheus ----

fn corpus_dir() -> PathBuf {
    std::env::var("FALCO_API_CORPUS").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
        PathBuf::from,
    )
}

/// Every PromQL expression of the falco-exporter Grafana dashboard.
fn dashboard_exprs() -> Vec<String> {
    let path = corpus_dir().join("falco-exporter/dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the corpus sits beside the checkout)",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        if let Some(e) = v.as_str() {
                            out.push(e.to_string());
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&json, &mut out);
    out
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: falco-api\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(packaged("PROMETHEUS", "/usr/bin/prometheus", "prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        addr,
        _dir: dir,
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer to an instant query: the result vector.
async fn query(prometheus: SocketAddr, expr: &str) -> Vec<serde_json::Value> {
    // Prometheus answers 503 until its storage is ready, which takes longer on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let mut client = Poster::connect(prometheus).await.unwrap();
        let (status, _, body) = client
            .get(&format!("/api/v1/query?query={}", url_encode(expr)), None)
            .await
            .unwrap();
        if status != 503 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{expr}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Waits until Prometheus's `sum(falco_events)` equals `n`.
async fn wait_sum(prometheus: SocketAddr, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connected = tokio::net::TcpStream::connect(prometheus).await.is_ok();
        if connected {
            let r = query(prometheus, "sum(falco_events)").await;
            let value = r
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok());
            if value == Some(n as f64) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus's sum(falco_events) did not reach {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_real_prometheus_answers_the_falco_exporter_dashboard() {
    let exprs = dashboard_exprs();
    assert!(
        exprs.iter().any(|e| e.contains("falco_events")),
        "{exprs:?}"
    );
    let server = TestServer::start_with(10_000, Settings::default(), &[SYSCALL_RULES]).await;
    let (l, metrics) = listener().await;
    spawn_http(&server.app, l, HttpKind::Metrics { mtls: false }, None);
    let (l, receiver) = listener().await;
    spawn_http(&server.app, l, HttpKind::Falco { mtls: false }, None);
    let prometheus = start_prometheus(metrics);

    // Two waves, so the counters rise between scrapes and rate() has something to see.
    let wave = |first: u64| -> Vec<_> {
        (first..first + 4)
            .map(|i| syscall_event(i, "open", "/etc/shadow"))
            .collect()
    };
    send_all(&server, vec![wave(1)]).await;
    let mut falco = Poster::connect(receiver).await.unwrap();
    for i in 0..3 {
        let (status, _) = falco
            .post("/", "application/json", sample_alert(i, i))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    wait_sum(prometheus.addr, server.app.logs.outputs.head()).await;
    send_all(&server, vec![wave(5)]).await;
    for line in fixture_lines() {
        let (status, _) = falco.post("/", "application/json", line).await.unwrap();
        assert_eq!(status, 200);
    }
    let head = server.app.logs.outputs.head();
    wait_sum(prometheus.addr, head).await;

    // Every expression of the dashboard answers with falco-api's series.
    for expr in &exprs {
        let result = query(prometheus.addr, expr).await;
        assert!(!result.is_empty(), "{expr} returned nothing");
        for series in &result {
            // Prometheus keeps no empty label (k8s_ns_name="" is no label), as with
            // falco-exporter; the others are always set.
            let m = &series["metric"];
            for label in ["rule", "priority", "hostname", "source", "tags"] {
                assert!(m.get(label).is_some(), "{expr}: {label} missing in {m}");
            }
        }
    }
    let shadow = query(
        prometheus.addr,
        "sum by (rule) (falco_events{rule=\"shadow read\",tags=\",filesystem,mitre,\"})",
    )
    .await;
    assert_eq!(shadow[0]["value"][1], "8");
    let pods = query(prometheus.addr, "falco_events{k8s_pod_name=\"web-7d4b9c\"}").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metric"]["k8s_ns_name"], "shop");

    // promtool's lint of the scraped text: the one problem it reports is falco_events' name,
    // which must stay falco-exporter's (and the names Falco itself gives its own metrics).
    let (_, _, text) = scrape(metrics).await;
    let mut promtool = Command::new(
        packaged("PROMETHEUS", "/usr/bin/prometheus", "prometheus").with_file_name("promtool"),
    )
    .args(["check", "metrics"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("promtool");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("falcosecurity_"))
        .collect();
    assert_eq!(
        problems,
        vec!["falco_events counter metrics should have \"_total\" suffix"],
        "promtool check metrics:\n{report}"
    );
    server.stop().await;
}
