//! Counts every finished gRPC call by method and status code
//! (`falco_api_grpc_requests_total`). A call's status is in the response headers when it fails
//! before any message, otherwise in the trailers at the end of its body, which is watched for
//! them; a body dropped before its trailers (the client went away) counts as CANCELLED.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

use crate::services::telemetry::Telemetry;

#[derive(Clone)]
pub struct CountLayer {
    telemetry: Arc<Telemetry>,
}

impl CountLayer {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        CountLayer { telemetry }
    }
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            telemetry: self.telemetry.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    telemetry: Arc<Telemetry>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Count<S>
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
        let telemetry = self.telemetry.clone();
        if !telemetry.enabled() {
            return Box::pin(self.inner.call(req));
        }
        let method = telemetry.bounded("method", req.uri().path());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await?;
            let mut watch = Watch {
                inner: Body::empty(),
                call: Some((method, telemetry)),
            };
            if let Some(code) = response.headers().get("grpc-status") {
                watch.finish(code.to_str().ok());
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            watch.inner = body;
            Ok(http::Response::from_parts(parts, Body::new(watch)))
        })
    }
}

/// A response body that counts its call once its trailers pass (or it is dropped).
struct Watch {
    inner: Body,
    /// The method and where to count it; `None` once counted.
    call: Option<(String, Arc<Telemetry>)>,
}

impl Watch {
    fn finish(&mut self, code: Option<&str>) {
        if let Some((method, telemetry)) = self.call.take() {
            let code = code
                .and_then(|c| c.parse::<i32>().ok())
                .map_or("UNKNOWN", code_name);
            telemetry
                .grpc_requests
                .with_label_values(&[method.as_str(), code])
                .inc();
        }
    }
}

impl HttpBody for Watch {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers.get("grpc-status").and_then(|c| c.to_str().ok());
                    let code = code.map(str::to_string);
                    self.finish(code.as_deref());
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Some("13")),
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish(Some("1"));
    }
}

/// gRPC's name for a status code.
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}
