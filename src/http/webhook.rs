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
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{ApiError, Caller};
use crate::pipeline::InEvent;
use crate::services::ingest::{Ingest, Queued};
use crate::services::status::Kind;

pub const PATH: &str = "/k8s-audit";

pub fn routes(ingest: Ingest, max_body: usize) -> Router {
    Router::new()
        .route(PATH, post(k8s_audit))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(ingest)
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

/// The answer to a document: how many events were evaluated, how many alerts they stored, and
/// (the first ten) events refused with why.
#[derive(Serialize, Default)]
struct Evaluated {
    evaluated: u64,
    alerts: u64,
    rejected: Vec<Rejected>,
}

#[derive(Serialize)]
struct Rejected {
    item: u64,
    reason: String,
}

async fn k8s_audit(
    State(ingest): State<Ingest>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Evaluated>, ApiError> {
    let max = ingest.max_payload_bytes();
    let payloads = split(&body, max).map_err(ApiError::bad_request)?;
    drop(body);
    let total = payloads.len();
    if total == 0 {
        return Ok(Json(Evaluated::default()));
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
    let ticket = match ingest.queue(&caller.name(), events).await? {
        Queued::Evaluating(ticket) => ticket,
        Queued::Dropped { stage, .. } => {
            return Err(ApiError::new(
                Kind::Unavailable,
                format!("refused: {stage}"),
            ))
        }
    };
    let outcome = ingest.finish(ticket).await?;
    let rejected = &outcome.result.rejected;
    if let Some((_, reason)) = rejected.first().filter(|_| rejected.len() == total) {
        return Err(ApiError::bad_request(reason.clone()));
    }
    Ok(Json(Evaluated {
        evaluated: outcome.result.evaluated,
        alerts: outcome.seqs.end - outcome.seqs.start,
        rejected: rejected
            .iter()
            .take(10)
            .map(|(seq, reason)| Rejected {
                item: seq.saturating_sub(1),
                reason: reason.clone(),
            })
            .collect(),
    }))
}
