//! Falco's http_output: one `POST` per alert to `/` or `/falco` (falcosidekick's paths, so a
//! falco.yaml pointed at falcosidekick works unchanged), body = the alert JSON, or the text
//! line with `json_output: false`. Stored as Falco wrote it, with origin `falco-http`. 200 only
//! once the alert is durable (Falco discards the answer and never retries, so an answer must be
//! true); 400 with the reason for a body that is not a Falco alert; 413 over the size limit;
//! 503 when it cannot be stored (the disk reserve is reached, the server is stopping).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use serde_json::json;

use super::{json, Caller};
use crate::app::App;
use crate::auth::Role;
use crate::event::Origin;

pub const PATHS: [&str; 2] = ["/", "/falco"];

/// The receiver's routes; with `mtls`, only callers whose certificate has the ingest role.
pub fn routes(app: App, max_body: usize, mtls: bool) -> Router {
    let mut router = Router::new();
    for path in PATHS {
        router = router.route(path, post(receive));
    }
    let router = router
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app);
    if mtls {
        router.layer(axum::middleware::from_fn(|r, n| {
            super::require(Role::Ingest, r, n)
        }))
    } else {
        router
    }
}

async fn receive(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    // Text lines name no host: the poster's certificate name, else its address, stands in.
    let hostname = match &caller.identity {
        Some(id) => id.name.clone(),
        None => caller.addr.ip().to_string(),
    };
    let alert = match crate::falco::parse(&body, Origin::FalcoHttp, &hostname) {
        Ok(a) => a,
        Err(reason) => return json(StatusCode::BAD_REQUEST, json!({ "error": reason })),
    };
    match crate::falco::store(&app, vec![alert], &hostname, Vec::new()).await {
        Ok(stored) => json(
            StatusCode::OK,
            json!({ "seq": stored.seqs.start, "stored": stored.seqs.end - stored.seqs.start }),
        ),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": e.to_string() }),
        ),
    }
}
