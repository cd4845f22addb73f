//! The console's JSON API: the same operations as the gRPC services (`crate::services::control`, the logs),
//! shaped for a page. Reads need the reader role, changes the admin role and the CSRF value
//! (checked before any handler runs); changes are recorded with the user's identity as author.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::User;
use crate::base::event::{OutputEvent, OutputFilter, Priority};
use crate::http::error::diagnostic;
use crate::http::{json, ApiError};
use crate::services::control::Change;
use crate::services::control::ControlError;
use crate::services::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/session", get(session))
        .route("/alerts", get(alerts))
        .route("/alert", get(alert))
        .route("/overview", get(overview))
        .route("/rules", get(rules))
        .route("/rules/file", get(rules_file).put(put_file))
        .route("/rules/history", get(rules_history))
        .route("/rules/diff", get(rules_diff))
        .route("/rules/validate", post(validate))
        .route("/rules/rollback", post(rollback))
        .route("/rules/toggle", post(toggle))
        .route("/config", get(config))
        .route("/config/history", get(config_history))
        .route("/config/set", post(config_set))
        .route("/config/unset", post(config_unset))
        .route("/drops", get(drops))
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

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn session(Extension(user): Extension<User>) -> Response {
    ok(json!({"identity": user.identity, "admin": user.admin, "csrf": user.csrf}))
}

// ---- alerts ----

/// The alert filters a page's URL holds; the outputs service's semantics, plus hostname and
/// free text (case-insensitive, on the output).
#[derive(Debug, Default, Deserialize, Clone)]
pub struct AlertQuery {
    /// Priority at least this severe: a name (`warning`) or number (0-7).
    pub priority: Option<String>,
    pub rule: Option<String>,
    pub tag: Option<String>,
    pub source: Option<String>,
    pub hostname: Option<String>,
    pub q: Option<String>,
    /// Alerts before this seq (history pages), newest first.
    pub before: Option<u64>,
    /// The stream starts after this seq (without a Last-Event-ID).
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn parse_priority(text: &str) -> Option<Priority> {
    if let Ok(n) = text.parse::<i32>() {
        return Priority::from_number(n);
    }
    Priority::ALL.into_iter().find(|p| {
        p.name().eq_ignore_ascii_case(text)
            || (text.eq_ignore_ascii_case("info") && *p == Priority::Informational)
    })
}

impl AlertQuery {
    /// The filter, or why the query is wrong.
    pub fn filter(&self) -> Result<impl Fn(&OutputEvent) -> bool + Send + Sync + 'static, String> {
        let min_priority = match nonempty(&self.priority) {
            Some(p) => Some(parse_priority(&p).ok_or_else(|| {
                format!("priority '{p}' is not a priority (emergency … debug or 0-7)")
            })?),
            None => None,
        };
        let base = OutputFilter {
            tags: nonempty(&self.tag).into_iter().collect(),
            rules: nonempty(&self.rule).into_iter().collect(),
            min_priority,
            sources: nonempty(&self.source).into_iter().collect(),
            hostnames: nonempty(&self.hostname).into_iter().collect(),
        };
        let text = nonempty(&self.q).map(|q| q.to_lowercase());
        Ok(move |ev: &OutputEvent| {
            (base.is_empty() || base.matches(ev))
                && text
                    .as_ref()
                    .is_none_or(|t| ev.output.to_lowercase().contains(t))
        })
    }
}

/// List views (the table, the live stream) show at most this much of an alert's output and of
/// each field's value; the detail panel asks for the whole alert (`/alert?seq=`).
const SUMMARY_TEXT: usize = 2048;
const SUMMARY_FIELD: usize = 512;
const SUMMARY_FIELDS: usize = 64;
/// An `/alerts` answer holds alerts up to about this many bytes (at least one).
const ANSWER_BYTES: usize = 4 << 20;
/// Records read from the log at once while scanning backwards (alerts may be 1 MiB each).
const SCAN_STEP: u64 = 64;

/// `text` cut to at most `max` bytes on a character boundary; whether it was cut.
fn cut(text: &str, max: usize) -> (&str, bool) {
    let kept = crate::base::event::clip(text, max);
    (kept, kept.len() < text.len())
}

/// An alert as the page shows it: whole when `full`, else with its output and fields cut to a
/// list view's size (`truncated` says so).
pub fn alert_json(seq: u64, ev: &OutputEvent, full: bool) -> Value {
    let (text_max, field_max, fields_max) = if full {
        (usize::MAX, usize::MAX, usize::MAX)
    } else {
        (SUMMARY_TEXT, SUMMARY_FIELD, SUMMARY_FIELDS)
    };
    let (output, mut truncated) = cut(&ev.output, text_max);
    let mut fields = BTreeMap::new();
    for (k, v) in ev.output_fields.iter() {
        if fields.len() == fields_max {
            truncated = true;
            break;
        }
        let (k, k_cut) = cut(k, field_max);
        let (v, v_cut) = cut(v, field_max);
        truncated |= k_cut || v_cut;
        fields.insert(k, v);
    }
    let (rule, rule_cut) = cut(&ev.rule, text_max);
    let (hostname, host_cut) = cut(&ev.hostname, field_max);
    truncated |= rule_cut || host_cut || (!full && ev.tags.len() > fields_max);
    let tags: Vec<&str> = ev
        .tags
        .iter()
        .take(fields_max)
        .map(|t| cut(t, field_max).0)
        .collect();
    json!({
        "seq": seq,
        "time": rfc3339(ev.time_ns),
        "priority": ev.priority.name(),
        "priority_num": ev.priority as u8,
        "rule": rule,
        "output": output,
        "hostname": hostname,
        "source": cut(&ev.source, field_max).0,
        "tags": tags,
        "fields": fields,
        "rules_revision": ev.rules_revision,
        "origin": ev.origin.name(),
        "truncated": truncated,
    })
}

/// Visits the outputs log backwards from `before` (exclusive), newest first, reading at most
/// `scan` records a few at a time; `visit` returns false to stop.
fn scan_newest(
    app: &App,
    before: u64,
    scan: u64,
    mut visit: impl FnMut(u64, OutputEvent) -> bool,
) -> Result<(), crate::store::StoreError> {
    let ring = app.store.outputs();
    let oldest = ring.bounds().oldest;
    let mut end = before.saturating_sub(1);
    let mut scanned = 0;
    while end >= oldest && end > 0 && scanned < scan {
        let start = end.saturating_sub(SCAN_STEP).max(oldest.saturating_sub(1));
        let mut batch = ring.read(start, end, SCAN_STEP as usize)?;
        scanned += batch.len() as u64;
        batch.reverse();
        for (seq, ev) in batch {
            if !visit(seq, ev) {
                return Ok(());
            }
        }
        if start == 0 || start < oldest {
            break;
        }
        end = start;
    }
    Ok(())
}

async fn alerts(State(app): State<App>, Query(q): Query<AlertQuery>) -> Response {
    let keep = match q.filter() {
        Ok(f) => f,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let head = app.logs.outputs.head();
    let before = q.before.unwrap_or(head + 1).min(head + 1);
    let limit = q.limit.unwrap_or(200).clamp(1, 2000);
    answer(move || -> Result<Value, crate::store::StoreError> {
        let mut found = Vec::new();
        let mut bytes = 0;
        let mut complete = true;
        scan_newest(&app, before, 200_000, |seq, ev| {
            if !keep(&ev) {
                return true;
            }
            let summary = alert_json(seq, &ev, false);
            bytes += summary.to_string().len();
            found.push(summary);
            if bytes >= ANSWER_BYTES && found.len() < limit {
                complete = false;
            }
            found.len() < limit && bytes < ANSWER_BYTES
        })?;
        Ok(json!({
            "alerts": found,
            "head": head,
            "oldest": app.logs.outputs.oldest(),
            "cut_at_bytes": (!complete).then_some(ANSWER_BYTES),
        }))
    })
    .await
}

#[derive(Deserialize)]
struct OneQuery {
    seq: u64,
}

/// One whole alert, for the detail panel.
async fn alert(State(app): State<App>, Query(q): Query<OneQuery>) -> Response {
    answer(move || -> Result<Value, ControlError> {
        let found = app
            .store
            .outputs()
            .read(q.seq.saturating_sub(1), q.seq, 1)?;
        match found.into_iter().find(|(s, _)| *s == q.seq) {
            Some((seq, ev)) => Ok(alert_json(seq, &ev, true)),
            None => Err(ControlError::NotFound(format!(
                "alert {} is not in the log (trimmed, or not written yet)",
                q.seq
            ))),
        }
    })
    .await
}

// ---- overview ----

async fn overview(State(app): State<App>) -> Response {
    answer(move || overview_of(&app)).await
}

/// Distinct rule and host names the overview counts at most.
const OVERVIEW_NAMES: usize = 10_000;

fn overview_of(app: &App) -> Result<Value, crate::store::StoreError> {
    const MINUTE: i64 = 60_000_000_000;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let hour_start = now - 60 * MINUTE;
    let day_start = now - 24 * 60 * MINUTE;
    let mut hour = vec![[0u64; 8]; 60];
    let mut day = vec![[0u64; 8]; 24];
    let mut rules: HashMap<String, u64> = HashMap::new();
    let mut hosts: HashMap<String, u64> = HashMap::new();
    let mut last_day = 0u64;
    // The last day, newest first, counted while scanning; at most the newest 200,000 alerts are
    // read, and at most OVERVIEW_NAMES rule and host names are counted (names are cut).
    let head = app.logs.outputs.head();
    let count = |m: &mut HashMap<String, u64>, name: &str| {
        let name = cut(name, SUMMARY_FIELD).0;
        if let Some(n) = m.get_mut(name) {
            *n += 1;
        } else if m.len() < OVERVIEW_NAMES {
            m.insert(name.to_string(), 1);
        }
    };
    scan_newest(app, head + 1, 200_000, |_, ev| {
        if ev.time_ns < day_start {
            return true;
        }
        last_day += 1;
        let p = ev.priority as usize;
        if ev.time_ns >= hour_start {
            let i = ((ev.time_ns - hour_start) / MINUTE).clamp(0, 59) as usize;
            hour[i][p] += 1;
        }
        let i = ((ev.time_ns - day_start) / (60 * MINUTE)).clamp(0, 23) as usize;
        day[i][p] += 1;
        count(&mut rules, &ev.rule);
        count(&mut hosts, &ev.hostname);
        true
    })?;
    let top = |m: HashMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(10);
        v.into_iter()
            .map(|(name, count)| json!({"name": name, "count": count}))
            .collect::<Vec<_>>()
    };
    let drops = app.store.drops();
    let drop_bounds = drops.bounds();
    let mut drop_stages: BTreeMap<String, u64> = BTreeMap::new();
    let from = drop_bounds.newest.saturating_sub(10_000);
    for (_, d) in drops.read(from, drop_bounds.newest, 10_000)? {
        if d.time_ns >= day_start {
            *drop_stages.entry(d.stage.clone()).or_default() += d.n_drops;
        }
    }
    let nodes: Vec<Value> = app
        .nodes
        .list()
        .into_iter()
        .map(|n| {
            json!({
                "hostname": n.hostname, "last_seen": rfc3339(n.last_seen_ns),
                "alerts": n.alerts, "alert_rate": n.alert_rate, "event_rate": n.event_rate(),
                "syscall_drops": n.syscall_drops,
            })
        })
        .collect();
    Ok(json!({
        "now": rfc3339(now),
        "priorities": Priority::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "hour": hour, "day": day,
        "top_rules": top(rules), "top_hosts": top(hosts),
        "alerts_last_day": last_day,
        "drops_last_day": drop_stages,
        "nodes": nodes,
        "head": head, "oldest": app.logs.outputs.oldest(),
    }))
}

// ---- rules ----

#[derive(Deserialize)]
struct FileQuery {
    name: String,
    #[serde(default)]
    revision: u64,
}

async fn rules(State(app): State<App>) -> Response {
    answer(move || -> Result<Value, ControlError> {
        let (files, revision) = app.rules.list(0)?;
        let mut out = Vec::new();
        for (name, current) in files {
            let record = app.store.versioned().record(current.revision)?;
            out.push(json!({
                "name": name, "revision": current.revision,
                "author": record.as_ref().map(|r| r.author.clone()),
                "time": record.as_ref().map(|r| rfc3339(r.time_ns)),
                "comment": record.as_ref().map(|r| r.comment.clone()),
                "bytes": current.value.len(),
            }));
        }
        let (infos, in_force) = app.rules.effective();
        let rules: Vec<Value> = infos
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "source": r.source, "priority": r.priority.name(),
                    "tags": r.tags, "enabled": r.enabled, "file": r.file, "compiled": r.compiled,
                })
            })
            .collect();
        Ok(json!({"files": out, "revision": revision, "in_force": in_force, "rules": rules}))
    })
    .await
}

async fn rules_file(State(app): State<App>, Query(q): Query<FileQuery>) -> Response {
    answer(move || {
        app.rules
            .get(&q.name, q.revision)
            .map(|c| json!({"name": q.name, "content": c.value, "revision": c.revision}))
    })
    .await
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    before: u64,
}

fn history_page(records: &[crate::store::HistoryRecord]) -> Value {
    json!({"entries": records.iter().map(history_json).collect::<Vec<_>>()})
}

fn history_json(r: &crate::store::HistoryRecord) -> Value {
    json!({
        "revision": r.revision, "time": rfc3339(r.time_ns), "author": r.author,
        "comment": r.comment, "action": r.action,
        "changes": r.changes.iter().map(|c| json!({"target": c.target, "removed": c.value.is_none()})).collect::<Vec<_>>(),
    })
}

async fn rules_history(State(app): State<App>, Query(q): Query<HistoryQuery>) -> Response {
    answer(move || {
        app.rules
            .history(&q.name, q.before, 200)
            .map(|r| history_page(&r))
    })
    .await
}

#[derive(Deserialize)]
struct DiffQuery {
    name: String,
    from: u64,
    to: u64,
}

/// Side by side: rows of (left line number and text, right line number and text, kind).
pub fn side_by_side(old: &str, new: &str) -> Vec<Value> {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(old, new);
    let mut rows = Vec::new();
    for op in diff.ops() {
        let mut left = Vec::new();
        let mut right = Vec::new();
        for change in diff.iter_changes(op) {
            let line = change.value().trim_end_matches('\n').to_string();
            match change.tag() {
                ChangeTag::Equal => rows.push(json!({
                    "kind": "same",
                    "left_no": change.old_index().map(|i| i + 1), "left": line.clone(),
                    "right_no": change.new_index().map(|i| i + 1), "right": line,
                })),
                ChangeTag::Delete => left.push((change.old_index().map(|i| i + 1), line)),
                ChangeTag::Insert => right.push((change.new_index().map(|i| i + 1), line)),
            }
        }
        for i in 0..left.len().max(right.len()) {
            let (ln, l) = left.get(i).cloned().unwrap_or((None, String::new()));
            let (rn, r) = right.get(i).cloned().unwrap_or((None, String::new()));
            let kind = match (ln.is_some(), rn.is_some()) {
                (true, true) => "changed",
                (true, false) => "removed",
                _ => "added",
            };
            rows.push(json!({"kind": kind, "left_no": ln, "left": l, "right_no": rn, "right": r}));
        }
    }
    rows
}

async fn rules_diff(State(app): State<App>, Query(q): Query<DiffQuery>) -> Response {
    answer(move || -> Result<Value, ControlError> {
        let content = |revision: u64| -> Result<String, ControlError> {
            if revision == 0 {
                return Ok(String::new());
            }
            match app.rules.get(&q.name, revision) {
                Ok(c) => Ok(c.value),
                // Deleted as of that revision: an empty side.
                Err(ControlError::NotFound(_)) => Ok(String::new()),
                Err(e) => Err(e),
            }
        };
        let (old, new) = (content(q.from)?, content(q.to)?);
        Ok(json!({"name": q.name, "from": q.from, "to": q.to, "rows": side_by_side(&old, &new)}))
    })
    .await
}

#[derive(Deserialize)]
struct ValidateBody {
    name: String,
    content: String,
}

async fn validate(State(app): State<App>, Json(b): Json<ValidateBody>) -> Response {
    // A file that does not load is an answer here, not a failure.
    answer(move || match app.rules.validate(&[(b.name, b.content)]) {
        Ok(warnings) => {
            Ok(json!({"ok": true, "warnings": warnings.iter().map(diagnostic).collect::<Vec<_>>()}))
        }
        Err(ControlError::Invalid { error, warnings }) => Ok(json!({
            "ok": false, "error": diagnostic(&error),
            "warnings": warnings.iter().map(diagnostic).collect::<Vec<_>>(),
        })),
        Err(e) => Err(e),
    })
    .await
}

#[derive(Deserialize)]
struct PutBody {
    name: String,
    content: String,
    /// The revision the editor started from (0: a new file); the save fails if it moved.
    expected_revision: u64,
    #[serde(default)]
    comment: String,
}

async fn put_file(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<PutBody>,
) -> Response {
    answer(move || {
        app.rules
            .put(
                &b.name,
                &b.content,
                Change {
                    expected: Some(b.expected_revision),
                    author: &user.identity,
                    comment: &b.comment,
                },
            )
            .map(|(revision, warnings)| {
                json!({
                    "revision": revision,
                    "warnings": warnings.iter().map(diagnostic).collect::<Vec<_>>(),
                })
            })
    })
    .await
}

#[derive(Deserialize)]
struct RollbackBody {
    #[serde(default)]
    name: String,
    revision: u64,
    #[serde(default)]
    comment: String,
}

async fn rollback(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<RollbackBody>,
) -> Response {
    answer(move || {
        app.rules
            .rollback(
                b.revision,
                &b.name,
                Change {
                    expected: None,
                    author: &user.identity,
                    comment: &b.comment,
                },
            )
            .map(|(revision, _)| json!({"revision": revision}))
    })
    .await
}

#[derive(Deserialize)]
struct ToggleBody {
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    enabled: bool,
    #[serde(default)]
    comment: String,
}

async fn toggle(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<ToggleBody>,
) -> Response {
    answer(move || {
        app.rules
            .toggle(
                &b.rules,
                &b.tags,
                b.enabled,
                Change {
                    expected: None,
                    author: &user.identity,
                    comment: &b.comment,
                },
            )
            .map(|(revision, _)| json!({"revision": revision}))
    })
    .await
}

// ---- configuration ----

async fn config(State(app): State<App>) -> Response {
    answer(move || {
        app.config.get(&[], 0).map(|(entries, revision)| {
            json!({
                "revision": revision,
                "entries": entries.iter().map(|e| json!({
                    "key": e.key, "value": e.value, "origin": e.origin, "accepts": e.accepts,
                    "description": e.description, "revision": e.revision,
                })).collect::<Vec<_>>(),
            })
        })
    })
    .await
}

#[derive(Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
}

async fn config_history(State(app): State<App>, Query(q): Query<KeyQuery>) -> Response {
    answer(move || app.config.history(&q.key, 0, 200).map(|r| history_page(&r))).await
}

#[derive(Deserialize)]
struct SetBody {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    comment: String,
}

async fn config_set(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<SetBody>,
) -> Response {
    let values = BTreeMap::from([(b.key, b.value)]);
    answer(move || {
        app.config
            .set(
                &values,
                Change {
                    expected: None,
                    author: &user.identity,
                    comment: &b.comment,
                },
            )
            .map(|c| json!({"revision": c.revision, "warnings": c.warnings}))
    })
    .await
}

async fn config_unset(
    State(app): State<App>,
    Extension(user): Extension<User>,
    Json(b): Json<SetBody>,
) -> Response {
    let keys = vec![b.key];
    answer(move || {
        app.config
            .unset(
                &keys,
                Change {
                    expected: None,
                    author: &user.identity,
                    comment: &b.comment,
                },
            )
            .map(|c| json!({"revision": c.revision, "warnings": c.warnings}))
    })
    .await
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
        let ring = app.store.drops();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_pairs_changed_lines() {
        let rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n");
        let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["same", "changed", "same", "added"]);
        assert_eq!(rows[1]["left"], "b");
        assert_eq!(rows[1]["right"], "B");
        assert_eq!(rows[3]["right_no"], 4);
    }

    #[test]
    fn alert_queries_filter_like_the_outputs_service() {
        let ev = OutputEvent::new(0, Priority::Warning, "r", "Shell In Pod", "syscall")
            .with_hostname("h1");
        let q = |f: AlertQuery| f.filter().unwrap()(&ev);
        assert!(q(AlertQuery::default()));
        assert!(q(AlertQuery {
            priority: Some("warning".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            priority: Some("error".into()),
            ..Default::default()
        }));
        assert!(q(AlertQuery {
            q: Some("shell in".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            hostname: Some("h2".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            rule: Some("x".into()),
            ..Default::default()
        }));
        assert!(AlertQuery {
            priority: Some("loud".into()),
            ..Default::default()
        }
        .filter()
        .is_err());
    }
}
