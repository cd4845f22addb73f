//! Connecting to a falco-api server, for the CLI's client commands, the load generator and tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
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
pub async fn connect(target: &Target) -> Result<Channel, tonic::transport::Error> {
    match target {
        Target::Unix(path) => connect_unix(path).await,
    }
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
