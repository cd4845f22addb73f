//! Rules and configuration: files and their history and diffs, validation, changes, rollback and
//! toggles; runtime keys, their history, set and unset. Changes carry the user as author.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{answer, rfc3339};
use crate::http::console::User;
use crate::http::error::diagnostic;
use crate::services::control::{Change, ControlError};
use crate::services::App;

pub(super) fn routes() -> Router<App> {
    Router::new()
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
            let record = app.rules.record(current.revision)?;
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
}
