//! Runtime configuration: each key's effective value is the one set through the API, else the
//! boot file's, else the default. Changes are validated, recorded with history under the global
//! revision, flushed, and applied live.

use std::collections::BTreeMap;

use super::keys::{self, find, KEYS};
use super::target::Kind;
use super::{check_global, check_retained, ControlError};
use crate::app::App;
use crate::store::{Change, Current, HistoryRecord};

/// A committed configuration change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub revision: u64,
    /// Problems after the commit (the change stays), from [`App::committed`].
    pub warnings: Vec<String>,
}

/// Makes the change live and durable, then tells the commit hook.
fn finish(
    app: &App,
    guard: crate::store::WriteGuard<'_>,
    revision: u64,
) -> Result<Changed, ControlError> {
    apply(app)?;
    guard.durable(revision)?;
    let warnings = app.committed(crate::app::Committed::Config(revision));
    Ok(Changed { revision, warnings })
}

/// One key as `get` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// `default`, `boot` or `api`.
    pub origin: &'static str,
    pub accepts: String,
    pub description: &'static str,
    /// The revision that last set it through the API (0: never).
    pub revision: u64,
}

fn api_values(app: &App, revision: Option<u64>) -> Result<BTreeMap<String, Current>, ControlError> {
    let v = app.store.versioned();
    let values = match revision {
        None => v.current(Kind::Config.prefix())?,
        Some(r) => v.at(Kind::Config.prefix(), r)?,
    };
    Ok(values
        .into_iter()
        .map(|(k, c)| (k[Kind::Config.prefix().len()..].to_string(), c))
        .collect())
}

fn entries(app: &App, api: &BTreeMap<String, Current>) -> Vec<Entry> {
    let boot = app.boot_values();
    KEYS.iter()
        .map(|k| {
            let (value, origin, revision) = match (api.get(k.name), boot.get(k.name)) {
                (Some(c), _) => (c.value.clone(), "api", c.revision),
                (None, Some(b)) => (b.clone(), "boot", 0),
                (None, None) => (k.default.to_string(), "default", 0),
            };
            Entry {
                key: k.name.to_string(),
                value,
                origin,
                accepts: k.accepts(),
                description: k.description,
                revision,
            }
        })
        .collect()
}

/// Applies the effective configuration (boot values under API values) to the running server.
pub fn apply(app: &App) -> Result<(), ControlError> {
    let api = api_values(app, None)?;
    let mut values = app.boot_values();
    values.extend(api.into_iter().map(|(k, c)| (k, c.value)));
    app.apply_runtime(keys::runtime(
        &keys::effective(&values),
        app.pipeline.settings().workers,
    ));
    Ok(())
}

/// Effective values, now (`revision` 0) or as of a revision.
pub fn get(app: &App, wanted: &[String], revision: u64) -> Result<(Vec<Entry>, u64), ControlError> {
    for k in wanted {
        if find(k).is_none() {
            return Err(ControlError::NotFound(keys::unknown_key(k)));
        }
    }
    let v = app.store.versioned();
    let at = if revision == 0 {
        None
    } else {
        check_retained(app, revision)?;
        Some(revision)
    };
    let api = api_values(app, at)?;
    let all = entries(app, &api);
    let chosen = if wanted.is_empty() {
        all
    } else {
        all.into_iter()
            .filter(|e| wanted.contains(&e.key))
            .collect()
    };
    Ok((chosen, at.unwrap_or(v.revision()?)))
}

fn check_expected(
    api: &BTreeMap<String, Current>,
    keys: &[&String],
    expected: Option<u64>,
) -> Result<(), ControlError> {
    let Some(e) = expected else { return Ok(()) };
    let current = keys
        .iter()
        .filter_map(|k| api.get(k.as_str()))
        .map(|c| c.revision)
        .max()
        .unwrap_or(0);
    if current != e {
        return Err(ControlError::Conflict(format!(
            "{} last changed at revision {current}, not the expected {e}",
            keys.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// Sets several keys atomically.
pub fn set(
    app: &App,
    values: &BTreeMap<String, String>,
    expected: Option<u64>,
    comment: &str,
    author: &str,
) -> Result<Changed, ControlError> {
    if values.is_empty() {
        return Err(ControlError::InvalidArgument("no keys to set".into()));
    }
    let normal = keys::validate_all(values).map_err(ControlError::InvalidArgument)?;
    let v = app.store.versioned();
    let guard = v.lock();
    let api = api_values(app, None)?;
    check_expected(&api, &normal.keys().collect::<Vec<_>>(), expected)?;
    // A key already set through the API to the same value is not a change.
    let changes: Vec<Change> = normal
        .iter()
        .filter(|(k, val)| api.get(k.as_str()).map(|c| &c.value) != Some(*val))
        .map(|(k, val)| Change {
            target: Kind::Config.of(k).to_string(),
            value: Some(val.clone()),
        })
        .collect();
    if changes.is_empty() {
        return Ok(Changed {
            revision: v.revision()?,
            warnings: vec![format!(
                "nothing changed: {} already set to that (no revision recorded)",
                normal.keys().cloned().collect::<Vec<_>>().join(", ")
            )],
        });
    }
    let revision = v.commit(&guard, "set", author, comment, changes)?;
    finish(app, guard, revision)
}

/// The newest revision that changed the configuration (a set, unset or rollback), 0 when none
/// did; looks back through at most `scan` history records.
pub fn last_change(app: &App, scan: usize) -> Result<u64, ControlError> {
    let v = app.store.versioned();
    let mut before = 0;
    let mut seen = 0;
    while seen < scan {
        let page = v.history("", before, 200)?;
        if page.is_empty() {
            break;
        }
        seen += page.len();
        if let Some(r) = page.iter().find(|r| {
            r.changes
                .iter()
                .any(|c| c.target.starts_with(Kind::Config.prefix()))
        }) {
            return Ok(r.revision);
        }
        before = page.last().map_or(0, |r| r.revision);
        if before <= 1 {
            break;
        }
    }
    // Past the scan: the newest revision among the values still set.
    let current = v.current(Kind::Config.prefix())?;
    Ok(current.values().map(|c| c.revision).max().unwrap_or(0))
}

/// Returns keys to their boot or default values.
pub fn unset(
    app: &App,
    wanted: &[String],
    expected: Option<u64>,
    comment: &str,
    author: &str,
) -> Result<Changed, ControlError> {
    if wanted.is_empty() {
        return Err(ControlError::InvalidArgument("no keys to unset".into()));
    }
    for k in wanted {
        if find(k).is_none() {
            return Err(ControlError::InvalidArgument(keys::unknown_key(k)));
        }
    }
    let v = app.store.versioned();
    let guard = v.lock();
    let api = api_values(app, None)?;
    check_expected(&api, &wanted.iter().collect::<Vec<_>>(), expected)?;
    let changes: Vec<Change> = wanted
        .iter()
        .filter(|k| api.contains_key(k.as_str()))
        .map(|k| Change {
            target: Kind::Config.of(k).to_string(),
            value: None,
        })
        .collect();
    if changes.is_empty() {
        return Err(ControlError::InvalidArgument(format!(
            "{} not set through the API; nothing to unset",
            wanted.join(", ")
        )));
    }
    let revision = v.commit(&guard, "unset", author, comment, changes)?;
    finish(app, guard, revision)
}

pub fn history(
    app: &App,
    key: &str,
    before: u64,
    limit: usize,
) -> Result<Vec<HistoryRecord>, ControlError> {
    if !key.is_empty() && find(key).is_none() {
        return Err(ControlError::NotFound(keys::unknown_key(key)));
    }
    let target = if key.is_empty() {
        String::new()
    } else {
        Kind::Config.of(key).to_string()
    };
    let records = app.store.versioned().history(&target, before, limit)?;
    Ok(records
        .into_iter()
        .filter(|r| {
            r.changes
                .iter()
                .any(|c| c.target.starts_with(Kind::Config.prefix()))
        })
        .collect())
}

/// Restores every key's API value as of `revision`, as a new revision.
pub fn rollback(
    app: &App,
    revision: u64,
    expected: Option<u64>,
    comment: &str,
    author: &str,
) -> Result<Changed, ControlError> {
    let v = app.store.versioned();
    let guard = v.lock();
    check_global(app, expected)?;
    check_retained(app, revision)?;
    let then = api_values(app, Some(revision))?;
    let now = api_values(app, None)?;
    let mut changes = Vec::new();
    for (k, c) in &then {
        if now.get(k).map(|n| &n.value) != Some(&c.value) {
            changes.push(Change {
                target: Kind::Config.of(k).to_string(),
                value: Some(c.value.clone()),
            });
        }
    }
    for k in now.keys().filter(|k| !then.contains_key(*k)) {
        changes.push(Change {
            target: Kind::Config.of(k).to_string(),
            value: None,
        });
    }
    if changes.is_empty() {
        return Err(ControlError::InvalidArgument(format!(
            "nothing to roll back: the configuration is as it was at revision {revision}"
        )));
    }
    let comment = if comment.is_empty() {
        format!("rollback to revision {revision}")
    } else {
        comment.to_string()
    };
    let r = v.commit(&guard, "rollback", author, &comment, changes)?;
    finish(app, guard, r)
}
