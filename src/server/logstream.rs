//! One resumable-log stream implementation serving both `falco.outputs` and `falco.drops`: cursor
//! and consumer resolution, legacy behaviour, acknowledgements, and the pump that turns feed items
//! into responses on a bounded channel. Each log only says how its wire types map ([`WireLog`]).

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Response, Status, Streaming};

use crate::app::App;
use crate::feed::{Feed, Item, Record, Start, Subscription, TrimPolicy};

/// Responses buffered per stream before the pump waits for the client.
const STREAM_BUFFER: usize = 64;
/// `get` with a consumer stores its position at least this often (in events).
const AUTO_ACK_EVERY: u64 = 256;
/// The consumer legacy `get` calls (an empty request) drain.
pub const DEFAULT_CONSUMER: &str = "default";

/// The cursor part every log request carries.
pub struct Cursor {
    pub after_seq: Option<u64>,
    pub consumer: String,
    pub ack: u64,
    pub from_oldest: bool,
}

pub type Filter<R> = Box<dyn Fn(&R) -> bool + Send + Sync>;

/// How one log's wire types map onto the generic stream.
pub trait WireLog: Send + Sync + 'static {
    type Record: Record;
    type Request: Default + PartialEq + Send + 'static;
    type Response: Send + 'static;
    /// The log's name (consumer positions are kept per log).
    const LOG: &'static str;

    fn feed(app: &App) -> &Feed<Self::Record>;
    fn cursor(req: &Self::Request) -> Cursor;
    /// The request's filters, validated; `None` when it has none.
    fn filter(req: Self::Request) -> Result<Option<Filter<Self::Record>>, Status>;
    fn record(seq: u64, record: Self::Record) -> Self::Response;
    fn lost(count: u64, next_seq: u64, app: &App) -> Self::Response;
    /// Called when a stream lost records to trimming (after its notice was sent).
    fn on_lost(_app: &App, _count: u64, _consumer: Option<&str>) {}
}

/// A validated request.
struct Query<R> {
    after: Option<u64>,
    consumer: Option<String>,
    ack: u64,
    policy: TrimPolicy,
    filter: Option<Filter<R>>,
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

impl<R: Record> Query<R> {
    fn parse<L: WireLog<Record = R>>(req: L::Request) -> Result<Self, Status> {
        let c = L::cursor(&req);
        let consumer = match c.consumer.as_str() {
            "" => None,
            name => Some(valid_consumer(name)?.to_string()),
        };
        if c.ack > 0 && consumer.is_none() {
            return Err(Status::invalid_argument("ack needs a consumer name"));
        }
        Ok(Query {
            after: c.after_seq,
            consumer,
            ack: c.ack,
            policy: if c.from_oldest {
                TrimPolicy::Report
            } else {
                TrimPolicy::Fail
            },
            filter: L::filter(req)?,
        })
    }

    /// Where a stream starts: an explicit position wins over a consumer's.
    fn start(&self, app: &App, log: &str) -> Result<Start, Status> {
        if let Some(after) = self.after {
            return Ok(Start::After(after));
        }
        match &self.consumer {
            Some(name) => Ok(match app.store.consumers().get(log, name)? {
                Some(acked) => Start::After(acked),
                None => Start::Oldest,
            }),
            None => Ok(Start::Live),
        }
    }

    fn open(
        &mut self,
        feed: &Feed<R>,
        start: Start,
        follow: bool,
    ) -> Result<Subscription<R>, Status> {
        let sub = feed.subscribe(start, self.policy, follow)?;
        Ok(match self.filter.take() {
            Some(filter) => sub.with_filter(filter),
            None => sub,
        })
    }
}

pub type ResponseStream<T> = ReceiverStream<Result<T, Status>>;
type Tx<T> = mpsc::Sender<Result<T, Status>>;

fn to_response<L: WireLog>(item: Item<L::Record>, app: &App) -> L::Response {
    match item {
        Item::Record { seq, record } => L::record(seq, record),
        Item::Lost { count, next_seq } => L::lost(count, next_seq, app),
    }
}

/// `get`: the retained records from the chosen position to the current head, then OK. An empty
/// request drains the shared consumer `default`.
pub fn get<L: WireLog>(
    app: &App,
    request: L::Request,
) -> Result<Response<ResponseStream<L::Response>>, Status> {
    let legacy = request == L::Request::default();
    let mut query = Query::parse::<L>(request)?;
    if query.after.is_none() && query.consumer.is_none() {
        // Upstream's `get` drains a shared queue; we drain the shared consumer `default`, and a
        // legacy client is told about trimmed records rather than refused.
        query.consumer = Some(DEFAULT_CONSUMER.to_string());
        if legacy {
            query.policy = TrimPolicy::Report;
        }
    }
    let start = query.start(app, L::LOG)?;
    let sub = query.open(L::feed(app), start, false)?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let app = app.clone();
    tokio::spawn(async move {
        let consumer = query.consumer;
        if let Err(status) = pump_get::<L>(&app, sub, &tx, consumer.as_deref()).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// `sub`: configured by the first request message, then follows live records; later messages
/// may carry acks and are otherwise ignored (legacy clients poll with empty messages).
pub fn sub<L: WireLog>(
    app: &App,
    inbound: Streaming<L::Request>,
) -> Result<Response<ResponseStream<L::Response>>, Status>
where
    L::Request: prost::Message,
{
    // "Live" means from the moment the stream opened, even though the first request message
    // (which may carry a cursor) can arrive later: legacy clients send their first poll only
    // after a timeout, and must not miss what happened meanwhile.
    let opened_at = L::feed(app).head();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(status) = run_sub::<L>(&app, inbound, &tx, opened_at).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

async fn pump_get<L: WireLog>(
    app: &App,
    mut sub: Subscription<L::Record>,
    tx: &Tx<L::Response>,
    consumer: Option<&str>,
) -> Result<(), Status> {
    let mut since_ack = 0u64;
    loop {
        let item = tokio::select! {
            item = sub.next() => item?,
            _ = app.shutdown.cancelled() => None,
        };
        let Some(item) = item else { break };
        let lost = match &item {
            Item::Lost { count, .. } => Some(*count),
            Item::Record { .. } => None,
        };
        if tx.send(Ok(to_response::<L>(item, app))).await.is_err() {
            break;
        }
        if let Some(count) = lost {
            L::on_lost(app, count, consumer);
        }
        since_ack += 1;
        if let (Some(name), true) = (consumer, since_ack >= AUTO_ACK_EVERY) {
            app.store.consumers().advance(L::LOG, name, sub.cursor())?;
            since_ack = 0;
        }
    }
    if let Some(name) = consumer {
        app.store.consumers().advance(L::LOG, name, sub.cursor())?;
    }
    Ok(())
}

async fn run_sub<L: WireLog>(
    app: &App,
    mut inbound: Streaming<L::Request>,
    tx: &Tx<L::Response>,
    opened_at: u64,
) -> Result<(), Status>
where
    L::Request: prost::Message,
{
    let first = tokio::select! {
        first = inbound.next() => first.transpose()?,
        _ = app.shutdown.cancelled() => return Ok(()),
        _ = tx.closed() => return Ok(()),
    };
    // A client that half-closes without a message gets the legacy behaviour.
    let mut inbound_open = first.is_some();
    let mut query = Query::parse::<L>(first.unwrap_or_default())?;
    let start = match query.start(app, L::LOG)? {
        Start::Live => Start::After(opened_at),
        other => other,
    };
    let mut sub = query.open(L::feed(app), start, true)?;
    let consumer = query.consumer.clone();
    if query.ack > 0 {
        ack::<L>(app, consumer.as_deref(), query.ack)?;
    }
    loop {
        tokio::select! {
            item = sub.next() => {
                let Some(item) = item? else { break };
                let lost = match &item {
                    Item::Lost { count, .. } => Some(*count),
                    Item::Record { .. } => None,
                };
                if tx.send(Ok(to_response::<L>(item, app))).await.is_err() {
                    break;
                }
                if let Some(count) = lost {
                    L::on_lost(app, count, consumer.as_deref());
                }
            }
            message = inbound.next(), if inbound_open => match message {
                // Polls (empty messages) are ignored; only acks mean something after the first.
                Some(Ok(message)) => {
                    let ack_to = L::cursor(&message).ack;
                    if ack_to > 0 {
                        ack::<L>(app, consumer.as_deref(), ack_to)?;
                    }
                }
                Some(Err(status)) => return Err(status),
                None => inbound_open = false,
            },
            _ = app.shutdown.cancelled() => break,
            _ = tx.closed() => break,
        }
    }
    Ok(())
}

fn ack<L: WireLog>(app: &App, consumer: Option<&str>, seq: u64) -> Result<(), Status> {
    let Some(name) = consumer else {
        return Err(Status::invalid_argument(
            "ack needs a consumer name in the stream's first request",
        ));
    };
    let newest = L::feed(app).head();
    if seq > newest {
        return Err(Status::invalid_argument(format!(
            "ack {seq} is beyond the newest seq {newest} of the {} log",
            L::LOG
        )));
    }
    app.store.consumers().advance(L::LOG, name, seq)?;
    Ok(())
}

pub fn timestamp(time_ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time_ns.div_euclid(1_000_000_000),
        nanos: time_ns.rem_euclid(1_000_000_000) as i32,
    }
}
