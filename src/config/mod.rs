//! Boot configuration: built-in defaults, then an optional YAML file, then command-line flags.
//! Everything is validated here, before anything is bound or opened, so a bad setting stops the
//! server with a clear message. Static settings (listeners, data directory, boot rules, webhook)
//! live only here; runtime settings from the file become the *boot values* of the configs
//! service's keys (`control::keys`), which API changes override.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::net::identity::Policy;
use crate::net::Limits;
use crate::services::control::keys;

mod file;
mod fleet;
mod sections;

use file::file_values;
pub use file::{
    parse_file, read_file, AuthSection, ConsoleSection, DropsSection, FalcoSection, FileConfig,
    FleetSection, IngestSection, LimitsSection, MetricsSection, NatsSection, OutputsSection,
    Scalar, SocketSection, StreamSection, TlsSection, WebhookSection,
};
pub use fleet::{FleetConfig, FleetRules};

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

/// Where falco-api writes what a running Falco reads, and what it reads of that Falco.
#[derive(Debug, Clone, Default)]
pub struct FalcoSync {
    pub rules_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// The field catalog (`falco --list --format json`) rules are validated against too.
    pub fields_file: Option<PathBuf>,
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
    // The io error is in the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
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
        let values = file_values(&file);
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(default_data_dir);
        let listen = listeners(&file, o, &data_dir)?;
        let tls = file.tls.as_ref().map(read_tls).transpose()?;
        check_tcp_has_tls(&listen, tls.is_some())?;
        let limits = sections::limits(&file)?;
        let (socket_mode, socket_gid) = socket(file.socket.unwrap_or_default())?;
        let policy = sections::policy(file.auth.unwrap_or_default())?;
        let boot_values = boot_values(values, o)?;
        let grace = in_range(
            "shutdown_grace_secs",
            file.shutdown_grace_secs.unwrap_or(10),
            0,
            3600,
        )?;
        let workers = file.ingest.unwrap_or_default().workers;
        let workers =
            workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let workers = in_range("ingest.workers", workers as u64, 1, 256)? as usize;
        let metrics = file.metrics.unwrap_or_default();
        let max_series = metrics
            .max_series
            .unwrap_or(crate::services::telemetry::DEFAULT_MAX_SERIES);
        let max_series = in_range("metrics.max_series", max_series as u64, 1, 1_000_000)? as usize;
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
        let allowed_hosts = allowed_hosts(file.allowed_hosts.clone().unwrap_or_default())?;
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
            falco: FalcoSync {
                rules_dir: falco.rules_dir,
                config_file: falco.config_file,
                fields_file: falco.fields_file,
            },
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

/// The runtime keys' boot values: the file's, then the command line's, validated.
fn boot_values(
    mut values: BTreeMap<String, String>,
    o: &Overrides,
) -> Result<BTreeMap<String, String>, ConfigError> {
    if let Some(c) = o.outputs_capacity {
        values.insert("outputs.capacity".into(), c.to_string());
    }
    if let Some(l) = &o.log_level {
        values.insert("log_level".into(), l.clone());
    }
    keys::validate_all(&values).map_err(invalid)
}

/// The socket's mode and group.
fn socket(socket: SocketSection) -> Result<(u32, Option<u32>), ConfigError> {
    let mode = sections::socket_mode(&socket)?;
    let gid = socket.group.as_deref().map(group_id).transpose()?;
    Ok((mode, gid))
}

/// `value` of `key` within `lo..=hi`.
pub(super) fn in_range(key: &str, value: u64, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format!(
            "{key} {value} is out of range ({lo} to {hi})"
        )))
    }
}

/// A TCP listener is offered only with mutual TLS.
fn check_tcp_has_tls(listen: &[Listen], have_tls: bool) -> Result<(), ConfigError> {
    match listen.iter().find(|l| matches!(l, Listen::Tcp(_))) {
        Some(Listen::Tcp(addr)) if !have_tls => Err(invalid(format!(
            "TCP listener {addr} needs mutual TLS: set tls.cert, tls.key and tls.client_ca in the boot \
             config (`falco-api certs generate --out DIR` makes a set); plaintext TCP is not offered"
        ))),
        _ => Ok(()),
    }
}

/// `allowed_hosts`: host names only (letters, digits, `.`, `-`; at most 253 bytes).
fn allowed_hosts(hosts: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let host_name = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    match hosts.iter().find(|h| !host_name(h)) {
        Some(bad) => Err(invalid(format!(
            "allowed_hosts: '{bad}' is not a host name (letters, digits, '.', '-')"
        ))),
        None => Ok(hosts),
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
