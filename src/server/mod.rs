//! The gRPC layer: the only place that knows tonic. Each service is a thin adapter over the domain
//! (`feed`, `store`, `engine`); `status.rs` is the one table from domain errors to statuses.

pub mod baseline;
mod configs;
mod drops;
mod inputs;
mod logstream;
mod outputs;
mod rules;
mod status;
mod version;
pub mod webhook;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::app::App;
use crate::proto;

pub use logstream::DEFAULT_CONSUMER;
pub use outputs::{event_response, source_enum, LOST_RULE};
pub use version::version_response;

/// A protobuf timestamp from nanoseconds since the epoch.
pub fn logstream_timestamp(time_ns: i64) -> prost_types::Timestamp {
    logstream::timestamp(time_ns)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Every service falco-api serves, on one router.
async fn router(app: &App) -> Result<Router, ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::version::service_server::ServiceServer<version::VersionService>>()
        .await;
    health_reporter
        .set_serving::<proto::outputs::service_server::ServiceServer<outputs::OutputsService>>()
        .await;
    health_reporter
        .set_serving::<proto::inputs::service_server::ServiceServer<inputs::InputsService>>()
        .await;
    health_reporter
        .set_serving::<proto::drops::service_server::ServiceServer<drops::DropsService>>()
        .await;
    health_reporter
        .set_serving::<proto::rules::service_server::ServiceServer<rules::RulesService>>()
        .await;
    health_reporter
        .set_serving::<proto::configs::service_server::ServiceServer<configs::ConfigsService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proto::version::service_server::ServiceServer::new(
            version::VersionService::new(),
        ))
        .add_service(proto::outputs::service_server::ServiceServer::new(
            outputs::OutputsService::new(app.clone()),
        ))
        .add_service(proto::inputs::service_server::ServiceServer::new(
            inputs::InputsService::new(app.clone()),
        ))
        .add_service(proto::drops::service_server::ServiceServer::new(
            drops::DropsService::new(app.clone()),
        ))
        .add_service(proto::rules::service_server::ServiceServer::new(
            rules::RulesService::new(app.clone()),
        ))
        .add_service(proto::configs::service_server::ServiceServer::new(
            configs::ConfigsService::new(app.clone()),
        )))
}

/// Serves every service on `listener` until `app.shutdown` is cancelled; open streams end with OK.
pub async fn serve_unix(app: App, listener: UnixListener) -> Result<(), ServeError> {
    let router = router(&app).await?;
    let shutdown = app.shutdown.clone();
    router
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}

/// Runs `serve` until it ends, or until `grace` after shutdown began.
pub async fn with_grace<F>(app: &App, grace: Duration, serve: F) -> Result<(), ServeError>
where
    F: Future<Output = Result<(), ServeError>>,
{
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return result,
        _ = app.shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, serve).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; closing them"
            );
            Ok(())
        }
    }
}

/// Binds a Unix socket at `path` with mode 0660, creating its parent directory. A socket file
/// left by a crashed server is replaced; one that a live server answers on is not.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
