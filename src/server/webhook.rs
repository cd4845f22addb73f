//! The Kubernetes audit webhook: kube-apiserver's webhook backend POSTs audit `Event` or
//! `EventList` documents to `/k8s-audit`; they enter the same pipeline as `falco.inputs` events of
//! source `k8s_audit`. 200 once the alerts are durable, 400 with the reason for a bad document.

use std::convert::Infallible;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app::App;
use crate::event::{stage, DropRecord};
use crate::pipeline::{InEvent, Refused};

pub const PATH: &str = "/k8s-audit";

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, serde_json::json!({ "error": message }).to_string())
}

async fn handle(
    app: App,
    req: Request<Incoming>,
    max_body: usize,
    peer: String,
) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not found: POST audit events to /k8s-audit",
        );
    }
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted");
    }
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {max_body} bytes"),
            )
        }
    };
    let event = InEvent {
        source: "k8s_audit".into(),
        payload: body.to_vec(),
        time_ns: None,
        hostname: String::new(),
        seq: 1,
    };
    let results = match app.pipeline.submit(vec![event]).await {
        Ok(r) => r,
        Err(Refused::QueueFull) => {
            app.record_drop(DropRecord::now(
                stage::INGEST_QUEUE_FULL,
                "k8s_audit",
                &peer,
                1,
                1,
                "webhook request refused: the ingest queue was full (policy drop)".into(),
            ));
            return error(StatusCode::SERVICE_UNAVAILABLE, "the ingest queue is full");
        }
        Err(Refused::Closed) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    };
    let Ok(result) = results.await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline stopped");
    };
    if let Some((_, reason)) = result.rejected.first() {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    let (evaluated, matched) = (result.evaluated, result.outputs.len());
    match app.commit_alerts(result.outputs, "k8s_audit", &peer).await {
        Ok(_) => reply(
            StatusCode::OK,
            serde_json::json!({ "evaluated": evaluated, "alerts": matched }).to_string(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A TLS acceptor for the webhook from PEM certificate chain and key (no client certificates:
/// kube-apiserver's webhook backend authenticates the server, as with Falco's embedded webserver).
pub fn tls_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("webhook TLS certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("webhook TLS key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("webhook TLS: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Serves the webhook until shutdown.
pub async fn serve(app: App, listener: TcpListener, max_body: usize) {
    serve_with(app, listener, max_body, None).await
}

/// Serves the webhook, over TLS when `tls` is given; handshakes run per connection, with a
/// timeout, so a silent client holds up nobody.
pub async fn serve_with(
    app: App,
    listener: TcpListener,
    max_body: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use tokio_stream::StreamExt;
    let name = listener
        .local_addr()
        .map(|a| format!("webhook {a}"))
        .unwrap_or_else(|_| "webhook".into());
    // Bounded like the gRPC listeners: a connection cap, and back-off when out of descriptors.
    let max = super::Limits::default().max_connections;
    let mut incoming = super::listen::incoming(listener, name, max);
    loop {
        let accepted = tokio::select! {
            a = incoming.next() => a,
            _ = app.shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "webhook accept failed");
                continue;
            }
            None => return,
        };
        let peer = match stream.get_ref().peer_addr() {
            Ok(peer) => peer,
            Err(_) => continue,
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let peer = peer.to_string();
                async move { Ok::<_, Infallible>(handle(app, req, max_body, peer).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            http.serve_connection(TokioIo::new(tls_stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            return tracing::debug!(error = %e, "webhook TLS handshake failed")
                        }
                        Err(_) => return tracing::debug!("webhook TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}
