//! The `fleet` section read into what `crate::fleet` runs with: the NATS URL and credentials,
//! this node's part in the rules, and the stream's shape. Each bad value names its key.

use std::path::PathBuf;

use super::file::FleetSection;
use super::{in_range, invalid, ConfigError};

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
    pub(super) fn from_section(f: FleetSection) -> Result<FleetConfig, ConfigError> {
        let nats = f.nats.unwrap_or_default();
        let stream = f.stream.unwrap_or_default();
        let url = nats.url.unwrap_or_default();
        let c = FleetConfig {
            forward: f.forward.unwrap_or(!url.is_empty()),
            collect: f.collect.unwrap_or(false),
            url,
            creds_file: nats.creds_file,
            user_password: both(nats.user, nats.password, "fleet.nats.user and password")?,
            token: nats.token,
            tls_ca: nats.tls_ca,
            tls_client: both(
                nats.tls_cert,
                nats.tls_key,
                "fleet.nats.tls_cert and tls_key",
            )?,
            window: f.window.unwrap_or(512),
            collect_filter: f.collect_filter,
            consumer: f.consumer.unwrap_or_else(|| "falco-api-collector".into()),
            stream: stream.name.unwrap_or_else(|| "FALCO".into()),
            replicas: stream.replicas.unwrap_or(1),
            max_age_secs: stream.max_age_secs.unwrap_or(0),
            max_bytes: stream.max_bytes.unwrap_or(0),
            duplicate_window_secs: stream.duplicate_window_secs.unwrap_or(120),
            rules: rules_mode(f.rules.as_deref())?,
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
        c.check()?;
        Ok(c)
    }

    /// What each setting needs of the others, and the names NATS accepts.
    fn check(&self) -> Result<(), ConfigError> {
        let c = self;
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
        in_range("fleet.window", c.window as u64, 1, 65_536)?;
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
        in_range("fleet.stream.replicas", c.replicas as u64, 1, 5)?;
        Ok(())
    }
}

/// Two settings given together or not at all.
fn both<A, B>(a: Option<A>, b: Option<B>, what: &str) -> Result<Option<(A, B)>, ConfigError> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(invalid(format!("{what} go together"))),
    }
}

fn rules_mode(mode: Option<&str>) -> Result<FleetRules, ConfigError> {
    match mode {
        None => Ok(FleetRules::Own),
        Some("publish") => Ok(FleetRules::Publish),
        Some("follow") => Ok(FleetRules::Follow),
        Some(other) => Err(invalid(format!(
            "fleet.rules '{other}' is not publish or follow"
        ))),
    }
}
