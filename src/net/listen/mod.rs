//! Accepting connections as a bounded resource, for gRPC and HTTP alike.
//!
//! Each listener accepts on a task of its own and keeps a registry of its open connections:
//! - at most `max_connections` are open at once, and at most `max_per_peer` from one peer (a uid
//!   on the Unix socket, an IP address over TCP);
//! - at either cap the oldest *idle* connection (one with no request or stream in flight) is
//!   closed to make room, so connections that send nothing can never lock out a real client; when
//!   none is idle, the listener waits (its cap) or refuses the newcomer (a peer's cap);
//! - a connection that sends no byte within `first_byte_timeout`, or stays idle for
//!   `idle_timeout`, is closed by its own reader (an SSE or gRPC stream that is open is not idle);
//! - when accepting fails for lack of descriptors or memory the task backs off (10 ms, doubling to
//!   1 s) and logs once per episode, instead of retrying in a hot loop.
//!
//! The transports mark what is in flight with [`Conn::begin`]: the gRPC layer finds the
//! connection in the request's connect info ([`Tracked`]), the HTTP server in its extensions.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

mod accept;

pub use accept::incoming;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How many connections a listener holds, from whom, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections on this listener.
    pub max_connections: usize,
    /// Open connections from one peer (uid or IP address).
    pub max_per_peer: usize,
    /// A connection must send its first byte within this.
    pub first_byte_timeout: Duration,
    /// A connection with nothing in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            max_per_peer: 256,
            first_byte_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Who is on the other end, for the per-peer cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    Uid(u32),
    Ip(IpAddr),
    Unknown,
}

/// A listener tonic can take connections from.
pub trait Accept: Send + 'static {
    type Conn: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<Self::Conn>> + Send;
    fn peer(conn: &Self::Conn) -> Peer;
}

/// Socket connections go through the `:authority` rewriter (see `authority.rs`).
impl Accept for tokio::net::UnixListener {
    type Conn = super::authority::AuthorityFix<tokio::net::UnixStream>;
    async fn accept(&self) -> io::Result<Self::Conn> {
        tokio::net::UnixListener::accept(self)
            .await
            .map(|(s, _)| super::authority::AuthorityFix::new(s))
    }
    fn peer(conn: &Self::Conn) -> Peer {
        conn.connect_info()
            .peer_cred
            .map_or(Peer::Unknown, |c| Peer::Uid(c.uid()))
    }
}

impl Accept for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Conn> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
    fn peer(conn: &Self::Conn) -> Peer {
        conn.peer_addr().map_or(Peer::Unknown, |a| Peer::Ip(a.ip()))
    }
}

/// One open connection's shared state: what is in flight, since when it is idle, and the signal
/// that closes it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    peer: Peer,
    /// Requests or streams in flight.
    active: AtomicUsize,
    /// Milliseconds since the listener's epoch when it last became idle (or opened).
    idle_since_ms: AtomicU64,
    epoch: Instant,
    opened: Instant,
    close: CancellationToken,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Marks a request (or stream) in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// Closes the connection now, busy or not (a reader that stays behind): its next read or
    /// pending write fails.
    pub fn close(&self) {
        self.close.cancel();
    }

    fn idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// When this connection, idle now, may be closed for idleness.
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        self.epoch
            + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
            + idle_timeout
    }
}

/// A request or stream in flight on a connection; dropping it ends it.
#[derive(Debug)]
pub struct Active(Arc<Conn>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection information tonic attaches to requests, with the connection itself.
#[derive(Clone, Debug)]
pub struct Tracked<I> {
    pub info: I,
    pub conn: Arc<Conn>,
}

/// One listener's open connections.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// When eviction was last logged (it is logged once per 10 s at most).
    logged: Mutex<Option<std::time::Instant>>,
}

impl Registry {
    fn should_log(&self) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let due = logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            *logged = Some(std::time::Instant::now());
        }
        due
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_from(&self, peer: Peer) -> usize {
        self.lock()
            .values()
            .filter(|c| c.peer == peer && !c.close.is_cancelled())
            .count()
    }

    /// Closes the connection idle the longest (of `peer`, or of any peer); false if none is.
    fn evict_idle(&self, peer: Option<Peer>) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|c| peer.is_none_or(|p| c.peer == p))
            .filter(|c| c.idle() && !c.close.is_cancelled())
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Acquire));
        match oldest {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// A connection holding its place under the listener's caps until it is dropped, and closing
/// itself when it overstays (see the module's text).
pub struct Counted<S> {
    inner: S,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    limits: ConnLimits,
    got_bytes: bool,
    timer: Pin<Box<Sleep>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    _permit: OwnedSemaphorePermit,
}

impl<S> Counted<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// This connection's state, for marking requests in flight.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The next moment a timeout may apply.
    fn next_deadline(&self) -> Instant {
        let idle = self.conn.idle_deadline(self.limits.idle_timeout);
        if self.got_bytes {
            idle
        } else {
            idle.min(self.conn.opened + self.limits.first_byte_timeout)
        }
    }

    /// Whether a timeout has passed (checked when the timer fires).
    fn overstayed(&self, now: Instant) -> Option<&'static str> {
        if !self.got_bytes && now >= self.conn.opened + self.limits.first_byte_timeout {
            return Some("sent nothing within limits.first_byte_timeout_secs");
        }
        if self.conn.idle() && now >= self.conn.idle_deadline(self.limits.idle_timeout) {
            return Some("idle for limits.idle_timeout_secs");
        }
        None
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.conn.id);
    }
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = Tracked<S::ConnectInfo>;
    fn connect_info(&self) -> Self::ConnectInfo {
        Tracked {
            info: self.inner.connect_info(),
            conn: self.conn.clone(),
        }
    }
}

fn closing(why: &'static str) -> Poll<io::Result<()>> {
    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.close.is_cancelled() {
            return closing("closed to make room for another connection");
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.got_bytes = true;
                }
                return Poll::Ready(result);
            }
            Poll::Pending => {}
        }
        if this.closed.as_mut().poll(cx).is_ready() {
            return closing("closed to make room for another connection");
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some(why) = this.overstayed(Instant::now()) {
                tracing::debug!(peer = ?this.conn.peer, why, "closing a connection");
                return closing(why);
            }
            let next = this
                .next_deadline()
                .max(Instant::now() + Duration::from_millis(50));
            this.timer.as_mut().reset(next);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending if this.closed.as_mut().poll(cx).is_ready() => {
                closing("closed: the reader stayed behind").map(|r| r.map(|()| 0))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.closed.as_mut().poll(cx).is_ready() => {
                closing("closed: the reader stayed behind")
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending if this.closed.as_mut().poll(cx).is_ready() => {
                closing("closed: the reader stayed behind").map(|r| r.map(|()| 0))
            }
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request marked in flight until it ends or is dropped (a
/// streaming answer is not idle).
pub struct Held<B> {
    inner: B,
    _active: Active,
}

impl<B> Held<B> {
    pub fn new(inner: B, active: Active) -> Self {
        Held {
            inner,
            _active: active,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises this process's open-files soft limit to its hard limit, logging both. Returns the
/// limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let current = getrlimit(Resource::Nofile);
    let (soft, hard) = (current.current, current.maximum);
    if soft.is_some() && soft != hard {
        let wanted = rustix::process::Rlimit {
            current: hard,
            maximum: hard,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => tracing::info!(
                before = soft.unwrap_or(u64::MAX),
                now = hard.unwrap_or(u64::MAX),
                "raised the open-files limit to its hard limit"
            ),
            Err(e) => tracing::warn!(
                soft = soft.unwrap_or(u64::MAX),
                hard = hard.unwrap_or(u64::MAX),
                error = %e,
                "cannot raise the open-files limit"
            ),
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
