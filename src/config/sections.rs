//! Reading the boot file's sections that need more than a default: limits, the socket's mode,
//! and the identities-to-roles policy. Each refuses a bad value with the key's name.

use std::time::Duration;

use super::{invalid, AuthSection, ConfigError, FileConfig, SocketSection, WebhookSection};
use crate::auth::{Policy, Role};
use crate::server::Limits;

/// Transport limits (with `tls.handshake_timeout_secs`).
pub fn limits(file: &FileConfig) -> Result<Limits, ConfigError> {
    let handshake = file
        .tls
        .as_ref()
        .and_then(|t| t.handshake_timeout_secs)
        .unwrap_or(10);
    let l = file.limits.as_ref();
    let d = Limits::default();
    let limits = Limits {
        max_message_bytes: l
            .and_then(|l| l.max_message_bytes)
            .unwrap_or(d.max_message_bytes),
        max_concurrent_streams: l
            .and_then(|l| l.max_concurrent_streams)
            .unwrap_or(d.max_concurrent_streams),
        keepalive_interval: l
            .and_then(|l| l.keepalive_interval_secs)
            .map_or(d.keepalive_interval, Duration::from_secs),
        keepalive_timeout: l
            .and_then(|l| l.keepalive_timeout_secs)
            .map_or(d.keepalive_timeout, Duration::from_secs),
        handshake_timeout: Duration::from_secs(handshake),
        max_connections: l
            .and_then(|l| l.max_connections)
            .unwrap_or(d.max_connections),
    };
    if limits.max_message_bytes < 1024
        || limits.max_concurrent_streams == 0
        || handshake == 0
        || limits.max_connections == 0
    {
        return Err(invalid("limits: max_message_bytes must be at least 1024, max_concurrent_streams, max_connections and tls.handshake_timeout_secs at least 1".into()));
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
        own_uid: crate::server::own_uid(),
    })
}

/// The HTTP listener (`webhook` section, or `--webhook`): its address and whether it serves TLS.
/// Plain HTTP beyond loopback needs `allow_remote_plaintext`.
pub fn webhook(
    hook: &WebhookSection,
    flag: Option<&str>,
    have_tls: bool,
) -> Result<(Option<std::net::SocketAddr>, bool), ConfigError> {
    let addr: Option<std::net::SocketAddr> = flag
        .or(hook.listen.as_deref())
        .map(|a| {
            a.parse().map_err(|e| {
                invalid(format!(
                    "webhook listen address '{a}': {e} (expected host:port)"
                ))
            })
        })
        .transpose()?;
    let tls = hook.tls.unwrap_or(false);
    if tls && !have_tls {
        return Err(invalid(
            "webhook.tls needs tls.cert and tls.key in the boot config".into(),
        ));
    }
    if let Some(addr) = addr {
        if !tls && !addr.ip().is_loopback() && !hook.allow_remote_plaintext.unwrap_or(false) {
            return Err(invalid(format!(
                "the HTTP listener {addr} would serve plain HTTP beyond this machine: set \
                 webhook.tls: true (with tls.cert and tls.key), listen on loopback, or set \
                 webhook.allow_remote_plaintext: true to accept that"
            )));
        }
    }
    Ok((addr, tls))
}
