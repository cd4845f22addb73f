//! The live side of a ring log: a group-commit writer that makes appends durable before anyone can
//! see them, a published head (the newest durable seq), and resumable subscriptions that read the
//! log at their own pace (see [`Subscription`]).
//!
//! Visibility rule: a record becomes visible to readers only after the batch holding it has been
//! flushed, so a sequence number a client has seen is never reused, even after a crash.

pub mod cursor;
mod subscription;

use std::ops::Range;
use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, oneshot, watch};

pub use subscription::{Item, Start, Subscription, TrimPolicy};

use crate::store::{Framed, LogRecord, RingLog, Store, StoreError};

/// How many append requests one commit may gather.
const MAX_REQUESTS_PER_COMMIT: usize = 1024;

/// Errors a feed reports to its callers; the services map them to statuses.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "position {requested} has been trimmed from the {log} log; the oldest retained seq is \
         {oldest} (ask to start from the oldest to resume there and be told how many events were lost)"
    )]
    Trimmed {
        log: &'static str,
        requested: u64,
        oldest: u64,
    },
    #[error("position {requested} is beyond the newest seq {newest} of the {log} log")]
    Ahead {
        log: &'static str,
        requested: u64,
        newest: u64,
    },
    #[error("the {0} log is closed (the server is shutting down)")]
    Closed(&'static str),
    #[error("appending to the {log} log failed: {message}")]
    Append { log: &'static str, message: String },
    #[error("reading the {log} log failed: {message}")]
    Read { log: &'static str, message: String },
    #[error("consumer name '{0}' must be 1-128 characters of A-Z a-z 0-9 . _ : -")]
    InvalidConsumer(String),
    #[error("ack needs a consumer name in the stream's first request")]
    AckWithoutConsumer,
    #[error("after_seq and start_time both say where the stream starts: send one of them")]
    SeqAndTime,
    #[error("{0} is not a time falco-api can address (before 1970)")]
    BadTime(&'static str),
    #[error("end_time is before start_time")]
    EndBeforeStart,
    #[error("ack {seq} is beyond the newest seq {newest} of the {log} log")]
    AckBeyondHead {
        log: &'static str,
        seq: u64,
        newest: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record type a feed can carry.
pub trait Record: LogRecord {}
impl<T: LogRecord> Record for T {}

type Reply = oneshot::Sender<Result<Range<u64>, FeedError>>;

struct Append<T> {
    records: Vec<T>,
    marks: Vec<(String, u64)>,
    reply: Reply,
}

/// What the commit thread is asked to do.
enum Msg<T> {
    Append(Append<T>),
    /// Commit what was asked before, then end.
    Close(oneshot::Sender<()>),
}

/// Told of every durable commit: the records, the seq of the last, and how long the commit took.
/// The records are the observer's (the commit thread no longer needs them).
pub type Observer<T> = Box<dyn Fn(Vec<T>, u64, std::time::Duration) + Send + Sync>;

pub(crate) struct Shared<T> {
    pub(crate) name: &'static str,
    /// Open subscriptions.
    pub(crate) live: std::sync::atomic::AtomicUsize,
    observer: Option<Observer<T>>,
    pub(crate) store: Arc<Store>,
    pub(crate) log: fn(&Store) -> &RingLog<T>,
    pub(crate) head: watch::Sender<u64>,
    thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

impl<T: Record> Shared<T> {
    pub(crate) fn ring(&self) -> &RingLog<T> {
        (self.log)(&self.store)
    }
}

/// A cheap, cloneable handle on one log.
pub struct Feed<T> {
    shared: Arc<Shared<T>>,
    appends: mpsc::Sender<Msg<T>>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            shared: self.shared.clone(),
            appends: self.appends.clone(),
        }
    }
}

impl<T: Record> Feed<T> {
    /// Starts the group-commit writer thread for the log `log` of `store`. The thread ends at
    /// [`Feed::close`], or when every handle is dropped, after committing what it was given.
    pub fn start(name: &'static str, store: Arc<Store>, log: fn(&Store) -> &RingLog<T>) -> Self {
        Self::start_observed(name, store, log, None)
    }

    /// [`Feed::start`], telling `observer` of every commit before its records become visible.
    pub fn start_observed(
        name: &'static str,
        store: Arc<Store>,
        log: fn(&Store) -> &RingLog<T>,
        observer: Option<Observer<T>>,
    ) -> Self {
        let newest = log(&store).bounds().newest;
        let (head, _) = watch::channel(newest);
        let shared = Arc::new(Shared {
            name,
            live: std::sync::atomic::AtomicUsize::new(0),
            observer,
            store,
            log,
            head,
            thread: std::sync::Mutex::new(None),
        });
        let (appends, rx) = mpsc::channel(MAX_REQUESTS_PER_COMMIT);
        let writer = shared.clone();
        let handle = thread::Builder::new()
            .name(format!("{name}-commit"))
            .spawn(move || commit_loop(writer, rx))
            .expect("cannot spawn the commit thread");
        *shared
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
        Feed { shared, appends }
    }

    /// Commits every append asked for so far, stops the writer thread and waits for it; later
    /// appends fail with [`FeedError::Closed`].
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.appends.send(Msg::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// The newest durable (visible) seq.
    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Subscriptions open now.
    pub fn subscribers(&self) -> usize {
        self.shared.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The oldest retained seq (the head + 1 when the log is empty).
    pub fn oldest(&self) -> u64 {
        self.shared.ring().bounds().oldest
    }

    /// Appends `records`; returns their sequence numbers once they are durable and visible.
    pub async fn append(&self, records: Vec<T>) -> Result<Range<u64>, FeedError> {
        self.append_marked(records, Vec::new()).await
    }

    /// [`Feed::append`], setting `marks` in the same durable transaction (see
    /// [`RingLog::append_marked`]).
    pub async fn append_marked(
        &self,
        records: Vec<T>,
        marks: Vec<(String, u64)>,
    ) -> Result<Range<u64>, FeedError> {
        let (reply, rx) = oneshot::channel();
        self.appends
            .send(Msg::Append(Append {
                records,
                marks,
                reply,
            }))
            .await
            .map_err(|_| FeedError::Closed(self.shared.name))?;
        rx.await.map_err(|_| FeedError::Closed(self.shared.name))?
    }

    /// [`Feed::append`] for synchronous callers (worker threads); never call it on the runtime.
    pub fn append_blocking(&self, records: Vec<T>) -> Result<Range<u64>, FeedError> {
        let (reply, rx) = oneshot::channel();
        self.appends
            .blocking_send(Msg::Append(Append {
                records,
                marks: Vec::new(),
                reply,
            }))
            .map_err(|_| FeedError::Closed(self.shared.name))?;
        rx.blocking_recv()
            .map_err(|_| FeedError::Closed(self.shared.name))?
    }

    /// The last seq before the first record stored at or after `time_ns` (for a time start),
    /// never past the published head.
    pub fn seq_before(&self, time_ns: u64) -> u64 {
        (self.shared.ring().first_seq_since(time_ns) - 1).min(self.head())
    }

    /// The last seq stored at or before `time_ns`.
    pub fn last_seq_until(&self, time_ns: u64) -> u64 {
        self.shared.ring().last_seq_until(time_ns)
    }

    /// A mark set with [`Feed::append_marked`].
    pub fn mark(&self, key: &str) -> Result<Option<u64>, FeedError> {
        Ok(self.shared.ring().mark(key)?)
    }

    /// Opens a subscription. `follow: false` ends it at the head as of now.
    pub fn subscribe(
        &self,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
    ) -> Result<Subscription<T>, FeedError> {
        Subscription::open(
            self.shared.clone(),
            start,
            policy,
            follow,
            RingLog::read_chunk,
        )
    }
}

impl<T: Framed> Feed<T> {
    /// [`Feed::subscribe`], delivering each record's stored payload as it is (see
    /// [`RingLog::read_frames`]).
    pub fn subscribe_frames(
        &self,
        start: Start,
        policy: TrimPolicy,
        follow: bool,
    ) -> Result<Subscription<T, bytes::Bytes>, FeedError> {
        Subscription::open(
            self.shared.clone(),
            start,
            policy,
            follow,
            RingLog::read_frames,
        )
    }
}

fn commit_loop<T: Record>(shared: Arc<Shared<T>>, mut rx: mpsc::Receiver<Msg<T>>) {
    let mut pending = Vec::new();
    let mut closing = None;
    while let Some(first) = rx.blocking_recv() {
        match first {
            Msg::Append(a) => pending.push(a),
            Msg::Close(done) => closing = Some(done),
        }
        while closing.is_none() && pending.len() < MAX_REQUESTS_PER_COMMIT {
            match rx.try_recv() {
                Ok(Msg::Append(more)) => pending.push(more),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if pending.is_empty() {
            if let Some(done) = closing.take() {
                let _ = done.send(());
                return;
            }
            continue;
        }
        commit_group(&shared, &mut pending);
        if let Some(done) = closing.take() {
            let _ = done.send(());
            return;
        }
    }
}

/// Appends every gathered request in one durable write transaction (group commit) and answers
/// each with its range, or all with the error.
fn commit_group<T: Record>(shared: &Shared<T>, pending: &mut Vec<Append<T>>) {
    let counts: Vec<usize> = pending.iter().map(|a| a.records.len()).collect();
    let records: Vec<T> = pending
        .iter_mut()
        .flat_map(|a| a.records.drain(..))
        .collect();
    let marks: Vec<(String, u64)> = pending.iter_mut().flat_map(|a| a.marks.drain(..)).collect();
    // One durable write transaction for every append gathered (group commit).
    let began = std::time::Instant::now();
    let result = shared.ring().append_marked(&records, &marks);
    match result {
        Ok(range) => {
            if let Some(observe) = &shared.observer {
                observe(records, range.end - 1, began.elapsed());
            }
            shared.head.send_replace(range.end - 1);
            let mut next = range.start;
            for (append, n) in pending.drain(..).zip(counts) {
                let _ = append.reply.send(Ok(next..next + n as u64));
                next += n as u64;
            }
        }
        Err(e) => fail_all(shared, pending, e),
    }
}

/// Answers every gathered request with the append's error; a full disk keeps its kind.
fn fail_all<T: Record>(shared: &Shared<T>, pending: &mut Vec<Append<T>>, e: StoreError) {
    tracing::error!(log = shared.name, error = %e, "append failed");
    let message = e.to_string();
    for append in pending.drain(..) {
        let error = match &e {
            StoreError::NoSpace(m) => FeedError::Store(StoreError::NoSpace(m.clone())),
            _ => FeedError::Append {
                log: shared.name,
                message: message.clone(),
            },
        };
        let _ = append.reply.send(Err(error));
    }
}
