//! Rules files → a collection of lists, macros and rules, with Falco's define / append /
//! override / enable semantics. Nothing is parsed or compiled here; conditions stay text, because
//! Falco's appends and list substitutions work on text.

use std::collections::BTreeSet;
use std::fmt;

use super::yaml::{self, Node, Pos};
use super::ENGINE_VERSION;
use crate::base::event::Priority;

mod rule;

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

/// One `override` entry `key: append|replace`, allowed for the key, naming a key the item has.
fn override_entry(
    ctx: &Ctx,
    node: &Node,
    k: &Node,
    v: &Node,
    (allowed_append, allowed_replace): (&[&str], &[&str]),
) -> Res<(String, bool)> {
    let key = scalar(ctx, k, "override")?;
    let mode = scalar(ctx, v, key)?;
    let refused = match mode {
        "append" if allowed_append.contains(&key) => None,
        "replace" if allowed_replace.contains(&key) => None,
        "append" | "replace" => Some(format!("Key '{key}' cannot be overridden with '{mode}'")),
        other => Some(format!(
            "Invalid override mode '{other}' for '{key}' (expected append or replace)"
        )),
    };
    if let Some(message) = refused {
        return Err(ctx.err(v.pos(), message));
    }
    if node.get(key).is_none() {
        return Err(ctx.err(
            k.pos(),
            format!("An override is defined for '{key}' but the item has no '{key}' key"),
        ));
    }
    Ok((key.to_string(), mode == "append"))
}

/// One `required_plugin_versions` entry: the plugin and its alternatives, each with a semver.
fn plugin_alternatives(ctx: &Ctx, entry: &Node) -> Res<Vec<(String, String)>> {
    let required = |key: &str| {
        let node = entry
            .get(key)
            .ok_or_else(|| ctx.err(entry.pos(), format!("missing '{key}'")))?;
        scalar(ctx, node, key)
    };
    let mut alternatives = vec![(
        required("name")?.to_string(),
        required("version")?.to_string(),
    )];
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
    if let Some((n, v)) = alternatives.iter().find(|(_, v)| parse_semver(v).is_none()) {
        return Err(ctx.err(
            entry.pos(),
            format!("plugin '{n}' version '{v}' is not semver"),
        ));
    }
    Ok(alternatives)
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
            let alternatives = plugin_alternatives(&ctx, entry)?;
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
        let allowed = (allowed_append, allowed_replace);
        let out = entries
            .iter()
            .map(|(k, v)| override_entry(ctx, node, k, v, allowed))
            .collect::<Res<Vec<_>>>()?;
        let overridable =
            |key: &str| allowed_append.contains(&key) || allowed_replace.contains(&key);
        let missed = node.entries().iter().find(|(k, _)| {
            let key = k.as_str().unwrap_or_default();
            overridable(key) && !out.iter().any(|(o, _)| o == key)
        });
        if let Some((k, _)) = missed {
            let key = k.as_str().unwrap_or_default();
            return Err(ctx.err(
                k.pos(),
                format!(
                    "Unexpected key '{key}': no corresponding entry under 'override' is defined."
                ),
            ));
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
}

/// `x.y.z` → numbers; pre-release and build parts are ignored.
pub fn parse_semver(text: &str) -> Option<(u32, u32, u32)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}
