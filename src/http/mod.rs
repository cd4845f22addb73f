//! The HTTP surface: one axum router composed from per-feature routers, served on one listener
//! configuration (address, optional TLS) with the same connection limits as the gRPC listeners.
//! Today it carries the Kubernetes audit webhook ([`webhook`]); later endpoints mount here too.
//!
//! Each connection's peer goes into the request's extensions as a [`Peer`], the identity drop
//! records and logs name.

pub mod webhook;

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::app::App;
use crate::ingest::Ingest;

/// A TLS client must finish its handshake within this; others are never held up by it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection (its address, for now).
#[derive(Clone, Debug)]
pub struct Peer(pub String);

/// How the HTTP listener serves.
#[derive(Clone)]
pub struct HttpOptions {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Serve HTTPS with this acceptor.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Every endpoint of the HTTP surface.
pub fn router(app: App, opts: &HttpOptions) -> Router {
    Router::new().merge(webhook::routes(Ingest::new(app), opts.max_body))
}

/// Serves the HTTP surface on `listener` until shutdown.
pub async fn serve(app: App, listener: TcpListener, opts: HttpOptions) {
    let name = listener
        .local_addr()
        .map(|a| format!("http {a}"))
        .unwrap_or_else(|_| "http".into());
    let router = router(app.clone(), &opts);
    let mut incoming = crate::server::listen::incoming(listener, name, opts.max_connections);
    loop {
        let accepted = tokio::select! {
            a = incoming.next() => a,
            _ = app.shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
            None => return,
        };
        let Ok(peer) = stream.get_ref().peer_addr() else {
            continue;
        };
        let service = router
            .clone()
            .layer(axum::Extension(Peer(peer.to_string())));
        let tls = opts.tls.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(service);
            let http = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), service).await,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
}

/// A TLS acceptor from a PEM certificate chain and key (no client certificates: kube-apiserver's
/// webhook backend authenticates the server, as with Falco's embedded webserver).
pub fn tls_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("HTTP TLS certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("HTTP TLS key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("HTTP TLS: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Axum handlers return this for a JSON body with a status.
pub(crate) fn json(status: http::StatusCode, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
