//! Marks each gRPC call in flight on its connection until its response body ends, so the
//! listener's idle timeout and its eviction at the caps never touch a connection that is serving
//! a stream.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

use super::listen::{Conn, Held, Tracked};

#[derive(Clone, Copy)]
pub struct ActiveLayer;

impl<S> tower::Layer<S> for ActiveLayer {
    type Service = ActiveCalls<S>;

    fn layer(&self, inner: S) -> ActiveCalls<S> {
        ActiveCalls { inner }
    }
}

#[derive(Clone)]
pub struct ActiveCalls<S> {
    inner: S,
}

/// The connection a request came on, whichever listener it was.
fn conn_of(ext: &http::Extensions) -> Option<Arc<Conn>> {
    if let Some(t) = ext.get::<Tracked<UdsConnectInfo>>() {
        return Some(t.conn.clone());
    }
    if let Some(t) = ext.get::<TlsConnectInfo<Tracked<TcpConnectInfo>>>() {
        return Some(t.get_ref().conn.clone());
    }
    ext.get::<Tracked<TcpConnectInfo>>().map(|t| t.conn.clone())
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for ActiveCalls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(active) = conn_of(req.extensions()).map(|c| c.begin()) else {
            return Box::pin(self.inner.call(req));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await?;
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                Body::new(Held::new(body, active)),
            ))
        })
    }
}
