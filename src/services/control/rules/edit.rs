//! The changes a person makes: put and delete a file, roll back, toggle rules and tags, and the
//! boot import. Each is compiled against the whole effective set before it commits, and retried
//! when another change lands while it compiles.

use std::collections::BTreeMap;

use super::state::{contents, RulesState};
use super::{falco_only, valid_name, Meta, Rules};
use crate::engine::{Diagnostic, RuleSet};
use crate::services::control::target::{self, Kind};
use crate::services::control::{check_global, Change as Asked, ControlError};
use crate::store::{Change, Current};

impl Rules {
    pub fn put(
        &self,
        name: &str,
        content: &str,
        change: Asked<'_>,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        self.followed()?;
        self.retrying(|| self.put_once(name, content, expected, comment, author))
    }

    fn put_once(
        &self,
        name: &str,
        content: &str,
        expected: Option<u64>,
        comment: &str,
        author: &str,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        valid_name(name)?;
        let v = self.store.versioned();
        let guard = v.lock();
        let state = self.state_now()?;
        self.check_expected(name, state.files.get(name), expected)?;
        let mut files = contents(&state.files);
        files.insert(name.to_string(), content.to_string());
        let change = Change {
            target: Kind::File.of(name).to_string(),
            value: Some(content.to_string()),
        };
        self.commit(
            guard,
            files,
            state.toggles,
            Meta {
                action: "put",
                author,
                comment,
                global_cas: false,
            },
            vec![change],
        )
    }

    pub fn delete(
        &self,
        name: &str,
        change: Asked<'_>,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        self.followed()?;
        self.retrying(|| self.delete_once(name, expected, comment, author))
    }

    fn delete_once(
        &self,
        name: &str,
        expected: Option<u64>,
        comment: &str,
        author: &str,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        valid_name(name)?;
        let v = self.store.versioned();
        let guard = v.lock();
        let state = self.state_now()?;
        if !state.files.contains_key(name) {
            return Err(ControlError::NotFound(format!(
                "rules file '{name}' does not exist"
            )));
        }
        self.check_expected(name, state.files.get(name), expected)?;
        let mut files = contents(&state.files);
        files.remove(name);
        let change = Change {
            target: Kind::File.of(name).to_string(),
            value: None,
        };
        self.commit(
            guard,
            files,
            state.toggles,
            Meta {
                action: "delete",
                author,
                comment,
                global_cas: false,
            },
            vec![change],
        )
        .map(|(r, w)| (r, falco_only(w)))
    }

    /// Restores one file, or every file and toggle, as of `revision`, as a new revision.
    pub fn rollback(
        &self,
        revision: u64,
        name: &str,
        change: Asked<'_>,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        self.followed()?;
        self.retrying(|| self.rollback_once(revision, name, expected, comment, author))
    }

    fn rollback_once(
        &self,
        revision: u64,
        name: &str,
        expected: Option<u64>,
        comment: &str,
        author: &str,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let v = self.store.versioned();
        let guard = v.lock();
        check_global(&self.store, expected)?;
        let then = self.state_at(revision)?;
        let now = self.state_now()?;
        let (changes, files, toggles) = if name.is_empty() {
            (restoring(&now, &then), contents(&then.files), then.toggles)
        } else {
            valid_name(name)?;
            let (change, files) = restoring_file(name, revision, &now, &then)?;
            (vec![change], files, now.toggles)
        };
        if changes.is_empty() {
            return Err(ControlError::InvalidArgument(format!(
                "nothing to roll back: the rules are as they were at revision {revision}"
            )));
        }
        let comment = if comment.is_empty() {
            format!("rollback to revision {revision}")
        } else {
            comment.to_string()
        };
        self.commit(
            guard,
            files,
            toggles,
            Meta {
                action: "rollback",
                author,
                comment: &comment,
                global_cas: expected.is_some(),
            },
            changes,
        )
        .map(|(r, w)| (r, falco_only(w)))
    }

    /// Enables or disables rules by name and by tag, as one recorded change.
    pub fn toggle(
        &self,
        rules: &[String],
        tags: &[String],
        enabled: bool,
        change: Asked<'_>,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let Asked {
            expected,
            author,
            comment,
        } = change;
        self.followed()?;
        if rules.is_empty() && tags.is_empty() {
            return Err(ControlError::InvalidArgument(
                "name at least one rule or tag".into(),
            ));
        }
        self.retrying(|| self.toggle_once(rules, tags, enabled, expected, comment, author))
    }

    fn toggle_once(
        &self,
        rules: &[String],
        tags: &[String],
        enabled: bool,
        expected: Option<u64>,
        comment: &str,
        author: &str,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let v = self.store.versioned();
        let guard = v.lock();
        check_global(&self.store, expected)?;
        check_toggle_names(&self.pipeline.rules(), rules, tags)?;
        let state = self.state_now()?;
        let mut toggles = state.toggles;
        let value = target::toggle_value(enabled);
        let targets = rules.iter().map(|r| Kind::Rule.of(r).to_string());
        let targets = targets.chain(tags.iter().map(|t| Kind::Tag.of(t).to_string()));
        let mut changes = Vec::new();
        for target in targets {
            let value = value.to_string();
            let current = Current {
                value: value.clone(),
                revision: 0,
            };
            toggles.insert(target.clone(), current);
            changes.push(Change {
                target,
                value: Some(value),
            });
        }
        let action = if enabled { "enable" } else { "disable" };
        self.commit(
            guard,
            contents(&state.files),
            toggles,
            Meta {
                action,
                author,
                comment,
                global_cas: expected.is_some(),
            },
            changes,
        )
        .map(|(r, w)| (r, falco_only(w)))
    }

    /// Boot import of `--rules` files: on an empty store always; otherwise only when `force`.
    /// Files are named `NN-<basename>` so their lexical order is the order given.
    pub fn import(
        &self,
        files: &[(String, String)],
        force: bool,
    ) -> Result<Option<u64>, ControlError> {
        self.retrying(|| self.import_once(files, force))
    }

    fn import_once(
        &self,
        files: &[(String, String)],
        force: bool,
    ) -> Result<Option<u64>, ControlError> {
        let v = self.store.versioned();
        let guard = v.lock();
        let state = self.state_now()?;
        if !state.files.is_empty() && !force {
            return Ok(None);
        }
        let mut all = contents(&state.files);
        let mut changes = Vec::new();
        for (i, (base, content)) in files.iter().enumerate() {
            let name = format!("{i:02}-{base}");
            valid_name(&name)?;
            all.insert(name.clone(), content.clone());
            changes.push(Change {
                target: Kind::File.of(&name).to_string(),
                value: Some(content.clone()),
            });
        }
        self.commit(
            guard,
            all,
            state.toggles,
            Meta {
                action: "import",
                author: "boot",
                comment: "imported from serve --rules",
                global_cas: false,
            },
            changes,
        )
        .map(|(r, _)| Some(r))
    }
}

/// The changes that bring every file and toggle of `now` back to `then`: changed and restored
/// entries in `then`'s order, then the entries `then` did not have. Files are keyed by name,
/// toggles by their whole target text.
fn restoring(now: &RulesState, then: &RulesState) -> Vec<Change> {
    let mut changes = Vec::new();
    let file = Kind::File.prefix();
    for (prefix, before, after) in [
        (file, &now.files, &then.files),
        ("", &now.toggles, &then.toggles),
    ] {
        for (k, c) in after {
            if before.get(k).map(|b| &b.value) != Some(&c.value) {
                changes.push(Change {
                    target: format!("{prefix}{k}"),
                    value: Some(c.value.clone()),
                });
            }
        }
        for k in before.keys().filter(|k| !after.contains_key(*k)) {
            changes.push(Change {
                target: format!("{prefix}{k}"),
                value: None,
            });
        }
    }
    changes
}

/// File `name` as of `then` (restored, or deleted if it did not exist then): the change and
/// the files after it.
fn restoring_file(
    name: &str,
    revision: u64,
    now: &RulesState,
    then: &RulesState,
) -> Result<(Change, BTreeMap<String, String>), ControlError> {
    let mut files = contents(&now.files);
    let target = Kind::File.of(name).to_string();
    match then.files.get(name) {
        Some(c) => {
            files.insert(name.to_string(), c.value.clone());
            let value = Some(c.value.clone());
            Ok((Change { target, value }, files))
        }
        None if now.files.contains_key(name) => {
            files.remove(name);
            Ok((
                Change {
                    target,
                    value: None,
                },
                files,
            ))
        }
        None => Err(ControlError::NotFound(format!(
            "rules file '{name}' exists neither now nor at revision {revision}"
        ))),
    }
}

/// Each rule named exists in `current`, and each tag is on at least one of its rules.
fn check_toggle_names(
    current: &RuleSet,
    rules: &[String],
    tags: &[String],
) -> Result<(), ControlError> {
    if let Some(r) = rules
        .iter()
        .find(|r| !current.infos().iter().any(|i| &i.name == *r))
    {
        return Err(ControlError::NotFound(format!(
            "no rule named '{r}' in the effective rules"
        )));
    }
    if let Some(t) = tags
        .iter()
        .find(|t| !current.infos().iter().any(|i| i.tags.contains(*t)))
    {
        return Err(ControlError::NotFound(format!("no rule has the tag '{t}'")));
    }
    Ok(())
}
