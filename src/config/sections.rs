//! Reading the boot file's sections that need more than a default: limits, the socket's mode,
//! and the identities-to-roles policy. Each refuses a bad value with the key's name.

use std::time::Duration;

use super::{
    in_range, invalid, AuthSection, ConfigError, ConsoleSection, FalcoSection, FileConfig,
    HttpEndpoint, HttpKind, LimitsSection, MetricsSection, Overrides, SocketSection,
    WebhookSection,
};
use crate::net::identity::{Policy, Role};
use crate::net::Limits;

/// How long a console stream's reader may stay behind, unless configured.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// Transport limits (with `tls.handshake_timeout_secs`).
pub fn limits(file: &FileConfig) -> Result<Limits, ConfigError> {
    let handshake = file
        .tls
        .as_ref()
        .and_then(|t| t.handshake_timeout_secs)
        .unwrap_or(10);
    let none = LimitsSection::default();
    let l = file.limits.as_ref().unwrap_or(&none);
    let d = Limits::default();
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    let limits = Limits {
        max_message_bytes: l.max_message_bytes.unwrap_or(d.max_message_bytes),
        max_concurrent_streams: l.max_concurrent_streams.unwrap_or(d.max_concurrent_streams),
        keepalive_interval: secs(l.keepalive_interval_secs, d.keepalive_interval),
        keepalive_timeout: secs(l.keepalive_timeout_secs, d.keepalive_timeout),
        handshake_timeout: Duration::from_secs(handshake),
        max_connections: l.max_connections.unwrap_or(d.max_connections),
        max_connections_per_peer: l
            .max_connections_per_peer
            .unwrap_or(d.max_connections_per_peer),
        first_byte_timeout: secs(l.first_byte_timeout_secs, d.first_byte_timeout),
        idle_timeout: secs(l.idle_timeout_secs, d.idle_timeout),
        header_read_timeout: secs(l.header_read_timeout_secs, d.header_read_timeout),
    };
    if limits.max_message_bytes < 1024
        || limits.max_concurrent_streams == 0
        || handshake == 0
        || limits.max_connections == 0
        || limits.max_connections_per_peer == 0
        || limits.first_byte_timeout.is_zero()
        || limits.idle_timeout.is_zero()
        || limits.header_read_timeout.is_zero()
    {
        return Err(invalid("limits: max_message_bytes must be at least 1024; max_concurrent_streams, max_connections, max_connections_per_peer, first_byte_timeout_secs, idle_timeout_secs, header_read_timeout_secs and tls.handshake_timeout_secs at least 1".into()));
    }
    Ok(limits)
}

/// `socket.mode`: octal permission bits (default 0660).
pub fn socket_mode(socket: &SocketSection) -> Result<u32, ConfigError> {
    match &socket.mode {
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                invalid(format!(
                    "socket.mode '{m}' is not octal permission bits like 0660"
                ))
            }),
        None => Ok(0o660),
    }
}

/// `auth`: identities (`uid:N`, `cn:NAME`, `san:NAME`) to roles.
pub fn policy(auth: AuthSection) -> Result<Policy, ConfigError> {
    let roles: std::collections::HashMap<String, Vec<Role>> =
        auth.roles.unwrap_or_default().into_iter().collect();
    for name in roles.keys() {
        let known = ["uid:", "cn:", "san:"]
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len());
        if !known {
            return Err(invalid(format!(
                "auth.roles: '{name}' is not an identity (uid:N, cn:NAME or san:NAME)"
            )));
        }
    }
    Ok(Policy {
        roles,
        socket_owner_is_admin: auth.socket_owner_is_admin.unwrap_or(true),
        own_uid: crate::net::own_uid(),
    })
}

/// One HTTP listener's address and TLS flag from its section (or flag). Plain HTTP beyond
/// loopback needs `allow_remote_plaintext`.
fn http_listener(
    section: &str,
    listen: Option<&str>,
    tls: bool,
    allow_remote_plaintext: bool,
    have_tls: bool,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let addr: Option<std::net::SocketAddr> = listen
        .map(|a| {
            a.parse().map_err(|e| {
                invalid(format!(
                    "{section} listen address '{a}': {e} (expected host:port)"
                ))
            })
        })
        .transpose()?;
    if tls && !have_tls {
        return Err(invalid(format!(
            "{section}.tls needs tls.cert and tls.key in the boot config"
        )));
    }
    if let Some(addr) = addr {
        if !tls && !addr.ip().is_loopback() && !allow_remote_plaintext {
            return Err(invalid(format!(
                "the HTTP listener {addr} would serve plain HTTP beyond this machine: set \
                 {section}.tls: true (with tls.cert and tls.key), listen on loopback, or set \
                 {section}.allow_remote_plaintext: true to accept that"
            )));
        }
    }
    Ok(addr)
}

/// An endpoint section's address, with its `tls` and `mtls` flags (`mtls` needs `tls`), from
/// `(tls, mtls, allow_remote_plaintext)`.
fn guarded(
    section: &str,
    listen: Option<&str>,
    (tls, mtls, remote): (Option<bool>, Option<bool>, Option<bool>),
    have_tls: bool,
) -> Result<Option<(std::net::SocketAddr, bool, bool)>, ConfigError> {
    let (tls, mtls) = (tls.unwrap_or(false), mtls.unwrap_or(false));
    if mtls && !tls {
        return Err(invalid(format!(
            "{section}.mtls needs {section}.tls: true (client certificates come with HTTPS)"
        )));
    }
    let addr = http_listener(section, listen, tls, remote.unwrap_or(false), have_tls)?;
    Ok(addr.map(|a| (a, tls, mtls)))
}

/// The HTTP surface's endpoints: the webhook (`webhook` section or `--webhook`) and Falco's
/// http_output receiver (`falco` section or `--falco-http`), and `/metrics` (`metrics` section or
/// `--metrics`). Endpoints on one address share a listener, so they must agree on TLS.
pub fn http(
    hook: WebhookSection,
    falco: Option<&FalcoSection>,
    metrics: &MetricsSection,
    console: &ConsoleSection,
    o: &Overrides,
    have_tls: bool,
) -> Result<Vec<HttpEndpoint>, ConfigError> {
    let mut out = Vec::new();
    let tls = hook.tls.unwrap_or(false);
    let listen = o.webhook.as_deref().or(hook.listen.as_deref());
    let remote = hook.allow_remote_plaintext.unwrap_or(false);
    if let Some(addr) = http_listener("webhook", listen, tls, remote, have_tls)? {
        let max_body = hook.max_body_bytes.unwrap_or(12 << 20);
        out.push(HttpEndpoint::new(HttpKind::Webhook, addr, tls, max_body));
    }
    let empty = FalcoSection::default();
    let falco = falco.unwrap_or(&empty);
    let falco_listen = o.falco_http.as_deref().or(falco.listen.as_deref());
    let options = (falco.tls, falco.mtls, falco.allow_remote_plaintext);
    if let Some((addr, tls, mtls)) = guarded("falco", falco_listen, options, have_tls)? {
        let max_body = falco.max_body_bytes.unwrap_or(1 << 20);
        out.push(HttpEndpoint {
            client_bytes_per_sec: falco.client_bytes_per_sec.unwrap_or(16 << 20),
            ..HttpEndpoint::new(HttpKind::Falco { mtls }, addr, tls, max_body)
        });
    }
    let metrics_listen = o.metrics.as_deref().or(metrics.listen.as_deref());
    let options = (metrics.tls, metrics.mtls, metrics.allow_remote_plaintext);
    if let Some((addr, tls, mtls)) = guarded("metrics", metrics_listen, options, have_tls)? {
        out.push(HttpEndpoint::new(HttpKind::Metrics { mtls }, addr, tls, 0));
    }
    out.extend(console_endpoint(console, o, have_tls)?);
    check_shared_listeners(&out)?;
    Ok(out)
}

/// The console's endpoint, if it listens; plain HTTP beyond loopback is warned about.
fn console_endpoint(
    console: &ConsoleSection,
    o: &Overrides,
    have_tls: bool,
) -> Result<Option<HttpEndpoint>, ConfigError> {
    let console_listen = o.console.as_deref().or(console.listen.as_deref());
    let options = (console.tls, None, console.allow_remote_plaintext);
    let Some((addr, tls, _)) = guarded("console", console_listen, options, have_tls)? else {
        return Ok(None);
    };
    if !tls && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the console serves plain HTTP beyond this machine (console.allow_remote_plaintext): tokens and session cookies cross the network in clear"
        );
    }
    let stall_timeout = match console.stall_timeout_secs {
        None => DEFAULT_STALL,
        Some(s) => Duration::from_secs(in_range("console.stall_timeout_secs", s, 1, 3600)?),
    };
    Ok(Some(HttpEndpoint {
        stall_timeout,
        ..HttpEndpoint::new(HttpKind::Console, addr, tls, 4 << 20)
    }))
}

/// Endpoints on one address share its listener, so they must agree on TLS.
fn check_shared_listeners(out: &[HttpEndpoint]) -> Result<(), ConfigError> {
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            if a.addr == b.addr && a.addr.port() != 0 && a.tls != b.tls {
                return Err(invalid(format!(
                    "{} and {} listen on {} but only one of them asks for TLS",
                    a.kind.section(),
                    b.kind.section(),
                    a.addr
                )));
            }
        }
    }
    Ok(())
}
