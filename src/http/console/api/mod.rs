//! The console's JSON API: the same operations as the gRPC services (`crate::services::control`, the logs),
//! shaped for a page. Reads need the reader role, changes the admin role and the CSRF value
//! (checked before any handler runs); changes are recorded with the user's identity as author.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::User;
use crate::http::{json, ApiError};
use crate::services::control::ControlError;
use crate::services::App;

mod alerts;
mod rules;
mod tune;

pub use alerts::{alert_json, AlertQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/session", get(session))
        .route("/drops", get(drops))
        .merge(alerts::routes())
        .merge(rules::routes())
        .merge(tune::routes())
}

/// Runs `f` (the store, the compiler) off the runtime; answers 200 with the JSON it returns, or
/// with the status its error maps to.
async fn answer<E>(f: impl FnOnce() -> Result<Value, E> + Send + 'static) -> Response
where
    E: Into<ControlError> + Send + 'static,
{
    let done = tokio::task::spawn_blocking(move || f().map_err(Into::into)).await;
    match done
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(ApiError::from))
    {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

fn ok(body: Value) -> Response {
    json(StatusCode::OK, body)
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn session(Extension(user): Extension<User>) -> Response {
    ok(json!({"identity": user.identity, "admin": user.admin, "csrf": user.csrf}))
}

// ---- drops ----

#[derive(Deserialize)]
struct DropsQuery {
    stage: Option<String>,
    source: Option<String>,
    limit: Option<usize>,
}

async fn drops(State(app): State<App>, Query(q): Query<DropsQuery>) -> Response {
    answer(move || -> Result<Value, crate::store::StoreError> {
        let ring = app.logs.drops_log();
        let b = ring.bounds();
        let limit = q.limit.unwrap_or(500).clamp(1, 5000);
        let stage = nonempty(&q.stage);
        let source = nonempty(&q.source);
        let records = ring.read(b.newest.saturating_sub(20_000), b.newest, 20_000)?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let hour_ago = now - 3_600_000_000_000;
        let mut per_stage: BTreeMap<String, u64> = BTreeMap::new();
        let mut shown = Vec::new();
        for (seq, d) in records.into_iter().rev() {
            if d.time_ns >= hour_ago {
                *per_stage.entry(d.stage.clone()).or_default() += d.n_drops;
            }
            let keep = stage.as_ref().is_none_or(|s| &d.stage == s)
                && source.as_ref().is_none_or(|s| &d.source == s);
            if keep && shown.len() < limit {
                shown.push(json!({
                    "seq": seq, "time": rfc3339(d.time_ns), "stage": d.stage, "source": d.source,
                    "client": d.client, "n_drops": d.n_drops, "n_evts": d.n_evts, "message": d.message,
                }));
            }
        }
        let rates: BTreeMap<String, f64> = per_stage
            .into_iter()
            .map(|(k, n)| (k, n as f64 / 60.0))
            .collect();
        Ok(json!({"drops": shown, "per_minute_last_hour": rates, "head": b.newest}))
    })
    .await
}
