//! `falco.inputs`: batches of events in, acknowledgements out. The reader queues each batch on
//! the pipeline (waiting for room under the `block` policy); an acker awaits the results in order,
//! appends the alerts to the outputs log, and only then acknowledges the batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::app::App;
use crate::event::{stage, DropRecord};
use crate::pipeline::{BatchResult, InEvent, Refused};
use crate::proto::inputs::{self as pb, service_server::Service};
use crate::throttle::TokenBucket;

/// Batches in flight per stream (evaluated in parallel, acknowledged in order).
const IN_FLIGHT: usize = 4;

pub struct InputsService {
    app: App,
    /// Per-client ingest rate limiters, when a rate is configured.
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl InputsService {
    pub fn new(app: App) -> Self {
        InputsService {
            app,
            buckets: Arc::default(),
        }
    }
}

enum Pending {
    Queued {
        results: oneshot::Receiver<BatchResult>,
        source: String,
        n: u64,
    },
    Dropped(pb::Response),
}

/// The client identity for accounting and authorship (set by the auth layer).
pub fn client_identity<T>(request: &Request<T>) -> String {
    super::auth::author(request)
}

fn events_of(req: pb::Request) -> Vec<InEvent> {
    req.events
        .into_iter()
        .map(|e| InEvent {
            source: e.source,
            payload: e.payload,
            time_ns: e.time.map(|t| {
                t.seconds
                    .saturating_mul(1_000_000_000)
                    .saturating_add(t.nanos as i64)
            }),
            hostname: e.hostname,
            seq: e.seq,
        })
        .collect()
}

fn dropped(events: &[InEvent]) -> pb::Response {
    pb::Response {
        dropped: events.len() as u64,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Service for InputsService {
    type sendStream = ReceiverStream<Result<pb::Response, Status>>;

    async fn send(
        &self,
        request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<Self::sendStream>, Status> {
        let client = client_identity(&request);
        let mut inbound = request.into_inner();
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(IN_FLIGHT);
        let (tx, rx) = mpsc::channel(IN_FLIGHT * 2);
        let app = self.app.clone();
        let buckets = self.buckets.clone();
        let reader_client = client.clone();
        // Reader: queue batches (backpressure happens here, by not reading further).
        let reader_app = app.clone();
        let reader_tx = tx.clone();
        tokio::spawn(async move {
            let app = reader_app;
            loop {
                let message = tokio::select! {
                    m = inbound.next() => m,
                    _ = app.shutdown.cancelled() => None,
                };
                let req = match message {
                    Some(Ok(req)) => req,
                    Some(Err(status)) => {
                        let _ = reader_tx.send(Err(status)).await;
                        break;
                    }
                    None => break,
                };
                let events = events_of(req);
                let source = events.first().map(|e| e.source.clone()).unwrap_or_default();
                let n = events.len() as u64;
                let settings = app.pipeline.settings();
                if let Some((rate, burst)) = settings.client_rate {
                    let allowed = buckets
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(reader_client.clone())
                        .or_insert_with(|| TokenBucket::new(rate, burst))
                        .take(n as f64);
                    if !allowed {
                        app.record_drop(DropRecord::now(
                            stage::RATE_LIMITED,
                            &source,
                            &reader_client,
                            n,
                            n,
                            format!("client over its ingest rate of {rate} events/s"),
                        ));
                        if pending_tx
                            .send(Pending::Dropped(dropped(&events)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        continue;
                    }
                }
                let pending = match app.pipeline.submit(events.clone()).await {
                    Ok(results) => Pending::Queued { results, source, n },
                    Err(Refused::QueueFull) => {
                        app.record_drop(DropRecord::now(
                            stage::INGEST_QUEUE_FULL,
                            &source,
                            &reader_client,
                            n,
                            n,
                            "the ingest queue was full (policy drop)".to_string(),
                        ));
                        Pending::Dropped(dropped(&events))
                    }
                    Err(Refused::Closed) => break,
                };
                if pending_tx.send(pending).await.is_err() {
                    break;
                }
            }
        });
        // Acker: results in order → outputs log (durable) → acknowledgement.
        tokio::spawn(async move {
            while let Some(pending) = pending_rx.recv().await {
                let response = match pending {
                    Pending::Dropped(response) => Ok(response),
                    Pending::Queued { results, source, n } => match results.await {
                        Ok(result) => acknowledge(&app, result, &source, &client, n).await,
                        Err(_) => Err(Status::unavailable("the pipeline stopped")),
                    },
                };
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn acknowledge(
    app: &App,
    result: BatchResult,
    source: &str,
    client: &str,
    n: u64,
) -> Result<pb::Response, Status> {
    if result.too_large > 0 {
        app.record_drop(DropRecord::now(
            stage::PAYLOAD_TOO_LARGE,
            source,
            client,
            result.too_large,
            n,
            "event payloads over the size limit were rejected".to_string(),
        ));
    }
    if result.failed > 0 {
        app.record_drop(DropRecord::now(
            stage::EVALUATION_FAILED,
            source,
            client,
            result.failed,
            n,
            "events whose evaluation failed inside the engine were rejected".to_string(),
        ));
    }
    let range = app.commit_alerts(result.outputs, source, client).await?;
    Ok(pb::Response {
        accepted_up_to: result.accepted_up_to,
        matched: result.matched,
        rejected: result
            .rejected
            .into_iter()
            .map(|(seq, reason)| pb::Rejected { seq, reason })
            .collect(),
        evaluated: result.evaluated,
        dropped: 0,
        first_output_seq: if range.is_empty() { 0 } else { range.start },
        last_output_seq: if range.is_empty() { 0 } else { range.end - 1 },
    })
}
