//! Compiling a collection into a rule set: plugin requirements, macros resolved to trees (with
//! bounds on size and nesting), each rule's exceptions, lists, condition and output compiled, the
//! per-event-type index, and Falco's warnings for what nothing uses.

use std::collections::{HashMap, HashSet};

use super::{CompiledRule, LoadOptions, RuleInfo, RuleSet, SourceIndex, NATIVE_PLUGINS};
use crate::engine::ast::{Expr, Op};
use crate::engine::compiler::{self, is_field, CompileError};
use crate::engine::format::OutputFormat;
use crate::engine::loader::{
    Collection, Diagnostic, ExceptionDef, ListDef, MacroDef, RuleDef, Slot,
};
use crate::engine::parser;
use crate::engine::text::{apply_exceptions, expand_lists, substitute_lists};
use crate::engine::yaml::Pos;

/// `required_plugin_versions` entries no native plugin satisfies (same major, not older). They
/// are warnings: falco-api has no plugin loader, and reads other plugins' fields from payloads.
pub(super) fn unmet_plugin_requirements(c: &Collection) -> Vec<Diagnostic> {
    c.plugin_requirements
        .iter()
        .filter(|req| {
            !req.alternatives.iter().any(|(name, version)| {
                let wanted = crate::engine::loader::parse_semver(version);
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
    fn new(c: &'c Collection, expanded: &'c [Vec<String>]) -> Macros<'c> {
        Macros {
            defs: &c.macros,
            lists: &c.lists,
            expanded,
            resolved: HashMap::new(),
            in_progress: HashSet::new(),
            used: HashSet::new(),
            used_lists: HashSet::new(),
        }
    }

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
        let here = |message: String| diag(&m.file, m.cond_pos, item.clone(), message);
        if !self.in_progress.insert(name.to_string()) {
            return Err(here("reference loop in macro".into()));
        }
        if self.in_progress.len() > MAX_MACRO_NESTING {
            return Err(here(format!(
                "macros nest deeper than {MAX_MACRO_NESTING} levels"
            )));
        }
        let text = substitute_tracking(
            &m.condition,
            self.lists,
            self.expanded,
            &mut self.used_lists,
        );
        let parsed = parser::parse(&text)
            .map_err(|e| here(format!("{}{}", e.message, position_note(&text, e.offset))))?;
        let resolved = self
            .resolve(&parsed, Some(m.visibility), 0)
            .map_err(|e| match e {
                Resolve::Here(e) => here(format!(
                    "{}{}",
                    e.message,
                    position_note(&text, e.offset.unwrap_or(0))
                )),
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
        if depth > parser::MAX_DEPTH {
            let offset = match expr {
                Expr::Macro { offset, .. } | Expr::Check { offset, .. } => Some(*offset),
                _ => None,
            };
            return Err(too_deep(offset));
        }
        Ok(match expr {
            Expr::And(items) => {
                let (items, n, d) = self.resolve_all(items, visibility, depth)?;
                (Expr::And(items), n, d)
            }
            Expr::Or(items) => {
                let (items, n, d) = self.resolve_all(items, visibility, depth)?;
                (Expr::Or(items), n, d)
            }
            Expr::Not(inner) => {
                let (e, n, d) = self.resolve(inner, visibility, depth + 1)?;
                (Expr::Not(Box::new(e)), n + 1, d + 1)
            }
            Expr::Macro { name, offset } => self.resolve_macro(name, *offset, visibility, depth)?,
            check => (check.clone(), 1, 1),
        })
    }

    /// The operands of an `and` / `or`, with their total parts and depth.
    fn resolve_all(
        &mut self,
        items: &[Expr],
        visibility: Option<u64>,
        depth: usize,
    ) -> Result<(Vec<Expr>, usize, usize), Resolve> {
        let mut out = Vec::with_capacity(items.len());
        let (mut nodes, mut deepest) = (1usize, 0usize);
        for item in items {
            let (e, n, d) = self.resolve(item, visibility, depth + 1)?;
            nodes += n;
            deepest = deepest.max(d);
            if nodes > MAX_NODES {
                return Err(too_many(None));
            }
            out.push(e);
        }
        Ok((out, nodes, deepest + 1))
    }

    /// A macro used at `offset`: visible from here, and within the bounds once expanded.
    fn resolve_macro(
        &mut self,
        name: &str,
        offset: usize,
        visibility: Option<u64>,
        depth: usize,
    ) -> Result<(Expr, usize, usize), Resolve> {
        let visible = self
            .defs
            .iter()
            .any(|m| m.name == name && visibility.is_none_or(|v| m.index < v));
        if !visible {
            return Err(Resolve::Here(CompileError {
                offset: Some(offset),
                message: format!("Undefined macro '{name}' used in filter."),
            }));
        }
        self.used.insert(name.to_string());
        let (nodes, macro_depth) = match self.resolved.get(name) {
            Some((_, n, d)) => (*n, *d),
            None => {
                let (_, n, d) = self.get(name).map_err(Resolve::Inner)?;
                (n, d)
            }
        };
        if depth + macro_depth > parser::MAX_DEPTH {
            return Err(too_deep(Some(offset)));
        }
        if nodes > MAX_NODES {
            return Err(too_many(Some(offset)));
        }
        self.get(name).map_err(Resolve::Inner)
    }
}

fn too_deep(offset: Option<usize>) -> Resolve {
    Resolve::Here(CompileError {
        offset,
        message: format!(
            "the condition with its macros expanded nests deeper than {}",
            parser::MAX_DEPTH
        ),
    })
}

fn too_many(offset: Option<usize>) -> Resolve {
    Resolve::Here(CompileError {
        offset,
        message: format!("the condition with its macros expanded has more than {MAX_NODES} parts"),
    })
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

/// A compiled rule and the event types it is pinned to (`None`: any), or nothing when it is
/// not compiled.
type Compiled = Option<(CompiledRule, Option<HashSet<String>>)>;

/// [`compile_rule`], then a warning for each kind of field it uses that is never evaluated.
fn compile_noting(
    r: &RuleDef,
    c: &Collection,
    macros: &mut Macros,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Compiled, Diagnostic> {
    crate::engine::catalog::take_used();
    let compiled = compile_rule(r, c, macros, warnings)?;
    let unevaluated = crate::engine::catalog::take_used();
    let here = |message: String| diag(&r.file, r.pos, format!("rule '{}'", r.name), message);
    if !unevaluated.catalog.is_empty() {
        warnings.push(here(format!(
            "uses fields known only from the field catalog ({}): they are validated but not \
             evaluated by falco-api, so this rule never matches here",
            unevaluated.catalog.join(", ")
        )));
    }
    if !unevaluated.native.is_empty() {
        warnings.push(here(format!(
            "uses fields falco-api validates but never extracts ({}): they need state across \
             events or a capture, which a server does not have; checks on them are false",
            unevaluated.native.join(", ")
        )));
    }
    Ok(compiled)
}

pub(super) fn compile_collection(
    c: &Collection,
    opts: &LoadOptions,
) -> Result<RuleSet, Diagnostic> {
    let expanded = expand_lists(&c.lists);
    let mut macros = Macros::new(c, &expanded);
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
        } else if let Some((rule, types)) = compile_noting(r, c, &mut macros, &mut warnings)? {
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
) -> Result<Compiled, Diagnostic> {
    let item = format!("rule '{}'", r.name);
    check_exceptions(r, warnings)?;
    let (text, resolved) = rule_condition(r, c, macros)?;
    let fail = |e: CompileError| {
        let note = position_note(&text, e.offset.unwrap_or(0));
        diag(
            &r.file,
            r.cond_pos,
            item.clone(),
            format!("{}{note}", e.message),
        )
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

/// A rule's condition as compiled: exceptions rewritten in, lists substituted (the text), parsed
/// and its macros resolved (the tree).
fn rule_condition(
    r: &RuleDef,
    c: &Collection,
    macros: &mut Macros<'_>,
) -> Result<(String, Expr), Diagnostic> {
    let with_ex = apply_exceptions(&r.condition, &r.exceptions);
    let text = substitute_tracking(&with_ex, &c.lists, macros.expanded, &mut macros.used_lists);
    let fail = |message: String, offset: usize| {
        let note = position_note(&text, offset);
        diag(
            &r.file,
            r.cond_pos,
            format!("rule '{}'", r.name),
            format!("{message}{note}"),
        )
    };
    let parsed = parser::parse(&text).map_err(|e| fail(e.message, e.offset))?;
    let resolved = match macros.resolve(&parsed, None, 0) {
        Ok((expr, ..)) => expr,
        Err(Resolve::Here(e)) => return Err(fail(e.message, e.offset.unwrap_or(0))),
        Err(Resolve::Inner(d)) => return Err(d),
    };
    Ok((text, resolved))
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
    r.exceptions
        .iter()
        .try_for_each(|ex| check_exception(r, ex, warnings))
}

fn check_exception(
    r: &RuleDef,
    ex: &ExceptionDef,
    warnings: &mut Vec<Diagnostic>,
) -> Result<(), Diagnostic> {
    let here = |message: String| diag(&r.file, ex.pos, format!("rule '{}'", r.name), message);
    let fields: Vec<&String> = match &ex.fields {
        Some(Slot::Scalar(f)) => vec![f],
        Some(Slot::List(fs)) => fs.iter().collect(),
        None => return Ok(()),
    };
    if let Some(f) = fields.iter().find(|f| !is_field(&r.source, f)) {
        return Err(here(format!(
            "Exception '{}': '{f}' is not a valid field for source {}",
            ex.name, r.source
        )));
    }
    let comps: Vec<&str> = match &ex.comps {
        Some(Slot::Scalar(c)) => vec![c.trim()],
        Some(Slot::List(cs)) => cs.iter().map(|c| c.trim()).collect(),
        None => Vec::new(),
    };
    let known = |comp: &str| Op::parse_comp(comp).is_some();
    if let Some(comp) = comps.iter().find(|c| !known(c)) {
        return Err(here(format!(
            "Exception '{}': '{comp}' is not a known comparison operator",
            ex.name
        )));
    }
    for slot in ex.values.iter().flatten() {
        if let Slot::Scalar(v) = slot {
            if is_field(&r.source, v) {
                warnings.push(here(format!(
                    "Exception '{}': value '{v}' may be a valid field misused as a const string value",
                    ex.name
                )));
            }
        }
    }
    Ok(())
}
