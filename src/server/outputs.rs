//! `falco.outputs`: `get` and `sub` over the outputs log. Thin: requests become a [`Query`], the
//! feed does the reading, and a pump task turns items into responses on a bounded channel.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::app::App;
use crate::event::{OutputEvent, OutputFilter, Priority};
use crate::feed::{Item, Start, Subscription, TrimPolicy};
use crate::proto::outputs::{self as pb, service_server::Service};
use crate::proto::schema;

/// Responses buffered per stream before the pump waits for the client.
const STREAM_BUFFER: usize = 64;
/// `get` with a consumer stores its position at least this often (in events).
const AUTO_ACK_EVERY: u64 = 256;
/// The consumer legacy `get` calls (an empty request) drain.
pub const DEFAULT_CONSUMER: &str = "default";
const LOG: &str = "outputs";
pub const LOST_RULE: &str = "Falco internal: events lost";

pub struct OutputsService {
    app: App,
}

impl OutputsService {
    pub fn new(app: App) -> Self {
        OutputsService { app }
    }
}

/// A validated request.
struct Query {
    after: Option<u64>,
    consumer: Option<String>,
    ack: u64,
    policy: TrimPolicy,
    filter: OutputFilter,
}

impl Query {
    fn parse(req: pb::Request) -> Result<Query, Status> {
        let consumer = match req.consumer.as_str() {
            "" => None,
            name => Some(valid_consumer(name)?.to_string()),
        };
        if req.ack > 0 && consumer.is_none() {
            return Err(Status::invalid_argument("ack needs a consumer name"));
        }
        let min_priority = req
            .min_priority
            .map(|n| {
                Priority::from_number(n).ok_or_else(|| {
                    Status::invalid_argument(format!("min_priority {n} is not a priority (0-7)"))
                })
            })
            .transpose()?;
        Ok(Query {
            after: req.after_seq,
            consumer,
            ack: req.ack,
            policy: if req.from_oldest {
                TrimPolicy::Report
            } else {
                TrimPolicy::Fail
            },
            filter: OutputFilter {
                tags: req.tags,
                rules: req.rules,
                min_priority,
                sources: req.sources,
            },
        })
    }

    /// Where a stream for this query starts: an explicit position wins over a consumer's.
    fn start(&self, app: &App) -> Result<Start, Status> {
        if let Some(after) = self.after {
            return Ok(Start::After(after));
        }
        match &self.consumer {
            Some(name) => Ok(match app.store.consumers().get(LOG, name)? {
                Some(acked) => Start::After(acked),
                None => Start::Oldest,
            }),
            None => Ok(Start::Live),
        }
    }
}

fn valid_consumer(name: &str) -> Result<&str, Status> {
    let ok = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(Status::invalid_argument(format!(
            "consumer name '{name}' must be 1-128 characters of A-Z a-z 0-9 . _ : -"
        )))
    }
}

fn open(
    app: &App,
    query: &Query,
    start: Start,
    follow: bool,
) -> Result<Subscription<OutputEvent>, Status> {
    let sub = app.outputs.subscribe(start, query.policy, follow)?;
    Ok(if query.filter.is_empty() {
        sub
    } else {
        let filter = query.filter.clone();
        sub.with_filter(move |ev| filter.matches(ev))
    })
}

type ResponseStream = ReceiverStream<Result<pb::Response, Status>>;

#[tonic::async_trait]
impl Service for OutputsService {
    type getStream = ResponseStream;
    type subStream = ResponseStream;

    async fn get(&self, request: Request<pb::Request>) -> Result<Response<ResponseStream>, Status> {
        let request = request.into_inner();
        let legacy = request == pb::Request::default();
        let mut query = Query::parse(request)?;
        if query.after.is_none() && query.consumer.is_none() {
            // Upstream's `get` drains a shared queue; we drain the shared consumer `default`,
            // and a legacy client is told about trimmed events rather than refused.
            query.consumer = Some(DEFAULT_CONSUMER.to_string());
            if legacy {
                query.policy = TrimPolicy::Report;
            }
        }
        let sub = open(&self.app, &query, query.start(&self.app)?, false)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            let consumer = query.consumer;
            if let Err(status) = pump_get(&app, sub, &tx, consumer.as_deref()).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn sub(
        &self,
        request: Request<Streaming<pb::Request>>,
    ) -> Result<Response<ResponseStream>, Status> {
        // "Live" means from the moment the stream opened, even though the first request message
        // (which may carry a cursor) can arrive later: legacy clients send their first poll only
        // after a timeout, and must not miss what happened meanwhile.
        let opened_at = self.app.outputs.head();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            if let Err(status) = run_sub(&app, inbound, &tx, opened_at).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Tx = mpsc::Sender<Result<pb::Response, Status>>;

async fn pump_get(
    app: &App,
    mut sub: Subscription<OutputEvent>,
    tx: &Tx,
    consumer: Option<&str>,
) -> Result<(), Status> {
    let mut since_ack = 0u64;
    loop {
        let item = tokio::select! {
            item = sub.next() => item?,
            _ = app.shutdown.cancelled() => None,
        };
        let Some(item) = item else { break };
        if tx.send(Ok(to_response(item, &app.hostname))).await.is_err() {
            break;
        }
        since_ack += 1;
        if let (Some(name), true) = (consumer, since_ack >= AUTO_ACK_EVERY) {
            app.store.consumers().advance(LOG, name, sub.cursor())?;
            since_ack = 0;
        }
    }
    if let Some(name) = consumer {
        app.store.consumers().advance(LOG, name, sub.cursor())?;
    }
    Ok(())
}

async fn run_sub(
    app: &App,
    mut inbound: Streaming<pb::Request>,
    tx: &Tx,
    opened_at: u64,
) -> Result<(), Status> {
    let first = tokio::select! {
        first = inbound.next() => first.transpose()?,
        _ = app.shutdown.cancelled() => return Ok(()),
        _ = tx.closed() => return Ok(()),
    };
    // A client that half-closes without a message gets the legacy behaviour.
    let mut inbound_open = first.is_some();
    let query = Query::parse(first.unwrap_or_default())?;
    let start = match query.start(app)? {
        Start::Live => Start::After(opened_at),
        other => other,
    };
    let mut sub = open(app, &query, start, true)?;
    let consumer = query.consumer.clone();
    if query.ack > 0 {
        ack(app, consumer.as_deref(), query.ack)?;
    }
    loop {
        tokio::select! {
            item = sub.next() => {
                let Some(item) = item? else { break };
                if tx.send(Ok(to_response(item, &app.hostname))).await.is_err() {
                    break;
                }
            }
            message = inbound.next(), if inbound_open => match message {
                // Polls (empty messages) are ignored; only acks mean something after the first.
                Some(Ok(message)) if message.ack > 0 => ack(app, consumer.as_deref(), message.ack)?,
                Some(Ok(_)) => {}
                Some(Err(status)) => return Err(status),
                None => inbound_open = false,
            },
            _ = app.shutdown.cancelled() => break,
            _ = tx.closed() => break,
        }
    }
    Ok(())
}

fn ack(app: &App, consumer: Option<&str>, seq: u64) -> Result<(), Status> {
    let Some(name) = consumer else {
        return Err(Status::invalid_argument(
            "ack needs a consumer name in the stream's first request",
        ));
    };
    let newest = app.outputs.head();
    if seq > newest {
        return Err(Status::invalid_argument(format!(
            "ack {seq} is beyond the newest seq {newest} of the outputs log"
        )));
    }
    app.store.consumers().advance(LOG, name, seq)?;
    Ok(())
}

/// Maps a source name to upstream's enum: any name it does not know is a plugin's.
pub fn source_enum(source: &str) -> schema::Source {
    match source {
        "syscall" => schema::Source::Syscall,
        "k8s_audit" => schema::Source::K8sAudit,
        "internal" => schema::Source::Internal,
        _ => schema::Source::Plugin,
    }
}

fn timestamp(time_ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time_ns.div_euclid(1_000_000_000),
        nanos: time_ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn to_response(item: Item<OutputEvent>, hostname: &str) -> pb::Response {
    match item {
        Item::Record { seq, record } => event_response(seq, record),
        Item::Lost { count, next_seq } => lost_response(count, next_seq, hostname),
    }
}

#[allow(deprecated)] // source_deprecated must stay filled for old clients
pub fn event_response(seq: u64, ev: OutputEvent) -> pb::Response {
    pb::Response {
        time: Some(timestamp(ev.time_ns)),
        priority: ev.priority as i32,
        source_deprecated: source_enum(&ev.source) as i32,
        rule: ev.rule,
        output: ev.output,
        output_fields: ev
            .output_fields
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        hostname: ev.hostname,
        tags: ev.tags,
        id: uuid::Uuid::from_bytes(ev.id).to_string(),
        source: ev.source,
        seq,
        lost: 0,
        rules_revision: ev.rules_revision,
    }
}

/// The explicit loss notice: an internal alert old clients can display, with `lost` set.
#[allow(deprecated)]
fn lost_response(count: u64, next_seq: u64, hostname: &str) -> pb::Response {
    let now = chrono::Utc::now();
    let fields: BTreeMap<String, String> = [
        ("n_lost".to_string(), count.to_string()),
        ("next_seq".to_string(), next_seq.to_string()),
        ("log".to_string(), LOG.to_string()),
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
    }
}
