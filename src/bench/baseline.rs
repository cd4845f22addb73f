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
    messages: std::sync::Arc<Vec<pb::Response>>,
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
        let messages = self.messages.clone();
        let count = self.count;
        tokio::spawn(async move {
            for (seq, message) in (1..=count).zip(messages.iter().cycle()) {
                let mut message = message.clone();
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

/// Serves `count` messages to every `get` on `listener` until `stop` is cancelled: copies of
/// `messages` in turn (of one message, or of as many as are replayed, so that neither side sends
/// from a cache the other does not have).
pub async fn serve_baseline(
    listener: UnixListener,
    messages: Vec<pb::Response>,
    count: u64,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ServiceServer::new(Baseline {
            messages: std::sync::Arc::new(messages),
            count,
        }))
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

/// A client codec that hands out each response's bytes undecoded: with it, a stream's rate is
/// what the server sends, not what a client can decode on the same cores.
#[derive(Clone, Copy, Default)]
pub struct RawResponses;

pub struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = bytes::Bytes;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl tonic::codec::Codec for RawResponses {
    type Encode = pb::Request;
    type Decode = bytes::Bytes;
    type Encoder = tonic_prost::ProstEncoder<pb::Request>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Seconds to receive `count` responses of `falco.outputs.service/get` for `request` on
/// `channel`, without decoding them.
pub async fn raw_get(
    channel: &tonic::transport::Channel,
    request: pb::Request,
    count: u64,
) -> anyhow::Result<f64> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(64 << 20);
    grpc.ready().await?;
    let started = std::time::Instant::now();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/falco.outputs.service/get");
    let mut stream = grpc
        .server_streaming(Request::new(request), path, RawResponses)
        .await?
        .into_inner();
    let mut got = 0u64;
    while got < count {
        if stream.message().await?.is_none() {
            break;
        }
        got += 1;
    }
    anyhow::ensure!(got == count, "the stream sent {got} of {count}");
    Ok(started.elapsed().as_secs_f64())
}
