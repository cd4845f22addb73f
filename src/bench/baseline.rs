//! The load generator's baseline: a bare `falco.outputs` server stream that sends copies of one
//! message from memory, with no storage and no cursor logic. Measured beside the real server in
//! the same run, it shows what the transport alone costs.

use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::outputs::{
    self as pb,
    service_server::{Service, ServiceServer},
};

pub struct Baseline {
    template: pb::Response,
    count: u64,
}

#[tonic::async_trait]
impl Service for Baseline {
    type getStream = ReceiverStream<Result<pb::Response, Status>>;
    type subStream = ReceiverStream<Result<pb::Response, Status>>;

    async fn get(
        &self,
        _request: Request<pb::Request>,
    ) -> Result<Response<Self::getStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let template = self.template.clone();
        let count = self.count;
        tokio::spawn(async move {
            for seq in 1..=count {
                let mut message = template.clone();
                message.seq = seq;
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn sub(
        &self,
        _request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<Self::subStream>, Status> {
        Err(Status::unimplemented("the baseline serves only get"))
    }
}

/// Serves `count` copies of `template` to every `get` on `listener` until `stop` is cancelled.
pub async fn serve_baseline(
    listener: UnixListener,
    template: pb::Response,
    count: u64,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ServiceServer::new(Baseline { template, count }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop.cancelled_owned())
        .await
}

/// The ingest baseline: a bare `falco.inputs` bidi stream that acknowledges each batch at once,
/// with no evaluation and no storage.
pub struct BaselineInputs;

#[tonic::async_trait]
impl crate::proto::inputs::service_server::Service for BaselineInputs {
    type sendStream = ReceiverStream<Result<crate::proto::inputs::Response, Status>>;

    async fn send(
        &self,
        request: Request<Streaming<crate::proto::inputs::Request>>,
    ) -> Result<Response<Self::sendStream>, Status> {
        use tokio_stream::StreamExt;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let up_to = req.events.iter().map(|e| e.seq).max().unwrap_or(0);
                let ack = crate::proto::inputs::Response {
                    accepted_up_to: up_to,
                    evaluated: req.events.len() as u64,
                    ..Default::default()
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves [`BaselineInputs`] on `listener` until `stop` is cancelled.
pub async fn serve_baseline_inputs(
    listener: UnixListener,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(crate::proto::inputs::service_server::ServiceServer::new(
            BaselineInputs,
        ))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop.cancelled_owned())
        .await
}
