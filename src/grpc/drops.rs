//! `falco.drops`: the drops log's wire mapping; the stream logic is in `logstream.rs`.

use tonic::{Request, Response, Status, Streaming};

use super::logstream::{self, Filter, ResponseStream, WireLog};
use crate::base::event::DropRecord;
use crate::feed::cursor::CursorRequest;
use crate::feed::{Feed, FeedError, Start, Subscription, TrimPolicy};
use crate::proto::convert::timestamp;
use crate::proto::drops::{self as pb, service_server::Service};
use crate::services::App;

pub struct DropsService {
    app: App,
}

impl DropsService {
    pub fn new(app: App) -> Self {
        DropsService { app }
    }
}

pub struct DropsLog;

impl WireLog for DropsLog {
    type Record = DropRecord;
    type View = DropRecord;
    type Request = pb::Request;
    type Response = pb::Response;
    const LOG: &'static str = "drops";

    fn feed(app: &App) -> &Feed<DropRecord> {
        &app.logs.drops
    }

    fn subscribe(
        feed: &Feed<DropRecord>,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
    ) -> Result<Subscription<DropRecord>, FeedError> {
        feed.subscribe(start, policy, follow)
    }

    fn cursor(req: &pb::Request) -> CursorRequest {
        CursorRequest {
            after_seq: req.after_seq,
            consumer: req.consumer.clone(),
            ack: req.ack,
            from_oldest: req.from_oldest,
            start_time: req.start_time.map(|t| (t.seconds, t.nanos)),
            end_time: req.end_time.map(|t| (t.seconds, t.nanos)),
        }
    }

    fn filter(req: pb::Request) -> Result<Option<Filter<DropRecord>>, Status> {
        if req.stages.is_empty() && req.sources.is_empty() {
            return Ok(None);
        }
        let (stages, sources) = (req.stages, req.sources);
        Ok(Some(Box::new(move |d: &DropRecord| {
            (stages.is_empty() || stages.contains(&d.stage))
                && (sources.is_empty() || sources.contains(&d.source))
        })))
    }

    fn record(seq: u64, d: DropRecord) -> pb::Response {
        crate::proto::convert::drop_response(seq, d)
    }

    fn lost(count: u64, next_seq: u64, _app: &App) -> pb::Response {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        pb::Response {
            time: Some(timestamp(now)),
            stage: "drops_log_trimmed".into(),
            source: "internal".into(),
            client: String::new(),
            n_drops: count,
            n_evts: count,
            message: format!(
                "{count} drop records were trimmed from the drops log before this stream read \
                 them; resuming at seq {next_seq}"
            ),
            seq: 0,
            id: uuid::Uuid::now_v7().to_string(),
            lost: count,
        }
    }
}

#[tonic::async_trait]
impl Service for DropsService {
    type getStream = ResponseStream<pb::Response>;
    type subStream = ResponseStream<pb::Response>;

    async fn get(
        &self,
        request: Request<pb::Request>,
    ) -> Result<Response<Self::getStream>, Status> {
        logstream::get::<DropsLog>(&self.app, request.into_inner())
    }

    async fn sub(
        &self,
        request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<Self::subStream>, Status> {
        logstream::sub::<DropsLog>(&self.app, request.into_inner())
    }
}
