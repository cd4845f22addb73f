//! The HTTP surface: one axum router composed from per-feature routers, served on one listener
//! configuration (address, optional TLS) with the same connection limits as the gRPC listeners.
//! Today it carries the Kubernetes audit webhook ([`webhook`]); later endpoints mount here too.
//!
//! Identities and roles are gRPC's (`crate::net::identity`): on TLS a client certificate, when one is
//! presented and chains to the boot config's `tls.client_ca`, names the caller (`cn:`/`san:`) and
//! gives the roles the policy maps to it; [`require`] guards an endpoint with a role. Without TLS
//! the listener must be on loopback unless explicitly opened (checked by the boot config). Each
//! connection's [`Caller`] goes into the request's extensions.

pub mod console;
pub(crate) mod error;
pub mod falco;
mod guard;
pub mod metrics;
pub mod webhook;

pub use error::ApiError;

use axum::extract::State;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use std::sync::Arc;

use crate::config::{HttpEndpoint, HttpKind};
use crate::net::identity::{Identity, Policy, Role};
use crate::services::ingest::Ingest;
use crate::services::App;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Caller {
    pub addr: std::net::SocketAddr,
    /// From a verified client certificate; `None` without one.
    pub identity: Option<Identity>,
}

impl Caller {
    /// The name drop records and logs give this caller.
    pub fn name(&self) -> String {
        match &self.identity {
            Some(id) => id.name.clone(),
            None => self.addr.to_string(),
        }
    }
}

/// A guard for endpoints that need `role`: 401 without an identity, 403 naming the role.
pub async fn require(
    role: Role,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let caller = request.extensions().get::<Caller>().cloned();
    match caller.and_then(|c| c.identity) {
        None => json(
            http::StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "this endpoint needs a client certificate"}),
        ),
        Some(id) if !id.roles.contains(&role) => json(
            http::StatusCode::FORBIDDEN,
            serde_json::json!({"error": format!("{} lacks the {} role", id.name, role.name())}),
        ),
        Some(_) => next.run(request).await,
    }
}

/// How the HTTP listener serves.
#[derive(Clone)]
pub struct HttpOptions {
    /// Serve HTTPS with this acceptor.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connection caps and timeouts (the boot file's `limits`).
    pub limits: crate::net::Limits,
    /// Identities to roles, as for gRPC.
    pub policy: Arc<Policy>,
    /// Host names plain-HTTP requests may name besides IP addresses, `localhost` and this
    /// machine's name (the boot file's `allowed_hosts`).
    pub allowed_hosts: Arc<Vec<String>>,
}

impl Default for HttpOptions {
    /// Plain HTTP with the default limits, no roles, and no extra host names.
    fn default() -> Self {
        HttpOptions {
            tls: None,
            limits: Default::default(),
            policy: Default::default(),
            allowed_hosts: Default::default(),
        }
    }
}

/// The routes of the endpoints in `kinds` (those sharing one listener).
pub fn router(app: App, endpoints: &[&HttpEndpoint]) -> Router {
    let mut router = Router::new();
    let mut paths = Vec::new();
    for e in endpoints {
        let (routes, served) = endpoint_routes(&app, e);
        router = router.merge(routes);
        paths.extend(served);
    }
    // The console's listener sends a bare visit to the console (unless `/` is Falco's).
    let console = endpoints.iter().any(|e| e.kind == HttpKind::Console);
    let receiver = endpoints
        .iter()
        .any(|e| matches!(e.kind, HttpKind::Falco { .. }));
    if console && !receiver {
        router = router.route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/console/") }),
        );
    }
    let known = paths.join(", ");
    router
        .fallback(move || async move {
            json(
                http::StatusCode::NOT_FOUND,
                serde_json::json!({ "error": format!("not found; this listener serves {known}") }),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            app.telemetry.clone(),
            count,
        ))
}

/// One endpoint's routes, and its paths as the not-found answer names them.
fn endpoint_routes(app: &App, e: &HttpEndpoint) -> (Router, Vec<String>) {
    match e.kind {
        HttpKind::Webhook => (
            webhook::routes(Ingest::new(app.clone()), e.max_body),
            vec![format!("POST {}", webhook::PATH)],
        ),
        HttpKind::Falco { mtls } => (
            falco::routes(app.clone(), e.max_body, mtls, e.client_bytes_per_sec),
            falco::PATHS.iter().map(|p| format!("POST {p}")).collect(),
        ),
        HttpKind::Console => (
            console::routes(app.clone(), e.tls, e.max_body, e.stall_timeout),
            vec!["GET /console/".to_string()],
        ),
        HttpKind::Metrics { mtls } => (
            metrics::routes(app.clone(), mtls),
            vec![format!("GET {}", metrics::PATH)],
        ),
    }
}

/// Counts each answered request by route (`unmatched` for any other path) and status.
async fn count(
    State(telemetry): State<Arc<crate::services::telemetry::Telemetry>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let endpoint = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    if telemetry.enabled() {
        let endpoint = telemetry.bounded("endpoint", &format!("{method} {endpoint}"));
        telemetry
            .http_requests
            .with_label_values(&[endpoint.as_str(), response.status().as_str()])
            .inc();
    }
    response
}

/// Serves `router` on `listener` until shutdown, then stops accepting, lets every open
/// connection finish the request it is answering (hyper's graceful shutdown: a keep-alive
/// connection closes after its current answer; a live stream ends on shutdown by itself), and
/// returns once they are all closed. The caller bounds that wait with `shutdown_grace_secs`.
pub async fn serve(app: App, listener: TcpListener, router: Router, opts: HttpOptions) {
    let name = listener
        .local_addr()
        .map(|a| format!("http {a}"))
        .unwrap_or_else(|_| "http".into());
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let hosts = guard::Hosts::new(opts.allowed_hosts.clone(), opts.tls.is_some(), loopback);
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(hosts),
        guard::same_origin,
    ));
    // An HTTP client's first bytes are its first request head: `header_read_timeout` bounds both
    // (browsers keep unused preconnected sockets up to 10 s; closing them sooner races a request).
    let limits = crate::net::listen::ConnLimits {
        first_byte_timeout: opts.limits.header_read_timeout,
        ..opts.limits.conn_limits()
    };
    let mut incoming = crate::net::listen::incoming(listener, name, limits);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = incoming.next() => a,
            _ = app.shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
            None => break,
        };
        let Ok(addr) = stream.get_ref().peer_addr() else {
            continue;
        };
        let shutdown = app.shutdown.clone();
        connections.spawn(connection(
            stream,
            addr,
            router.clone(),
            opts.clone(),
            shutdown,
        ));
    }
    // No new connection from here on (the listener goes with `incoming`).
    drop(incoming);
    connections.close();
    connections.wait().await;
}

/// Drives one HTTP/1.1 connection until it ends; at shutdown, lets it finish the answer in
/// progress and closes it.
async fn drive<IO, S>(
    http: &hyper::server::conn::http1::Builder,
    io: IO,
    service: S,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Serves one connection: its TLS handshake (bounded by `tls.handshake_timeout_secs`), then
/// HTTP/1.1 with a header-read timeout; each request is marked in flight until its answer ends.
async fn connection(
    stream: crate::net::listen::Counted<tokio::net::TcpStream>,
    addr: std::net::SocketAddr,
    router: Router,
    opts: HttpOptions,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let conn = stream.conn().clone();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.limits.header_read_timeout);
    let with = |identity: Option<Identity>| {
        let router = router
            .clone()
            .layer(axum::Extension(Caller { addr, identity }))
            .layer(axum::Extension(conn.clone()));
        let conn = conn.clone();
        TowerToHyperService::new(tower::service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let active = conn.begin();
                let call = tower::ServiceExt::oneshot(router.clone(), req);
                async move {
                    let response = call.await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        axum::body::Body::new(crate::net::listen::Held::new(body, active))
                    }))
                }
            },
        ))
    };
    let result = match opts.tls {
        None => drive(&http, TokioIo::new(stream), with(None), shutdown).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(opts.limits.handshake_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls)) => {
                    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let identity = leaf.and_then(|l| opts.policy.identify_certificate(l.as_ref()));
                    drive(&http, TokioIo::new(tls), with(identity), shutdown).await
                }
                Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended");
    }
}

/// A TLS acceptor from a PEM certificate chain and key. With `client_ca`, a client certificate
/// is asked for and, when presented, must chain to it; unless `require_client_cert`, clients
/// without one are still served (kube-apiserver's webhook backend authenticates only the server,
/// as with Falco's embedded webserver), with no identity. With it, the handshake fails without
/// one, so an anonymous client never reaches HTTP at all.
pub fn tls_acceptor(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
    require_client_cert: bool,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("HTTP TLS certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("HTTP TLS key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| format!("HTTP TLS client CA: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("HTTP TLS client CA: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("HTTP TLS client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
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
