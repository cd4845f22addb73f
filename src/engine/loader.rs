//! Rules files → a collection of lists, macros and rules, with Falco's define / append /
//! override / enable semantics. Nothing is parsed or compiled here; conditions stay text, because
//! Falco's appends and list substitutions work on text.

use std::collections::BTreeSet;
use std::fmt;

use super::yaml::{self, Node, Pos};
use super::ENGINE_VERSION;
use crate::base::event::Priority;

/// An error or warning about a rules file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    /// `rule 'Name'`, `macro 'name'`, `list 'name'`, … when the problem belongs to an item.
    pub item: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.col)?;
        if let Some(item) = &self.item {
            write!(f, "{item}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A list's or exception's value: text, or a nested sequence of text.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    Scalar(String),
    List(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExceptionDef {
    pub name: String,
    /// `None` when appending values to an existing exception.
    pub fields: Option<Slot>,
    pub comps: Option<Slot>,
    /// Scalar form: scalars. List form: one tuple (a `Slot::List` of slots) per entry, kept as
    /// nodes-of-slots below.
    pub values: Vec<Vec<Slot>>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct ListDef {
    pub name: String,
    pub items: Vec<String>,
    /// When it was first defined: what other items compare against to see it.
    pub index: u64,
    /// When it was last (re)defined or appended to: it sees items with a lower `index`.
    pub visibility: u64,
    pub file: String,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub name: String,
    pub condition: String,
    /// As for lists: first definition, and last (re)definition.
    pub index: u64,
    pub visibility: u64,
    pub file: String,
    pub pos: Pos,
    pub cond_pos: Pos,
}

#[derive(Clone, Debug)]
pub struct RuleDef {
    pub name: String,
    pub condition: String,
    pub output: String,
    pub desc: String,
    pub priority: Priority,
    pub source: String,
    pub tags: BTreeSet<String>,
    pub enabled: bool,
    pub exceptions: Vec<ExceptionDef>,
    pub skip_if_unknown_filter: bool,
    pub file: String,
    pub pos: Pos,
    pub cond_pos: Pos,
    pub output_pos: Pos,
}

/// A plugin version requirement (`required_plugin_versions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRequirement {
    pub alternatives: Vec<(String, String)>,
    pub file: String,
    pub pos: Pos,
}

/// Everything loaded so far, in definition order.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    pub lists: Vec<ListDef>,
    pub macros: Vec<MacroDef>,
    pub rules: Vec<RuleDef>,
    pub plugin_requirements: Vec<PluginRequirement>,
    pub warnings: Vec<Diagnostic>,
    counter: u64,
}

type Res<T> = Result<T, Diagnostic>;

struct Ctx<'a> {
    file: &'a str,
    item: Option<String>,
}

impl Ctx<'_> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            pos,
            item: self.item.clone(),
            message: message.into(),
        }
    }
}

const RULE_OVERRIDE_APPEND: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_OVERRIDE_REPLACE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];
const RULE_KEYS: &[&str] = &[
    "rule",
    "condition",
    "output",
    "desc",
    "priority",
    "source",
    "enabled",
    "tags",
    "exceptions",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
    "append",
    "override",
];

fn scalar<'n>(ctx: &Ctx, node: &'n Node, key: &str) -> Res<&'n str> {
    node.as_str().ok_or_else(|| {
        ctx.err(
            node.pos(),
            format!("'{key}' must be a scalar, found {}", node.kind()),
        )
    })
}

fn text_of(ctx: &Ctx, node: &Node, key: &str) -> Res<String> {
    match node {
        Node::Null(_) => Ok(String::new()),
        other => scalar(ctx, other, key).map(str::to_string),
    }
}

fn bool_of(ctx: &Ctx, node: &Node, key: &str) -> Res<bool> {
    node.as_bool().ok_or_else(|| {
        ctx.err(
            node.pos(),
            format!("'{key}' must be a boolean (true or false)"),
        )
    })
}

fn scalars(ctx: &Ctx, node: &Node, key: &str) -> Res<Vec<String>> {
    match node {
        Node::Seq { items, .. } => items
            .iter()
            .filter(|n| !n.is_null())
            .map(|n| scalar(ctx, n, key).map(str::to_string))
            .collect(),
        Node::Null(_) => Ok(Vec::new()),
        other => Err(ctx.err(
            other.pos(),
            format!("'{key}' must be a sequence, found {}", other.kind()),
        )),
    }
}

fn slot(ctx: &Ctx, node: &Node, key: &str) -> Res<Slot> {
    match node {
        Node::Seq { .. } => scalars(ctx, node, key).map(Slot::List),
        other => text_of(ctx, other, key).map(Slot::Scalar),
    }
}

impl Collection {
    fn next_visibility(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn warn(&mut self, ctx: &Ctx, pos: Pos, message: impl Into<String>) {
        self.warnings.push(ctx.err(pos, message));
    }

    /// Loads one rules file on top of what is collected. On error nothing of this file is kept
    /// (the caller keeps the previous collection).
    pub fn load(&mut self, file: &str, content: &str) -> Res<()> {
        let ctx = Ctx { file, item: None };
        let docs = yaml::parse_documents(content)
            .map_err(|e| ctx.err(e.pos, format!("invalid YAML: {}", e.message)))?;
        for doc in docs {
            match &doc {
                Node::Null(_) => {}
                Node::Seq { items, .. } => {
                    for item in items {
                        self.item(file, item)?;
                    }
                }
                other => {
                    return Err(ctx.err(
                        other.pos(),
                        format!(
                            "rules content must be a sequence of items, found {}",
                            other.kind()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    fn item(&mut self, file: &str, node: &Node) -> Res<()> {
        let ctx = Ctx { file, item: None };
        match node {
            Node::Null(_) => Ok(()),
            Node::Map { .. } => {
                for (kind, handler) in [
                    (
                        "required_engine_version",
                        Self::engine_version as fn(&mut Self, &str, &Node) -> Res<()>,
                    ),
                    ("required_plugin_versions", Self::plugin_versions),
                    ("list", Self::list),
                    ("macro", Self::macro_item),
                    ("rule", Self::rule),
                ] {
                    if node.get(kind).is_some() {
                        return handler(self, file, node);
                    }
                }
                self.warn(&ctx, node.pos(), "Unknown top level item");
                Ok(())
            }
            other => Err(ctx.err(
                other.pos(),
                format!("an item must be a mapping, found {}", other.kind()),
            )),
        }
    }

    fn engine_version(&mut self, file: &str, node: &Node) -> Res<()> {
        let ctx = Ctx {
            file,
            item: Some("required_engine_version".into()),
        };
        let value = node.get("required_engine_version").expect("checked");
        let text = scalar(&ctx, value, "required_engine_version")?;
        let required = match text.parse::<u32>() {
            Ok(minor) => (0, minor, 0),
            Err(_) => parse_semver(text).ok_or_else(|| {
                ctx.err(
                    value.pos(),
                    format!("'{text}' is not a version (N or x.y.z)"),
                )
            })?,
        };
        if required.0 != ENGINE_VERSION.0 || required > ENGINE_VERSION {
            let (a, b, c) = required;
            let (x, y, z) = ENGINE_VERSION;
            return Err(ctx.err(
                value.pos(),
                format!(
                    "Rules require engine version {a}.{b}.{c}, but engine version is {x}.{y}.{z}"
                ),
            ));
        }
        Ok(())
    }

    fn plugin_versions(&mut self, file: &str, node: &Node) -> Res<()> {
        let ctx = Ctx {
            file,
            item: Some("required_plugin_versions".into()),
        };
        let Node::Seq { items, .. } = node.get("required_plugin_versions").expect("checked") else {
            return Err(ctx.err(node.pos(), "'required_plugin_versions' must be a sequence"));
        };
        for entry in items {
            let mut alternatives = Vec::new();
            let name = scalar(
                &ctx,
                entry
                    .get("name")
                    .ok_or_else(|| ctx.err(entry.pos(), "missing 'name'"))?,
                "name",
            )?;
            let version = scalar(
                &ctx,
                entry
                    .get("version")
                    .ok_or_else(|| ctx.err(entry.pos(), "missing 'version'"))?,
                "version",
            )?;
            alternatives.push((name.to_string(), version.to_string()));
            if let Some(Node::Seq { items: alts, .. }) = entry.get("alternatives") {
                for alt in alts {
                    let n = alt.get("name").and_then(Node::as_str).unwrap_or_default();
                    let v = alt
                        .get("version")
                        .and_then(Node::as_str)
                        .unwrap_or_default();
                    if alternatives.iter().any(|(existing, _)| existing == n) {
                        return Err(ctx.err(
                            alt.pos(),
                            format!("duplicate plugin name '{n}' in alternatives"),
                        ));
                    }
                    alternatives.push((n.to_string(), v.to_string()));
                }
            }
            for (n, v) in &alternatives {
                if parse_semver(v).is_none() {
                    return Err(ctx.err(
                        entry.pos(),
                        format!("plugin '{n}' version '{v}' is not semver"),
                    ));
                }
            }
            self.plugin_requirements.push(PluginRequirement {
                alternatives,
                file: file.to_string(),
                pos: entry.pos(),
            });
        }
        Ok(())
    }

    /// Reads `override:`; returns (key, is_append) pairs after checking them against the item.
    fn overrides(
        ctx: &Ctx,
        node: &Node,
        allowed_append: &[&str],
        allowed_replace: &[&str],
    ) -> Res<Option<Vec<(String, bool)>>> {
        let Some(ov) = node.get("override") else {
            return Ok(None);
        };
        if node.get("append").is_some() {
            return Err(ctx.err(
                ov.pos(),
                "Keys 'override' and 'append: true' cannot be used together.",
            ));
        }
        let Node::Map { entries, .. } = ov else {
            return Err(ctx.err(ov.pos(), "'override' must be a mapping"));
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = scalar(ctx, k, "override")?;
            let mode = scalar(ctx, v, key)?;
            let append = match mode {
                "append" if allowed_append.contains(&key) => true,
                "replace" if allowed_replace.contains(&key) => false,
                "append" | "replace" => {
                    return Err(ctx.err(
                        v.pos(),
                        format!("Key '{key}' cannot be overridden with '{mode}'"),
                    ))
                }
                other => {
                    return Err(ctx.err(
                        v.pos(),
                        format!(
                        "Invalid override mode '{other}' for '{key}' (expected append or replace)"
                    ),
                    ))
                }
            };
            if node.get(key).is_none() {
                return Err(ctx.err(
                    k.pos(),
                    format!("An override is defined for '{key}' but the item has no '{key}' key"),
                ));
            }
            out.push((key.to_string(), append));
        }
        if let Node::Map { entries, .. } = node {
            for (k, _) in entries {
                let key = k.as_str().unwrap_or_default();
                let overridable = allowed_append.contains(&key) || allowed_replace.contains(&key);
                if overridable && !out.iter().any(|(o, _)| o == key) {
                    return Err(ctx.err(k.pos(), format!("Unexpected key '{key}': no corresponding entry under 'override' is defined.")));
                }
            }
        }
        Ok(Some(out))
    }

    fn list(&mut self, file: &str, node: &Node) -> Res<()> {
        let name_node = node.get("list").expect("checked");
        let name = text_of(&Ctx { file, item: None }, name_node, "list")?;
        let ctx = Ctx {
            file,
            item: Some(format!("list '{name}'")),
        };
        let items_node = node
            .get("items")
            .ok_or_else(|| ctx.err(node.pos(), "Item has no mapping for key 'items'"))?;
        let items = scalars(&ctx, items_node, "items")?;
        let overrides = Self::overrides(&ctx, node, &["items"], &["items"])?;
        let append = match &overrides {
            Some(o) => o.iter().any(|(_, append)| *append),
            None => match node.get("append") {
                Some(a) => bool_of(&ctx, a, "append")?,
                None => false,
            },
        };
        let visibility = self.next_visibility();
        let existing = self.lists.iter_mut().find(|l| l.name == name);
        match (existing, append) {
            (Some(list), true) => {
                list.items.extend(items);
                list.visibility = visibility;
            }
            (None, true) => {
                return Err(ctx.err(node.pos(), "List uses 'append' or 'override.items: append' but no list by that name already exists"))
            }
            (Some(list), false) => {
                list.items = items;
                list.visibility = visibility;
            }
            (None, false) => self.lists.push(ListDef {
                name,
                items,
                index: visibility,
                visibility,
                file: file.into(),
                pos: node.pos(),
            }),
        }
        Ok(())
    }

    fn macro_item(&mut self, file: &str, node: &Node) -> Res<()> {
        let name = text_of(
            &Ctx { file, item: None },
            node.get("macro").expect("checked"),
            "macro",
        )?;
        let ctx = Ctx {
            file,
            item: Some(format!("macro '{name}'")),
        };
        let cond_node = node
            .get("condition")
            .ok_or_else(|| ctx.err(node.pos(), "Item has no mapping for key 'condition'"))?;
        let condition = text_of(&ctx, cond_node, "condition")?;
        let overrides = Self::overrides(&ctx, node, &["condition"], &["condition"])?;
        let append = match &overrides {
            Some(o) => o.iter().any(|(_, append)| *append),
            None => match node.get("append") {
                Some(a) => bool_of(&ctx, a, "append")?,
                None => false,
            },
        };
        let visibility = self.next_visibility();
        let existing = self.macros.iter_mut().find(|m| m.name == name);
        match (existing, append) {
            (Some(m), true) => {
                m.condition = format!("{} {}", m.condition, condition);
                m.visibility = visibility;
            }
            (None, true) => {
                return Err(ctx.err(node.pos(), "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists"))
            }
            (Some(m), false) => {
                m.condition = condition;
                m.visibility = visibility;
                m.cond_pos = cond_node.pos();
                m.file = file.into();
            }
            (None, false) => self.macros.push(MacroDef {
                name,
                condition,
                index: visibility,
                visibility,
                file: file.into(),
                pos: node.pos(),
                cond_pos: cond_node.pos(),
            }),
        }
        Ok(())
    }

    fn rule(&mut self, file: &str, node: &Node) -> Res<()> {
        let name = text_of(
            &Ctx { file, item: None },
            node.get("rule").expect("checked"),
            "rule",
        )?;
        let ctx = Ctx {
            file,
            item: Some(format!("rule '{name}'")),
        };
        if let Node::Map { entries, .. } = node {
            for (k, _) in entries {
                let key = k.as_str().unwrap_or_default();
                if !RULE_KEYS.contains(&key) {
                    self.warn(
                        &ctx,
                        k.pos(),
                        format!("Unknown key '{key}'. The key will be ignored."),
                    );
                }
            }
        }
        let overrides = Self::overrides(&ctx, node, RULE_OVERRIDE_APPEND, RULE_OVERRIDE_REPLACE)?;
        let legacy_append = match node.get("append") {
            Some(a) => bool_of(&ctx, a, "append")?,
            None => false,
        };
        // An empty `override: {}` names nothing to override: the item is read as a plain
        // definition, as Falco's reader does when no key asks for append or replace.
        if let Some(overrides) = overrides.filter(|o| !o.is_empty()) {
            return self.rule_override(&ctx, &name, node, &overrides);
        }
        if legacy_append {
            self.warn(
                &ctx,
                node.pos(),
                "'append' key is deprecated. Use 'override' instead.",
            );
            return self.rule_append(&ctx, &name, node);
        }
        let has_any = ["condition", "output", "desc", "priority"]
            .iter()
            .any(|k| node.get(k).is_some());
        if !has_any {
            return self.rule_enable_only(&ctx, &name, node);
        }
        for key in ["condition", "output", "desc", "priority"] {
            if node.get(key).is_none() {
                return Err(ctx.err(node.pos(), format!("Item has no mapping for key '{key}'")));
            }
        }
        let rule = self.read_rule(&ctx, &name, file, node)?;
        if let Some(existing) = self.rules.iter_mut().find(|r| r.name == name) {
            if node.get("source").is_some() && existing.source != rule.source {
                return Err(ctx.err(
                    node.pos(),
                    format!(
                        "Rule has been re-defined with a different source ('{}' before, '{}' now)",
                        existing.source, rule.source
                    ),
                ));
            }
            *existing = rule;
        } else {
            self.rules.push(rule);
        }
        Ok(())
    }

    fn read_rule(&mut self, ctx: &Ctx, name: &str, file: &str, node: &Node) -> Res<RuleDef> {
        let get = |k: &str| node.get(k);
        let cond_node = get("condition").expect("checked");
        let output_node = get("output").expect("checked");
        let priority_node = get("priority").expect("checked");
        let priority_text = scalar(ctx, priority_node, "priority")?;
        let priority = priority_text.parse::<Priority>().map_err(|_| {
            ctx.err(
                priority_node.pos(),
                format!("Invalid priority '{priority_text}'"),
            )
        })?;
        let source = match get("source") {
            Some(s) => scalar(ctx, s, "source")?.to_string(),
            None => "syscall".to_string(),
        };
        let tags = match get("tags") {
            Some(t) => scalars(ctx, t, "tags")?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        let enabled = match get("enabled") {
            Some(e) => bool_of(ctx, e, "enabled")?,
            None => true,
        };
        let skip = match get("skip-if-unknown-filter") {
            Some(e) => bool_of(ctx, e, "skip-if-unknown-filter")?,
            None => false,
        };
        let exceptions = match get("exceptions") {
            Some(ex) => self.read_exceptions(ctx, ex, true)?,
            None => Vec::new(),
        };
        Ok(RuleDef {
            name: name.to_string(),
            condition: text_of(ctx, cond_node, "condition")?,
            output: text_of(ctx, output_node, "output")?.trim().to_string(),
            desc: text_of(ctx, get("desc").expect("checked"), "desc")?,
            priority,
            source,
            tags,
            enabled,
            exceptions,
            skip_if_unknown_filter: skip,
            file: file.to_string(),
            pos: node.pos(),
            cond_pos: cond_node.pos(),
            output_pos: output_node.pos(),
        })
    }

    fn read_exceptions(
        &mut self,
        ctx: &Ctx,
        node: &Node,
        defining: bool,
    ) -> Res<Vec<ExceptionDef>> {
        let Node::Seq { items, .. } = node else {
            if node.is_null() {
                return Ok(Vec::new());
            }
            return Err(ctx.err(node.pos(), "'exceptions' must be a sequence"));
        };
        let mut out: Vec<ExceptionDef> = Vec::new();
        for ex in items {
            let name_node = ex
                .get("name")
                .ok_or_else(|| ctx.err(ex.pos(), "Item has no mapping for key 'name'"))?;
            let name = text_of(ctx, name_node, "name")?;
            let fields = ex
                .get("fields")
                .map(|f| slot(ctx, f, "fields"))
                .transpose()?;
            let comps = ex.get("comps").map(|c| slot(ctx, c, "comps")).transpose()?;
            if defining && fields.is_none() {
                return Err(ctx.err(
                    ex.pos(),
                    format!("Exception '{name}': Item has no mapping for key 'fields'"),
                ));
            }
            let values = match ex.get("values") {
                None | Some(Node::Null(_)) => Vec::new(),
                Some(Node::Seq { items, .. }) => items
                    .iter()
                    .map(|v| match v {
                        Node::Seq { items: tuple, .. } => {
                            tuple.iter().map(|t| slot(ctx, t, "values")).collect()
                        }
                        other => slot(ctx, other, "values").map(|s| vec![s]).map(|mut v| {
                            // A scalar entry of the scalar form: one slot, marked by wrapping.
                            v.shrink_to_fit();
                            v
                        }),
                    })
                    .collect::<Res<Vec<Vec<Slot>>>>()?,
                Some(other) => return Err(ctx.err(other.pos(), "'values' must be a sequence")),
            };
            let def = ExceptionDef {
                name: name.clone(),
                fields,
                comps,
                values,
                pos: ex.pos(),
            };
            if def.fields.is_some() {
                check_exception_shape(ctx, &def, ex.pos())?;
            }
            if out.iter().any(|e| e.name == name) {
                self.warn(
                    ctx,
                    ex.pos(),
                    format!("Multiple definitions of exception '{name}' in the same rule"),
                );
            }
            out.push(def);
        }
        Ok(out)
    }

    fn merge_exceptions(&mut self, ctx: &Ctx, rule: usize, incoming: Vec<ExceptionDef>) -> Res<()> {
        for ex in incoming {
            let existing = self.rules[rule]
                .exceptions
                .iter_mut()
                .find(|e| e.name == ex.name);
            match existing {
                Some(e) => {
                    if ex.fields.is_some() || ex.comps.is_some() {
                        return Err(ctx.err(ex.pos, format!(
                            "Can not append exception fields to existing exception '{}', only values",
                            ex.name
                        )));
                    }
                    if ex.values.is_empty() {
                        let message = format!(
                            "Overriding/appending exception '{}' with no values",
                            ex.name
                        );
                        self.warnings.push(ctx.err(ex.pos, message));
                    }
                    // Appended values meet the same checks as values written in place,
                    // against the fields and comps of the exception they join.
                    let joined = ExceptionDef {
                        name: ex.name.clone(),
                        fields: e.fields.clone(),
                        comps: e.comps.clone(),
                        values: ex.values,
                        pos: ex.pos,
                    };
                    check_exception_shape(ctx, &joined, ex.pos)?;
                    e.values.extend(joined.values);
                }
                None => {
                    if ex.fields.is_none() {
                        return Err(ctx.err(
                            ex.pos,
                            format!(
                                "Exception '{}': Item has no mapping for key 'fields'",
                                ex.name
                            ),
                        ));
                    }
                    if ex.values.is_empty() {
                        return Err(ctx.err(
                            ex.pos,
                            format!("Exception '{}' is new and has no values", ex.name),
                        ));
                    }
                    self.rules[rule].exceptions.push(ex);
                }
            }
        }
        Ok(())
    }

    fn find_rule(&self, ctx: &Ctx, name: &str, node: &Node, what: &str) -> Res<usize> {
        self.rules
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| {
                ctx.err(
                    node.pos(),
                    format!("{what} but no rule by that name already exists"),
                )
            })
    }

    fn rule_append(&mut self, ctx: &Ctx, name: &str, node: &Node) -> Res<()> {
        let idx = self.find_rule(ctx, name, node, "Rule uses 'append'")?;
        let cond = node.get("condition");
        let ex = node.get("exceptions");
        if cond.is_none() && ex.is_none() {
            return Err(ctx.err(
                node.pos(),
                "Appended rule must have exceptions or condition property",
            ));
        }
        if let Some(c) = cond {
            let text = text_of(ctx, c, "condition")?;
            let rule = &mut self.rules[idx];
            rule.condition = format!("{} {}", rule.condition, text);
        }
        if let Some(ex) = ex {
            let incoming = self.read_exceptions(ctx, ex, false)?;
            self.merge_exceptions(ctx, idx, incoming)?;
        }
        Ok(())
    }

    fn rule_override(
        &mut self,
        ctx: &Ctx,
        name: &str,
        node: &Node,
        overrides: &[(String, bool)],
    ) -> Res<()> {
        let idx = self.rules.iter().position(|r| r.name == name);
        let Some(idx) = idx else {
            let (key, append) = &overrides[0];
            let mode = if *append { "append" } else { "replace" };
            return Err(ctx.err(node.pos(), format!(
                "An 'override.{key}: {mode}' to a rule was requested but no rule by that name already exists"
            )));
        };
        // Appends first, then replaces.
        for pass_append in [true, false] {
            for (key, append) in overrides.iter().filter(|(_, a)| *a == pass_append) {
                let value = node.get(key).expect("checked by overrides()");
                self.apply_override(ctx, idx, key, value, *append)?;
            }
        }
        Ok(())
    }

    fn apply_override(
        &mut self,
        ctx: &Ctx,
        idx: usize,
        key: &str,
        value: &Node,
        append: bool,
    ) -> Res<()> {
        let join = |old: &mut String, new: String| {
            if !new.is_empty() {
                *old = format!("{old} {new}");
            }
        };
        match (key, append) {
            ("exceptions", true) => {
                let incoming = self.read_exceptions(ctx, value, false)?;
                return self.merge_exceptions(ctx, idx, incoming);
            }
            ("exceptions", false) => {
                let replacement = self.read_exceptions(ctx, value, true)?;
                self.rules[idx].exceptions = replacement;
                return Ok(());
            }
            _ => {}
        }
        let rule = &mut self.rules[idx];
        match (key, append) {
            ("condition", true) => join(&mut rule.condition, text_of(ctx, value, key)?),
            ("output", true) => join(
                &mut rule.output,
                text_of(ctx, value, key)?.trim().to_string(),
            ),
            ("desc", true) => join(&mut rule.desc, text_of(ctx, value, key)?),
            ("tags", true) => rule.tags.extend(scalars(ctx, value, key)?),
            ("condition", false) => {
                rule.condition = text_of(ctx, value, key)?;
                rule.cond_pos = value.pos();
            }
            ("output", false) => {
                rule.output = text_of(ctx, value, key)?.trim().to_string();
                rule.output_pos = value.pos();
            }
            ("desc", false) => rule.desc = text_of(ctx, value, key)?,
            ("tags", false) => rule.tags = scalars(ctx, value, key)?.into_iter().collect(),
            ("priority", false) => {
                let text = scalar(ctx, value, key)?;
                rule.priority = text
                    .parse()
                    .map_err(|_| ctx.err(value.pos(), format!("Invalid priority '{text}'")))?;
            }
            ("enabled", false) => rule.enabled = bool_of(ctx, value, key)?,
            ("skip-if-unknown-filter", false) => {
                rule.skip_if_unknown_filter = bool_of(ctx, value, key)?
            }
            _ => {} // warn_evttypes, capture, capture_duration: accepted, no effect here
        }
        Ok(())
    }

    fn rule_enable_only(&mut self, ctx: &Ctx, name: &str, node: &Node) -> Res<()> {
        let Some(enabled) = node.get("enabled") else {
            return Err(ctx.err(node.pos(), "Item has no mapping for key 'condition'"));
        };
        let value = bool_of(ctx, enabled, "enabled")?;
        let idx = self.find_rule(ctx, name, node, "Rule has 'enabled' key")?;
        self.rules[idx].enabled = value;
        self.warn(ctx, node.pos(), "The rule has 'enabled' but no other definition keys; this form is deprecated, use 'override: {enabled: replace}'");
        Ok(())
    }
}

fn check_exception_shape(ctx: &Ctx, ex: &ExceptionDef, pos: Pos) -> Res<()> {
    let name = &ex.name;
    match (&ex.fields, &ex.comps) {
        (Some(Slot::List(fields)), comps) => {
            if let Some(comps) = comps {
                let Slot::List(comps) = comps else {
                    return Err(ctx.err(
                        pos,
                        format!(
                            "Exception '{name}': fields is a list, so comps must be a list too"
                        ),
                    ));
                };
                if comps.len() != fields.len() {
                    return Err(ctx.err(
                        pos,
                        format!(
                            "Exception '{name}': Fields and comps lists must have equal length"
                        ),
                    ));
                }
            }
            for tuple in &ex.values {
                if tuple.len() != fields.len() {
                    return Err(ctx.err(
                        pos,
                        format!(
                            "Exception '{name}': Fields and values lists must have equal length"
                        ),
                    ));
                }
            }
        }
        (Some(Slot::Scalar(_)), Some(Slot::List(_))) => {
            return Err(ctx.err(
                pos,
                format!("Exception '{name}': fields is a scalar, so comps must be a scalar too"),
            ));
        }
        (Some(Slot::Scalar(_)), _) => {
            for value in &ex.values {
                if value.len() != 1 || !matches!(value[0], Slot::Scalar(_)) {
                    return Err(ctx.err(
                        pos,
                        format!("Exception '{name}': with a single field, values must be scalars"),
                    ));
                }
            }
        }
        (None, _) => {}
    }
    Ok(())
}

/// `x.y.z` → numbers; pre-release and build parts are ignored.
pub fn parse_semver(text: &str) -> Option<(u32, u32, u32)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}
