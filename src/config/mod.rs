//! Boot configuration: built-in defaults, then an optional YAML file, then command-line flags.
//! Everything is validated here, before anything is bound or opened, so a bad setting stops the
//! server with a clear message. Static settings (listeners, data directory, boot rules, webhook)
//! live only here; runtime settings from the file become the *boot values* of the configs
//! service's keys (`control::keys`), which API changes override.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::net::identity::{Policy, Role};
use crate::net::Limits;
use crate::services::control::keys;

mod sections;

/// The boot config file's shape. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the database (and, by default, the socket) lives.
    pub data_dir: Option<PathBuf>,
    /// Listen addresses: `unix:///path/to.sock` (or a plain path).
    pub listen: Option<Vec<String>>,
    pub outputs: Option<OutputsSection>,
    /// Rules files imported on first boot, in order.
    pub rules_files: Option<Vec<PathBuf>>,
    pub ingest: Option<IngestSection>,
    pub drops: Option<DropsSection>,
    pub webhook: Option<WebhookSection>,
    /// Running beside Falco: its http_output receiver, rules directory and config file.
    pub falco: Option<FalcoSection>,
    /// `GET /metrics` for Prometheus.
    pub metrics: Option<MetricsSection>,
    /// The web console.
    pub console: Option<ConsoleSection>,
    /// Forwarding to and collecting from NATS JetStream.
    pub fleet: Option<FleetSection>,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub log_level: Option<String>,
    /// The hostname alerts carry (default: the machine's).
    pub hostname: Option<String>,
    /// Seconds open connections get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: Option<u64>,
    /// Keep at least this many revisions of rules/config history (0 or absent: everything).
    pub history_retention: Option<u64>,
    /// Writes are refused (RESOURCE_EXHAUSTED) while the data directory's filesystem has less
    /// free space than this, in bytes (default 64 MiB), so the database never runs out mid-write.
    pub min_free_bytes: Option<u64>,
    /// Mutual TLS for TCP listeners.
    pub tls: Option<TlsSection>,
    pub socket: Option<SocketSection>,
    pub auth: Option<AuthSection>,
    pub limits: Option<LimitsSection>,
    /// Host names plain-HTTP requests may carry besides IP addresses, `localhost` and this
    /// machine's name (a DNS-rebinding page's name is refused).
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// A client must finish its TLS handshake within this many seconds (default 10).
    pub handshake_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSection {
    /// Octal permission bits of the Unix socket (default "0660").
    pub mode: Option<String>,
    /// Group owning the socket: a name or a gid.
    pub group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// On the Unix socket, root and the server's own uid get every role (default true).
    pub socket_owner_is_admin: Option<bool>,
    /// Identity → roles: `uid:N` (Unix peer), `cn:NAME` or `san:NAME` (client certificate).
    pub roles: Option<BTreeMap<String, Vec<Role>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest decoded gRPC message (default 16 MiB).
    pub max_message_bytes: Option<usize>,
    /// Concurrent streams per connection (default 256).
    pub max_concurrent_streams: Option<u32>,
    pub keepalive_interval_secs: Option<u64>,
    pub keepalive_timeout_secs: Option<u64>,
    /// Open connections per listener (default 1024, lowered to fit the open-files limit); at
    /// the cap the oldest idle connection is closed to make room.
    pub max_connections: Option<usize>,
    /// Open connections per peer: a uid on the socket, an IP address over TCP (default 256).
    pub max_connections_per_peer: Option<usize>,
    /// A connection that sends nothing for this long after it opens is closed (default 5).
    pub first_byte_timeout_secs: Option<u64>,
    /// A connection with no request or stream in flight for this long is closed (default 60).
    pub idle_timeout_secs: Option<u64>,
    /// An HTTP client must send a whole request head within this (default 10).
    pub header_read_timeout_secs: Option<u64>,
}

/// Where `serve` listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    /// Always with mutual TLS.
    Tcp(std::net::SocketAddr),
}

/// PEM contents for mutual TLS, read and checked at boot.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Vec<u8>,
}

/// A scalar the file may give as a number, a boolean or text; kept as text for the key table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(u64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSection {
    pub capacity: Option<Scalar>,
    /// Bytes of alerts retained (`20GiB`; default 1 GiB).
    pub max_bytes: Option<Scalar>,
    pub json_output: Option<Scalar>,
    pub json_include_output_property: Option<Scalar>,
    pub json_include_tags_property: Option<Scalar>,
    pub time_format_iso_8601: Option<Scalar>,
    /// Minimum rule priority run (Falco's `priority`).
    pub priority: Option<Scalar>,
    /// `first` (Falco's default) or `all`.
    pub rule_matching: Option<Scalar>,
    /// Alerts per second stored (0: unlimited), and burst.
    pub rate: Option<Scalar>,
    pub max_burst: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub queue_size: Option<Scalar>,
    /// `block` (backpressure) or `drop`.
    pub policy: Option<Scalar>,
    pub max_payload_bytes: Option<Scalar>,
    pub client_rate: Option<Scalar>,
    pub client_burst: Option<Scalar>,
    /// Evaluation threads (default: one per core). Boot only.
    pub workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropsSection {
    pub capacity: Option<Scalar>,
    /// Bytes of drop records retained (default 64 MiB).
    pub max_bytes: Option<Scalar>,
    pub alert_threshold: Option<Scalar>,
    pub alert_rate: Option<Scalar>,
    pub alert_max_burst: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `host:port` for the Kubernetes audit webhook (`POST /k8s-audit`); absent: off.
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Serve HTTPS with the boot config's `tls.cert` and `tls.key` (default false); client
    /// certificates that chain to `tls.client_ca` identify callers, as on gRPC.
    pub tls: Option<bool>,
    /// Serve plain HTTP on a non-loopback address (default false: refused at boot).
    pub allow_remote_plaintext: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalcoSection {
    /// `host:port` for Falco's http_output (`POST /` and `/falco`); absent: off. `--falco-http`.
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Serve HTTPS with the boot config's `tls.cert` and `tls.key` (default false).
    pub tls: Option<bool>,
    /// Accept only posters whose client certificate has the `ingest` role (Falco's
    /// `http_output.mtls: true`); needs `tls`.
    pub mtls: Option<bool>,
    /// Serve plain HTTP on a non-loopback address (default false: refused at boot).
    pub allow_remote_plaintext: Option<bool>,
    /// Bytes per second one poster may send (alerts past it are answered 429 and recorded as
    /// drops); default 16 MiB/s with bursts of four seconds' worth; 0: unlimited.
    pub client_bytes_per_sec: Option<u64>,
    /// Write the effective rules here as `falco-api-*.yaml` after every rules change.
    pub rules_dir: Option<PathBuf>,
    /// Write the runtime keys that map to Falco settings to this file after every config change.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `host:port` for `GET /metrics`; absent: off. `--metrics`.
    pub listen: Option<String>,
    /// Serve HTTPS with the boot config's `tls.cert` and `tls.key` (default false).
    pub tls: Option<bool>,
    /// Answer only scrapers whose client certificate has the `reader` role; needs `tls`.
    pub mtls: Option<bool>,
    /// Serve plain HTTP on a non-loopback address (default false: refused at boot).
    pub allow_remote_plaintext: Option<bool>,
    /// `falco_events` label sets at most (default 10,000); later ones share one series.
    pub max_series: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// `host:port` for the web console (`/console/`); absent: off. `--console`.
    pub listen: Option<String>,
    /// Serve HTTPS with the boot config's `tls.cert` and `tls.key` (default false); client
    /// certificates that chain to `tls.client_ca` sign in with their roles, as on gRPC.
    pub tls: Option<bool>,
    /// Serve plain HTTP on a non-loopback address (default false: refused at boot; tokens and
    /// session cookies would cross the network in clear).
    pub allow_remote_plaintext: Option<bool>,
    /// A live-alerts reader that leaves 1 MiB of alerts unread for this long is disconnected; its
    /// browser reconnects and resumes from its last alert (default 30).
    pub stall_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    pub nats: Option<NatsSection>,
    /// Forward this node's alerts and drops (default true once `nats.url` is set).
    pub forward: Option<bool>,
    /// Publishes awaiting their acknowledgement at most (default 512).
    pub window: Option<usize>,
    /// Collect the fleet's records into this server's logs (default false).
    pub collect: Option<bool>,
    /// The collector's subject filter (default every subject of the stream).
    pub collect_filter: Option<String>,
    /// The collector's durable consumer name (default `falco-api-collector`).
    pub consumer: Option<String>,
    pub stream: Option<StreamSection>,
    /// `publish` (this server's rules go to the bucket) or `follow` (they come from it).
    pub rules: Option<String>,
    /// The rules key-value bucket (default `falco-rules`).
    pub rules_bucket: Option<String>,
    /// Alert bodies: `json` (default: Falco's alert JSON) or `protobuf` (falco.outputs.response).
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// `nats://host:4222` (several, comma-separated, for a cluster).
    pub url: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// User and password, or a token, for servers that ask for them.
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Trust this CA (PEM) for `tls://` servers.
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate and key (PEM), for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// Default `FALCO`.
    pub name: Option<String>,
    /// Default 1.
    pub replicas: Option<usize>,
    /// 0 (default): no limit.
    pub max_age_secs: Option<u64>,
    /// 0 (default): no limit.
    pub max_bytes: Option<u64>,
    /// JetStream's de-duplication window for `Nats-Msg-Id` (default 120 s).
    pub duplicate_window_secs: Option<u64>,
}

/// Where and how this server joins a fleet (see `crate::fleet`).
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    /// Empty: no fleet.
    pub url: String,
    pub creds_file: Option<PathBuf>,
    pub user_password: Option<(String, String)>,
    pub token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub forward: bool,
    pub window: usize,
    pub collect: bool,
    pub collect_filter: Option<String>,
    pub consumer: String,
    pub stream: String,
    pub replicas: usize,
    pub max_age_secs: u64,
    pub max_bytes: u64,
    pub duplicate_window_secs: u64,
    pub rules: FleetRules,
    pub rules_bucket: String,
    /// Alert bodies as `falco.outputs.response` protobuf instead of JSON.
    pub protobuf: bool,
}

/// This server's part in the fleet's rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FleetRules {
    #[default]
    Own,
    Publish,
    Follow,
}

impl FleetConfig {
    fn from_section(f: FleetSection) -> Result<FleetConfig, ConfigError> {
        let nats = f.nats.unwrap_or_default();
        let stream = f.stream.unwrap_or_default();
        let url = nats.url.unwrap_or_default();
        let c = FleetConfig {
            forward: f.forward.unwrap_or(!url.is_empty()),
            collect: f.collect.unwrap_or(false),
            url,
            creds_file: nats.creds_file,
            user_password: match (nats.user, nats.password) {
                (Some(u), Some(p)) => Some((u, p)),
                (None, None) => None,
                _ => return Err(invalid("fleet.nats.user and password go together".into())),
            },
            token: nats.token,
            tls_ca: nats.tls_ca,
            tls_client: match (nats.tls_cert, nats.tls_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "fleet.nats.tls_cert and tls_key go together".into(),
                    ))
                }
            },
            window: f.window.unwrap_or(512),
            collect_filter: f.collect_filter,
            consumer: f.consumer.unwrap_or_else(|| "falco-api-collector".into()),
            stream: stream.name.unwrap_or_else(|| "FALCO".into()),
            replicas: stream.replicas.unwrap_or(1),
            max_age_secs: stream.max_age_secs.unwrap_or(0),
            max_bytes: stream.max_bytes.unwrap_or(0),
            duplicate_window_secs: stream.duplicate_window_secs.unwrap_or(120),
            rules: match f.rules.as_deref() {
                None => FleetRules::Own,
                Some("publish") => FleetRules::Publish,
                Some("follow") => FleetRules::Follow,
                Some(other) => {
                    return Err(invalid(format!(
                        "fleet.rules '{other}' is not publish or follow"
                    )))
                }
            },
            rules_bucket: f.rules_bucket.unwrap_or_else(|| "falco-rules".into()),
            protobuf: match f.format.as_deref() {
                None | Some("json") => false,
                Some("protobuf") => true,
                Some(other) => {
                    return Err(invalid(format!(
                        "fleet.format '{other}' is not json or protobuf"
                    )))
                }
            },
        };
        if (c.forward || c.collect || c.rules != FleetRules::Own) && c.url.is_empty() {
            return Err(invalid(
                "fleet.forward, fleet.collect and fleet.rules need fleet.nats.url".into(),
            ));
        }
        if !c
            .rules_bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || c.rules_bucket.is_empty()
        {
            return Err(invalid(format!(
                "fleet.rules_bucket '{}' must be A-Z a-z 0-9 _ -",
                c.rules_bucket
            )));
        }
        if c.window == 0 || c.window > 65_536 {
            return Err(invalid(format!(
                "fleet.window {} is out of range (1 to 65536)",
                c.window
            )));
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !name_ok(&c.stream) || !name_ok(&c.consumer) {
            return Err(invalid(format!(
                "fleet.stream.name '{}' and fleet.consumer '{}' must be 1-64 characters of A-Z a-z 0-9 _ -",
                c.stream, c.consumer
            )));
        }
        if c.replicas == 0 || c.replicas > 5 {
            return Err(invalid(format!(
                "fleet.stream.replicas {} is out of range (1 to 5)",
                c.replicas
            )));
        }
        Ok(c)
    }
}

/// What an HTTP endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// The Kubernetes audit webhook.
    Webhook,
    /// Falco's http_output receiver; `mtls`: posters need a certificate with the ingest role.
    Falco { mtls: bool },
    /// `GET /metrics`; `mtls`: scrapers need a certificate with the reader role.
    Metrics { mtls: bool },
    /// The web console and its JSON API.
    Console,
}

impl HttpKind {
    /// The boot file's section that configures it.
    pub fn section(self) -> &'static str {
        match self {
            HttpKind::Webhook => "webhook",
            HttpKind::Falco { .. } => "falco",
            HttpKind::Metrics { .. } => "metrics",
            HttpKind::Console => "console",
        }
    }
}

/// One HTTP endpoint group and where it listens. Groups on the same address share a listener.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    pub kind: HttpKind,
    pub addr: std::net::SocketAddr,
    pub tls: bool,
    pub max_body: usize,
    /// The console's streams: how long a reader may leave its buffer full before it is
    /// disconnected (it resumes by cursor).
    pub stall_timeout: Duration,
    /// The receiver's body bytes per second from one client (0: unlimited).
    pub client_bytes_per_sec: u64,
}

impl HttpEndpoint {
    /// An endpoint with the default stall timeout and no per-client byte rate.
    pub fn new(kind: HttpKind, addr: std::net::SocketAddr, tls: bool, max_body: usize) -> Self {
        HttpEndpoint {
            kind,
            addr,
            tls,
            max_body,
            stall_timeout: sections::DEFAULT_STALL,
            client_bytes_per_sec: 0,
        }
    }
}

/// Where falco-api writes what a running Falco reads.
#[derive(Debug, Clone, Default)]
pub struct FalcoSync {
    pub rules_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

/// Where `serve` listens: the flags, else the file, else the data directory's socket.
fn listeners(
    file: &FileConfig,
    o: &Overrides,
    data_dir: &Path,
) -> Result<Vec<Listen>, ConfigError> {
    let text = if !o.listen.is_empty() {
        o.listen.clone()
    } else {
        file.listen.clone().unwrap_or_default()
    };
    if text.is_empty() {
        return Ok(vec![Listen::Unix(data_dir.join(SOCKET_NAME))]);
    }
    text.iter().map(|a| listen_target(a)).collect()
}

/// Command-line overrides (each wins over the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Vec<String>,
    pub outputs_capacity: Option<u64>,
    pub log_level: Option<String>,
    pub rules_files: Vec<PathBuf>,
    pub webhook: Option<String>,
    pub falco_http: Option<String>,
    pub metrics: Option<String>,
    pub console: Option<String>,
    /// Record the boot rules files as a change even when the store already has rules.
    pub import_rules: bool,
}

/// The validated configuration `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: Vec<Listen>,
    pub tls: Option<TlsFiles>,
    pub socket_mode: u32,
    pub socket_gid: Option<u32>,
    pub policy: Policy,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    pub rules_files: Vec<PathBuf>,
    pub import_rules: bool,
    /// Runtime keys set by the boot file or flags (validated, normal form).
    pub boot_values: BTreeMap<String, String>,
    /// Evaluation threads.
    pub workers: usize,
    /// The HTTP surface's endpoints (webhook, Falco receiver).
    pub http: Vec<HttpEndpoint>,
    pub falco: FalcoSync,
    /// `metrics.max_series`.
    pub max_series: usize,
    pub fleet: FleetConfig,
    pub history_retention: u64,
    /// Free space kept in reserve on the data directory's filesystem.
    pub min_free_bytes: u64,
    /// Extra host names the plain-HTTP listeners answer to.
    pub allowed_hosts: Vec<String>,
}

impl ServeConfig {
    /// The runtime settings from defaults and boot values (the store's API values come later).
    pub fn boot_runtime(&self) -> crate::services::control::Runtime {
        keys::runtime(&keys::effective(&self.boot_values), self.workers)
    }

    /// The first Unix socket `serve` listens on (the default one when it listens on none).
    pub fn listen_socket(&self) -> PathBuf {
        self.listen
            .iter()
            .find_map(|l| match l {
                Listen::Unix(p) => Some(p.clone()),
                Listen::Tcp(_) => None,
            })
            .unwrap_or_else(|| self.data_dir.join(SOCKET_NAME))
    }

    pub fn log_level(&self) -> String {
        self.boot_runtime().log_level
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

pub const SOCKET_NAME: &str = "falco-api.sock";

/// The data directory used when none is configured: `/var/lib/falco-api` for root, otherwise
/// `$XDG_DATA_HOME/falco-api` or `~/.local/share/falco-api`.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/falco-api");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("falco-api");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/falco-api"),
        None => PathBuf::from("falco-api-data"),
    }
}

fn is_root() -> bool {
    // Reading the effective uid through /proc keeps this crate free of unsafe code.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The socket clients use when they are given no address: the default data directory's socket.
pub fn default_socket() -> PathBuf {
    default_data_dir().join(SOCKET_NAME)
}

pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// The runtime keys a file sets, as text.
fn file_values(file: &FileConfig) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut put = |k: &str, s: &Option<Scalar>| {
        if let Some(s) = s {
            v.insert(k.to_string(), s.text());
        }
    };
    if let Some(o) = &file.outputs {
        put("outputs.capacity", &o.capacity);
        put("outputs.max_bytes", &o.max_bytes);
        put("json_output", &o.json_output);
        put(
            "json_include_output_property",
            &o.json_include_output_property,
        );
        put("json_include_tags_property", &o.json_include_tags_property);
        put("time_format_iso_8601", &o.time_format_iso_8601);
        put("priority", &o.priority);
        put("rule_matching", &o.rule_matching);
        put("outputs.rate", &o.rate);
        put("outputs.max_burst", &o.max_burst);
    }
    if let Some(i) = &file.ingest {
        put("ingest.queue_size", &i.queue_size);
        put("ingest.policy", &i.policy);
        put("ingest.max_payload_bytes", &i.max_payload_bytes);
        put("ingest.client_rate", &i.client_rate);
        put("ingest.client_burst", &i.client_burst);
    }
    if let Some(d) = &file.drops {
        put("drops.capacity", &d.capacity);
        put("drops.max_bytes", &d.max_bytes);
        put("drops.alert_threshold", &d.alert_threshold);
        put("drops.alert_rate", &d.alert_rate);
        put("drops.alert_max_burst", &d.alert_max_burst);
    }
    put("log_level", &file.log_level.clone().map(Scalar::Text));
    put("hostname", &file.hostname.clone().map(Scalar::Text));
    v
}

impl ServeConfig {
    /// Defaults, then the file named in `overrides` (if any), then the overrides themselves.
    pub fn resolve(overrides: &Overrides) -> Result<ServeConfig, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, overrides)
    }

    pub fn merge(file: FileConfig, o: &Overrides) -> Result<ServeConfig, ConfigError> {
        let mut values = file_values(&file);
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(default_data_dir);
        let listen = listeners(&file, o, &data_dir)?;
        let tls = file.tls.as_ref().map(read_tls).transpose()?;
        if let (Some(Listen::Tcp(addr)), None) =
            (listen.iter().find(|l| matches!(l, Listen::Tcp(_))), &tls)
        {
            return Err(invalid(format!(
                "TCP listener {addr} needs mutual TLS: set tls.cert, tls.key and tls.client_ca in the boot \
                 config (`falco-api certs generate --out DIR` makes a set); plaintext TCP is not offered"
            )));
        }
        let limits = sections::limits(&file)?;
        let socket = file.socket.unwrap_or_default();
        let socket_mode = sections::socket_mode(&socket)?;
        let socket_gid = socket.group.as_deref().map(group_id).transpose()?;
        let policy = sections::policy(file.auth.unwrap_or_default())?;
        if let Some(c) = o.outputs_capacity {
            values.insert("outputs.capacity".into(), c.to_string());
        }
        if let Some(l) = &o.log_level {
            values.insert("log_level".into(), l.clone());
        }
        let boot_values = keys::validate_all(&values).map_err(invalid)?;
        let grace = file.shutdown_grace_secs.unwrap_or(10);
        if grace > 3600 {
            return Err(invalid(format!(
                "shutdown_grace_secs {grace} is out of range (0 to 3600)"
            )));
        }
        let ingest = file.ingest.unwrap_or_default();
        let workers = ingest
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if workers == 0 || workers > 256 {
            return Err(invalid(format!(
                "ingest.workers {workers} is out of range (1 to 256)"
            )));
        }
        let metrics = file.metrics.unwrap_or_default();
        let max_series = metrics
            .max_series
            .unwrap_or(crate::services::telemetry::DEFAULT_MAX_SERIES);
        if max_series == 0 || max_series > 1_000_000 {
            return Err(invalid(format!(
                "metrics.max_series {max_series} is out of range (1 to 1000000)"
            )));
        }
        let http = sections::http(
            file.webhook.unwrap_or_default(),
            file.falco.as_ref(),
            &metrics,
            &file.console.unwrap_or_default(),
            o,
            tls.is_some(),
        )?;
        let fleet = FleetConfig::from_section(file.fleet.unwrap_or_default())?;
        let falco = file.falco.unwrap_or_default();
        let falco = FalcoSync {
            rules_dir: falco.rules_dir,
            config_file: falco.config_file,
        };
        let allowed_hosts = file.allowed_hosts.clone().unwrap_or_default();
        if let Some(bad) = allowed_hosts.iter().find(|h| {
            h.is_empty()
                || h.len() > 253
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }) {
            return Err(invalid(format!(
                "allowed_hosts: '{bad}' is not a host name (letters, digits, '.', '-')"
            )));
        }
        let rules_files = if o.rules_files.is_empty() {
            file.rules_files.unwrap_or_default()
        } else {
            o.rules_files.clone()
        };
        Ok(ServeConfig {
            data_dir,
            listen,
            tls,
            socket_mode,
            socket_gid,
            policy,
            limits,
            shutdown_grace: Duration::from_secs(grace),
            rules_files,
            import_rules: o.import_rules,
            boot_values,
            workers,
            http,
            falco,
            max_series,
            fleet,
            history_retention: file.history_retention.unwrap_or(0),
            min_free_bytes: file
                .min_free_bytes
                .unwrap_or(crate::store::StoreOptions::default().min_free_bytes),
            allowed_hosts,
        })
    }
}

fn listen_target(address: &str) -> Result<Listen, ConfigError> {
    if let Some(path) = address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("unix:"))
    {
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if address.starts_with('/') || address.starts_with('.') {
        return Ok(Listen::Unix(PathBuf::from(address)));
    }
    let hostport = address.strip_prefix("tcp://").unwrap_or(address);
    hostport.parse().map(Listen::Tcp).map_err(|_| {
        invalid(format!("listen address '{address}': expected unix:///path/to.sock or tcp://host:port (an IP address)"))
    })
}

fn read_tls(t: &TlsSection) -> Result<TlsFiles, ConfigError> {
    // A certificate or key is a small regular file: a FIFO or /dev/zero is refused at once.
    let read = |p: &PathBuf, what: &str| {
        crate::base::files::read_regular(p, 1 << 20, crate::base::files::Links::Follow)
            .map_err(|e| invalid(format!("tls.{what}: cannot read {}: {e}", p.display())))
    };
    let (cert, key, client_ca) = (
        read(&t.cert, "cert")?,
        read(&t.key, "key")?,
        read(&t.client_ca, "client_ca")?,
    );
    for (bytes, what, path) in [
        (&cert, "cert", &t.cert),
        (&client_ca, "client_ca", &t.client_ca),
    ] {
        if !x509_parser::pem::parse_x509_pem(bytes)
            .map(|(_, pem)| pem.parse_x509().is_ok())
            .unwrap_or(false)
        {
            return Err(invalid(format!(
                "tls.{what}: {} is not a PEM certificate",
                path.display()
            )));
        }
    }
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        return Err(invalid(format!(
            "tls.key: {} is not a PEM private key",
            t.key.display()
        )));
    }
    Ok(TlsFiles {
        cert,
        key,
        client_ca,
    })
}

/// A group name (from /etc/group) or a numeric gid.
fn group_id(group: &str) -> Result<u32, ConfigError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                (f.next()? == group)
                    .then(|| f.nth(1)?.parse().ok())
                    .flatten()
            })
        })
        .ok_or_else(|| invalid(format!("socket.group: no group named '{group}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        parse_file(Path::new("boot.yaml"), text)
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_position() {
        let err = parse("data_dir: /tmp/x\noutputs:\n  capacty: 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("capacty"), "{err}");
        assert!(err.contains('3'), "the line number should be named: {err}");
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file =
            parse("data_dir: /srv/a\noutputs:\n  capacity: 50\n  json_output: true\n").unwrap();
        let o = Overrides {
            outputs_capacity: Some(7),
            ..Default::default()
        };
        let c = ServeConfig::merge(file, &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(
            c.boot_values.get("outputs.capacity").map(String::as_str),
            Some("7")
        );
        assert_eq!(
            c.boot_values.get("json_output").map(String::as_str),
            Some("true")
        );
        assert_eq!(c.boot_runtime().outputs_capacity, 7);
        assert!(c.boot_runtime().pipeline.output.json_output);
        assert_eq!(
            c.listen,
            vec![Listen::Unix(PathBuf::from("/srv/a/falco-api.sock"))]
        );
    }

    #[test]
    fn bad_values_are_reported_before_anything_starts() {
        let zero = Overrides {
            outputs_capacity: Some(0),
            ..Default::default()
        };
        assert!(ServeConfig::merge(FileConfig::default(), &zero).is_err());
        let tcp = Overrides {
            listen: vec!["0.0.0.0:5060".into()],
            ..Default::default()
        };
        let err = ServeConfig::merge(FileConfig::default(), &tcp)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mutual TLS"), "{err}");
        let level = Overrides {
            log_level: Some("info,,=[".into()),
            ..Default::default()
        };
        assert!(ServeConfig::merge(FileConfig::default(), &level).is_err());
        let policy = parse("ingest:\n  policy: sometimes\n").unwrap();
        let err = ServeConfig::merge(policy, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ingest.policy") && err.contains("block, drop"),
            "{err}"
        );
    }

    #[test]
    fn the_metrics_section_is_checked() {
        let err = |text: &str| {
            ServeConfig::merge(parse(text).unwrap(), &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        let e = err("metrics:\n  listen: 127.0.0.1:9376\n  max_series: 0\n");
        assert!(e.contains("metrics.max_series 0"), "{e}");
        let e = err("metrics:\n  listen: 127.0.0.1:9376\n  mtls: true\n");
        assert!(e.contains("metrics.mtls needs metrics.tls"), "{e}");
        let e = err("metrics:\n  listen: 0.0.0.0:9376\n");
        assert!(e.contains("metrics.allow_remote_plaintext"), "{e}");
        let e = err("metrics:\n  listen: 127.0.0.1:9376\n  tls: true\n");
        assert!(e.contains("metrics.tls needs tls.cert"), "{e}");
        let c = ServeConfig::merge(
            parse("metrics:\n  max_series: 5\n").unwrap(),
            &Overrides {
                metrics: Some("127.0.0.1:9376".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.max_series, 5);
        assert_eq!(c.http.len(), 1);
        assert_eq!(c.http[0].kind, HttpKind::Metrics { mtls: false });
        assert!(
            ServeConfig::merge(FileConfig::default(), &Overrides::default())
                .unwrap()
                .http
                .is_empty(),
            "metrics are off by default"
        );
    }

    #[test]
    fn the_console_listens_on_loopback_unless_told_otherwise() {
        let err = ServeConfig::merge(
            parse("console:\n  listen: 0.0.0.0:2802\n").unwrap(),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("console.allow_remote_plaintext"), "{err}");
        let c = ServeConfig::merge(
            parse("console:\n  listen: 0.0.0.0:2802\n  allow_remote_plaintext: true\n").unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.http[0].kind, HttpKind::Console);
        let c = ServeConfig::merge(
            FileConfig::default(),
            &Overrides {
                console: Some("127.0.0.1:2802".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.http[0].addr.port(), 2802);
    }

    #[test]
    fn the_fleet_section_is_checked() {
        let err = |text: &str| {
            ServeConfig::merge(parse(text).unwrap(), &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err("fleet:\n  collect: true\n").contains("need fleet.nats.url"));
        assert!(
            err("fleet:\n  nats: {url: nats://a:4222}\n  rules: sometimes\n")
                .contains("not publish or follow")
        );
        assert!(
            err("fleet:\n  nats: {url: nats://a:4222}\n  stream: {replicas: 7}\n")
                .contains("replicas 7")
        );
        assert!(
            err("fleet:\n  nats: {url: nats://a:4222}\n  stream: {name: a.b}\n")
                .contains("fleet.stream.name")
        );
        let c = ServeConfig::merge(
            parse("fleet:\n  nats: {url: nats://a:4222}\n  rules: follow\n").unwrap(),
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.fleet.forward, "forwarding is on once a URL is set");
        assert!(!c.fleet.collect);
        assert_eq!(c.fleet.rules, FleetRules::Follow);
        assert_eq!((c.fleet.stream.as_str(), c.fleet.window), ("FALCO", 512));
        let off = ServeConfig::merge(FileConfig::default(), &Overrides::default()).unwrap();
        assert!(off.fleet.url.is_empty() && !off.fleet.forward);
    }
}
