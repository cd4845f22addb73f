//! Loading rules files into an immutable, shareable [`RuleSet`], and evaluating events with it.
//! Like Falco, every prefix of the file list must compile: the set is compiled after each file.

use std::collections::HashMap;

use super::eval::Cond;
use super::extract::EventData;
use super::format::{OutputFormat, Rendered};
use super::loader::{Collection, Diagnostic};
use crate::base::event::Priority;

mod compile;

use compile::{compile_collection, unmet_plugin_requirements};

/// A named rules document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesFile {
    pub name: String,
    pub content: String,
}

/// Which sources to compile rules for; `None` compiles every source (k8s_audit and syscall
/// natively, any other name as a JSON source).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub enabled_sources: Option<Vec<String>>,
    /// Fields of the Falco in use (`falco --list --format json`), validated but not evaluated.
    pub catalog: Option<std::sync::Arc<crate::engine::catalog::Catalog>>,
}

/// Falco's `rule_matching`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Matching {
    /// Stop at the first matching rule, in definition order (Falco's default).
    #[default]
    First,
    All,
}

#[derive(Clone, Copy, Debug)]
pub struct EvalOptions {
    pub matching: Matching,
    /// Rules less severe than this are not run.
    pub min_priority: Priority,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            matching: Matching::First,
            min_priority: Priority::Debug,
        }
    }
}

/// A load failure: the first error, and the warnings gathered until then.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub error: Diagnostic,
    pub warnings: Vec<Diagnostic>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for LoadError {}

/// A compiled rule.
pub struct CompiledRule {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    pub source: String,
    /// Sorted, de-duplicated.
    pub tags: Vec<String>,
    pub enabled: bool,
    pub file: String,
    pub condition: String,
    cond: Cond,
    output: OutputFormat,
}

/// Summary of a rule in the effective set, compiled or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub name: String,
    pub source: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub file: String,
    /// False for rules of sources this set does not run.
    pub compiled: bool,
}

#[derive(Default)]
struct SourceIndex {
    /// Rules whose condition does not pin `evt.type`, in order.
    untyped: Vec<usize>,
    /// For each pinned event type: every rule that can match it (pinned or not), in order.
    by_type: HashMap<String, Vec<usize>>,
}

/// An immutable compiled rule set; share it across threads behind an `Arc`.
pub struct RuleSet {
    /// The rules revision this set was built from (0 when not from the versioned store).
    pub revision: u64,
    rules: Vec<CompiledRule>,
    index: HashMap<String, SourceIndex>,
    infos: Vec<RuleInfo>,
    pub warnings: Vec<Diagnostic>,
}

/// A matched rule with its rendered output.
pub struct Alert<'r> {
    pub rule: &'r CompiledRule,
    pub rendered: Rendered,
}

impl RuleSet {
    /// Loads `files` in order. Each prefix must compile; the first error is returned.
    pub fn load(files: &[RulesFile], opts: &LoadOptions) -> Result<RuleSet, LoadError> {
        crate::engine::catalog::scope(opts.catalog.clone(), || Self::load_in_scope(files, opts))
    }

    fn load_in_scope(files: &[RulesFile], opts: &LoadOptions) -> Result<RuleSet, LoadError> {
        let mut collection = Collection::default();
        let mut last = None;
        for file in files {
            if let Err(error) = collection.load(&file.name, &file.content) {
                return Err(LoadError {
                    error,
                    warnings: collection.warnings.clone(),
                });
            }
            match compile_collection(&collection, opts) {
                Ok(set) => last = Some(set),
                Err(error) => {
                    return Err(LoadError {
                        error,
                        warnings: collection.warnings.clone(),
                    })
                }
            }
        }
        let mut set = last.unwrap_or_else(RuleSet::empty);
        let mut warnings = collection.warnings.clone();
        warnings.append(&mut set.warnings);
        warnings.extend(unmet_plugin_requirements(&collection));
        set.warnings = warnings;
        Ok(set)
    }

    /// A set with no rules.
    pub fn empty() -> RuleSet {
        RuleSet {
            revision: 0,
            rules: Vec::new(),
            index: HashMap::new(),
            infos: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Overrides rules' `enabled` flags: tag toggles first, then toggles by rule name (which win).
    pub fn apply_toggles(
        &mut self,
        by_tag: &HashMap<String, bool>,
        by_rule: &HashMap<String, bool>,
    ) {
        let decide = |name: &str, tags: &[String], base: bool| {
            let mut enabled = base;
            for tag in tags {
                if let Some(e) = by_tag.get(tag) {
                    enabled = *e;
                }
            }
            by_rule.get(name).copied().unwrap_or(enabled)
        };
        for rule in &mut self.rules {
            rule.enabled = decide(&rule.name, &rule.tags, rule.enabled);
        }
        for info in &mut self.infos {
            info.enabled = decide(&info.name, &info.tags, info.enabled);
        }
    }

    /// Compiled rules, in definition order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Every rule of the effective set, including those of sources that are not run.
    pub fn infos(&self) -> &[RuleInfo] {
        &self.infos
    }

    /// Sources that have at least one compiled rule.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    fn candidates<'s>(&'s self, e: &EventData<'_>) -> &'s [usize] {
        let Some(index) = self.index.get(e.source) else {
            return &[];
        };
        if e.source == "syscall" {
            if let Some(ty) = e.json.get("evt.type").and_then(|v| v.as_str()) {
                if let Some(list) = index.by_type.get(ty) {
                    return list;
                }
            }
        }
        &index.untyped
    }

    /// Evaluates one event.
    pub fn evaluate<'s>(&'s self, e: &EventData<'_>, opts: &EvalOptions) -> Vec<Alert<'s>> {
        let mut out = Vec::new();
        for &i in self.candidates(e) {
            let rule = &self.rules[i];
            if !rule.enabled || !rule.priority.at_least(opts.min_priority) {
                continue;
            }
            if rule.cond.eval(e) {
                out.push(Alert {
                    rule,
                    rendered: rule.output.render(e),
                });
                if opts.matching == Matching::First {
                    break;
                }
            }
        }
        out
    }
}

/// The plugins whose fields this engine implements natively, with the version it matches.
pub const NATIVE_PLUGINS: &[(&str, (u32, u32, u32))] = &[
    ("k8saudit", (0, 18, 0)),
    // The managed-Kubernetes variants produce `k8s_audit` events with k8saudit's fields.
    ("k8saudit-eks", (0, 12, 0)),
    ("k8saudit-gke", (0, 9, 0)),
    ("k8saudit-aks", (0, 6, 0)),
    ("json", (0, 7, 4)),
    ("cloudtrail", (0, 17, 1)),
    ("okta", (0, 12, 0)),
    ("github", (0, 10, 1)),
    ("gcpaudit", (0, 8, 1)),
    ("container", (0, 7, 0)),
    ("k8smeta", (0, 4, 1)),
];
