//! Connecting to a falco-api server, for the CLI's client commands, the load generator and tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    /// `https://host:port` with mutual TLS.
    Tls(TlsTarget),
}

/// A TCP server and the client's certificate, key and CA (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsTarget {
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name the server certificate must carry (default: the URL's host).
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    // The io error is in the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

impl Target {
    /// Accepts `unix:///path`, `unix:/path` or a plain filesystem path.
    pub fn parse(text: &str) -> Result<Target, String> {
        let path = text
            .strip_prefix("unix://")
            .or_else(|| text.strip_prefix("unix:"))
            .unwrap_or(text);
        if path.is_empty() {
            return Err(format!("'{text}' names no socket path"));
        }
        Ok(Target::Unix(PathBuf::from(path)))
    }
}

/// Opens a channel to the server. Over a Unix socket the HTTP/2 authority is `localhost`.
pub async fn connect(target: &Target) -> Result<Channel, ConnectError> {
    match target {
        Target::Unix(path) => Ok(connect_unix(path).await?),
        Target::Tls(t) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|error| ConnectError::Read {
                    path: p.clone(),
                    error,
                })
            };
            Ok(connect_tls(
                &t.url,
                &read(&t.ca)?,
                &read(&t.cert)?,
                &read(&t.key)?,
                t.server_name.as_deref(),
            )
            .await?)
        }
    }
}

/// Connects over TCP with mutual TLS, from PEM contents.
pub async fn connect_tls(
    url: &str,
    ca: &[u8],
    cert: &[u8],
    key: &[u8],
    server_name: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key));
    if let Some(name) = server_name {
        tls = tls.domain_name(name);
    }
    Endpoint::from_shared(url.to_string())?
        .tls_config(tls)?
        .connect()
        .await
}

pub async fn connect_unix(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
