//! Live alerts as Server-Sent Events: each event's id is the alert's seq, so a browser that
//! reconnects (`Last-Event-ID`) or a reloaded page (`?after=`) resumes exactly after the last
//! alert it showed — no gap, no duplicate. Alerts trimmed from the log meanwhile arrive as one
//! `lost` event with their count.
//!
//! Bounded for a reader that stays behind: alerts go out as list views (cut like the table's),
//! at most [`BUFFER_BYTES`] wait for the browser, and a reader that leaves the buffer full for
//! the endpoint's stall timeout is disconnected (its browser reconnects with `Last-Event-ID`
//! and resumes). The session is checked again every second: a revoked token, an ended session
//! or a rotated key ends the stream with an `ended` event.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::HeaderMap;
use serde_json::json;
use tokio_stream::StreamExt;

use super::api::{alert_json, AlertQuery};
use crate::feed::{Item, Start, TrimPolicy};
use crate::http::ApiError;
use crate::services::App;

/// Bytes of events waiting for a slow browser at most.
pub const BUFFER_BYTES: usize = 1 << 20;
/// How often an open stream checks that its session is still valid.
const RECHECK: Duration = Duration::from_secs(1);

/// One event and its place in the byte budget (released when the event is sent).
type Held = (Event, tokio::sync::OwnedSemaphorePermit);

pub async fn alerts(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
    Extension(stall): Extension<StallTimeout>,
    conn: Option<Extension<std::sync::Arc<crate::net::listen::Conn>>>,
) -> Response {
    let keep = match q.filter() {
        Ok(f) => f,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after);
    let resume = match q.since_seq(&app) {
        Ok(since) => resume.or(since),
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let head = app.logs.outputs.head();
    // A position past the head (a log restored from an older copy) resumes at the head.
    let start = resume.map_or(Start::Live, |n| Start::After(n.min(head)));
    let mut sub = match app.logs.outputs.subscribe(start, TrimPolicy::Report, true) {
        Ok(s) => s.with_filter(keep),
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A session (not a certificate) is checked again while the stream is open.
    let cookie = super::cookie_value(&headers).map(str::to_string);
    let session_live = {
        let tokens = app.tokens.clone();
        move || {
            cookie
                .as_deref()
                .is_none_or(|c| tokens.session(c).is_some())
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Held>();
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(BUFFER_BYTES));
    let shutdown = app.shutdown.clone();
    let send = move |event: Event, bytes: usize| {
        let tx = tx.clone();
        let budget = budget.clone();
        async move {
            let want = bytes.clamp(1, BUFFER_BYTES) as u32;
            match tokio::time::timeout(stall.0, budget.acquire_many_owned(want)).await {
                Ok(Ok(permit)) => tx.send((event, permit)).is_ok(),
                _ => false,
            }
        }
    };
    let closed = send.clone();
    tokio::spawn(async move {
        let hello = Event::default()
            .event("hello")
            .retry(Duration::from_millis(1000))
            .data(json!({ "head": head, "resumed_after": resume }).to_string());
        if !send(hello, 64).await {
            return;
        }
        let mut recheck = tokio::time::interval(RECHECK);
        loop {
            let item = tokio::select! {
                item = sub.next() => item,
                _ = recheck.tick() => {
                    if session_live() {
                        continue;
                    }
                    let ended = Event::default().event("ended").data(
                        json!({ "error": "the session ended (signed out, token revoked, or key rotated)" }).to_string(),
                    );
                    let _ = closed(ended, 128).await;
                    return;
                }
                _ = shutdown.cancelled() => return,
            };
            let (event, bytes) = match item {
                Ok(Some(Item::Record { seq, record })) => {
                    let data = alert_json(seq, &record, false).to_string();
                    let bytes = data.len();
                    let event = Event::default()
                        .id(seq.to_string())
                        .event("alert")
                        .data(data);
                    (event, bytes)
                }
                Ok(Some(Item::Lost { count, next_seq })) => (
                    Event::default()
                        .id(next_seq.saturating_sub(1).to_string())
                        .event("lost")
                        .data(json!({ "count": count, "next_seq": next_seq }).to_string()),
                    128,
                ),
                Ok(None) => return,
                Err(e) => {
                    let failure = Event::default()
                        .event("failure")
                        .data(json!({ "error": e.to_string() }).to_string());
                    let _ = send(failure, 256).await;
                    return;
                }
            };
            if !send(event, bytes).await {
                // The browser left the buffer full for the stall timeout (or went away): close
                // its connection; it reconnects with Last-Event-ID and resumes.
                if let Some(Extension(conn)) = &conn {
                    tracing::info!(
                        stall = ?stall.0,
                        "closing a console stream whose reader stayed behind"
                    );
                    conn.close();
                }
                return;
            }
        }
    });
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(|(event, _permit)| Ok::<_, Infallible>(event));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// How long a console stream's reader may leave its buffer full (`console.stall_timeout_secs`).
#[derive(Clone, Copy, Debug)]
pub struct StallTimeout(pub Duration);
