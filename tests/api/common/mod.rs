//! The test harness: a real server on a temp data directory and a temp Unix socket, and real tonic
//! clients connected to it.

#![allow(dead_code)]

pub mod events;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use falco_api::base::event::{OutputEvent, Priority};
use falco_api::cli::client;
use falco_api::engine::{LoadOptions, RuleSet, RulesFile};
use falco_api::grpc;
use falco_api::pipeline::Settings;
use falco_api::proto::outputs::{self, service_client::ServiceClient as OutputsClient};
use falco_api::services::App;
use falco_api::store::StoreOptions;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub struct TestServer {
    pub app: App,
    pub dir: PathBuf,
    pub socket: PathBuf,
    task: Option<JoinHandle<()>>,
    // Keeps the temp directory alive for the server's lifetime.
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start(capacity: u64) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut s = Self::start_in(&dir, capacity).await;
        s._temp = Some(temp);
        s
    }

    /// A server with pipeline settings and rules (YAML texts, loaded in order).
    pub async fn start_with(capacity: u64, settings: Settings, rules: &[&str]) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut s = Self::start_in_with(&dir, capacity, settings).await;
        if !rules.is_empty() {
            let files: Vec<RulesFile> = rules
                .iter()
                .enumerate()
                .map(|(i, c)| RulesFile {
                    name: format!("rules{i}.yaml"),
                    content: c.to_string(),
                })
                .collect();
            s.app
                .pipeline
                .set_rules(RuleSet::load(&files, &LoadOptions::default()).expect("rules load"));
        }
        s._temp = Some(temp);
        s
    }

    /// Starts a server on an existing data directory (the caller keeps it alive).
    pub async fn start_in(dir: &Path, capacity: u64) -> TestServer {
        Self::start_in_with(dir, capacity, Settings::default()).await
    }

    pub async fn start_in_with(dir: &Path, capacity: u64, settings: Settings) -> TestServer {
        let opts = StoreOptions {
            outputs_capacity: capacity,
            cache_bytes: 16 << 20,
            ..Default::default()
        };
        // A previous server on this directory releases the database once its last handle is gone
        // (its commit thread finishes after the final streams end), so retry briefly.
        let mut attempts = 0;
        let app = loop {
            match App::open_with(
                dir,
                &opts,
                settings.clone(),
                falco_api::services::telemetry::Telemetry::default(),
            ) {
                Ok(app) => break app,
                Err(falco_api::store::StoreError::Locked(_)) if attempts < 500 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("open app: {e}"),
            }
        };
        app.logs.rebuild_counts();
        let socket = dir.join("test.sock");
        let listener = grpc::bind_unix(&socket).expect("bind socket");
        let serving = app.clone();
        let task = tokio::spawn(async move {
            grpc::serve_unix(serving, listener).await.expect("serve");
        });
        TestServer {
            app,
            dir: dir.to_path_buf(),
            socket,
            task: Some(task),
            _temp: None,
        }
    }

    pub async fn channel(&self) -> Channel {
        client::connect_unix(&self.socket).await.expect("connect")
    }

    pub async fn inputs(&self) -> falco_api::proto::inputs::service_client::ServiceClient<Channel> {
        falco_api::proto::inputs::service_client::ServiceClient::new(self.channel().await)
    }

    pub async fn drops(&self) -> falco_api::proto::drops::service_client::ServiceClient<Channel> {
        falco_api::proto::drops::service_client::ServiceClient::new(self.channel().await)
    }

    pub async fn outputs(&self) -> OutputsClient<Channel> {
        OutputsClient::new(self.channel().await)
    }

    /// Shuts down cleanly (streams end, store flushed) and hands back the temp dir, if owned.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.app.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server did not stop within 10 s")
                .expect("server task");
        }
        self.app.close().await.expect("close");
        self._temp.take()
    }

    /// Appends `n` events through the store's public append API; returns their seqs.
    pub async fn append(&self, n: usize) -> std::ops::Range<u64> {
        self.app
            .logs
            .outputs
            .append((0..n).map(|i| event(i as u64)).collect())
            .await
            .expect("append")
    }
}

/// `len` letters that do not compress (a splitmix sequence from `seed`), so that stored sizes
/// in tests are the sizes written.
pub fn noise(len: usize, seed: u64) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            char::from(b'!' + ((z ^ (z >> 31)) % 94) as u8)
        })
        .collect()
}

pub fn event(i: u64) -> OutputEvent {
    OutputEvent::new(
        1_700_000_000_000_000_000 + i as i64,
        Priority::ALL[(i % 8) as usize],
        format!("rule {}", i % 3),
        format!("output {i}"),
        if i % 2 == 0 { "k8s_audit" } else { "syscall" },
    )
    .with_tags([format!("tag{}", i % 4), "all".to_string()])
    .with_fields([("i".to_string(), i.to_string())])
    .with_hostname("test-host")
}

/// A `sub` stream whose request side the test drives.
pub struct Sub {
    pub tx: mpsc::Sender<outputs::Request>,
    pub rx: tonic::Streaming<outputs::Response>,
}

impl Sub {
    pub async fn open(client: &mut OutputsClient<Channel>, first: outputs::Request) -> Sub {
        Self::try_open(client, first).await.expect("sub")
    }

    pub async fn try_open(
        client: &mut OutputsClient<Channel>,
        first: outputs::Request,
    ) -> Result<Sub, tonic::Status> {
        let (tx, rx) = mpsc::channel(1024);
        tx.send(first).await.expect("send first request");
        let rx = client.sub(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Sub { tx, rx })
    }

    /// The next response, failing the test after 10 s of silence.
    pub async fn next(&mut self) -> Result<Option<outputs::Response>, tonic::Status> {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("no message within 10 s")
    }

    /// The seqs of the next `n` responses.
    pub async fn seqs(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let r = self
                .next()
                .await
                .expect("stream error")
                .expect("stream ended early");
            out.push(r.seq);
        }
        out
    }
}

/// Every response of a `get` call.
pub async fn get_all(
    client: &mut OutputsClient<Channel>,
    req: outputs::Request,
) -> Result<Vec<outputs::Response>, tonic::Status> {
    let mut stream = client.get(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("get stalled")?
    {
        out.push(r);
    }
    Ok(out)
}

pub fn after(seq: u64) -> outputs::Request {
    outputs::Request {
        after_seq: Some(seq),
        ..Default::default()
    }
}

pub fn consumer(name: &str) -> outputs::Request {
    outputs::Request {
        consumer: name.to_string(),
        ..Default::default()
    }
}

/// Serves one endpoint group of the HTTP surface on `listener` (as `serve` does).
pub fn spawn_http(
    app: &falco_api::services::App,
    listener: tokio::net::TcpListener,
    kind: falco_api::config::HttpKind,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let endpoint = falco_api::config::HttpEndpoint::new(
        kind,
        listener.local_addr().unwrap(),
        tls.is_some(),
        1 << 20,
    );
    let router = falco_api::http::router(app.clone(), &[&endpoint]);
    let opts = falco_api::http::HttpOptions {
        tls,
        ..Default::default()
    };
    tokio::spawn(falco_api::http::serve(app.clone(), listener, router, opts));
}

/// Every retained drop record.
pub async fn get_all_drops(server: &TestServer) -> Vec<falco_api::proto::drops::Response> {
    let mut client = server.drops().await;
    let req = falco_api::proto::drops::Request {
        after_seq: Some(0),
        ..Default::default()
    };
    let mut stream = client.get(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.push(r);
    }
    out
}

/// A free loopback port (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A program the tests start from one of Debian's packages: `$VAR`, else `default`; fails with
/// how to get it when it is missing.
pub fn packaged(var: &str, default: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.into()));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (the README's test command), which installs \
         Debian's {package}",
        path.display()
    );
    path
}

/// A CA, a server certificate for localhost and one client certificate, in a temp dir.
pub fn localhost_certs() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    falco_api::cli::certs::generate(&falco_api::cli::certs::GenerateArgs {
        out: certs.path().to_path_buf(),
        name: "localhost".into(),
        sans: vec![],
        client_name: "c".into(),
        days: 2,
    })
    .unwrap();
    certs
}

/// How many of `conns` the server has not closed within `within` (reading whatever comes).
pub async fn still_open<C>(conns: Vec<C>, within: Duration) -> usize
where
    C: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let mut set = tokio::task::JoinSet::new();
    for mut c in conns {
        set.spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match tokio::time::timeout(within, c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return false,
                    Ok(Ok(_)) => continue,
                    Err(_) => return true,
                }
            }
        });
    }
    let mut open = 0;
    while let Some(still) = set.join_next().await {
        open += usize::from(still.unwrap());
    }
    open
}

/// Tests that load the machine (floods of connections or megabytes) and tests with timing
/// bounds (the browser, the crash soak) take this in turn, so a bound is never measured while
/// another test floods the same two cores.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes [`HEAVY`] from synchronous code.
pub fn heavy_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.blocking_lock()
}

/// A TLS client trusting the CA in `ca_pem`, presenting no certificate of its own.
pub fn tls_client(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Waits until `done` holds, checking every 20 ms; fails the test naming `what` after `within`.
/// The one way tests wait for something the server does in the background.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for tests that run no async runtime.
pub fn wait_until_blocking(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
