//! What every network transport shares, gRPC and HTTP alike: identities and roles, the bounded
//! listeners (caps per listener and per peer, idle connections evicted, first-byte and idle
//! timeouts), requests in flight, socket modes, and the transport limits.

pub mod active;
pub mod authority;
pub mod identity;
pub mod listen;
mod wrap;

use std::time::Duration;

/// Transport limits; each is configurable in the boot file.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest decoded gRPC message, in bytes.
    pub max_message_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// A TLS client must finish its handshake within this (others are never held up by it).
    pub handshake_timeout: Duration,
    /// Open connections per listener; past it the oldest idle one is closed, or the listener
    /// waits for one to close.
    pub max_connections: usize,
    /// Open connections per peer (a uid on the socket, an IP address over TCP).
    pub max_connections_per_peer: usize,
    /// A connection must send its first byte (TLS hello, HTTP/2 preface, request) within this.
    pub first_byte_timeout: Duration,
    /// A connection with no request or stream in flight for this long is closed.
    pub idle_timeout: Duration,
    /// An HTTP client must send a whole request head within this.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// What a listener holds under these limits.
    pub fn conn_limits(&self) -> listen::ConnLimits {
        listen::ConnLimits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_concurrent_streams: 256,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_peer: 256,
            first_byte_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// The server process's uid.
pub fn own_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))?
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()
        })
        .unwrap_or(u32::MAX)
}
