//! Live alerts as Server-Sent Events: each event's id is the alert's seq, so a browser that
//! reconnects (`Last-Event-ID`) or a reloaded page (`?after=`) resumes exactly after the last
//! alert it showed — no gap, no duplicate. Alerts trimmed from the log meanwhile arrive as one
//! `lost` event with their count.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;

use super::api::{alert_json, AlertQuery};
use crate::app::App;
use crate::feed::{Item, Start, TrimPolicy};
use crate::http::json;

/// Events buffered for a slow browser before the reader waits for it.
const BUFFER: usize = 1024;

pub async fn alerts(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Response {
    let keep = match q.filter() {
        Ok(f) => f,
        Err(e) => return json(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after);
    let head = app.outputs.head();
    // A position past the head (a log restored from an older copy) resumes at the head.
    let start = resume.map_or(Start::Live, |n| Start::After(n.min(head)));
    let mut sub = match app.outputs.subscribe(start, TrimPolicy::Report, true) {
        Ok(s) => s.with_filter(keep),
        Err(e) => return json(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(BUFFER);
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        let hello = Event::default()
            .event("hello")
            .retry(Duration::from_millis(1000))
            .data(json!({ "head": head, "resumed_after": resume }).to_string());
        if tx.send(Ok(hello)).await.is_err() {
            return;
        }
        loop {
            let item = tokio::select! {
                item = sub.next() => item,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            };
            let event = match item {
                Ok(Some(Item::Record { seq, record })) => Event::default()
                    .id(seq.to_string())
                    .event("alert")
                    .data(alert_json(seq, &record).to_string()),
                Ok(Some(Item::Lost { count, next_seq })) => Event::default()
                    .id(next_seq.saturating_sub(1).to_string())
                    .event("lost")
                    .data(json!({ "count": count, "next_seq": next_seq }).to_string()),
                Ok(None) => return,
                Err(e) => {
                    let _ = tx
                        .send(Ok(Event::default()
                            .event("failure")
                            .data(json!({ "error": e.to_string() }).to_string())))
                        .await;
                    return;
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
