//! The boot file's shape, section by section (unknown keys are errors), reading it, and the
//! runtime keys it sets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::net::identity::Role;

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
    pub(super) fn text(&self) -> String {
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
    /// How long an alert is retained (`30d`; default 0: no age limit).
    pub max_age: Option<Scalar>,
    pub json_output: Option<Scalar>,
    pub json_include_output_property: Option<Scalar>,
    pub json_include_tags_property: Option<Scalar>,
    pub json_include_message_property: Option<Scalar>,
    pub json_include_output_fields_property: Option<Scalar>,
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
    /// How long a drop record is retained (default 0: no age limit).
    pub max_age: Option<Scalar>,
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
    /// `falco --list --format json` of the Falco in use: rules may use its fields (validated,
    /// not evaluated where falco-api does not implement them).
    pub fields_file: Option<PathBuf>,
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

pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
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

/// The runtime keys a file sets, as text.
pub(super) fn file_values(file: &FileConfig) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut put = |k: &str, s: &Option<Scalar>| {
        if let Some(s) = s {
            v.insert(k.to_string(), s.text());
        }
    };
    if let Some(o) = &file.outputs {
        put("outputs.capacity", &o.capacity);
        put("outputs.max_bytes", &o.max_bytes);
        put("outputs.max_age", &o.max_age);
        put("json_output", &o.json_output);
        put(
            "json_include_output_property",
            &o.json_include_output_property,
        );
        put("json_include_tags_property", &o.json_include_tags_property);
        put(
            "json_include_message_property",
            &o.json_include_message_property,
        );
        put(
            "json_include_output_fields_property",
            &o.json_include_output_fields_property,
        );
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
        put("drops.max_age", &d.max_age);
        put("drops.alert_threshold", &d.alert_threshold);
        put("drops.alert_rate", &d.alert_rate);
        put("drops.alert_max_burst", &d.alert_max_burst);
    }
    put("log_level", &file.log_level.clone().map(Scalar::Text));
    put("hostname", &file.hostname.clone().map(Scalar::Text));
    v
}
