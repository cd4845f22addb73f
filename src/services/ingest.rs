//! Where events enter the server, whatever carried them (`falco.inputs`, the Kubernetes audit
//! webhook): the per-client rate limit, the ingest queue and its policy, the drop records for
//! everything refused, evaluation, and the durable commit of the alerts. Transports only
//! translate their messages to [`InEvent`]s and the [`Outcome`] back.
//!
//! Two steps, so a stream can keep several batches evaluating while acknowledging them in order:
//! [`Ingest::queue`] (waits for room under the `block` policy) and [`Ingest::finish`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::base::event::{stage, DropRecord};
use crate::base::throttle::TokenBucket;
use crate::feed::FeedError;
use crate::pipeline::{BatchResult, InEvent, Refused};
use crate::services::logs::{Batch, Writer};
use crate::services::App;

/// Why a batch did not get through.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the pipeline has stopped (the server is shutting down)")]
    Closed,
    #[error(transparent)]
    Feed(#[from] FeedError),
}

/// A batch after [`Ingest::queue`].
pub enum Queued {
    /// Evaluating; hand it to [`Ingest::finish`].
    Evaluating(Ticket),
    /// Refused as a whole and recorded as a drop, at `stage`.
    Dropped { events: u64, stage: &'static str },
}

/// A batch being evaluated.
pub struct Ticket {
    results: oneshot::Receiver<BatchResult>,
    source: String,
    client: String,
    events: u64,
}

/// What a batch produced, its alerts durable in the outputs log.
pub struct Outcome {
    pub result: BatchResult,
    /// The outputs-log seqs of its alerts (empty when none).
    pub seqs: Range<u64>,
}

/// The entry point; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    app: App,
    /// Per-client rate limiters, when a rate is configured.
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl Ingest {
    pub fn new(app: App) -> Ingest {
        Ingest {
            app,
            buckets: Arc::default(),
        }
    }

    /// The largest event payload evaluation accepts.
    pub fn max_payload_bytes(&self) -> usize {
        self.app.pipeline.settings().max_payload_bytes
    }

    /// Rate-limits and queues one batch from `client`.
    pub async fn queue(&self, client: &str, events: Vec<InEvent>) -> Result<Queued, IngestError> {
        let source = events.first().map(|e| e.source.clone()).unwrap_or_default();
        let n = events.len() as u64;
        if let Some((rate, burst)) = self.app.pipeline.settings().client_rate {
            let allowed = self
                .buckets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(client.to_string())
                .or_insert_with(|| TokenBucket::new(rate, burst))
                .take(n as f64);
            if !allowed {
                let why = format!("client over its ingest rate of {rate} events/s");
                return Ok(self.refuse(stage::RATE_LIMITED, &source, client, n, why));
            }
        }
        match self.app.pipeline.submit(events).await {
            Ok(results) => Ok(Queued::Evaluating(Ticket {
                results,
                source,
                client: client.to_string(),
                events: n,
            })),
            Err(Refused::QueueFull) => {
                let why = "the ingest queue was full (policy drop)".to_string();
                Ok(self.refuse(stage::INGEST_QUEUE_FULL, &source, client, n, why))
            }
            Err(Refused::Closed) => Err(IngestError::Closed),
        }
    }

    fn refuse(&self, at: &'static str, source: &str, client: &str, n: u64, why: String) -> Queued {
        self.app.telemetry.inputs(source, "dropped", n);
        self.app
            .logs
            .record_drop(DropRecord::now(at, source, client, n, n, why));
        Queued::Dropped {
            events: n,
            stage: at,
        }
    }

    /// Waits for a batch's evaluation, records its rejections that count as drops, and commits
    /// its alerts; returns once they are durable.
    pub async fn finish(&self, ticket: Ticket) -> Result<Outcome, IngestError> {
        let Ticket {
            results,
            source,
            client,
            events,
        } = ticket;
        let mut result = results.await.map_err(|_| IngestError::Closed)?;
        let rejected = result.rejected.len() as u64;
        let telemetry = &self.app.telemetry;
        telemetry.inputs(&source, "accepted", events.saturating_sub(rejected));
        telemetry.inputs(&source, "rejected", rejected);
        let record = |at: &'static str, count: u64, why: &str| {
            if count > 0 {
                self.app.logs.record_drop(DropRecord::now(
                    at,
                    &source,
                    &client,
                    count,
                    events,
                    why.to_string(),
                ));
            }
        };
        record(
            stage::PAYLOAD_TOO_LARGE,
            result.too_large,
            "event payloads over the size limit were rejected",
        );
        record(
            stage::EVALUATION_FAILED,
            result.failed,
            "events whose evaluation failed inside the engine were rejected",
        );
        let alerts = std::mem::take(&mut result.outputs);
        let seqs = self
            .app
            .logs
            .write(Writer::Ingest, Batch::alerts(alerts), &source, &client)
            .await?
            .seqs;
        Ok(Outcome { result, seqs })
    }
}
