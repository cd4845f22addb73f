//! The accepting task: one per listener, taking a place under the caps before each accept,
//! backing off when the process is out of descriptors or memory, and registering each
//! connection it hands to the transport.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{Accept, Conn, ConnLimits, Counted, Peer, Registry, FIRST_BACKOFF, MAX_BACKOFF};

/// Failures that say the process (or system) is out of a resource: waiting helps, retrying
/// at once does not.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// Accepts on `listener` (named `name` in the log) within `limits`.
pub fn incoming<L: Accept>(
    listener: L,
    name: String,
    limits: ConnLimits,
) -> ReceiverStream<io::Result<Counted<L::Conn>>> {
    let (tx, rx) = mpsc::channel(16);
    let limits = ConnLimits {
        max_connections: limits.max_connections.max(1),
        max_per_peer: limits.max_per_peer.max(1),
        ..limits
    };
    tokio::spawn(accept_loop(listener, name, limits, tx));
    ReceiverStream::new(rx)
}

/// A permit under the listener's cap, closing the oldest idle connection to free one.
async fn place(
    slots: &Arc<Semaphore>,
    registry: &Registry,
    name: &str,
    limits: &ConnLimits,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = slots.clone().try_acquire_owned() {
        return Some(p);
    }
    if registry.evict_idle(None) {
        if registry.should_log() {
            tracing::warn!(
                listener = %name,
                max_connections = limits.max_connections,
                "connection cap reached; closing the connection idle the longest to make room"
            );
        }
    } else {
        tracing::warn!(
            listener = %name,
            max_connections = limits.max_connections,
            "connection cap reached and every connection is busy; new connections wait until one closes"
        );
    }
    slots.clone().acquire_owned().await.ok()
}

/// Accepting while the process is out of descriptors or memory: wait, doubling up to
/// [`MAX_BACKOFF`], and say so once per episode.
struct Backoff {
    delay: Duration,
    starved: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: FIRST_BACKOFF,
            starved: false,
        }
    }
}

impl Backoff {
    async fn starved(&mut self, name: &str, e: &io::Error) {
        if !self.starved {
            tracing::error!(
                listener = %name,
                error = %e,
                "cannot accept connections (out of descriptors or memory); backing off"
            );
            self.starved = true;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }

    fn accepted(&mut self, name: &str) {
        if self.starved {
            tracing::info!(listener = %name, "accepting connections again");
            self.starved = false;
        }
        self.delay = FIRST_BACKOFF;
    }
}

async fn accept_loop<L: Accept>(
    listener: L,
    name: String,
    limits: ConnLimits,
    tx: mpsc::Sender<io::Result<Counted<L::Conn>>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let epoch = Instant::now();
    let mut backoff = Backoff::default();
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let permit = tokio::select! {
            p = place(&slots, &registry, &name, &limits) => match p {
                Some(p) => p,
                None => return,
            },
            _ = tx.closed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tx.closed() => return,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) if out_of_resources(&e) => {
                backoff.starved(&name, &e).await;
                continue;
            }
            // A connection that failed before we took it (reset, aborted): nothing to wait for.
            Err(e) => {
                tracing::debug!(listener = %name, error = %e, "accept failed");
                continue;
            }
        };
        backoff.accepted(&name);
        let peer = L::peer(&stream);
        if registry.open_from(peer) >= limits.max_per_peer && !registry.evict_idle(Some(peer)) {
            if refused_logged.elapsed() >= Duration::from_secs(10) {
                log_peer_refused(&name, peer, limits.max_per_peer);
                refused_logged = Instant::now();
            }
            continue;
        }
        let counted = register(stream, peer, permit, &registry, epoch, limits);
        if tx.send(Ok(counted)).await.is_err() {
            return;
        }
    }
}

fn log_peer_refused(name: &str, peer: Peer, max_per_peer: usize) {
    tracing::warn!(
        listener = %name,
        ?peer,
        max_per_peer,
        "a peer reached limits.max_connections_per_peer with every connection busy; refusing its new connections"
    );
}

fn register<S>(
    inner: S,
    peer: Peer,
    permit: OwnedSemaphorePermit,
    registry: &Arc<Registry>,
    epoch: Instant,
    limits: ConnLimits,
) -> Counted<S> {
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    let close = CancellationToken::new();
    let conn = Arc::new(Conn {
        id,
        peer,
        active: AtomicUsize::new(0),
        idle_since_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
        epoch,
        opened: Instant::now(),
        close: close.clone(),
    });
    registry.lock().insert(id, conn.clone());
    let mut counted = Counted {
        inner,
        conn,
        registry: registry.clone(),
        limits,
        got_bytes: false,
        timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        closed: Box::pin(close.cancelled_owned()),
        _permit: permit,
    };
    let first = counted.next_deadline();
    counted.timer.as_mut().reset(first);
    counted
}
