//! Rules files as versioned documents: every change is compiled into the whole effective set
//! first (files in lexical order of name, then rule toggles) and refused if it does not compile;
//! a committed change is durable before the new set is swapped into the pipeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::target::Kind;
use super::{check_retained, Change as Asked, Committed, ControlError, Hooks};
use crate::engine::catalog::Catalog;
use crate::engine::{Diagnostic, LoadOptions, RuleInfo};
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::store::{Change, Current, HistoryRecord};

mod edit;
mod preview;
mod state;
mod tune;
mod tuning_file;

pub use super::target::digest;
pub use preview::{Counts, Example, Preview};
pub use state::{build, FalcoView, RulesState, Snapshot};
use state::{changes_to, contents, split_toggles, strip};
pub use tune::{Keyed, TuneAsk, Tuned, TUNING_FILE};

fn valid_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ControlError::InvalidArgument(format!(
            "rules file name '{name}' must be 1-255 characters of A-Z a-z 0-9 . _ - (not starting with '.')"
        )))
    }
}

/// The rules service: versioned rules files and toggles, compiled before they commit, swapped
/// into the pipeline after. Cheap to clone.
#[derive(Clone)]
pub struct Rules {
    store: Arc<Store>,
    pipeline: Pipeline,
    /// Rules changes take turns compiling (see [`Rules::retrying`]).
    writer: Arc<Mutex<()>>,
    /// Set when this node's rules follow a fleet publisher (then local writes are refused).
    publisher: Arc<RwLock<Option<String>>>,
    hooks: Hooks,
    /// The field catalog of the Falco in use (`falco.fields_file`), if any.
    catalog: Arc<RwLock<Option<Arc<Catalog>>>>,
}

impl Rules {
    pub fn new(store: Arc<Store>, pipeline: Pipeline, hooks: Hooks) -> Rules {
        Rules {
            store,
            pipeline,
            writer: Arc::default(),
            publisher: Arc::default(),
            hooks,
            catalog: Arc::default(),
        }
    }

    /// Validates rules against `catalog` too from now on (call before the first reload).
    pub fn set_catalog(&self, catalog: Option<Arc<Catalog>>) {
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = catalog;
    }

    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            catalog: self
                .catalog
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            ..LoadOptions::default()
        }
    }

    /// Who publishes this node's rules, when they follow a fleet.
    pub fn publisher(&self) -> Option<String> {
        self.publisher
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_publisher(&self, publisher: Option<String>) {
        *self
            .publisher
            .write()
            .unwrap_or_else(PoisonError::into_inner) = publisher;
    }

    /// The global revision now.
    pub fn revision(&self) -> Result<u64, ControlError> {
        Ok(self.store.versioned().revision()?)
    }

    /// The history record of a revision, when retained.
    pub fn record(&self, revision: u64) -> Result<Option<HistoryRecord>, ControlError> {
        Ok(self.store.versioned().record(revision)?)
    }

    /// Refuses a local rules change on a node whose rules follow a fleet publisher.
    fn followed(&self) -> Result<(), ControlError> {
        match self.publisher() {
        Some(publisher) => Err(ControlError::Conflict(format!(
            "this node's rules follow the fleet (published by {publisher}): change them on the publisher"
        ))),
        None => Ok(()),
    }
    }

    /// Replaces every rules file and toggle with `files` and `toggles` (a fleet publisher's state)
    /// in one revision, through the same checks as any change: a set that does not compile is
    /// refused and the rules in force stay. Returns `None` when nothing differs.
    pub fn replace_all(
        &self,
        files: &BTreeMap<String, String>,
        toggles: &BTreeMap<String, String>,
        change: Asked<'_>,
    ) -> Result<Option<(u64, Vec<Diagnostic>)>, ControlError> {
        let Asked {
            author, comment, ..
        } = change;
        for name in files.keys() {
            valid_name(name)?;
        }
        check_toggle_targets(toggles)?;
        self.retrying(|| {
            let v = self.store.versioned();
            let guard = v.lock();
            let state = self.state_now()?;
            let mut changes =
                changes_to(&state.files, files, |name| Kind::File.of(name).to_string());
            changes.extend(changes_to(&state.toggles, toggles, str::to_string));
            if changes.is_empty() {
                return Ok(None);
            }
            let new_toggles: BTreeMap<String, Current> = toggles
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Current {
                            value: v.clone(),
                            revision: 0,
                        },
                    )
                })
                .collect();
            self.commit(
                guard,
                files.clone(),
                new_toggles,
                Meta {
                    action: "fleet",
                    author,
                    comment,
                    global_cas: false,
                },
                changes,
            )
            .map(Some)
        })
    }

    /// The rules files and toggles stored now.
    pub fn snapshot(&self) -> Result<Snapshot, ControlError> {
        let state = self.state_now()?;
        let revision = self.store.versioned().revision()?;
        Ok((
            state
                .files
                .into_iter()
                .map(|(k, c)| (k, (c.value, c.revision)))
                .collect(),
            state
                .toggles
                .into_iter()
                .map(|(k, c)| (k, c.value))
                .collect(),
            revision,
        ))
    }

    fn state_now(&self) -> Result<RulesState, ControlError> {
        let v = self.store.versioned();
        let mut toggles = v.current(Kind::Rule.prefix())?;
        toggles.extend(v.current(Kind::Tag.prefix())?);
        Ok(RulesState {
            files: strip(v.current(Kind::File.prefix())?),
            toggles,
        })
    }

    fn state_at(&self, revision: u64) -> Result<RulesState, ControlError> {
        let v = self.store.versioned();
        check_retained(&self.store, revision)?;
        let mut toggles = v.at(Kind::Rule.prefix(), revision)?;
        toggles.extend(v.at(Kind::Tag.prefix(), revision)?);
        Ok(RulesState {
            files: strip(v.at(Kind::File.prefix(), revision)?),
            toggles,
        })
    }

    /// Rebuilds the engine from the store (boot, and after every change).
    pub fn reload(&self) -> Result<(), ControlError> {
        let state = self.state_now()?;
        let revision = self.store.versioned().revision()?;
        let set = build(
            &contents(&state.files),
            &state.toggles,
            revision,
            &self.load_options(),
        )?;
        for w in &set.warnings {
            tracing::debug!("{w}");
        }
        self.pipeline.set_rules(set);
        Ok(())
    }

    /// The rules in force, for Falco's rules directory.
    pub fn falco_view(&self) -> Result<FalcoView, ControlError> {
        let set = self.pipeline.rules();
        let state = self.state_now()?;
        let (rules, tags) = split_toggles(&state.toggles);
        let mut enabled: Vec<(String, bool)> = Vec::new();
        for info in set.infos() {
            let toggled =
                rules.contains_key(&info.name) || info.tags.iter().any(|t| tags.contains_key(t));
            if toggled && !enabled.iter().any(|(n, _)| *n == info.name) {
                enabled.push((info.name.clone(), info.enabled));
            }
        }
        Ok(FalcoView {
            revision: set.revision,
            files: state
                .files
                .into_iter()
                .map(|(name, c)| (name, c.value))
                .collect(),
            enabled,
        })
    }

    /// Runs `change` (which reads the state under the writer lock and ends in [`commit`]) until it
    /// commits against the state it compiled, at most [`ATTEMPTS`] times. Rules changes take turns
    /// (one compiles at a time, so no rules change can land while another compiles); config changes
    /// and readers never wait for a compile.
    fn retrying<T>(
        &self,
        mut change: impl FnMut() -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let _turn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 1..ATTEMPTS {
            match change() {
                Err(ControlError::Busy(_)) => continue,
                other => return other,
            }
        }
        change()
    }

    /// Commits `changes` if the resulting set compiles, then swaps it in. The compile runs with the
    /// writer lock released (a hostile file must not stall every other writer); if anything was
    /// committed meanwhile, the preconditions the caller checked may no longer hold, so it answers
    /// [`ControlError::Busy`] and [`retrying`] runs the change again.
    fn commit(
        &self,
        guard: crate::store::WriteGuard<'_>,
        files: BTreeMap<String, String>,
        toggles: BTreeMap<String, Current>,
        meta: Meta<'_>,
        changes: Vec<Change>,
    ) -> Result<(u64, Vec<Diagnostic>), ControlError> {
        let v = self.store.versioned();
        let before = v.revision()?;
        drop(guard);
        let mut set = build(&files, &toggles, before + 1, &self.load_options())?;
        let guard = v.lock();
        if self.landed_since(before, meta.global_cas)? {
            return Err(ControlError::Busy(
                "other changes kept landing while this one compiled; try again".into(),
            ));
        }
        let revision = v.commit(&guard, meta.action, meta.author, meta.comment, changes)?;
        set.revision = revision;
        let mut warnings = set.warnings.clone();
        self.pipeline.set_rules(set);
        guard.durable(revision)?;
        warnings.extend(
            self.hooks
                .run(Committed::Rules(revision))
                .into_iter()
                .map(|message| Diagnostic {
                    file: "falco.rules_dir".into(),
                    pos: Default::default(),
                    item: None,
                    message,
                }),
        );
        Ok((revision, warnings))
    }

    /// Whether a change that compiled against revision `before` must be compiled again: when any
    /// rules change landed since (config changes do not change the rule set), or, under a global
    /// compare-and-swap, when anything did.
    fn landed_since(&self, before: u64, global_cas: bool) -> Result<bool, ControlError> {
        let v = self.store.versioned();
        let now = v.revision()?;
        if now == before {
            return Ok(false);
        }
        if global_cas {
            return Ok(true);
        }
        for revision in before + 1..=now {
            let Some(record) = v.record(revision)? else {
                return Ok(true);
            };
            if record
                .changes
                .iter()
                .any(|c| !c.target.starts_with(Kind::Config.prefix()))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn check_expected(
        &self,
        name: &str,
        current: Option<&Current>,
        expected: Option<u64>,
    ) -> Result<(), ControlError> {
        match (expected, current) {
            (None, _) => Ok(()),
            (Some(0), Some(c)) => Err(ControlError::AlreadyExists(format!(
                "rules file '{name}' already exists (revision {}); expected it not to",
                c.revision
            ))),
            (Some(e), None) if e > 0 => Err(ControlError::NotFound(format!(
                "rules file '{name}' does not exist; expected revision {e}"
            ))),
            (Some(e), Some(c)) if c.revision != e => {
                let by = self
                    .store
                    .versioned()
                    .record(c.revision)
                    .ok()
                    .flatten()
                    .map(|r| format!(" (changed by {})", r.author))
                    .unwrap_or_default();
                Err(ControlError::Conflict(format!(
                    "rules file '{name}' is at revision {}{by}, not the expected {e}",
                    c.revision
                )))
            }
            _ => Ok(()),
        }
    }

    /// A file's content and the revision that set it, now or as of `revision` (0: now).
    pub fn get(&self, name: &str, revision: u64) -> Result<Current, ControlError> {
        let state = if revision == 0 {
            self.state_now()?
        } else {
            self.state_at(revision)?
        };
        state.files.get(name).cloned().ok_or_else(|| {
            if revision == 0 {
                ControlError::NotFound(format!("rules file '{name}' does not exist"))
            } else {
                ControlError::NotFound(format!(
                    "rules file '{name}' did not exist at revision {revision}"
                ))
            }
        })
    }

    /// Every file (now or as of `revision`), and the global revision it describes.
    pub fn list(&self, revision: u64) -> Result<(BTreeMap<String, Current>, u64), ControlError> {
        if revision == 0 {
            Ok((self.state_now()?.files, self.store.versioned().revision()?))
        } else {
            Ok((self.state_at(revision)?.files, revision))
        }
    }

    pub fn history(
        &self,
        target: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, ControlError> {
        let target = if target.is_empty() || target.contains(':') {
            target.to_string()
        } else {
            Kind::File.of(target).to_string()
        };
        let records = self.store.versioned().history(&target, before, limit)?;
        // Only rules changes: drop config entries from the global listing.
        Ok(records
            .into_iter()
            .filter(|r| {
                r.changes
                    .iter()
                    .any(|c| !c.target.starts_with(Kind::Config.prefix()))
            })
            .collect())
    }

    /// A dry run: `files` added to (or replacing) the current set.
    pub fn validate(&self, files: &[(String, String)]) -> Result<Vec<Diagnostic>, ControlError> {
        let state = self.state_now()?;
        let mut all = contents(&state.files);
        for (name, content) in files {
            valid_name(name)?;
            all.insert(name.clone(), content.clone());
        }
        build(&all, &state.toggles, 0, &self.load_options()).map(|set| set.warnings)
    }

    pub fn effective(&self) -> (Vec<RuleInfo>, u64) {
        let set = self.pipeline.rules();
        (set.infos().to_vec(), set.revision)
    }
}

/// Every toggle target names a rule (`rule:NAME`) or a tag (`tag:NAME`).
fn check_toggle_targets(toggles: &BTreeMap<String, String>) -> Result<(), ControlError> {
    let known = |t: &str| t.starts_with(Kind::Rule.prefix()) || t.starts_with(Kind::Tag.prefix());
    match toggles.keys().find(|t| !known(t)) {
        Some(target) => Err(ControlError::InvalidArgument(format!(
            "toggle target '{target}' is neither rule:NAME nor tag:NAME"
        ))),
        None => Ok(()),
    }
}

/// Who asked for a change, and why.
struct Meta<'a> {
    action: &'a str,
    author: &'a str,
    comment: &'a str,
    /// The caller asked for compare-and-swap on the global revision: nothing at all may land
    /// between its check and the commit.
    global_cas: bool,
}

/// How often a change is compiled again because others landed while it compiled.
const ATTEMPTS: usize = 8;

/// The warnings about Falco's rules directory (a delete, toggle or rollback reports only those,
/// not the compiler's warnings about files it did not change).
fn falco_only(warnings: Vec<Diagnostic>) -> Vec<Diagnostic> {
    warnings
        .into_iter()
        .filter(|w| w.file == "falco.rules_dir")
        .collect()
}
