//! Accepting connections as a bounded resource. Each listener accepts on a task of its own: at
//! most `max_connections` connections are open at once (a permit travels with each connection and
//! is returned when it closes; at the cap the listener stops accepting until one closes, and says
//! so once), and when accepting fails for lack of descriptors or memory the task backs off (10 ms,
//! doubling to 1 s) and logs once per episode, instead of retrying in a hot loop.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listener tonic can take connections from.
pub trait Accept: Send + 'static {
    type Conn: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<Self::Conn>> + Send;
}

/// Socket connections go through the `:authority` rewriter (see `authority.rs`).
impl Accept for tokio::net::UnixListener {
    type Conn = super::authority::AuthorityFix<tokio::net::UnixStream>;
    async fn accept(&self) -> io::Result<Self::Conn> {
        tokio::net::UnixListener::accept(self)
            .await
            .map(|(s, _)| super::authority::AuthorityFix::new(s))
    }
}

impl Accept for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Conn> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// A connection holding its place under the listener's cap until it is dropped.
pub struct Counted<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Counted<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

super::wrap::write_through!(Counted);

/// Failures that say the process (or system) is out of a resource: waiting helps, retrying
/// at once does not.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// Accepts on `listener` (named `name` in the log) with at most `max_connections` open.
pub fn incoming<L: Accept>(
    listener: L,
    name: String,
    max_connections: usize,
) -> ReceiverStream<io::Result<Counted<L::Conn>>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(accept_loop(listener, name, max_connections.max(1), tx));
    ReceiverStream::new(rx)
}

async fn accept_loop<L: Accept>(
    listener: L,
    name: String,
    max_connections: usize,
    tx: mpsc::Sender<io::Result<Counted<L::Conn>>>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut backoff = FIRST_BACKOFF;
    let mut starved = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(
                    listener = %name,
                    max_connections,
                    "connection cap reached; new connections wait until one closes"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tx.closed() => return,
        };
        match accepted {
            Ok(conn) => {
                if starved {
                    tracing::info!(listener = %name, "accepting connections again");
                    starved = false;
                }
                backoff = FIRST_BACKOFF;
                let counted = Counted {
                    inner: conn,
                    _permit: permit,
                };
                if tx.send(Ok(counted)).await.is_err() {
                    return;
                }
            }
            Err(e) if out_of_resources(&e) => {
                if !starved {
                    tracing::error!(
                        listener = %name,
                        error = %e,
                        "cannot accept connections (out of descriptors or memory); backing off"
                    );
                    starved = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // A connection that failed before we took it (reset, aborted): nothing to wait for.
            Err(e) => tracing::debug!(listener = %name, error = %e, "accept failed"),
        }
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
