//! Loading rules files into an immutable, shareable [`RuleSet`], and evaluating events with it.
//! Like Falco, every prefix of the file list must compile: the set is compiled after each file.

use std::collections::{HashMap, HashSet};

use super::ast::{Expr, Op};
use super::compiler::{self, getter, CompileError};
use super::eval::Cond;
use super::extract::EventData;
use super::format::{OutputFormat, Rendered};
use super::loader::{Collection, Diagnostic, ListDef, MacroDef, RuleDef, Slot};
use super::parser;
use super::text::{apply_exceptions, expand_lists, substitute_lists};
use super::yaml::Pos;
use crate::base::event::Priority;

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
pub const NATIVE_PLUGINS: &[(&str, (u32, u32, u32))] =
    &[("k8saudit", (0, 18, 0)), ("json", (0, 7, 4))];

/// `required_plugin_versions` entries no native plugin satisfies (same major, not older). They
/// are warnings: falco-api has no plugin loader, and reads other plugins' fields from payloads.
fn unmet_plugin_requirements(c: &Collection) -> Vec<Diagnostic> {
    c.plugin_requirements
        .iter()
        .filter(|req| {
            !req.alternatives.iter().any(|(name, version)| {
                let wanted = super::loader::parse_semver(version);
                NATIVE_PLUGINS.iter().any(|(n, have)| {
                    n == name && wanted.is_some_and(|w| w.0 == have.0 && *have >= w)
                })
            })
        })
        .map(|req| Diagnostic {
            file: req.file.clone(),
            pos: req.pos,
            item: Some("required_plugin_versions".into()),
            message: format!(
                "requires plugin {} which falco-api does not provide natively (it implements {}); \
                 fields of other plugins are read from the event payload",
                req.alternatives
                    .iter()
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect::<Vec<_>>()
                    .join(" or "),
                NATIVE_PLUGINS
                    .iter()
                    .map(|(n, (a, b, c))| format!("{n} {a}.{b}.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

fn diag(file: &str, pos: Pos, item: String, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        pos,
        item: Some(item),
        message,
    }
}

fn position_note(text: &str, offset: usize) -> String {
    let start = offset.min(text.len());
    let mut end = (start + 40).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = start;
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    format!(
        " (at offset {offset} of the compiled condition, near '{}')",
        &text[s..end]
    )
}

/// The most parts (checks, and/or/not) one condition may have once its macros are expanded.
const MAX_NODES: usize = 200_000;
/// The longest chain of macros using macros.
const MAX_MACRO_NESTING: usize = 1000;

/// Macros resolved to trees, lazily and recursively: a macro sees the macros first defined
/// before its own last (re)definition; rules see every macro.
struct Macros<'c> {
    defs: &'c [MacroDef],
    lists: &'c [ListDef],
    expanded: &'c [Vec<String>],
    /// Each resolved macro with its size in nodes and its depth.
    resolved: HashMap<String, (Expr, usize, usize)>,
    in_progress: HashSet<String>,
    used: HashSet<String>,
    used_lists: HashSet<String>,
}

impl<'c> Macros<'c> {
    fn get(&mut self, name: &str) -> Result<(Expr, usize, usize), Diagnostic> {
        if let Some(found) = self.resolved.get(name) {
            return Ok(found.clone());
        }
        let m = self
            .defs
            .iter()
            .find(|m| m.name == name)
            .expect("caller checked");
        let item = format!("macro '{}'", m.name);
        if !self.in_progress.insert(name.to_string()) {
            return Err(diag(
                &m.file,
                m.cond_pos,
                item,
                "reference loop in macro".into(),
            ));
        }
        if self.in_progress.len() > MAX_MACRO_NESTING {
            return Err(diag(
                &m.file,
                m.cond_pos,
                item,
                format!("macros nest deeper than {MAX_MACRO_NESTING} levels"),
            ));
        }
        let text = substitute_tracking(
            &m.condition,
            self.lists,
            self.expanded,
            &mut self.used_lists,
        );
        let parsed = parser::parse(&text).map_err(|e| {
            diag(
                &m.file,
                m.cond_pos,
                item.clone(),
                format!("{}{}", e.message, position_note(&text, e.offset)),
            )
        })?;
        let resolved = self
            .resolve(&parsed, Some(m.visibility), 0)
            .map_err(|e| match e {
                Resolve::Here(e) => diag(
                    &m.file,
                    m.cond_pos,
                    item.clone(),
                    format!(
                        "{}{}",
                        e.message,
                        position_note(&text, e.offset.unwrap_or(0))
                    ),
                ),
                Resolve::Inner(d) => d,
            })?;
        self.in_progress.remove(name);
        self.resolved.insert(name.to_string(), resolved.clone());
        Ok(resolved)
    }

    /// Replaces macro references in `expr`, found at `depth` of the tree being built;
    /// `visibility` limits what a macro may see. Returns the tree with its size in nodes and its
    /// depth, refusing trees deeper than [`parser::MAX_DEPTH`] or larger than [`MAX_NODES`]
    /// (macros that use each other twice grow exponentially).
    fn resolve(
        &mut self,
        expr: &Expr,
        visibility: Option<u64>,
        depth: usize,
    ) -> Result<(Expr, usize, usize), Resolve> {
        let offset = match expr {
            Expr::Macro { offset, .. } | Expr::Check { offset, .. } => Some(*offset),
            _ => None,
        };
        let too_big = |what: String| {
            Resolve::Here(CompileError {
                offset,
                message: what,
            })
        };
        if depth > parser::MAX_DEPTH {
            return Err(too_big(format!(
                "the condition with its macros expanded nests deeper than {}",
                parser::MAX_DEPTH
            )));
        }
        let list =
            |items: &[Expr], this: &mut Self| -> Result<(Vec<Expr>, usize, usize), Resolve> {
                let mut out = Vec::with_capacity(items.len());
                let (mut nodes, mut deepest) = (1usize, 0usize);
                for item in items {
                    let (e, n, d) = this.resolve(item, visibility, depth + 1)?;
                    nodes += n;
                    deepest = deepest.max(d);
                    if nodes > MAX_NODES {
                        return Err(Resolve::Here(CompileError {
                            offset: None,
                            message: format!(
                            "the condition with its macros expanded has more than {MAX_NODES} parts"
                        ),
                        }));
                    }
                    out.push(e);
                }
                Ok((out, nodes, deepest + 1))
            };
        Ok(match expr {
            Expr::And(items) => {
                let (items, n, d) = list(items, self)?;
                (Expr::And(items), n, d)
            }
            Expr::Or(items) => {
                let (items, n, d) = list(items, self)?;
                (Expr::Or(items), n, d)
            }
            Expr::Not(inner) => {
                let (e, n, d) = self.resolve(inner, visibility, depth + 1)?;
                (Expr::Not(Box::new(e)), n + 1, d + 1)
            }
            Expr::Macro { name, offset } => {
                let visible = self
                    .defs
                    .iter()
                    .any(|m| &m.name == name && visibility.is_none_or(|v| m.index < v));
                if !visible {
                    return Err(Resolve::Here(CompileError {
                        offset: Some(*offset),
                        message: format!("Undefined macro '{name}' used in filter."),
                    }));
                }
                self.used.insert(name.clone());
                let (nodes, macro_depth) = match self.resolved.get(name) {
                    Some((_, n, d)) => (*n, *d),
                    None => {
                        let (_, n, d) = self.get(name).map_err(Resolve::Inner)?;
                        (n, d)
                    }
                };
                if depth + macro_depth > parser::MAX_DEPTH {
                    return Err(too_big(format!(
                        "the condition with its macros expanded nests deeper than {}",
                        parser::MAX_DEPTH
                    )));
                }
                if nodes > MAX_NODES {
                    return Err(too_big(format!(
                        "the condition with its macros expanded has more than {MAX_NODES} parts"
                    )));
                }
                self.get(name).map_err(Resolve::Inner)?
            }
            check => (check.clone(), 1, 1),
        })
    }
}

enum Resolve {
    /// A problem in the expression being resolved.
    Here(CompileError),
    /// A problem inside a referenced macro, already located.
    Inner(Diagnostic),
}

fn source_enabled(opts: &LoadOptions, source: &str) -> bool {
    opts.enabled_sources
        .as_ref()
        .is_none_or(|s| s.iter().any(|x| x == source))
}

fn substitute_tracking(
    text: &str,
    lists: &[ListDef],
    expanded: &[Vec<String>],
    used: &mut HashSet<String>,
) -> String {
    for list in lists {
        if text.contains(&list.name) {
            used.insert(list.name.clone());
        }
    }
    substitute_lists(text, lists, expanded)
}

fn compile_collection(c: &Collection, opts: &LoadOptions) -> Result<RuleSet, Diagnostic> {
    let expanded = expand_lists(&c.lists);
    let mut macros = Macros {
        defs: &c.macros,
        lists: &c.lists,
        expanded: &expanded,
        resolved: HashMap::new(),
        in_progress: HashSet::new(),
        used: HashSet::new(),
        used_lists: HashSet::new(),
    };
    // Every macro is parsed and resolved, used or not.
    for m in &c.macros {
        macros.get(&m.name)?;
    }
    let mut warnings = Vec::new();
    let mut rules = Vec::new();
    let mut infos = Vec::new();
    let mut typed: Vec<(usize, Option<HashSet<String>>)> = Vec::new();
    for r in &c.rules {
        let mut info = RuleInfo {
            name: r.name.clone(),
            source: r.source.clone(),
            priority: r.priority,
            tags: r.tags.iter().cloned().collect(),
            enabled: r.enabled,
            file: r.file.clone(),
            compiled: false,
        };
        if !source_enabled(opts, &r.source) {
            let message = format!("Unknown source {}, skipping", r.source);
            warnings.push(diag(&r.file, r.pos, format!("rule '{}'", r.name), message));
        } else if let Some((rule, types)) = compile_rule(r, c, &mut macros, &mut warnings)? {
            info.compiled = true;
            typed.push((rules.len(), types));
            rules.push(rule);
        }
        infos.push(info);
    }
    let index = event_type_index(&rules, &typed);
    unused_warnings(c, &macros, &mut warnings);
    Ok(RuleSet {
        revision: 0,
        rules,
        index,
        infos,
        warnings,
    })
}

/// One rule: exceptions rewritten in, lists substituted, parsed, macros resolved, compiled, its
/// output format compiled. `None` when `skip-if-unknown-filter` skips it (with a warning); the
/// event types a syscall rule can match, when they are known.
#[allow(clippy::type_complexity)]
fn compile_rule(
    r: &RuleDef,
    c: &Collection,
    macros: &mut Macros<'_>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Option<(CompiledRule, Option<HashSet<String>>)>, Diagnostic> {
    let item = format!("rule '{}'", r.name);
    check_exceptions(r, warnings)?;
    let with_ex = apply_exceptions(&r.condition, &r.exceptions);
    let text = substitute_tracking(&with_ex, &c.lists, macros.expanded, &mut macros.used_lists);
    let fail = |e: CompileError| {
        let note = position_note(&text, e.offset.unwrap_or(0));
        diag(
            &r.file,
            r.cond_pos,
            item.clone(),
            format!("{}{note}", e.message),
        )
    };
    let parsed = parser::parse(&text).map_err(|e| {
        fail(CompileError {
            offset: Some(e.offset),
            message: e.message,
        })
    })?;
    let resolved = match macros.resolve(&parsed, None, 0) {
        Ok((expr, ..)) => expr,
        Err(Resolve::Here(e)) => return Err(fail(e)),
        Err(Resolve::Inner(d)) => return Err(d),
    };
    let cond = match compiler::compile(&r.source, &resolved) {
        Ok(cond) => cond,
        Err(e) if r.skip_if_unknown_filter && e.message.contains("nonexistent field") => {
            let message = format!("rule skipped: {}", e.message);
            warnings.push(diag(&r.file, r.pos, item, message));
            return Ok(None);
        }
        Err(e) => return Err(fail(e)),
    };
    let output = OutputFormat::compile(&r.source, &r.output)
        .map_err(|m| diag(&r.file, r.output_pos, item.clone(), m))?;
    let types = if r.source == "syscall" {
        compiler::event_types(&resolved)
    } else {
        None
    };
    let rule = CompiledRule {
        name: r.name.clone(),
        desc: r.desc.clone(),
        priority: r.priority,
        source: r.source.clone(),
        tags: r.tags.iter().cloned().collect(),
        enabled: r.enabled,
        file: r.file.clone(),
        condition: text.clone(),
        cond,
        output,
    };
    Ok(Some((rule, types)))
}

/// Per source, the rules each event type can meet: the rules pinned to it plus every untyped
/// rule, in definition order.
fn event_type_index(
    rules: &[CompiledRule],
    typed: &[(usize, Option<HashSet<String>>)],
) -> HashMap<String, SourceIndex> {
    let mut index: HashMap<String, SourceIndex> = HashMap::new();
    for (i, types) in typed {
        let entry = index.entry(rules[*i].source.clone()).or_default();
        match types {
            None => entry.untyped.push(*i),
            Some(types) => {
                for t in types {
                    entry.by_type.entry(t.clone()).or_default();
                }
            }
        }
    }
    for index in index.values_mut() {
        let keys: Vec<String> = index.by_type.keys().cloned().collect();
        for key in keys {
            let list: Vec<usize> = typed
                .iter()
                .filter(|(i, types)| {
                    rules[*i].source == "syscall" && types.as_ref().is_none_or(|t| t.contains(&key))
                })
                .map(|(i, _)| *i)
                .collect();
            index.by_type.insert(key, list);
        }
    }
    index
}

/// Falco's warnings for lists and macros nothing refers to.
fn unused_warnings(c: &Collection, macros: &Macros<'_>, warnings: &mut Vec<Diagnostic>) {
    for l in &c.lists {
        if !macros.used_lists.contains(&l.name)
            && !c.lists.iter().any(|o| o.items.contains(&l.name))
        {
            warnings.push(diag(
                &l.file,
                l.pos,
                format!("list '{}'", l.name),
                "List not referred to by any rule/macro".into(),
            ));
        }
    }
    for m in &c.macros {
        if !macros.used.contains(&m.name) {
            warnings.push(diag(
                &m.file,
                m.pos,
                format!("macro '{}'", m.name),
                "Macro not referred to by any rule/macro".into(),
            ));
        }
    }
}

/// Exception fields must be fields of the rule's source and comps known operators.
fn check_exceptions(r: &RuleDef, warnings: &mut Vec<Diagnostic>) -> Result<(), Diagnostic> {
    let item = format!("rule '{}'", r.name);
    for ex in &r.exceptions {
        let fields: Vec<&String> = match &ex.fields {
            Some(Slot::Scalar(f)) => vec![f],
            Some(Slot::List(fs)) => fs.iter().collect(),
            None => continue,
        };
        for f in &fields {
            let parsed = parser::parse_field_prefix(f).filter(|(_, used)| *used == f.len());
            let ok = parsed
                .as_ref()
                .is_some_and(|(field, _)| getter(&r.source, field).is_ok());
            if !ok {
                return Err(diag(
                    &r.file,
                    ex.pos,
                    item,
                    format!(
                        "Exception '{}': '{f}' is not a valid field for source {}",
                        ex.name, r.source
                    ),
                ));
            }
        }
        let comps: Vec<String> = match &ex.comps {
            Some(Slot::Scalar(c)) => vec![c.trim().to_string()],
            Some(Slot::List(cs)) => cs.iter().map(|c| c.trim().to_string()).collect(),
            None => Vec::new(),
        };
        for comp in &comps {
            let base = comp.split_whitespace().next().unwrap_or("");
            let modifier_ok = comp
                .split_whitespace()
                .nth(1)
                .is_none_or(|m| matches!(m, "oneof" | "anyof" | "allof"));
            if Op::from_text(base).is_none() || !modifier_ok {
                return Err(diag(
                    &r.file,
                    ex.pos,
                    item,
                    format!(
                        "Exception '{}': '{comp}' is not a known comparison operator",
                        ex.name
                    ),
                ));
            }
        }
        for tuple in &ex.values {
            for slot in tuple {
                if let Slot::Scalar(v) = slot {
                    let looks_like_field = parser::parse_field_prefix(v)
                        .filter(|(_, used)| *used == v.len())
                        .is_some_and(|(field, _)| getter(&r.source, &field).is_ok());
                    if looks_like_field {
                        warnings.push(diag(&r.file, ex.pos, item.clone(), format!(
                            "Exception '{}': value '{v}' may be a valid field misused as a const string value", ex.name
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
