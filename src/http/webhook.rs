//! The Kubernetes audit webhook: kube-apiserver's webhook backend POSTs audit `Event` or
//! `EventList` documents to `/k8s-audit`; they enter the same [`Ingest`] as `falco.inputs`
//! events of source `k8s_audit`. 200 once the alerts are durable, 400 with the reason for a bad
//! document, 413 over the size limit, 503 when the queue refuses it.
//!
//! A document over `ingest.max_payload_bytes` (kube-apiserver batches up to hundreds of events in
//! one `EventList`) is split into its events, each evaluated as an event of its own; the answer is
//! 200 when any of them got through, naming those that did not.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use serde_json::json;

use super::{json, Caller};
use crate::pipeline::InEvent;
use crate::services::ingest::{Ingest, Queued};

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

/// The payloads a document becomes: itself, or when it is larger than `max`, the events of an
/// `EventList` (or of an array) one by one.
fn split(body: &[u8], max: usize) -> Result<Vec<Vec<u8>>, String> {
    if body.len() <= max {
        return Ok(vec![body.to_vec()]);
    }
    let mut doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the document is not JSON: {e}"))?;
    let items = match &mut doc {
        serde_json::Value::Array(items) => std::mem::take(items),
        serde_json::Value::Object(map)
            if map.get("kind").and_then(|k| k.as_str()) == Some("EventList") =>
        {
            match map.remove("items") {
                Some(serde_json::Value::Array(items)) => items,
                _ => return Err("EventList without items".into()),
            }
        }
        _ => {
            return Err(format!(
                "a single event of {} bytes is over ingest.max_payload_bytes ({max})",
                body.len()
            ))
        }
    };
    Ok(items
        .iter()
        .map(|item| serde_json::to_vec(item).unwrap_or_default())
        .collect())
}

async fn k8s_audit(
    State(ingest): State<Ingest>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let max = ingest.max_payload_bytes();
    let payloads = match split(&body, max) {
        Ok(p) => p,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    drop(body);
    let total = payloads.len();
    if total == 0 {
        return json(StatusCode::OK, json!({ "evaluated": 0, "alerts": 0 }));
    }
    let events = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| InEvent {
            source: "k8s_audit".into(),
            payload,
            time_ns: None,
            hostname: String::new(),
            seq: i as u64 + 1,
        })
        .collect();
    let ticket = match ingest.queue(&caller.name(), events).await {
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
        Ok(outcome) => {
            let rejected = &outcome.result.rejected;
            match rejected.first() {
                Some((_, reason)) if rejected.len() == total => {
                    error(StatusCode::BAD_REQUEST, reason)
                }
                _ => json(
                    StatusCode::OK,
                    json!({
                        "evaluated": outcome.result.evaluated,
                        "alerts": outcome.seqs.end - outcome.seqs.start,
                        "rejected": rejected.iter().take(10).map(|(seq, reason)| {
                            json!({ "item": seq.saturating_sub(1), "reason": reason })
                        }).collect::<Vec<_>>(),
                    }),
                ),
            }
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
