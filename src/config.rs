//! Boot configuration: built-in defaults, then an optional YAML file, then command-line flags.
//! Everything is validated here, before anything is bound or opened, so a bad setting stops the
//! server with a clear message. Runtime settings that clients can change live elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::app::DropAlertSettings;
use crate::client::Target;
use crate::engine::Matching;
use crate::event::Priority;
use crate::pipeline::{OutputSettings, QueuePolicy, Settings};

/// The boot config file's shape. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the database (and, by default, the socket) lives.
    pub data_dir: Option<PathBuf>,
    /// Listen addresses: `unix:///path/to.sock` (or a plain path).
    pub listen: Option<Vec<String>>,
    pub outputs: Option<OutputsSection>,
    /// Rules files loaded at start, in order.
    pub rules_files: Option<Vec<PathBuf>>,
    pub ingest: Option<IngestSection>,
    pub drops: Option<DropsSection>,
    pub webhook: Option<WebhookSection>,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub log_level: Option<String>,
    /// Seconds open connections get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSection {
    /// How many events the log retains.
    pub capacity: Option<u64>,
    pub json_output: Option<bool>,
    pub json_include_output_property: Option<bool>,
    pub json_include_tags_property: Option<bool>,
    pub time_format_iso_8601: Option<bool>,
    /// Minimum rule priority run (Falco's `priority`).
    pub priority: Option<String>,
    /// `first` (Falco's default) or `all`.
    pub rule_matching: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Events the ingest queue holds.
    pub queue_size: Option<usize>,
    /// `block` (backpressure) or `drop`.
    pub policy: Option<QueuePolicy>,
    pub max_payload_bytes: Option<usize>,
    /// Per-client events per second (0 or absent: unlimited), and the burst allowed.
    pub client_rate: Option<f64>,
    pub client_burst: Option<f64>,
    /// Evaluation threads (default: one per core).
    pub workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropsSection {
    pub capacity: Option<u64>,
    /// Mirror a drop into outputs only when n_drops / n_evts exceeds this.
    pub alert_threshold: Option<f64>,
    /// Drop alerts per second, and burst.
    pub alert_rate: Option<f64>,
    pub alert_max_burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `host:port` for the Kubernetes audit webhook (`POST /k8s-audit`); absent: off.
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
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
}

/// The validated configuration `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: Vec<Target>,
    pub outputs_capacity: u64,
    pub log_level: String,
    pub shutdown_grace: Duration,
    pub rules_files: Vec<PathBuf>,
    pub drops_capacity: u64,
    pub pipeline: Settings,
    pub webhook: Option<std::net::SocketAddr>,
    pub webhook_max_body: usize,
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

pub const MAX_LOG_CAPACITY: u64 = 1_000_000_000;
pub const DEFAULT_OUTPUTS_CAPACITY: u64 = 100_000;
pub const SOCKET_NAME: &str = "falco-api.sock";

/// The data directory used when none is configured: `/var/lib/falco-api` for root, otherwise
/// `$XDG_DATA_HOME/falco-api` or `~/.local/share/falco-api`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY-free: geteuid cannot fail.
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
    // Reading the effective uid through /proc keeps this module free of unsafe code.
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
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        let listen_text = if !o.listen.is_empty() {
            o.listen.clone()
        } else {
            file.listen.unwrap_or_default()
        };
        let listen = if listen_text.is_empty() {
            vec![Target::Unix(data_dir.join(SOCKET_NAME))]
        } else {
            listen_text
                .iter()
                .map(|a| listen_target(a))
                .collect::<Result<_, _>>()?
        };
        let out = file.outputs.unwrap_or_default();
        let outputs_capacity = o
            .outputs_capacity
            .or(out.capacity)
            .unwrap_or(DEFAULT_OUTPUTS_CAPACITY);
        if outputs_capacity == 0 || outputs_capacity > MAX_LOG_CAPACITY {
            return Err(ConfigError::Invalid(format!(
                "outputs capacity {outputs_capacity} is out of range (1 to {MAX_LOG_CAPACITY})"
            )));
        }
        let log_level = o
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
            ConfigError::Invalid(format!(
                "log_level '{log_level}' is not a valid filter: {e}"
            ))
        })?;
        let grace = file.shutdown_grace_secs.unwrap_or(10);
        if grace > 3600 {
            return Err(ConfigError::Invalid(format!(
                "shutdown_grace_secs {grace} is out of range (0 to 3600)"
            )));
        }
        let output = output_settings(&out)?;
        let pipeline =
            pipeline_settings(file.ingest.unwrap_or_default(), output, file.drops.as_ref())?;
        let drops = file.drops.unwrap_or_default();
        let drops_capacity = drops.capacity.unwrap_or(10_000);
        if drops_capacity == 0 || drops_capacity > MAX_LOG_CAPACITY {
            return Err(invalid(format!(
                "drops.capacity {drops_capacity} is out of range (1 to {MAX_LOG_CAPACITY})"
            )));
        }
        let hook = file.webhook.unwrap_or_default();
        let webhook = o
            .webhook
            .clone()
            .or(hook.listen)
            .map(|a| {
                a.parse().map_err(|e| {
                    invalid(format!(
                        "webhook listen address '{a}': {e} (expected host:port)"
                    ))
                })
            })
            .transpose()?;
        let rules_files = if o.rules_files.is_empty() {
            file.rules_files.unwrap_or_default()
        } else {
            o.rules_files.clone()
        };
        Ok(ServeConfig {
            data_dir,
            listen,
            outputs_capacity,
            log_level,
            shutdown_grace: Duration::from_secs(grace),
            rules_files,
            drops_capacity,
            pipeline,
            webhook,
            webhook_max_body: hook.max_body_bytes.unwrap_or(12 << 20),
        })
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

fn output_settings(out: &OutputsSection) -> Result<OutputSettings, ConfigError> {
    let d = OutputSettings::default();
    let min_priority = match &out.priority {
        Some(p) => p
            .parse::<Priority>()
            .map_err(|e| invalid(format!("outputs.priority: {e}")))?,
        None => d.min_priority,
    };
    let matching = match out.rule_matching.as_deref() {
        None | Some("first") => Matching::First,
        Some("all") => Matching::All,
        Some(other) => {
            return Err(invalid(format!(
                "outputs.rule_matching '{other}' must be first or all"
            )))
        }
    };
    Ok(OutputSettings {
        json_output: out.json_output.unwrap_or(d.json_output),
        json_include_output_property: out
            .json_include_output_property
            .unwrap_or(d.json_include_output_property),
        json_include_tags_property: out
            .json_include_tags_property
            .unwrap_or(d.json_include_tags_property),
        time_format_iso_8601: out.time_format_iso_8601.unwrap_or(d.time_format_iso_8601),
        min_priority,
        matching,
    })
}

fn pipeline_settings(
    i: IngestSection,
    output: OutputSettings,
    drops: Option<&DropsSection>,
) -> Result<Settings, ConfigError> {
    let d = Settings::default();
    let queue_size = i.queue_size.unwrap_or(d.queue_size);
    if queue_size == 0 || queue_size > 10_000_000 {
        return Err(invalid(format!(
            "ingest.queue_size {queue_size} is out of range (1 to 10000000)"
        )));
    }
    let max_payload_bytes = i.max_payload_bytes.unwrap_or(d.max_payload_bytes);
    if max_payload_bytes == 0 || max_payload_bytes > 64 << 20 {
        return Err(invalid(format!(
            "ingest.max_payload_bytes {max_payload_bytes} is out of range (1 to 67108864)"
        )));
    }
    let client_rate = match i.client_rate {
        None => None,
        Some(0.0) => None,
        Some(r) if r.is_finite() && r > 0.0 => Some((r, i.client_burst.unwrap_or(r).max(1.0))),
        Some(r) => {
            return Err(invalid(format!(
                "ingest.client_rate {r} must be a positive number of events per second"
            )))
        }
    };
    let workers = i.workers.unwrap_or(d.workers);
    if workers == 0 || workers > 256 {
        return Err(invalid(format!(
            "ingest.workers {workers} is out of range (1 to 256)"
        )));
    }
    let mut drop_alerts = DropAlertSettings::default();
    if let Some(dr) = drops {
        drop_alerts.threshold = dr.alert_threshold.unwrap_or(drop_alerts.threshold);
        drop_alerts.rate = dr.alert_rate.unwrap_or(drop_alerts.rate);
        drop_alerts.max_burst = dr.alert_max_burst.unwrap_or(drop_alerts.max_burst);
        if !(0.0..=1.0).contains(&drop_alerts.threshold)
            || drop_alerts.rate < 0.0
            || drop_alerts.max_burst < 0.0
        {
            return Err(invalid("drops: alert_threshold must be within 0..1, alert_rate and alert_max_burst not negative".into()));
        }
    }
    Ok(Settings {
        queue_size,
        policy: i.policy.unwrap_or(d.policy),
        max_payload_bytes,
        client_rate,
        workers,
        output,
        drop_alerts,
    })
}

fn listen_target(address: &str) -> Result<Target, ConfigError> {
    let looks_tcp = !address.starts_with("unix:")
        && !address.starts_with('/')
        && !address.starts_with('.')
        && address.contains(':');
    if looks_tcp {
        return Err(ConfigError::Invalid(format!(
            "listen address '{address}': TCP listeners require mutual TLS, which this build does \
             not provide yet; use a Unix socket (unix:///path/to.sock)"
        )));
    }
    Target::parse(address).map_err(|e| ConfigError::Invalid(format!("listen address: {e}")))
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
        let file = parse("data_dir: /srv/a\noutputs:\n  capacity: 50\n").unwrap();
        let o = Overrides {
            outputs_capacity: Some(7),
            ..Default::default()
        };
        let c = ServeConfig::merge(file, &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(c.outputs_capacity, 7);
        assert_eq!(
            c.listen,
            vec![Target::Unix(PathBuf::from("/srv/a/falco-api.sock"))]
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
    }
}
