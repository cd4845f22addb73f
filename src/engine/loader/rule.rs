//! Rule items: define, legacy append, override (append / replace keys) and enable-only, and the
//! exceptions a rule carries, checked and merged with Falco's rules.

use std::collections::BTreeSet;

use super::{
    bool_of, scalar, scalars, slot, text_of, Collection, Ctx, Diagnostic, ExceptionDef, Res,
    RuleDef, Slot, RULE_KEYS, RULE_OVERRIDE_APPEND, RULE_OVERRIDE_REPLACE,
};
use crate::base::event::Priority;
use crate::engine::ast::Op;
use crate::engine::yaml::{Node, Pos};

impl Collection {
    pub(super) fn rule(&mut self, file: &str, node: &Node) -> Res<()> {
        let name = text_of(
            &Ctx { file, item: None },
            node.get("rule").expect("checked"),
            "rule",
        )?;
        let ctx = Ctx {
            file,
            item: Some(format!("rule '{name}'")),
        };
        self.warn_unknown_keys(&ctx, node);
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
        self.define_rule(&ctx, &name, file, node)
    }

    fn warn_unknown_keys(&mut self, ctx: &Ctx, node: &Node) {
        let Node::Map { entries, .. } = node else {
            return;
        };
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !RULE_KEYS.contains(&key) {
                let message = format!("Unknown key '{key}'. The key will be ignored.");
                self.warn(ctx, k.pos(), message);
            }
        }
    }

    /// A whole definition: a new rule, or one replacing the rule of that name (same source).
    fn define_rule(&mut self, ctx: &Ctx, name: &str, file: &str, node: &Node) -> Res<()> {
        for key in ["condition", "output", "desc", "priority"] {
            if node.get(key).is_none() {
                return Err(ctx.err(node.pos(), format!("Item has no mapping for key '{key}'")));
            }
        }
        let rule = self.read_rule(ctx, name, file, node)?;
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
            let def = read_exception(ctx, ex, defining)?;
            let name = def.name.clone();
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
            let rule = &mut self.rules[rule];
            match rule.exceptions.iter_mut().find(|e| e.name == ex.name) {
                Some(existing) => join_values(ctx, existing, ex, &mut self.warnings)?,
                None => {
                    check_new_exception(ctx, &ex)?;
                    rule.exceptions.push(ex);
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
        match (key, append) {
            ("exceptions", true) => {
                let incoming = self.read_exceptions(ctx, value, false)?;
                self.merge_exceptions(ctx, idx, incoming)
            }
            ("exceptions", false) => {
                self.rules[idx].exceptions = self.read_exceptions(ctx, value, true)?;
                Ok(())
            }
            (_, true) => append_key(ctx, &mut self.rules[idx], key, value),
            (_, false) => replace_key(ctx, &mut self.rules[idx], key, value),
        }
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

/// `override: {key: append}`: text joined with a space (when the addition is not empty), tags
/// added.
fn append_key(ctx: &Ctx, rule: &mut RuleDef, key: &str, value: &Node) -> Res<()> {
    let join = |old: &mut String, new: String| {
        if !new.is_empty() {
            *old = format!("{old} {new}");
        }
    };
    match key {
        "condition" => join(&mut rule.condition, text_of(ctx, value, key)?),
        "output" => join(
            &mut rule.output,
            text_of(ctx, value, key)?.trim().to_string(),
        ),
        "desc" => join(&mut rule.desc, text_of(ctx, value, key)?),
        "tags" => rule.tags.extend(scalars(ctx, value, key)?),
        _ => {}
    }
    Ok(())
}

/// `override: {key: replace}`.
fn replace_key(ctx: &Ctx, rule: &mut RuleDef, key: &str, value: &Node) -> Res<()> {
    match key {
        "condition" => {
            rule.condition = text_of(ctx, value, key)?;
            rule.cond_pos = value.pos();
        }
        "output" => {
            rule.output = text_of(ctx, value, key)?.trim().to_string();
            rule.output_pos = value.pos();
        }
        "desc" => rule.desc = text_of(ctx, value, key)?,
        "tags" => rule.tags = scalars(ctx, value, key)?.into_iter().collect(),
        "priority" => {
            let text = scalar(ctx, value, key)?;
            rule.priority = text
                .parse()
                .map_err(|_| ctx.err(value.pos(), format!("Invalid priority '{text}'")))?;
        }
        "enabled" => rule.enabled = bool_of(ctx, value, key)?,
        "skip-if-unknown-filter" => rule.skip_if_unknown_filter = bool_of(ctx, value, key)?,
        _ => {} // warn_evttypes, capture, capture_duration: accepted, no effect here
    }
    Ok(())
}

/// One item of a rule's `exceptions`: its name, fields and comps (as written) and values.
fn read_exception(ctx: &Ctx, ex: &Node, defining: bool) -> Res<ExceptionDef> {
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
    Ok(ExceptionDef {
        name,
        fields,
        comps,
        values: exception_values(ctx, ex.get("values"))?,
        pos: ex.pos(),
    })
}

/// An exception's `values`: a sequence of tuples, or of scalars (the scalar form, one slot each).
fn exception_values(ctx: &Ctx, values: Option<&Node>) -> Res<Vec<Vec<Slot>>> {
    match values {
        None | Some(Node::Null(_)) => Ok(Vec::new()),
        Some(Node::Seq { items, .. }) => items
            .iter()
            .map(|v| match v {
                Node::Seq { items: tuple, .. } => {
                    tuple.iter().map(|t| slot(ctx, t, "values")).collect()
                }
                other => slot(ctx, other, "values").map(|s| vec![s]),
            })
            .collect(),
        Some(other) => Err(ctx.err(other.pos(), "'values' must be a sequence")),
    }
}

/// Values appended to an existing exception: only values may be added, and they meet the same
/// checks as values written in place, against the fields and comps of the exception they join.
fn join_values(
    ctx: &Ctx,
    existing: &mut ExceptionDef,
    ex: ExceptionDef,
    warnings: &mut Vec<Diagnostic>,
) -> Res<()> {
    if ex.fields.is_some() || ex.comps.is_some() {
        return Err(ctx.err(
            ex.pos,
            format!(
                "Can not append exception fields to existing exception '{}', only values",
                ex.name
            ),
        ));
    }
    if ex.values.is_empty() {
        let message = format!(
            "Overriding/appending exception '{}' with no values",
            ex.name
        );
        warnings.push(ctx.err(ex.pos, message));
    }
    let joined = ExceptionDef {
        name: ex.name,
        fields: existing.fields.clone(),
        comps: existing.comps.clone(),
        values: ex.values,
        pos: ex.pos,
    };
    check_exception_shape(ctx, &joined, ex.pos)?;
    existing.values.extend(joined.values);
    Ok(())
}

/// An exception an override adds must be whole: fields and values.
fn check_new_exception(ctx: &Ctx, ex: &ExceptionDef) -> Res<()> {
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
    Ok(())
}

fn check_exception_shape(ctx: &Ctx, ex: &ExceptionDef, pos: Pos) -> Res<()> {
    let refuse = |what: &str| Err(ctx.err(pos, format!("Exception '{}': {what}", ex.name)));
    match (&ex.fields, &ex.comps) {
        (Some(Slot::List(_)), Some(Slot::Scalar(_))) => {
            refuse("fields is a list, so comps must be a list too")
        }
        (Some(Slot::List(fields)), Some(Slot::List(comps))) if comps.len() != fields.len() => {
            refuse("Fields and comps lists must have equal length")
        }
        (Some(Slot::List(fields)), _) if ex.values.iter().any(|t| t.len() != fields.len()) => {
            refuse("Fields and values lists must have equal length")
        }
        (Some(Slot::Scalar(_)), Some(Slot::List(_))) => {
            refuse("fields is a scalar, so comps must be a scalar too")
        }
        (Some(Slot::Scalar(_)), Some(Slot::Scalar(comp)))
            if !matches!(
                Op::parse_comp(comp.trim()),
                Some((Op::In | Op::PMatch | Op::Intersects, None) | (_, Some(_)))
            ) =>
        {
            refuse(
                "When fields is a single value, comps must be one of (in, pmatch, intersects) \
                 or a modifier operator (e.g. startswith oneof)",
            )
        }
        (Some(Slot::Scalar(_)), _)
            if ex
                .values
                .iter()
                .any(|v| v.len() != 1 || !matches!(v[0], Slot::Scalar(_))) =>
        {
            refuse("with a single field, values must be scalars")
        }
        _ => Ok(()),
    }
}
