//! The stored rules state and the rule set built from it: files in lexical order of name, then
//! the rule and tag toggles.

use std::collections::{BTreeMap, HashMap};

use super::super::target::{self, Kind, Target};
use super::super::ControlError;
use crate::engine::{LoadOptions, RuleSet, RulesFile};
use crate::store::{Change, Current};

/// The stored rules: files (name → content and revision), toggles (target → value), and the
/// global revision.
pub type Snapshot = (
    BTreeMap<String, (String, u64)>,
    BTreeMap<String, String>,
    u64,
);

/// Files (name → content) and toggles (`rule:`/`tag:` target → enabled) of a state.
pub struct RulesState {
    pub files: BTreeMap<String, Current>,
    pub toggles: BTreeMap<String, Current>,
}

pub(super) fn strip(files: BTreeMap<String, Current>) -> BTreeMap<String, Current> {
    files
        .into_iter()
        .map(|(k, v)| (k[Kind::File.prefix().len()..].to_string(), v))
        .collect()
}

/// Compiles `files` (lexical order) and applies `toggles`, on an engine thread of its own (see
/// [`crate::engine::isolate`]): a panic in the engine fails this request only.
pub fn build(
    files: &BTreeMap<String, String>,
    toggles: &BTreeMap<String, Current>,
    revision: u64,
    opts: &LoadOptions,
) -> Result<RuleSet, ControlError> {
    let files: Vec<RulesFile> = files
        .iter()
        .map(|(name, content)| RulesFile {
            name: name.clone(),
            content: content.clone(),
        })
        .collect();
    let opts = opts.clone();
    let loaded =
        crate::engine::isolate::run("compiling rules", move || RuleSet::load(&files, &opts))?;
    let mut set = loaded.map_err(|e| ControlError::Invalid {
        error: e.error,
        warnings: e.warnings,
    })?;
    let (by_rule, by_tag) = split_toggles(toggles);
    set.apply_toggles(&by_tag, &by_rule);
    set.revision = revision;
    Ok(set)
}

/// Toggles (`rule:`/`tag:` targets) as rule name → enabled and tag → enabled.
pub(super) fn split_toggles(
    toggles: &BTreeMap<String, Current>,
) -> (HashMap<String, bool>, HashMap<String, bool>) {
    let (mut by_rule, mut by_tag) = (HashMap::new(), HashMap::new());
    for (target, c) in toggles {
        let enabled = target::is_enabled(&c.value);
        match target.parse::<Target>() {
            Ok(Target {
                kind: Kind::Rule,
                name,
            }) => {
                by_rule.insert(name, enabled);
            }
            Ok(Target {
                kind: Kind::Tag,
                name,
            }) => {
                by_tag.insert(name, enabled);
            }
            _ => {}
        }
    }
    (by_rule, by_tag)
}

pub(super) fn contents(files: &BTreeMap<String, Current>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect()
}

/// The rules in force as Falco should load them: the files in load order, and the rules whose
/// enabled state a toggle decides (a toggle on a tag applies to every rule with that tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FalcoView {
    pub revision: u64,
    pub files: Vec<(String, String)>,
    pub enabled: Vec<(String, bool)>,
}

/// The changes that make `current` equal to `wanted`: removed and changed entries in order,
/// then added ones; `target` names each entry's stored target.
pub(super) fn changes_to(
    current: &BTreeMap<String, Current>,
    wanted: &BTreeMap<String, String>,
    target: impl Fn(&str) -> String,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, c) in current {
        match wanted.get(name) {
            None => out.push(Change {
                target: target(name),
                value: None,
            }),
            Some(v) if *v != c.value => out.push(Change {
                target: target(name),
                value: Some(v.clone()),
            }),
            _ => {}
        }
    }
    for (name, v) in wanted {
        if !current.contains_key(name) {
            out.push(Change {
                target: target(name),
                value: Some(v.clone()),
            });
        }
    }
    out
}
