//! Falco's http_output: one `POST` per alert to `/` or `/falco` (falcosidekick's paths, so a
//! falco.yaml pointed at falcosidekick works unchanged), body = the alert JSON, or the text
//! line with `json_output: false`. Stored as Falco wrote it, with origin `falco-http`. 200 only
//! once the alert is durable (Falco discards the answer and never retries, so an answer must be
//! true); 400 with the reason for a body that is not a Falco alert; 413 over the size limit;
//! 503 when it cannot be stored (the disk reserve is reached, the server is stopping); 429 when
//! the poster sends more bytes per second than `falco.client_bytes_per_sec` (recorded as a drop,
//! so one poster cannot fill the log's byte budget with Falco's real alerts behind it).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{ApiError, Caller};
use crate::base::event::{stage, DropRecord, Origin};
use crate::base::throttle::TokenBucket;
use crate::net::identity::Role;
use crate::services::status::Kind;
use crate::services::App;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub const PATHS: [&str; 2] = ["/", "/falco"];
/// Posters whose byte rate is tracked at most; past it the table starts afresh.
const MAX_POSTERS: usize = 10_000;

#[derive(Clone)]
struct Receiver {
    app: App,
    /// (bytes per second, burst) per poster, when limited.
    rate: Option<(f64, f64)>,
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl Receiver {
    /// Whether `client` may post `bytes` more now.
    fn allow(&self, client: &str, bytes: usize) -> bool {
        let Some((rate, burst)) = self.rate else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_POSTERS && !buckets.contains_key(client) {
            buckets.clear();
        }
        buckets
            .entry(client.to_string())
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .take(bytes as f64)
    }
}

/// The receiver's routes; with `mtls`, only callers whose certificate has the ingest role; at
/// most `bytes_per_sec` from one poster (0: unlimited), with bursts of four seconds' worth.
pub fn routes(app: App, max_body: usize, mtls: bool, bytes_per_sec: u64) -> Router {
    let mut router = Router::new();
    for path in PATHS {
        router = router.route(path, post(receive));
    }
    let rate = (bytes_per_sec > 0).then(|| {
        let rate = bytes_per_sec as f64;
        (rate, (rate * 4.0).max(max_body as f64))
    });
    let router = router
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Receiver {
            app,
            rate,
            buckets: Arc::default(),
        });
    if mtls {
        router.layer(axum::middleware::from_fn(|r, n| {
            super::require(Role::Ingest, r, n)
        }))
    } else {
        router
    }
}

/// The answer to a stored alert: its seq, and how many were stored (one).
#[derive(Serialize)]
struct Stored {
    seq: u64,
    stored: u64,
}

async fn receive(
    State(receiver): State<Receiver>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Stored>, ApiError> {
    let app = &receiver.app;
    // Text lines name no host: the poster's certificate name, else its address, stands in.
    let hostname = match &caller.identity {
        Some(id) => id.name.clone(),
        None => caller.addr.ip().to_string(),
    };
    if !receiver.allow(&hostname, body.len()) {
        let why = "a poster over falco.client_bytes_per_sec".to_string();
        app.logs.record_drop(DropRecord::now(
            stage::RATE_LIMITED,
            "falco",
            &hostname,
            1,
            1,
            why,
        ));
        return Err(ApiError::new(
            Kind::RateLimited,
            "over falco.client_bytes_per_sec: this alert was not stored (recorded as a drop)",
        ));
    }
    let alert = crate::falco::parse(&body, Origin::FalcoHttp, &hostname)?;
    let stored = crate::falco::store(&app.logs, vec![alert], &hostname, Vec::new()).await?;
    Ok(Json(Stored {
        seq: stored.seqs.start,
        stored: stored.seqs.end - stored.seqs.start,
    }))
}
