//! Tuning from an alert: the exception an operator means when they call a stored alert a false
//! positive (keyed on the alert's values of the fields they choose), written as an
//! `override: {exceptions: append}` entry of the tuning file, which loads after every file it
//! tunes and means the same to Falco. Saved as one recorded change, compiled against the whole
//! set like any other; a dry run gives the entry and the preview only.

use std::collections::BTreeMap;

use super::preview::{self, Preview};
use super::state::contents;
use super::tuning_file::{appended, entry, fields_and_comps};
use super::{Meta, Rules};
use crate::base::event::OutputEvent;
use crate::engine::loader::{Collection, ExceptionDef, RuleDef, Slot};
use crate::engine::tuning::{self, AlertMatcher, COMPS};
use crate::engine::Diagnostic;
use crate::services::control::target::Kind;
use crate::services::control::{check_global, Change as Asked, ControlError};
use crate::store::{Change, RingLog};

/// The tuning file: lexically after any name a person gives a rules file in practice, so it
/// loads after the rules it appends to (Falco loads a rules directory in the same order).
pub const TUNING_FILE: &str = "zz-falco-api-tuning.yaml";

/// The preview's recent window when none is asked for, in days.
pub const DEFAULT_DAYS: u32 = 7;
/// Examples of each kind a preview shows when no number is asked for.
pub const DEFAULT_EXAMPLES: usize = 3;

/// The most fields one exception keys on.
const MAX_FIELDS: usize = 16;

/// What the operator asks for.
#[derive(Clone, Debug, Default)]
pub struct TuneAsk {
    /// The stored alert (outputs-log seq).
    pub seq: u64,
    /// The fields to key on; empty with `dry_run` lists what the alert offers.
    pub fields: Vec<String>,
    /// One per field, or one for all; `=` when empty.
    pub comps: Vec<String>,
    /// A new exception's name, or an existing one to add values to; empty: reuse or make one.
    pub exception: String,
    pub dry_run: bool,
    /// The preview's recent window, in days (0: [`DEFAULT_DAYS`]).
    pub days: u32,
    /// Examples of each kind in the preview (0: [`DEFAULT_EXAMPLES`]; at most 20).
    pub examples: usize,
}

/// One field of the exception with the alert's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    pub field: String,
    pub comp: String,
    pub value: String,
}

/// What a tuning is (or would be).
#[derive(Clone, Debug, Default)]
pub struct Tuned {
    pub rule: String,
    pub source: String,
    pub exception: String,
    /// Values added to one of the rule's exceptions rather than a new exception.
    pub reused: bool,
    pub keyed: Vec<Keyed>,
    /// The fields of the rule's source the alert carries (what may be keyed on).
    pub offered: Vec<String>,
    pub file: String,
    /// The YAML entry appended to the tuning file.
    pub entry: String,
    pub preview: Option<Preview>,
    /// The revision that saved it; 0 for a dry run.
    pub revision: u64,
    pub warnings: Vec<Diagnostic>,
}

/// The exception worked out from the alert and the rule as it stands.
struct Plan {
    tuned: Tuned,
    matcher: Option<AlertMatcher>,
}

impl Rules {
    /// Builds (and unless `dry_run`, saves) the exception `ask` means for the alert at
    /// `ask.seq` of `log`, and previews it over the rule's retained alerts.
    pub fn tune(
        &self,
        log: &RingLog<OutputEvent>,
        ask: &TuneAsk,
        change: Asked<'_>,
    ) -> Result<Tuned, ControlError> {
        let alert = stored_alert(log, ask.seq)?;
        let plan = if ask.dry_run {
            let state = self.state_now()?;
            let files = contents(&state.files);
            let mut plan = plan(&files, &alert, ask)?;
            if !plan.tuned.entry.is_empty() {
                let mut all = files;
                all.insert(
                    TUNING_FILE.into(),
                    appended(all.get(TUNING_FILE), &plan.tuned.entry),
                );
                plan.tuned.warnings =
                    super::build(&all, &state.toggles, 0, &self.load_options())?.warnings;
            }
            plan
        } else {
            self.followed()?;
            if ask.fields.is_empty() {
                return Err(ControlError::InvalidArgument(format!(
                    "name at least one field to key the exception on; {}",
                    carried(&alert)
                )));
            }
            self.retrying(|| self.save_once(&alert, ask, change))?
        };
        let Plan { mut tuned, matcher } = plan;
        if let Some(matcher) = matcher {
            // At most a century: a window in nanoseconds stays far inside an i64.
            let days = if ask.days == 0 {
                DEFAULT_DAYS
            } else {
                ask.days
            };
            let window = u64::from(days.min(36_500)) * 86_400 * 1_000_000_000;
            let examples = if ask.examples == 0 {
                DEFAULT_EXAMPLES
            } else {
                ask.examples.min(20)
            };
            match preview::scan(log, &alert, &matcher, window, examples) {
                Ok(p) => tuned.preview = Some(p),
                // Saved already: the answer says so, without the preview, rather than failing.
                Err(e) if tuned.revision != 0 => {
                    tracing::warn!(
                        "tuning saved as revision {}, preview failed: {e}",
                        tuned.revision
                    )
                }
                Err(e) => return Err(e),
            }
        }
        Ok(tuned)
    }

    fn save_once(
        &self,
        alert: &OutputEvent,
        ask: &TuneAsk,
        change: Asked<'_>,
    ) -> Result<Plan, ControlError> {
        let v = self.store.versioned();
        let before = v.revision()?;
        let state = self.state_now()?;
        let mut files = contents(&state.files);
        // Worked out with no lock held (it reads every rules file); refused below if anything
        // landed meanwhile, and then worked out again.
        let mut plan = plan(&files, alert, ask)?;
        let guard = v.lock();
        check_global(&self.store, change.expected)?;
        if self.landed_since(before, true)? {
            return Err(ControlError::Busy(
                "rules changed while the exception was worked out; try again".into(),
            ));
        }
        let content = appended(files.get(TUNING_FILE), &plan.tuned.entry);
        files.insert(TUNING_FILE.into(), content.clone());
        let comment = if change.comment.is_empty() {
            format!("tuned '{}' from alert {}", plan.tuned.rule, ask.seq)
        } else {
            change.comment.to_string()
        };
        let (revision, warnings) = self.commit(
            guard,
            files,
            state.toggles,
            Meta {
                action: "tune",
                author: change.author,
                comment: &comment,
                global_cas: change.expected.is_some(),
            },
            vec![Change {
                target: Kind::File.of(TUNING_FILE).to_string(),
                value: Some(content),
            }],
        )?;
        plan.tuned.revision = revision;
        plan.tuned.warnings = warnings;
        Ok(plan)
    }
}

/// The alert at `seq`, when the log still holds it.
fn stored_alert(log: &RingLog<OutputEvent>, seq: u64) -> Result<OutputEvent, ControlError> {
    let bounds = log.bounds();
    let found = if seq == 0 {
        None
    } else {
        log.read(seq - 1, seq, 1)?
            .into_iter()
            .find(|(s, _)| *s == seq)
    };
    match found {
        Some((_, alert)) if !alert.rule.is_empty() => Ok(alert),
        Some(_) => Err(ControlError::InvalidArgument(format!(
            "alert {seq} was not raised by a rule, so there is no rule to tune"
        ))),
        None if bounds.newest == 0 => Err(ControlError::NotFound(format!(
            "alert {seq} is not in the outputs log: the log is empty"
        ))),
        None => Err(ControlError::NotFound(format!(
            "alert {seq} is not in the outputs log (it holds {} to {})",
            bounds.oldest, bounds.newest
        ))),
    }
}

/// Works out the exception from the rules as they are (`files`, in load order) and the alert.
fn plan(
    files: &BTreeMap<String, String>,
    alert: &OutputEvent,
    ask: &TuneAsk,
) -> Result<Plan, ControlError> {
    let rule = rule_def(files, &alert.rule)?;
    if rule.file.as_str() > TUNING_FILE {
        return Err(ControlError::Conflict(format!(
            "rule '{}' is defined in '{}', which loads after the tuning file '{TUNING_FILE}'; \
             rename that file so it sorts before it",
            rule.name, rule.file
        )));
    }
    let offered: Vec<String> = alert
        .output_fields
        .iter()
        .filter(|(k, v)| {
            v != tuning::NOT_AVAILABLE && crate::engine::compiler::is_field(&rule.source, k)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut tuned = Tuned {
        rule: rule.name.clone(),
        source: rule.source.clone(),
        offered,
        file: TUNING_FILE.into(),
        ..Tuned::default()
    };
    if ask.fields.is_empty() {
        return Ok(Plan {
            tuned,
            matcher: None,
        });
    }
    let keyed = keyed(&rule, alert, ask)?;
    let (ex, reused) = chosen_exception(&rule, &keyed, ask)?;
    let matcher = AlertMatcher::new(&rule.source, &ex).map_err(ControlError::InvalidArgument)?;
    match matcher.matches(&alert.output_fields) {
        Ok(true) => {}
        _ => {
            return Err(ControlError::InvalidArgument(format!(
                "the exception would not suppress alert {} itself (check the operators: {})",
                ask.seq,
                describe(&keyed)
            )))
        }
    }
    tuned.entry = entry(&rule.name, &ex, reused, alert, ask.seq);
    tuned.exception = ex.name.clone();
    tuned.reused = reused;
    tuned.keyed = keyed_in_order(&ex, &keyed);
    Ok(Plan {
        tuned,
        matcher: Some(matcher),
    })
}

/// The rule `name` as the rules files define it, exceptions merged.
fn rule_def(files: &BTreeMap<String, String>, name: &str) -> Result<RuleDef, ControlError> {
    let files: Vec<(String, String)> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let loaded = crate::engine::isolate::run("reading rules", move || {
        let mut collection = Collection::default();
        for (file, content) in &files {
            collection.load(file, content)?;
        }
        Ok::<_, Diagnostic>(collection)
    })?;
    let collection = loaded.map_err(|error| ControlError::Invalid {
        error,
        warnings: Vec::new(),
    })?;
    collection
        .rules
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            ControlError::NotFound(format!(
                "rule '{name}', which raised the alert, is not in the rules files any more"
            ))
        })
}

/// The operator of each field asked for: one given for all, one per field, or `=`.
fn comps_for(ask: &TuneAsk) -> Result<Vec<String>, ControlError> {
    Ok(match ask.comps.len() {
        0 => vec!["=".into(); ask.fields.len()],
        1 => vec![ask.comps[0].trim().to_string(); ask.fields.len()],
        n if n == ask.fields.len() => ask.comps.iter().map(|c| c.trim().to_string()).collect(),
        n => {
            return Err(ControlError::InvalidArgument(format!(
                "{n} operators for {} fields: give one operator, or one per field",
                ask.fields.len()
            )))
        }
    })
}

/// The fields asked for, each with its operator and the alert's value.
fn keyed(rule: &RuleDef, alert: &OutputEvent, ask: &TuneAsk) -> Result<Vec<Keyed>, ControlError> {
    if ask.fields.len() > MAX_FIELDS {
        return Err(ControlError::InvalidArgument(format!(
            "{} fields asked for; an exception keys on at most {MAX_FIELDS}",
            ask.fields.len()
        )));
    }
    let comps = comps_for(ask)?;
    let mut out: Vec<Keyed> = Vec::new();
    for (field, comp) in ask.fields.iter().zip(comps) {
        let field = field.trim();
        if out.iter().any(|k| k.field == field) {
            return Err(ControlError::InvalidArgument(format!(
                "field {field} is named twice"
            )));
        }
        if !crate::engine::compiler::is_field(&rule.source, field) {
            return Err(ControlError::InvalidArgument(format!(
                "'{field}' is not a field of source {} (rule '{}')",
                rule.source, rule.name
            )));
        }
        if !tuning::known_comp(&comp) {
            return Err(ControlError::InvalidArgument(format!(
                "'{comp}' is not an operator a tuning can use ({})",
                COMPS.join(", ")
            )));
        }
        let Some((_, value)) = alert.output_fields.iter().find(|(k, _)| k == field) else {
            return Err(ControlError::InvalidArgument(format!(
                "alert {} does not carry {field} (the rule's output does not print it), so its \
                 value cannot be taken from the alert; {}",
                ask.seq,
                carried(alert)
            )));
        };
        if value == tuning::NOT_AVAILABLE {
            return Err(ControlError::InvalidArgument(format!(
                "alert {} has no value for {field} (the event did not have it: {})",
                ask.seq,
                tuning::NOT_AVAILABLE
            )));
        }
        out.push(Keyed {
            field: field.to_string(),
            comp,
            value: value.clone(),
        });
    }
    Ok(out)
}

/// The fields an alert carries, for messages.
fn carried(alert: &OutputEvent) -> String {
    if alert.output_fields.is_empty() {
        return "the alert carries no output fields".into();
    }
    let names: Vec<&str> = alert
        .output_fields
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    format!("the alert carries {}", names.join(", "))
}

fn describe(keyed: &[Keyed]) -> String {
    keyed
        .iter()
        .map(|k| format!("{} {} {:?}", k.field, k.comp, k.value))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The exception to add the alert's values to: the one named, one of the rule's keyed on the
/// same fields (with the same operators, when operators were asked for), or a new one. Its
/// `values` hold only the new tuple; the flag says whether the rule had it.
fn chosen_exception(
    rule: &RuleDef,
    keyed: &[Keyed],
    ask: &TuneAsk,
) -> Result<(ExceptionDef, bool), ControlError> {
    match reusable(rule, keyed, ask)? {
        Some(ex) => joined(rule, ex, keyed).map(|ex| (ex, true)),
        None => added(rule, keyed, ask).map(|ex| (ex, false)),
    }
}

/// The rule's exception the values go to, if any: the one named (refused when it keys on other
/// fields or operators), else one keyed on the same fields.
fn reusable<'r>(
    rule: &'r RuleDef,
    keyed: &[Keyed],
    ask: &TuneAsk,
) -> Result<Option<&'r ExceptionDef>, ControlError> {
    let same_keys = |ex: &ExceptionDef| {
        let (fields, comps) = fields_and_comps(ex);
        fields.len() == keyed.len()
            && fields.iter().zip(&comps).all(|(f, c)| {
                keyed
                    .iter()
                    .any(|k| &k.field == f && (ask.comps.is_empty() || &k.comp == c))
            })
    };
    if ask.exception.is_empty() {
        return Ok(rule.exceptions.iter().find(|e| same_keys(e)));
    }
    match rule.exceptions.iter().find(|e| e.name == ask.exception) {
        Some(ex) if !same_keys(ex) => {
            let (fields, comps) = fields_and_comps(ex);
            Err(ControlError::InvalidArgument(format!(
                "exception '{}' of rule '{}' keys on {} with {}; the alert's values can only be \
                 added to it for those fields (and operators)",
                ex.name,
                rule.name,
                fields.join(", "),
                comps.join(", ")
            )))
        }
        found => Ok(found),
    }
}

/// `ex` holding only the alert's values, in its field order and in the shape its operators
/// want; refused when it holds them already.
fn joined(
    rule: &RuleDef,
    ex: &ExceptionDef,
    keyed: &[Keyed],
) -> Result<ExceptionDef, ControlError> {
    let (fields, comps) = fields_and_comps(ex);
    let tuple: Vec<Slot> = fields
        .iter()
        .zip(&comps)
        .filter_map(|(f, c)| {
            let value = &keyed.iter().find(|k| &k.field == f)?.value;
            Some(match ex.fields {
                Some(Slot::Scalar(_)) => Slot::Scalar(value.clone()),
                _ => tuning::value_slot(c, value),
            })
        })
        .collect();
    if ex.values.contains(&tuple) {
        return Err(ControlError::AlreadyExists(format!(
            "exception '{}' of rule '{}' already holds these values",
            ex.name, rule.name
        )));
    }
    let mut ex = ex.clone();
    ex.values = vec![tuple];
    Ok(ex)
}

/// A new exception keyed on the fields asked for, named as asked or `falco_api_<fields>`.
fn added(rule: &RuleDef, keyed: &[Keyed], ask: &TuneAsk) -> Result<ExceptionDef, ControlError> {
    let name = if ask.exception.is_empty() {
        new_name(rule, keyed)
    } else {
        check_name(&ask.exception)?;
        ask.exception.clone()
    };
    let fields: Vec<String> = keyed.iter().map(|k| k.field.clone()).collect();
    let comps: Vec<String> = keyed.iter().map(|k| k.comp.clone()).collect();
    let values = keyed
        .iter()
        .map(|k| tuning::value_slot(&k.comp, &k.value))
        .collect();
    Ok(tuning::exception(&name, &fields, &comps, values))
}

fn check_name(name: &str) -> Result<(), ControlError> {
    let ok = name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ControlError::InvalidArgument(format!(
            "exception name '{name}' must be 1-128 characters of A-Z a-z 0-9 _ . -"
        )))
    }
}

/// `falco_api_<fields>`, numbered when the rule has an exception of that name already.
fn new_name(rule: &RuleDef, keyed: &[Keyed]) -> String {
    let mut base = String::from("falco_api");
    for k in keyed {
        base.push('_');
        base.extend(
            k.field
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    base.truncate(100);
    let taken = |n: &str| rule.exceptions.iter().any(|e| e.name == n);
    let mut name = base.clone();
    let mut i = 2;
    while taken(&name) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// The keyed fields in the exception's field order.
fn keyed_in_order(ex: &ExceptionDef, keyed: &[Keyed]) -> Vec<Keyed> {
    let (fields, comps) = fields_and_comps(ex);
    fields
        .iter()
        .zip(comps)
        .filter_map(|(f, c)| {
            keyed.iter().find(|k| &k.field == f).map(|k| Keyed {
                comp: c,
                ..k.clone()
            })
        })
        .collect()
}
