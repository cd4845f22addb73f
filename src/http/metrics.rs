//! `GET /metrics`: the Prometheus text exposition (format 0.0.4, whatever the scraper's Accept
//! header offers: OpenMetrics would rename `falco_events` to `falco_events_total`). 503 until the
//! counts cover the alerts stored before this start, so a scrape never sees `falco_events` fall
//! (Prometheus would take that for a counter reset and show the whole log as new alerts).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;

use crate::net::identity::Role;
use crate::services::App;

pub const PATH: &str = "/metrics";

/// The route; with `mtls`, only callers whose certificate has the reader role.
pub fn routes(app: App, mtls: bool) -> Router {
    let router = Router::new().route(PATH, get(scrape)).with_state(app);
    if mtls {
        router.layer(axum::middleware::from_fn(|r, n| {
            super::require(Role::Reader, r, n)
        }))
    } else {
        router
    }
}

async fn scrape(State(app): State<App>) -> Response {
    if !app.telemetry.events.ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, "1")],
            "falco-api is counting the alerts stored before this start; try again in a moment\n",
        )
            .into_response();
    }
    crate::services::metrics::settle(&app, std::time::Duration::from_secs(1)).await;
    // Reading the log bounds and consumers touches the database: off the runtime threads.
    let text =
        match tokio::task::spawn_blocking(move || crate::services::metrics::render(&app)).await {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "rendering the metrics failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            crate::services::telemetry::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}
