//! The Kubernetes audit webhook: kube-apiserver's webhook backend POSTs audit `Event` or
//! `EventList` documents to `/k8s-audit`; they enter the same [`Ingest`] as `falco.inputs`
//! events of source `k8s_audit`. 200 once the alerts are durable, 400 with the reason for a bad
//! document, 413 over the size limit, 503 when the queue refuses it.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use serde_json::json;

use super::{json, Caller};
use crate::ingest::{Ingest, Queued};
use crate::pipeline::InEvent;

pub const PATH: &str = "/k8s-audit";

pub fn routes(ingest: Ingest, max_body: usize) -> Router {
    Router::new()
        .route(PATH, post(k8s_audit))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(ingest)
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, json!({ "error": message }))
}

async fn k8s_audit(
    State(ingest): State<Ingest>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let event = InEvent {
        source: "k8s_audit".into(),
        payload: body.to_vec(),
        time_ns: None,
        hostname: String::new(),
        seq: 1,
    };
    let ticket = match ingest.queue(&caller.name(), vec![event]).await {
        Ok(Queued::Evaluating(ticket)) => ticket,
        Ok(Queued::Dropped { stage, .. }) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("refused: {stage}"),
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    match ingest.finish(ticket).await {
        Ok(outcome) => match outcome.result.rejected.first() {
            Some((_, reason)) => error(StatusCode::BAD_REQUEST, reason),
            None => json(
                StatusCode::OK,
                json!({ "evaluated": outcome.result.evaluated, "alerts": outcome.seqs.end - outcome.seqs.start }),
            ),
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
