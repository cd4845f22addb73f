//! The command line: `serve` and the client commands. Parsing lives here; each command is a
//! function that returns an exit status or an error for `main` to print.

pub mod alerts;
pub mod backup;
pub mod certs;
pub mod client;
pub mod configs;
pub mod eval;
pub mod falco;
pub mod fleet;
pub mod rules;
pub mod send;
pub mod stats;
pub mod tail;
pub mod token;
pub mod tune;

use std::path::PathBuf;

use clap::Args;

use crate::config::{self, Overrides, ServeConfig};
use crate::proto::version::{service_client::ServiceClient as VersionClient, Request};
use client::Target;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Boot config file (YAML).
    #[arg(long, short = 'c', env = "FALCO_API_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database and default socket).
    #[arg(long, env = "FALCO_API_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address, repeatable: unix:///path/to.sock
    #[arg(long)]
    pub listen: Vec<String>,
    /// How many output events the outputs log retains.
    #[arg(long)]
    pub outputs_capacity: Option<u64>,
    /// Log filter: error, warn, info, debug, trace (or a tracing directive).
    #[arg(long, env = "FALCO_API_LOG")]
    pub log_level: Option<String>,
    /// Rules file to load at start (repeatable; loaded in the order given).
    #[arg(long = "rules", short = 'r')]
    pub rules: Vec<PathBuf>,
    /// Serve the Kubernetes audit webhook (POST /k8s-audit) on host:port.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Receive Falco's http_output (POST / and /falco) on host:port (default 127.0.0.1:2801,
    /// falcosidekick's port, so Falco's http_output.url needs no change).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:2801")]
    pub falco_http: Option<String>,
    /// Serve Prometheus metrics (GET /metrics) on host:port (default 127.0.0.1:9376,
    /// falco-exporter's port).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9376")]
    pub metrics: Option<String>,
    /// Serve the web console (/console/) on host:port (default 127.0.0.1:2802).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:2802")]
    pub console: Option<String>,
    /// Record --rules files as a change even when the store already holds rules (otherwise they
    /// are imported only on first boot).
    #[arg(long)]
    pub import_rules: bool,
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeConfig, config::ConfigError> {
        ServeConfig::resolve(&Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            outputs_capacity: self.outputs_capacity,
            log_level: self.log_level.clone(),
            rules_files: self.rules.clone(),
            webhook: self.webhook.clone(),
            falco_http: self.falco_http.clone(),
            metrics: self.metrics.clone(),
            console: self.console.clone(),
            import_rules: self.import_rules,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Server address: unix:///path/to.sock, or https://host:port with the --tls-* files
    /// (default: the socket in the data directory).
    #[arg(long, short = 's', env = "FALCO_API_SERVER", global = true)]
    pub server: Option<String>,
    /// The server's data directory, as given to `serve` (its socket is falco-api.sock there);
    /// used when --server is not given.
    #[arg(long, env = "FALCO_API_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// For https:// servers: the CA that signed the server's certificate (PEM).
    #[arg(long, env = "FALCO_API_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// For https:// servers: this client's certificate (PEM).
    #[arg(long, env = "FALCO_API_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// For https:// servers: this client's private key (PEM).
    #[arg(long, env = "FALCO_API_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// For https:// servers: the name the server certificate carries (default: the URL's host).
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
}

impl ConnectArgs {
    pub fn target(&self) -> anyhow::Result<Target> {
        match &self.server {
            Some(url) if url.starts_with("https://") => {
                let need = |p: &Option<PathBuf>, flag: &str| {
                    p.clone()
                        .ok_or_else(|| anyhow::anyhow!("{url} needs {flag} (mutual TLS)"))
                };
                Ok(Target::Tls(client::TlsTarget {
                    url: url.clone(),
                    ca: need(&self.tls_ca, "--tls-ca")?,
                    cert: need(&self.tls_cert, "--tls-cert")?,
                    key: need(&self.tls_key, "--tls-key")?,
                    server_name: self.tls_server_name.clone(),
                }))
            }
            Some(url) if url.starts_with("http://") || url.starts_with("tcp://") => {
                anyhow::bail!("{url}: TCP connections use mutual TLS: https://host:port with --tls-ca, --tls-cert and --tls-key")
            }
            Some(text) => Target::parse(text).map_err(anyhow::Error::msg),
            None => Ok(Target::Unix(match &self.data_dir {
                Some(dir) => dir.join(config::SOCKET_NAME),
                None => config::default_socket(),
            })),
        }
    }

    /// Where the target came from, for messages.
    fn origin(&self) -> String {
        let from_env = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v == value);
        match (&self.server, &self.data_dir) {
            (Some(s), _) if from_env("FALCO_API_SERVER", s) => "from FALCO_API_SERVER".into(),
            (Some(_), _) => "from --server".into(),
            (None, Some(d)) if from_env("FALCO_API_DATA_DIR", &d.display().to_string()) => {
                "the socket in FALCO_API_DATA_DIR".into()
            }
            (None, Some(_)) => "the socket in --data-dir".into(),
            (None, None) => format!(
                "the default data directory's socket ({})",
                config::default_data_dir().display()
            ),
        }
    }

    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        let target = self.target()?;
        client::connect(&target)
            .await
            .map_err(|e| anyhow::anyhow!(self.connect_failure(&target, &e)))
    }

    /// What went wrong connecting to `target`, what was tried, and what to do.
    fn connect_failure(&self, target: &Target, e: &client::ConnectError) -> String {
        let (place, io) = match target {
            Target::Unix(path) => (format!("unix://{}", path.display()), io_cause(e)),
            Target::Tls(t) => (t.url.clone(), io_cause(e)),
        };
        let why = match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::NotFound) => {
                "no socket there: is `falco-api serve` running, with this data directory?".into()
            }
            Some(std::io::ErrorKind::ConnectionRefused) => match target {
                Target::Unix(_) => "a socket file is there but no server answers on it (a server that stopped?): start `falco-api serve`".into(),
                Target::Tls(_) => "nothing listens there: is `falco-api serve` running with that tcp:// listener?".into(),
            },
            Some(std::io::ErrorKind::PermissionDenied) => "permission denied: the socket is for its owner and group (socket.mode, socket.group): run as a member of its group, or as its owner".into(),
            _ => e.to_string(),
        };
        format!(
            "cannot connect to falco-api at {place} ({}): {why}\n\
             to reach another server: --server unix:///path/to.sock (or FALCO_API_SERVER), or \
             --data-dir DIR (or FALCO_API_DATA_DIR) as given to `falco-api serve`",
            self.origin()
        )
    }
}

/// The operating system's error under a connection failure, if there is one.
fn io_cause(e: &client::ConnectError) -> Option<&std::io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

pub async fn version(args: ConnectArgs) -> anyhow::Result<i32> {
    let mut client = VersionClient::new(args.channel().await?);
    let v = client.version(Request {}).await?.into_inner();
    println!("falco-api {}", v.version);
    println!(
        "engine {} (fields checksum {})",
        v.engine_version, v.engine_fields_checksum
    );
    Ok(0)
}

pub use tail::{drops, tail};

/// A protobuf time as the client commands print it (empty when absent).
pub fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A change's warnings, one line each on standard error.
pub fn print_warnings(warnings: &[crate::proto::rules::Diagnostic]) {
    for w in warnings {
        eprintln!(
            "warning: {}:{}:{}: {} {}",
            w.file, w.line, w.column, w.item, w.message
        );
    }
}
