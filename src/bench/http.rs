//! `falco-api bench http`: Falco's http_output into falco-api — K keep-alive clients POST one
//! alert per request, as Falco's libcurl does, each answered once the alert is durable, while M
//! subscribers follow the log; then the latency of single posts at a fixed offered rate; and the
//! same posts answered by a bare endpoint that stores nothing, as the baseline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};

use crate::config::{HttpEndpoint, HttpKind};
use crate::proto::outputs::Request;
use crate::services::App;
use crate::store::StoreOptions;

/// One keep-alive HTTP/1.1 connection that posts requests one after another.
pub struct Poster {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The `Host` header: the address, as libcurl sends it for Falco's `http_output.url`.
    host: String,
}

impl Poster {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Poster> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Self::over(tcp, &addr.to_string()).await
    }

    /// Speaks HTTP/1.1 over an established stream (TLS or not) to `host`.
    pub async fn over<IO>(io: IO, host: &str) -> anyhow::Result<Poster>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Poster {
            sender,
            host: host.to_string(),
        })
    }

    /// POSTs `body` to `path`; returns the status and the response body.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(u16, String)> {
        self.sender.ready().await?;
        let request = http::Request::post(path)
            .header(http::header::HOST, self.host.as_str())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::USER_AGENT, "falcosecurity/falco")
            .body(Full::new(body.into()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

impl Poster {
    /// GETs `path` (with an `Accept` header when given); returns the status, the content type
    /// and the body.
    pub async fn get(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<(u16, String, String)> {
        self.sender.ready().await?;
        let mut request = http::Request::get(path).header(http::header::HOST, self.host.as_str());
        if let Some(accept) = accept {
            request = request.header(http::header::ACCEPT, accept);
        }
        let response = self
            .sender
            .send_request(request.body(Full::default())?)
            .await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// Serves one plain-HTTP endpoint group of `app` on a loopback port; returns its address.
pub(crate) async fn serve_endpoint(app: &App, kind: HttpKind) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let endpoint = HttpEndpoint::new(kind, addr, false, 1 << 20);
    let router = crate::http::router(app.clone(), &[&endpoint]);
    let opts = crate::http::HttpOptions::default();
    tokio::spawn(crate::http::serve(app.clone(), listener, router, opts));
    Ok(addr)
}

#[derive(Args, Debug)]
pub struct HttpBenchArgs {
    /// Alerts to post in the throughput run.
    #[arg(long, default_value_t = 200_000)]
    pub alerts: u64,
    /// Keep-alive clients posting at once (Falcos).
    #[arg(long, default_value_t = 8)]
    pub clients: u64,
    /// Concurrent `sub` subscribers following the log.
    #[arg(long, default_value_t = 4)]
    pub subscribers: usize,
    /// Offered rate (alerts/s over all clients) for the latency run.
    #[arg(long, default_value_t = 5000)]
    pub latency_rate: u64,
    /// Seconds the latency run lasts.
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
}

/// A Falco alert as http_output posts it; `n` makes each one distinct.
pub fn sample_alert(client: u64, n: u64) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    serde_json::json!({
        "hostname": format!("node-{client}"),
        "output": format!("{time}: Warning Sensitive file opened for reading by non-trusted program | file=/etc/shadow process=cat n={n}"),
        "output_fields": {
            "evt.time": 1_796_032_800_000_000_000u64 + n,
            "fd.name": "/etc/shadow",
            "k8s.ns.name": null,
            "proc.cmdline": "cat /etc/shadow",
            "proc.name": "cat",
            "user.name": "root",
            "bench.n": format!("{client}-{n}"),
        },
        "priority": "Warning",
        "rule": "Read sensitive file untrusted",
        "source": "syscall",
        "tags": ["T1555", "filesystem", "host", "maturity_stable", "mitre_credential_access"],
        "time": time,
    })
    .to_string()
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Posts `per` alerts from each of `clients` connections, as fast as each is answered; returns
/// alerts/s over the whole run.
async fn flood(addr: SocketAddr, clients: u64, per: u64) -> anyhow::Result<f64> {
    let bodies: Vec<Vec<Bytes>> = (0..clients)
        .map(|c| (0..per).map(|n| Bytes::from(sample_alert(c, n))).collect())
        .collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for bodies in bodies {
        tasks.spawn(async move {
            let mut poster = Poster::connect(addr).await?;
            for body in bodies {
                let (status, text) = poster.post("/", "application/json", body).await?;
                anyhow::ensure!(status == 200, "status {status}: {text}");
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((clients * per) as f64 / started.elapsed().as_secs_f64())
}

/// Posts at `rate` alerts/s over `clients` connections for `secs`; returns sorted latencies.
async fn paced(
    addr: SocketAddr,
    clients: u64,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Vec<Duration>> {
    let per_client = (rate / clients).max(1);
    let interval = Duration::from_secs_f64(1.0 / per_client as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        tasks.spawn(async move {
            let mut poster = Poster::connect(addr).await?;
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut latencies = Vec::new();
            for n in 0..per_client * secs {
                ticks.tick().await;
                let body = sample_alert(c, n);
                let t = Instant::now();
                let (status, text) = poster.post("/", "application/json", body).await?;
                anyhow::ensure!(status == 200, "status {status}: {text}");
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort_unstable();
    Ok(all)
}

pub async fn http_bench(args: HttpBenchArgs) -> anyhow::Result<i32> {
    let dir = super::scratch_dir("http")?;
    let opts = StoreOptions {
        outputs_capacity: (args.alerts * 2).max(100_000),
        cache_bytes: 256 << 20,
        ..Default::default()
    };
    let app = App::open(&dir.0, &opts)?;
    let socket = dir.0.join("bench.sock");
    let serving = tokio::spawn(crate::grpc::serve_unix(
        app.clone(),
        crate::grpc::bind_unix(&socket)?,
    ));
    let addr = serve_endpoint(&app, HttpKind::Falco { mtls: false }).await?;
    println!(
        "http bench: {} alerts posted by {} keep-alive clients (one alert per POST), {} subscribers",
        args.alerts, args.clients, args.subscribers
    );

    let channel = crate::cli::client::connect_unix(&socket).await?;
    let mut subs = tokio::task::JoinSet::new();
    for _ in 0..args.subscribers {
        let (tx, mut stream) = super::subscribe(&channel, Request::default()).await?;
        subs.spawn(async move {
            let _keep = tx;
            let mut n = 0u64;
            while let Ok(Ok(Some(_))) =
                tokio::time::timeout(Duration::from_secs(3), stream.message()).await
            {
                n += 1;
            }
            n
        });
    }
    let per = (args.alerts / args.clients.max(1)).max(1);
    let rate = flood(addr, args.clients.max(1), per).await?;
    let mut received = Vec::new();
    while let Some(n) = subs.join_next().await {
        received.push(n?);
    }
    println!(
        "throughput: {rate:.0} alerts/s posted until durable; subscribers received {received:?} of {}",
        per * args.clients.max(1)
    );
    let latencies = paced(
        addr,
        args.clients.max(1),
        args.latency_rate,
        args.latency_secs,
    )
    .await?;
    println!(
        "latency at {} alerts/s ({} posts): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.latency_rate,
        latencies.len(),
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    );
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;

    // Baseline: the same posts answered 200 by a handler that stores nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_addr = listener.local_addr()?;
    let bare = axum::Router::new().route(
        "/",
        axum::routing::post(|body: Bytes| async move { format!("{{\"len\":{}}}", body.len()) }),
    );
    let base = tokio::spawn(async move { axum::serve(listener, bare).await });
    let base_rate = flood(base_addr, args.clients.max(1), per).await?;
    base.abort();
    println!(
        "baseline (same posts, nothing stored): {base_rate:.0} alerts/s; falco-api/baseline ratio {:.2}",
        rate / base_rate
    );
    Ok(0)
}
