//! Compiles a macro-resolved syntax tree into an evaluator for one source: looks every field up in
//! the source's registry, checks operators against field types, and prepares right-hand sides.

use std::collections::HashSet;

use super::ast::{Expr, FieldRef, Modifier, Op, Transformer, Value};
use super::eval::{Check, Cond, Getter, Net, Rhs};
use super::extract;
use super::fields::FieldType;
use super::multi::GetterFn;

/// A compile error at a byte offset of the condition (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub offset: Option<usize>,
    pub message: String,
}

impl CompileError {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        CompileError {
            offset: Some(offset),
            message: message.into(),
        }
    }
}

/// Whether `text` is exactly one field (with its argument or transformers) of `source`.
pub fn is_field(source: &str, text: &str) -> bool {
    super::parser::parse_field_prefix(text)
        .filter(|(_, used)| *used == text.len())
        .is_some_and(|(field, _)| getter(source, &field).is_ok())
}

/// Builds the getter for a field reference in `source`.
pub fn getter(source: &str, field: &FieldRef) -> Result<Getter, String> {
    let (extract, mut ty, mut list) = match &field.call {
        Some(call) => super::multi::compile(source, call, field.arg.as_deref(), getter)?,
        None => {
            let resolved = extract::resolve(source, &field.name, field.arg.as_deref())?;
            (resolved.extract, resolved.info.ty, resolved.info.list)
        }
    };
    // Transformers are written outermost first; apply innermost first.
    let transformers: Vec<Transformer> = field.transformers.iter().rev().copied().collect();
    for t in &transformers {
        match t {
            Transformer::Len => {
                ty = FieldType::Number;
                list = false;
            }
            _ if !matches!(ty, FieldType::String | FieldType::Bytes) => {
                return Err(format!(
                    "transformer {}() cannot be applied to field {} of type {:?}",
                    t.name(),
                    field.name,
                    ty
                ));
            }
            _ => {}
        }
    }
    Ok(Getter {
        extract,
        transformers,
        ty,
        list,
    })
}

pub fn compile(source: &str, expr: &Expr) -> Result<Cond, CompileError> {
    compile_with(source, expr, getter)
}

/// [`compile`] with every field read by the getter `get` makes (the registry's type checks
/// still apply): the tuning preview reads fields from stored alerts' output fields this way.
pub fn compile_with(source: &str, expr: &Expr, get: GetterFn) -> Result<Cond, CompileError> {
    match expr {
        Expr::And(items) => Ok(Cond::And(
            items
                .iter()
                .map(|e| compile_with(source, e, get))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Or(items) => Ok(Cond::Or(
            items
                .iter()
                .map(|e| compile_with(source, e, get))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Not(inner) => Ok(Cond::Not(Box::new(compile_with(source, inner, get)?))),
        Expr::Macro { name, offset } => Err(CompileError::at(
            *offset,
            format!("Undefined macro '{name}' used in filter."),
        )),
        Expr::Check {
            field,
            op,
            modifier,
            value,
            offset,
        } => {
            let at = |m| CompileError::at(*offset, m);
            let lhs = get(source, field).map_err(at)?;
            check_operator(field, &lhs, *op).map_err(at)?;
            let rhs = match (modifier, value) {
                (Some(m), Value::List(items)) => {
                    check_modifier(&lhs, *op, *m).map_err(at)?;
                    let each = items
                        .iter()
                        .map(|i| rhs(source, &lhs, *op, &Value::Str(i.clone()), get))
                        .collect::<Result<_, _>>()
                        .map_err(at)?;
                    Rhs::Each(*m, each)
                }
                _ => rhs(source, &lhs, *op, value, get).map_err(at)?,
            };
            Ok(Cond::Check(Box::new(Check { lhs, op: *op, rhs })))
        }
    }
}

fn check_operator(field: &FieldRef, lhs: &Getter, op: Op) -> Result<(), String> {
    let name = field.plain();
    if lhs.list && !matches!(op, Op::In | Op::Intersects | Op::Exists) {
        return Err(format!(
            "'{}' operator not supported on list field '{name}' (list fields accept only in, intersects and exists)",
            op.text()
        ));
    }
    let allowed = match lhs.ty {
        FieldType::String => !matches!(op, Op::BContains | Op::BStartsWith),
        FieldType::Bytes => true,
        FieldType::Number => matches!(
            op,
            Op::Eq
                | Op::Ne
                | Op::Lt
                | Op::Le
                | Op::Gt
                | Op::Ge
                | Op::In
                | Op::Intersects
                | Op::Exists
        ),
        FieldType::Bool | FieldType::Ip | FieldType::IpNet => {
            matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects | Op::Exists)
        }
    };
    if !allowed {
        return Err(format!(
            "'{}' operator not supported on field '{name}' of type {:?}",
            op.text(),
            lhs.ty
        ));
    }
    Ok(())
}

/// libsinsp refuses modifiers on IP fields except with `=`/`!=`.
fn check_modifier(lhs: &Getter, op: Op, m: Modifier) -> Result<(), String> {
    if matches!(lhs.ty, FieldType::Ip | FieldType::IpNet) && !matches!(op, Op::Eq | Op::Ne) {
        return Err(format!(
            "'{}' with modifier {} not supported for ip address and network filters",
            op.text(),
            m.text()
        ));
    }
    Ok(())
}

fn rhs(source: &str, lhs: &Getter, op: Op, value: &Value, get: GetterFn) -> Result<Rhs, String> {
    let items: Vec<String> = match value {
        Value::None => return Ok(Rhs::None),
        Value::Field(other) => {
            if matches!(op, Op::PMatch | Op::Regex) {
                return Err(format!("'{}' cannot compare with another field", op.text()));
            }
            let g = get(source, other)?;
            if g.list != lhs.list && !matches!(op, Op::In | Op::Intersects) {
                return Err("both sides of a field comparison must be lists, or neither".into());
            }
            return Ok(Rhs::Field(Box::new(g)));
        }
        Value::Str(s) => vec![s.clone()],
        Value::List(items) => items.clone(),
    };
    if op.is_list_op() {
        return Ok(match (op, lhs.ty) {
            (Op::PMatch, _) => Rhs::Paths(
                items
                    .iter()
                    .map(|p| {
                        p.split('/')
                            .filter(|c| !c.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .collect(),
            ),
            (_, FieldType::Number) => Rhs::Numbers(
                items
                    .iter()
                    .map(|i| {
                        super::eval::parse_number(i).ok_or_else(|| format!("'{i}' is not a number"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (_, FieldType::IpNet) => Rhs::Nets(
                items
                    .iter()
                    .map(|i| Net::parse(i).ok_or_else(|| format!("'{i}' is not an IP network")))
                    .collect::<Result<_, _>>()?,
            ),
            _ => Rhs::Set(items.into_iter().collect::<HashSet<_>>()),
        });
    }
    let text = items.into_iter().next().unwrap_or_default();
    Ok(match op {
        Op::Regex => Rhs::Regex(
            regex::Regex::new(&format!("^(?:{text})$"))
                .map_err(|e| format!("invalid regular expression '{text}': {e}"))?,
        ),
        Op::Glob | Op::IGlob => Rhs::Glob(text),
        Op::BContains | Op::BStartsWith => Rhs::Bytes(hex::decode(&text).map_err(|_| {
            format!("'{text}' is not a hex byte string (bcontains/bstartswith take hex)")
        })?),
        _ if lhs.ty == FieldType::IpNet => Rhs::Nets(vec![
            Net::parse(&text).ok_or_else(|| format!("'{text}' is not an IP network"))?
        ]),
        _ if lhs.ty == FieldType::Number || lhs.transformers.last() == Some(&Transformer::Len) => {
            Rhs::Number(
                super::eval::parse_number(&text)
                    .ok_or_else(|| format!("'{text}' is not a number"))?,
            )
        }
        _ if op.is_num_op() => Rhs::Text(text),
        _ => Rhs::Text(text),
    })
}

/// The `evt.type` values a condition can match, or `None` when it is not pinned (conservative:
/// negations and unknown shapes match any type).
pub fn event_types(expr: &Expr) -> Option<HashSet<String>> {
    match expr {
        Expr::Check {
            field,
            op,
            value,
            modifier: None,
            ..
        } if field.name == "evt.type" && field.is_plain() => match (op, value) {
            (Op::Eq, Value::Str(s)) => Some([s.clone()].into()),
            (Op::In | Op::Intersects, Value::List(items)) => Some(items.iter().cloned().collect()),
            _ => None,
        },
        Expr::And(items) => items
            .iter()
            .filter_map(event_types)
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
        Expr::Or(items) => {
            let mut all = HashSet::new();
            for item in items {
                all.extend(event_types(item)?);
            }
            Some(all)
        }
        _ => None,
    }
}
