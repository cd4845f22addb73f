//! The gRPC layer: the only place that knows tonic. Each service is a thin adapter over the domain
//! (`feed`, `store`, `engine`); `status.rs` is the one table from domain errors to statuses.

pub mod auth;
mod configs;
mod counting;
mod drops;
mod fleet;
mod inputs;
mod logstream;
mod metrics;
mod outputs;
mod rules;
mod sidecar;
mod status;
mod store;
mod tokens;
mod version;

use std::path::Path;

use std::sync::Arc;
use tokio::net::UnixListener;

use tonic::transport::{Server, ServerTlsConfig};

use crate::net::{active, listen, own_uid, Limits};
use crate::proto;
use crate::services::App;

pub use logstream::DEFAULT_CONSUMER;
pub use outputs::LOST_RULE;
pub use version::version_response;

/// Runs a blocking control operation (compiles rules, flushes the store) off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::services::control::ControlError> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .map_err(Into::into)
}

/// History pages: 50 entries unless asked, at most 1,000.
fn page_limit(asked: u32) -> usize {
    if asked == 0 {
        50
    } else {
        asked.min(1000) as usize
    }
}

/// The `before` of the next page: the last revision of a full page, else 0 (no more).
fn next_page(records: &[crate::store::HistoryRecord], limit: usize) -> u64 {
    if records.len() == limit {
        records.last().map_or(0, |r| r.revision)
    } else {
        0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How a listener serves: who may do what, and the limits.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub policy: Arc<auth::Policy>,
    pub limits: Limits,
}

impl Default for ServerOptions {
    /// Root and the server's own uid are admins on the socket; nobody else has a role.
    fn default() -> Self {
        ServerOptions {
            policy: Arc::new(auth::Policy {
                roles: Default::default(),
                socket_owner_is_admin: true,
                own_uid: own_uid(),
            }),
            limits: Limits::default(),
        }
    }
}

/// Every service: the six Falco services (decoding at most `max` bytes a message), health
/// checking (each reported serving) and reflection (v1 and v1alpha).
async fn routes(app: &App, max: usize) -> Result<tonic::service::Routes, ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for name in [
        "falco.version.service",
        "falco.outputs.service",
        "falco.inputs.service",
        "falco.drops.service",
        "falco.rules.service",
        "falco.configs.service",
        "falco.sidecar.service",
        "falco.metrics.service",
        "falco.tokens.service",
        "falco.fleet.service",
        "falco.store.service",
    ] {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(tonic::service::Routes::new(health)
        .add_service(reflection.build_v1()?)
        .add_service(reflection_v1alpha)
        .add_service(
            proto::version::service_server::ServiceServer::new(version::VersionService::new())
                .max_decoding_message_size(max),
        )
        .add_service(
            proto::wire::outputs::service_server::ServiceServer::new(outputs::OutputsService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::inputs::service_server::ServiceServer::new(inputs::InputsService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::drops::service_server::ServiceServer::new(drops::DropsService::new(app.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            proto::rules::service_server::ServiceServer::new(rules::RulesService::new(app.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            proto::configs::service_server::ServiceServer::new(configs::ConfigsService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::sidecar::service_server::ServiceServer::new(sidecar::SidecarService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::metrics::service_server::ServiceServer::new(metrics::MetricsService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::tokens::service_server::ServiceServer::new(tokens::TokensService::new(
                app.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            proto::fleet::service_server::ServiceServer::new(fleet::FleetService::new(app.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            proto::store::service_server::ServiceServer::new(store::StoreService::new(app.clone()))
                .max_decoding_message_size(max),
        ))
}

/// Serves every service on `incoming` (TLS-wrapped when `tls` is given) until shutdown.
async fn serve_with<I, IO, IE>(
    app: App,
    opts: ServerOptions,
    tls: Option<ServerTlsConfig>,
    incoming: I,
) -> Result<(), ServeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let routes = routes(&app, opts.limits.max_message_bytes).await?;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.timeout(opts.limits.handshake_timeout))?;
    }
    let shutdown = app.shutdown.clone();
    builder
        .http2_keepalive_interval(Some(opts.limits.keepalive_interval))
        .http2_keepalive_timeout(Some(opts.limits.keepalive_timeout))
        .max_concurrent_streams(opts.limits.max_concurrent_streams)
        .layer(active::ActiveLayer)
        .layer(counting::CountLayer::new(app.telemetry.clone()))
        .layer(auth::AuthLayer::new(opts.policy.clone()))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Serves every service on `listener` until `app.shutdown` is cancelled; open streams end with OK.
pub async fn serve_unix(app: App, listener: UnixListener) -> Result<(), ServeError> {
    serve_unix_with(app, listener, ServerOptions::default()).await
}

pub async fn serve_unix_with(
    app: App,
    listener: UnixListener,
    opts: ServerOptions,
) -> Result<(), ServeError> {
    let name = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "unix socket".into());
    let limits = opts.limits.conn_limits();
    serve_with(app, opts, None, listen::incoming(listener, name, limits)).await
}

/// Serves every service over TCP with mutual TLS (client certificates required and verified).
pub async fn serve_tcp(
    app: App,
    listener: tokio::net::TcpListener,
    tls: ServerTlsConfig,
    opts: ServerOptions,
) -> Result<(), ServeError> {
    let name = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "tcp".into());
    let incoming = listen::incoming(listener, name, opts.limits.conn_limits());
    serve_with(app, opts, Some(tls), incoming).await
}

/// The mutual-TLS configuration from PEM files.
pub fn tls_config(cert: &[u8], key: &[u8], client_ca: &[u8]) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .client_ca_root(tonic::transport::Certificate::from_pem(client_ca))
        .client_auth_optional(false)
}

/// Binds a Unix socket at `path` with mode 0660, creating its parent directory. A socket file
/// left by a crashed server is replaced; one that a live server answers on is not.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    bind_unix_with(path, 0o660, None)
}

/// [`bind_unix`] with the socket's permission bits and group.
pub fn bind_unix_with(path: &Path, mode: u32, gid: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;

    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another server is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
