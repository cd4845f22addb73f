//! `falco.outputs`: the outputs log's wire mapping; the stream logic is in `logstream.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::logstream::{self, Filter, ResponseStream, WireLog};
use crate::base::event::{
    stage, AlertKey, DropRecord, Origin, OutputEvent, OutputFilter, Priority,
};
use crate::feed::cursor::CursorRequest;
use crate::feed::{Feed, FeedError, Start, Subscription, TrimPolicy};
use crate::proto::convert::{timestamp, AlertHeader};
use crate::proto::outputs as pb;
use crate::proto::schema;
use crate::proto::wire::{outputs::service_server::Service, OutputFrame};
use crate::services::App;

pub const LOST_RULE: &str = "Falco internal: events lost";

pub struct OutputsService {
    app: App,
}

impl OutputsService {
    pub fn new(app: App) -> Self {
        OutputsService { app }
    }
}

pub struct OutputsLog;

impl WireLog for OutputsLog {
    type Record = OutputEvent;
    /// Streams send stored alerts as they are (see `proto::wire`).
    type View = Bytes;
    type Request = pb::Request;
    type Response = OutputFrame;
    const LOG: &'static str = "outputs";

    fn feed(app: &App) -> &Feed<OutputEvent> {
        &app.logs.outputs
    }

    fn subscribe(
        feed: &Feed<OutputEvent>,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
    ) -> Result<Subscription<OutputEvent, Bytes>, FeedError> {
        feed.subscribe_frames(start, policy, follow)
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

    fn filter(req: pb::Request) -> Result<Option<Filter<Bytes>>, Status> {
        let min_priority = req
            .min_priority
            .map(|n| {
                Priority::from_number(n).ok_or_else(|| {
                    Status::invalid_argument(format!("min_priority {n} is not a priority (0-7)"))
                })
            })
            .transpose()?;
        let filter = OutputFilter {
            tags: req.tags,
            rules: req.rules,
            min_priority,
            sources: req.sources,
            hostnames: req.hostnames,
        };
        Ok((!filter.is_empty())
            .then(|| Box::new(move |stored: &Bytes| matches_stored(&filter, stored)) as Filter<_>))
    }

    fn record(seq: u64, body: Bytes) -> OutputFrame {
        OutputFrame { body, seq }
    }

    fn lost(count: u64, next_seq: u64, app: &App) -> OutputFrame {
        OutputFrame {
            body: lost_response(count, next_seq, &app.current_hostname())
                .encode_to_vec()
                .into(),
            seq: 0,
        }
    }

    fn on_lost(app: &App, count: u64, consumer: Option<&str>) {
        let record = DropRecord::now(
            stage::SUBSCRIBER_LAGGED,
            "internal",
            consumer.unwrap_or(""),
            count,
            count,
            format!("{count} output events were trimmed before a subscriber read them"),
        );
        app.logs.record_drop(record);
    }
}

#[tonic::async_trait]
impl Service for OutputsService {
    type getStream = ResponseStream<OutputFrame>;
    type subStream = ResponseStream<OutputFrame>;

    async fn get(
        &self,
        request: Request<pb::Request>,
    ) -> Result<Response<Self::getStream>, Status> {
        logstream::get::<OutputsLog>(&self.app, request.into_inner())
    }

    async fn sub(
        &self,
        request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<Self::subStream>, Status> {
        logstream::sub::<OutputsLog>(&self.app, request.into_inner())
    }
}

/// Whether a stored alert passes `filter`, from its header alone. A stored alert that cannot be
/// read passes, so that the stream sends it and the client sees what is stored.
fn matches_stored(filter: &OutputFilter, stored: &Bytes) -> bool {
    let Ok(header) = AlertHeader::decode(&stored[..]) else {
        return true;
    };
    filter.matches_key(&AlertKey {
        priority: Priority::from_number(header.priority),
        rule: &header.rule,
        source: &header.source,
        hostname: &header.hostname,
        tags: &header.tags,
    })
}

/// The explicit loss notice: an internal alert old clients can display, with `lost` set.
#[allow(deprecated)]
fn lost_response(count: u64, next_seq: u64, hostname: &str) -> pb::Response {
    let now = chrono::Utc::now();
    let fields: BTreeMap<String, String> = [
        ("n_lost".to_string(), count.to_string()),
        ("next_seq".to_string(), next_seq.to_string()),
        ("log".to_string(), OutputsLog::LOG.to_string()),
    ]
    .into();
    pb::Response {
        time: Some(timestamp(now.timestamp_nanos_opt().unwrap_or(0))),
        priority: schema::Priority::Warning as i32,
        source_deprecated: schema::Source::Internal as i32,
        rule: LOST_RULE.to_string(),
        output: format!(
            "{}: Warning {LOST_RULE}: {count} events were trimmed from the outputs log before \
             this stream read them; resuming at seq {next_seq}",
            now.format("%H:%M:%S%.9f")
        ),
        output_fields: fields.into_iter().collect(),
        hostname: hostname.to_string(),
        tags: Vec::new(),
        source: "internal".to_string(),
        seq: 0,
        id: uuid::Uuid::now_v7().to_string(),
        lost: count,
        rules_revision: 0,
        origin: Origin::Internal.name().to_string(),
    }
}
