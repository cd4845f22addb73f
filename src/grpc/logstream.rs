//! One resumable-log stream implementation serving both `falco.outputs` and `falco.drops`: cursor
//! and consumer resolution, legacy behaviour, acknowledgements, and the pump that turns feed items
//! into responses on a bounded channel. Each log only says how its wire types map ([`WireLog`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Response, Status, Streaming};

use crate::feed::cursor::{self, Cursor, CursorRequest};
use crate::feed::{Feed, FeedError, Item, Record, Start, Subscription, TrimPolicy};
use crate::services::App;

/// Responses the pump hands over at once: a run of records already read goes to the client's
/// stream as one message on the channel, not one each, which saves a wake-up per record.
const BATCH: usize = 16;
/// Batches buffered per stream before the pump waits for the client: with the batch being
/// filled and the one being sent, at most 96 responses per stream.
const STREAM_BUFFER: usize = 4;
/// `get` with a consumer stores its position at least this often (in events).
const AUTO_ACK_EVERY: u64 = 256;
pub use crate::feed::cursor::DEFAULT_CONSUMER;

pub type Filter<R> = Box<dyn Fn(&R) -> bool + Send + Sync>;

/// How one log's wire types map onto the generic stream.
pub trait WireLog: Send + Sync + 'static {
    type Record: Record;
    /// What a stream reads from the log: records, or their stored payloads.
    type View: Send + 'static;
    type Request: Default + PartialEq + Send + 'static;
    type Response: Send + 'static;
    /// The log's name (consumer positions are kept per log).
    const LOG: &'static str;

    fn feed(app: &App) -> &Feed<Self::Record>;
    fn subscribe(
        feed: &Feed<Self::Record>,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
    ) -> Result<Subscription<Self::Record, Self::View>, FeedError>;
    fn cursor(req: &Self::Request) -> CursorRequest;
    /// The request's filters, validated; `None` when it has none.
    fn filter(req: Self::Request) -> Result<Option<Filter<Self::View>>, Status>;
    fn record(seq: u64, record: Self::View) -> Self::Response;
    fn lost(count: u64, next_seq: u64, app: &App) -> Self::Response;
    /// Called when a stream lost records to trimming (after its notice was sent).
    fn on_lost(_app: &App, _count: u64, _consumer: Option<&str>) {}
}

/// A validated request: its cursor and its filter.
struct Query<L: WireLog> {
    cursor: Cursor,
    filter: Option<Filter<L::View>>,
}

impl<L: WireLog> Query<L> {
    fn parse(req: L::Request) -> Result<Self, Status> {
        Ok(Query {
            cursor: Cursor::parse(L::cursor(&req))?,
            filter: L::filter(req)?,
        })
    }

    fn open(
        &mut self,
        app: &App,
        follow: bool,
        live: Option<u64>,
    ) -> Result<Subscription<L::Record, L::View>, Status> {
        let feed = L::feed(app);
        let start = match (
            self.cursor.since,
            self.cursor.start(app.logs.consumers(), feed.name())?,
        ) {
            (Some(since), _) => Start::After(feed.seq_before(since)),
            (None, Start::Live) => Start::After(live.unwrap_or_else(|| feed.head())),
            (None, other) => other,
        };
        let mut sub = L::subscribe(feed, start, self.cursor.policy, follow)?;
        let now = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
        if let Some(until) = self.cursor.until.filter(|until| *until <= now) {
            sub = sub.ending_at(feed.last_seq_until(until));
        }
        Ok(match self.filter.take() {
            Some(filter) => sub.with_filter(filter),
            None => sub,
        })
    }
}

type Batch<T> = Vec<Result<T, Status>>;
type Tx<T> = mpsc::Sender<Batch<T>>;

/// The responses of one stream, handed over by its pump in batches.
pub struct ResponseStream<T> {
    rx: mpsc::Receiver<Batch<T>>,
    batch: std::vec::IntoIter<Result<T, Status>>,
}

impl<T> ResponseStream<T> {
    fn new(rx: mpsc::Receiver<Batch<T>>) -> Self {
        ResponseStream {
            rx,
            batch: Vec::new().into_iter(),
        }
    }
}

impl<T: Unpin> Stream for ResponseStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.batch.next() {
                return Poll::Ready(Some(item));
            }
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(batch) => this.batch = batch.into_iter(),
                None => return Poll::Ready(None),
            }
        }
    }
}

fn to_response<L: WireLog>(item: Item<L::View>, app: &App) -> L::Response {
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
    let mut query = Query::<L>::parse(request)?;
    query.cursor = query.cursor.for_get(legacy);
    let sub = query.open(app, false, None)?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let app = app.clone();
    tokio::spawn(async move {
        let consumer = query.cursor.consumer;
        if let Err(status) = pump_get::<L>(&app, sub, &tx, consumer.as_deref()).await {
            let _ = tx.send(vec![Err(status)]).await;
        }
    });
    Ok(Response::new(ResponseStream::new(rx)))
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
            let _ = tx.send(vec![Err(status)]).await;
        }
    });
    Ok(Response::new(ResponseStream::new(rx)))
}

/// Sends `first`, then every item `sub` has read already, in batches of up to [`BATCH`]; how
/// many were sent, or `None` once the client has gone. Sending a read chunk in one run saves
/// waiting on the stream's other events (acks, shutdown) between records.
async fn forward_run<L: WireLog>(
    app: &App,
    tx: &Tx<L::Response>,
    sub: &mut Subscription<L::Record, L::View>,
    first: Item<L::View>,
    consumer: Option<&str>,
) -> Option<u64> {
    let mut sent = 0;
    let mut next = Some(first);
    while let Some(item) = next {
        let mut batch = Vec::with_capacity(BATCH);
        let mut lost = 0;
        let mut item = Some(item);
        while let Some(it) = item {
            if let Item::Lost { count, .. } = &it {
                lost += *count;
            }
            batch.push(Ok(to_response::<L>(it, app)));
            item = if batch.len() < BATCH {
                sub.next_read()
            } else {
                None
            };
        }
        sent += batch.len() as u64;
        if tx.send(batch).await.is_err() {
            return None;
        }
        if lost > 0 {
            L::on_lost(app, lost, consumer);
        }
        next = sub.next_read();
    }
    Some(sent)
}

async fn pump_get<L: WireLog>(
    app: &App,
    mut sub: Subscription<L::Record, L::View>,
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
        let Some(sent) = forward_run::<L>(app, tx, &mut sub, item, consumer).await else {
            break;
        };
        since_ack += sent;
        if let (Some(name), true) = (consumer, since_ack >= AUTO_ACK_EVERY) {
            app.logs.consumers().advance(L::LOG, name, sub.cursor())?;
            since_ack = 0;
        }
    }
    if let Some(name) = consumer {
        app.logs.consumers().advance(L::LOG, name, sub.cursor())?;
    }
    Ok(())
}

/// A `sub` stream once its first request message has configured it.
struct Opened<L: WireLog> {
    sub: Subscription<L::Record, L::View>,
    consumer: Option<String>,
    /// The client may still send polls and acks.
    inbound_open: bool,
}

/// Waits for the first request message (a client that half-closes without one gets the legacy
/// behaviour) and opens the subscription it asks for; `None` if the stream ended first.
async fn open_sub<L: WireLog>(
    app: &App,
    inbound: &mut Streaming<L::Request>,
    tx: &Tx<L::Response>,
    opened_at: u64,
) -> Result<Option<Opened<L>>, Status>
where
    L::Request: prost::Message,
{
    let first = tokio::select! {
        first = inbound.next() => first.transpose()?,
        _ = app.shutdown.cancelled() => return Ok(None),
        _ = tx.closed() => return Ok(None),
    };
    let inbound_open = first.is_some();
    let mut query = Query::<L>::parse(first.unwrap_or_default())?;
    let sub = query.open(app, true, Some(opened_at))?;
    let consumer = query.cursor.consumer.clone();
    if query.cursor.ack > 0 {
        ack::<L>(app, consumer.as_deref(), query.cursor.ack)?;
    }
    Ok(Some(Opened {
        sub,
        consumer,
        inbound_open,
    }))
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
    let Some(mut s) = open_sub::<L>(app, &mut inbound, tx, opened_at).await? else {
        return Ok(());
    };
    loop {
        tokio::select! {
            item = s.sub.next() => {
                let Some(item) = item? else { break };
                let consumer = s.consumer.as_deref();
                if forward_run::<L>(app, tx, &mut s.sub, item, consumer).await.is_none() {
                    break;
                }
            }
            // Polls (empty messages) are ignored; only acks mean something after the first.
            message = inbound.next(), if s.inbound_open => match message {
                Some(Ok(m)) if L::cursor(&m).ack > 0 => {
                    ack::<L>(app, s.consumer.as_deref(), L::cursor(&m).ack)?
                }
                Some(Ok(_)) => {}
                Some(Err(status)) => return Err(status),
                None => s.inbound_open = false,
            },
            _ = app.shutdown.cancelled() => break,
            _ = tx.closed() => break,
        }
    }
    Ok(())
}

fn ack<L: WireLog>(app: &App, consumer: Option<&str>, seq: u64) -> Result<(), Status> {
    Ok(cursor::acknowledge(
        L::feed(app),
        app.logs.consumers(),
        consumer,
        seq,
    )?)
}
