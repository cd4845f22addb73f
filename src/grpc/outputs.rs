//! `falco.outputs`: the outputs log's wire mapping; the stream logic is in `logstream.rs`.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status, Streaming};

use super::logstream::{self, Filter, ResponseStream, WireLog};
use crate::base::event::{stage, DropRecord, Origin, OutputEvent, OutputFilter, Priority};
use crate::feed::cursor::CursorRequest;
use crate::feed::Feed;
use crate::proto::convert::{event_response, timestamp};
use crate::proto::outputs::{self as pb, service_server::Service};
use crate::proto::schema;
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
    type Request = pb::Request;
    type Response = pb::Response;
    const LOG: &'static str = "outputs";

    fn feed(app: &App) -> &Feed<OutputEvent> {
        &app.logs.outputs
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

    fn filter(req: pb::Request) -> Result<Option<Filter<OutputEvent>>, Status> {
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
            .then(|| Box::new(move |ev: &OutputEvent| filter.matches(ev)) as Filter<_>))
    }

    fn record(seq: u64, record: OutputEvent) -> pb::Response {
        event_response(seq, record)
    }

    fn lost(count: u64, next_seq: u64, app: &App) -> pb::Response {
        lost_response(count, next_seq, &app.current_hostname())
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
    type getStream = ResponseStream<pb::Response>;
    type subStream = ResponseStream<pb::Response>;

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
