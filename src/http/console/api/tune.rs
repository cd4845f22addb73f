//! "Tune this rule…": the alert detail panel's exception from an alert, previewed and saved
//! through the same service call as `falco-api rules tune` (admin only, like every change).

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{answer, rfc3339};
use crate::http::console::User;
use crate::http::error::diagnostic;
use crate::services::control::rules::{Counts, Example, TuneAsk, Tuned};
use crate::services::control::Change;
use crate::services::App;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/rules/tune", post(tune))
}

#[derive(Deserialize)]
struct TuneBody {
    seq: u64,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    comps: Vec<String>,
    #[serde(default)]
    exception: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    days: Option<u32>,
}

async fn tune(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<TuneBody>,
) -> Response {
    answer(move || {
        let ask = TuneAsk {
            seq: b.seq,
            fields: b.fields,
            comps: b.comps,
            exception: b.exception,
            dry_run: b.dry_run,
            days: b.days.unwrap_or(0),
            examples: 0,
        };
        let change = Change::by(&user.identity, &b.comment);
        app.rules
            .tune(app.logs.outputs_log(), &ask, change)
            .map(|t| tuned_json(&t))
    })
    .await
}

fn tuned_json(t: &Tuned) -> Value {
    let counts = |c: &Counts| {
        json!({"examined": c.examined, "suppressed": c.suppressed, "uncounted": c.uncounted,
               "alerting": c.alerting()})
    };
    let examples = |list: &[Example]| -> Vec<Value> {
        list.iter()
            .map(|e| {
                json!({"seq": e.seq, "time": rfc3339(e.time_ns), "hostname": e.hostname,
                       "output": e.output})
            })
            .collect()
    };
    let preview = t.preview.as_ref().map(|p| {
        json!({
            "all": counts(&p.all), "recent": counts(&p.recent),
            "recent_since": rfc3339(p.recent_since_ns),
            "reaches": p.reaches_ns.map(rfc3339), "missing_fields": p.missing,
            "suppressed": examples(&p.suppressed), "alerting": examples(&p.alerting),
            "scanned": p.scanned, "limited": p.limited,
        })
    });
    json!({
        "rule": t.rule, "source": t.source, "exception": t.exception, "reused": t.reused,
        "fields": t.keyed.iter().map(|k| json!({"field": k.field, "comp": k.comp, "value": k.value})).collect::<Vec<_>>(),
        "offered_fields": t.offered, "file": t.file, "entry": t.entry, "preview": preview,
        "revision": t.revision,
        "warnings": t.warnings.iter().map(diagnostic).collect::<Vec<_>>(),
    })
}
