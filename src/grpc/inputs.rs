//! `falco.inputs`: batches of events in, acknowledgements out. The reader queues each batch on
//! the pipeline (waiting for room under the `block` policy); an acker awaits the results in order,
//! appends the alerts to the outputs log, and only then acknowledges the batch.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::pipeline::InEvent;
use crate::proto::inputs::{self as pb, service_server::Service};
use crate::services::ingest::{Ingest, Outcome, Queued, Ticket};
use crate::services::App;

/// Batches in flight per stream (evaluated in parallel, acknowledged in order).
const IN_FLIGHT: usize = 4;

pub struct InputsService {
    ingest: Ingest,
    app: App,
}

impl InputsService {
    pub fn new(app: App) -> Self {
        InputsService {
            ingest: Ingest::new(app.clone()),
            app,
        }
    }
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

fn response(outcome: Outcome) -> pb::Response {
    let Outcome { result, seqs } = outcome;
    pb::Response {
        accepted_up_to: result.accepted_up_to,
        matched: result.matched,
        rejected: result
            .rejected
            .into_iter()
            .map(|(seq, reason)| pb::Rejected { seq, reason })
            .collect(),
        evaluated: result.evaluated,
        dropped: 0,
        first_output_seq: if seqs.is_empty() { 0 } else { seqs.start },
        last_output_seq: if seqs.is_empty() { 0 } else { seqs.end - 1 },
    }
}

#[tonic::async_trait]
impl Service for InputsService {
    type sendStream = ReceiverStream<Result<pb::Response, Status>>;

    /// A reader queues each batch (backpressure: it stops reading while the queue is full); an
    /// acker finishes them in order and acknowledges each once its alerts are durable.
    async fn send(
        &self,
        request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<Self::sendStream>, Status> {
        let client = client_identity(&request);
        let (queued_tx, queued_rx) = mpsc::channel::<Queued>(IN_FLIGHT);
        let (tx, rx) = mpsc::channel(IN_FLIGHT * 2);
        tokio::spawn(read(
            self.ingest.clone(),
            self.app.clone(),
            request.into_inner(),
            client,
            queued_tx,
            tx.clone(),
        ));
        tokio::spawn(acknowledge(self.ingest.clone(), queued_rx, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Replies = mpsc::Sender<Result<pb::Response, Status>>;

async fn read(
    ingest: Ingest,
    app: App,
    mut inbound: Streaming<pb::Request>,
    client: String,
    queued: mpsc::Sender<Queued>,
    replies: Replies,
) {
    loop {
        let message = tokio::select! {
            m = inbound.next() => m,
            _ = app.shutdown.cancelled() => None,
        };
        let req = match message {
            Some(Ok(req)) => req,
            Some(Err(status)) => {
                let _ = replies.send(Err(status)).await;
                break;
            }
            None => break,
        };
        let Ok(q) = ingest.queue(&client, events_of(req)).await else {
            break;
        };
        if queued.send(q).await.is_err() {
            break;
        }
    }
}

async fn acknowledge(ingest: Ingest, mut queued: mpsc::Receiver<Queued>, replies: Replies) {
    while let Some(q) = queued.recv().await {
        let reply = match q {
            Queued::Dropped { events, .. } => Ok(pb::Response {
                dropped: events,
                ..Default::default()
            }),
            Queued::Evaluating(ticket) => finish(&ingest, ticket).await,
        };
        let failed = reply.is_err();
        if replies.send(reply).await.is_err() || failed {
            break;
        }
    }
}

async fn finish(ingest: &Ingest, ticket: Ticket) -> Result<pb::Response, Status> {
    Ok(response(ingest.finish(ticket).await?))
}
