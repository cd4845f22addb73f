//! Runtime configuration: each key's effective value is the one set through the API, else the
//! boot file's, else the default. Changes are validated, recorded with history under the global
//! revision, flushed, and applied live.

use std::collections::BTreeMap;

use super::keys::{self, find, Runtime, KEYS};
use super::target::Kind;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use super::{check_global, check_retained, Change as Asked, Committed, ControlError, Hooks};
use crate::pipeline::Pipeline;
use crate::services::logs::{Limits as LogLimits, Logs};
use crate::store::Store;
use crate::store::{Change, Current, HistoryRecord};

/// A committed configuration change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub revision: u64,
    /// Problems after the commit (the change stays), from the commit hooks.
    pub warnings: Vec<String>,
}

/// Changes the log filter; returns why it could not.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The runtime configuration service: versioned keys over the boot file's values, applied live
/// to the pipeline, the logs and the log filter. Cheap to clone.
#[derive(Clone)]
pub struct RuntimeConfig {
    store: Arc<Store>,
    pipeline: Pipeline,
    logs: Logs,
    /// Runtime keys the boot file set.
    boot_values: Arc<RwLock<BTreeMap<String, String>>>,
    /// Changes the log filter when `log_level` changes (given by the binary; absent in tests).
    log_reloader: Arc<OnceLock<LogReloader>>,
    hooks: Hooks,
}

impl RuntimeConfig {
    pub fn new(store: Arc<Store>, pipeline: Pipeline, logs: Logs, hooks: Hooks) -> RuntimeConfig {
        RuntimeConfig {
            store,
            pipeline,
            logs,
            boot_values: Arc::default(),
            log_reloader: Arc::default(),
            hooks,
        }
    }

    pub fn boot_values(&self) -> BTreeMap<String, String> {
        self.boot_values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_boot_values(&self, values: BTreeMap<String, String>) {
        *self
            .boot_values
            .write()
            .unwrap_or_else(PoisonError::into_inner) = values;
    }

    /// Lets `log_level` changes reach the process's log filter.
    pub fn set_log_reloader(&self, f: LogReloader) {
        let _ = self.log_reloader.set(f);
    }

    /// Applies runtime settings live.
    fn apply_runtime(&self, r: Runtime) {
        self.pipeline.update(r.pipeline.clone());
        self.logs.apply(&LogLimits {
            outputs_capacity: r.outputs_capacity,
            drops_capacity: r.drops_capacity,
            outputs_max_bytes: r.outputs_max_bytes,
            drops_max_bytes: r.drops_max_bytes,
            outputs_max_age_secs: r.outputs_max_age_secs,
            drops_max_age_secs: r.drops_max_age_secs,
            outputs_rate: r.outputs_rate,
            outputs_max_burst: r.outputs_max_burst,
            drop_alerts: r.pipeline.drop_alerts,
            hostname: r.pipeline.output.hostname.clone(),
        });
        if let Some(reload) = self.log_reloader.get() {
            if let Err(e) = reload(&r.log_level) {
                tracing::warn!(error = %e, "cannot change the log level");
            }
        }
    }

    /// Makes the change live and durable, then tells the commit hook.
    fn finish(
        &self,
        guard: crate::store::WriteGuard<'_>,
        revision: u64,
    ) -> Result<Changed, ControlError> {
        self.apply()?;
        guard.durable(revision)?;
        let warnings = self.hooks.run(Committed::Config(revision));
        Ok(Changed { revision, warnings })
    }

    fn api_values(&self, revision: Option<u64>) -> Result<BTreeMap<String, Current>, ControlError> {
        let v = self.store.versioned();
        let values = match revision {
            None => v.current(Kind::Config.prefix())?,
            Some(r) => v.at(Kind::Config.prefix(), r)?,
        };
        Ok(values
            .into_iter()
            .map(|(k, c)| (k[Kind::Config.prefix().len()..].to_string(), c))
            .collect())
    }

    fn entries(&self, api: &BTreeMap<String, Current>) -> Vec<Entry> {
        let boot = self.boot_values();
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
    pub fn apply(&self) -> Result<(), ControlError> {
        let api = self.api_values(None)?;
        let mut values = self.boot_values();
        values.extend(api.into_iter().map(|(k, c)| (k, c.value)));
        self.apply_runtime(keys::runtime(
            &keys::effective(&values),
            self.pipeline.settings().workers,
        ));
        Ok(())
    }

    /// Effective values, now (`revision` 0) or as of a revision.
    pub fn get(&self, wanted: &[String], revision: u64) -> Result<(Vec<Entry>, u64), ControlError> {
        for k in wanted {
            if find(k).is_none() {
                return Err(ControlError::NotFound(keys::unknown_key(k)));
            }
        }
        let v = self.store.versioned();
        let at = if revision == 0 {
            None
        } else {
            check_retained(&self.store, revision)?;
            Some(revision)
        };
        let api = self.api_values(at)?;
        let all = self.entries(&api);
        let chosen = if wanted.is_empty() {
            all
        } else {
            all.into_iter()
                .filter(|e| wanted.contains(&e.key))
                .collect()
        };
        Ok((chosen, at.unwrap_or(v.revision()?)))
    }

    /// Sets several keys atomically.
    pub fn set(
        &self,
        values: &BTreeMap<String, String>,
        change: Asked<'_>,
    ) -> Result<Changed, ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        if values.is_empty() {
            return Err(ControlError::InvalidArgument("no keys to set".into()));
        }
        let normal = keys::validate_all(values).map_err(ControlError::InvalidArgument)?;
        let v = self.store.versioned();
        let guard = v.lock();
        let api = self.api_values(None)?;
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
        self.finish(guard, revision)
    }

    /// The newest revision that changed the configuration (a set, unset or rollback), 0 when none
    /// did; looks back through at most `scan` history records.
    pub fn last_change(&self, scan: usize) -> Result<u64, ControlError> {
        let v = self.store.versioned();
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
    pub fn unset(&self, wanted: &[String], change: Asked<'_>) -> Result<Changed, ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        if wanted.is_empty() {
            return Err(ControlError::InvalidArgument("no keys to unset".into()));
        }
        for k in wanted {
            if find(k).is_none() {
                return Err(ControlError::InvalidArgument(keys::unknown_key(k)));
            }
        }
        let v = self.store.versioned();
        let guard = v.lock();
        let api = self.api_values(None)?;
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
        self.finish(guard, revision)
    }

    pub fn history(
        &self,
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
        let records = self.store.versioned().history(&target, before, limit)?;
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
    pub fn rollback(&self, revision: u64, change: Asked<'_>) -> Result<Changed, ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        let v = self.store.versioned();
        let guard = v.lock();
        check_global(&self.store, expected)?;
        check_retained(&self.store, revision)?;
        let then = self.api_values(Some(revision))?;
        let now = self.api_values(None)?;
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
        self.finish(guard, r)
    }
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
