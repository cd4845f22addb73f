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

/// Serves the webhook until shutdown.
pub async fn serve(app: App, listener: TcpListener, max_body: usize) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = app.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept failed");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let peer = peer.to_string();
                async move { Ok::<_, Infallible>(handle(app, req, max_body, peer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}
