//! The condition language's syntax tree, and a printer whose output parses back to the same tree.

use std::fmt;

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    PMatch,
    Exists,
}

impl Op {
    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Parses an operator name as written in exception `comps` (`==` is `=`).
    pub fn from_text(text: &str) -> Option<Op> {
        Some(match text {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::PMatch,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    pub fn is_list_op(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    pub fn is_num_op(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// The string operators a `oneof`/`anyof`/`allof` modifier may follow.
    pub fn takes_modifier(self) -> bool {
        !self.is_list_op() && !self.is_num_op() && self != Op::Exists
    }

    /// An exception comparison as written (`=`, `in`, `startswith oneof`): the operator and
    /// its modifier, `None` when it is not one Falco accepts.
    pub fn parse_comp(text: &str) -> Option<(Op, Option<Modifier>)> {
        let mut words = text.split_whitespace();
        let op = Op::from_text(words.next()?)?;
        let modifier = match words.next() {
            None => None,
            Some(m) if op.takes_modifier() => Some(Modifier::from_text(m)?),
            Some(_) => return None,
        };
        words.next().is_none().then_some((op, modifier))
    }
}

/// Value transformers (`tolower(x)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
}

impl Transformer {
    pub const ALL: [(Transformer, &'static str); 5] = [
        (Transformer::ToLower, "tolower"),
        (Transformer::ToUpper, "toupper"),
        (Transformer::B64, "b64"),
        (Transformer::Basename, "basename"),
        (Transformer::Len, "len"),
    ];

    pub fn name(self) -> &'static str {
        name_in(&Self::ALL, self)
    }
}

/// A keyword's text in its enum's table of (value, text).
fn name_in<T: PartialEq>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(t, _)| *t == value)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// A string comparison's modifier (Falco 0.44): `proc.name = oneof (a, b)` is true when exactly
/// one element compares true, `anyof` when at least one does, `allof` when all do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modifier {
    OneOf,
    AnyOf,
    AllOf,
}

impl Modifier {
    pub const ALL: [(Modifier, &'static str); 3] = [
        (Modifier::OneOf, "oneof"),
        (Modifier::AnyOf, "anyof"),
        (Modifier::AllOf, "allof"),
    ];

    pub fn text(self) -> &'static str {
        name_in(&Self::ALL, self)
    }

    pub fn from_text(text: &str) -> Option<Modifier> {
        Self::ALL.iter().find(|(_, n)| *n == text).map(|(m, _)| *m)
    }
}

/// The multi-value transformers of libs 0.25: `concat(a, b, …)`, `join(sep, (a, b, …))` and
/// `getopt(args, "optstring")[opt]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Multi {
    Concat,
    Join,
    Getopt,
}

impl Multi {
    pub const ALL: [(Multi, &'static str); 3] = [
        (Multi::Concat, "concat"),
        (Multi::Join, "join"),
        (Multi::Getopt, "getopt"),
    ];

    pub fn name(self) -> &'static str {
        name_in(&Self::ALL, self)
    }
}

/// An argument of a multi-value transformer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TArg {
    Field(FieldRef),
    /// A quoted string or a number.
    Str(String),
    /// A transformer list `(a, "b", tolower(c))`.
    List(Vec<TArg>),
}

/// A multi-value transformer call with its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub multi: Multi,
    pub args: Vec<TArg>,
}

/// A field reference, possibly with an argument and wrapped in transformers (outermost first).
/// When `call` is set it is a multi-value transformer call instead of a field: `name` is then the
/// transformer's name and `arg` its selector (`getopt(…)[t]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub name: String,
    pub arg: Option<String>,
    pub transformers: Vec<Transformer>,
    pub call: Option<Box<Call>>,
}

impl FieldRef {
    pub fn field(name: impl Into<String>, arg: Option<String>) -> FieldRef {
        FieldRef {
            name: name.into(),
            arg,
            transformers: Vec::new(),
            call: None,
        }
    }

    /// The field as written without single-value transformers: `name`, `name[arg]` or the call.
    pub fn plain(&self) -> String {
        if self.call.is_some() {
            let bare = FieldRef {
                transformers: Vec::new(),
                ..self.clone()
            };
            return bare.to_string();
        }
        match &self.arg {
            Some(arg) => format!("{}[{}]", self.name, arg),
            None => self.name.clone(),
        }
    }

    /// A field with no transformer of either kind.
    pub fn is_plain(&self) -> bool {
        self.transformers.is_empty() && self.call.is_none()
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Str(String),
    List(Vec<String>),
    /// `val(field)` or a transformer over a field: compare with another field's value.
    Field(FieldRef),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Check {
        field: FieldRef,
        op: Op,
        /// `oneof`/`anyof`/`allof` after a string operator; the value is then a list.
        modifier: Option<Modifier>,
        value: Value,
        offset: usize,
    },
    /// A macro reference, resolved at compile time.
    Macro {
        name: String,
        offset: usize,
    },
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| !b"()\"'=,\\".contains(&b) && !b.is_ascii_whitespace() && b != 0x08)
        && !matches!(s, "oneof" | "anyof" | "allof");
    if bare {
        return f.write_str(s);
    }
    f.write_str("\"")?;
    write_escaped(f, s)?;
    f.write_str("\"")
}

/// `s` escaped for the inside of a double-quoted string.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            // Always hex: a backslash before the closing quote would escape it.
            '\\' => f.write_str("\\x5c")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if (c as u32) < 0x20 => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.transformers {
            write!(f, "{}(", t.name())?;
        }
        match &self.call {
            Some(call) => {
                write!(f, "{}(", call.multi.name())?;
                write_targs(f, &call.args)?;
                f.write_str(")")?;
            }
            None => f.write_str(&self.name)?,
        }
        if let Some(arg) = &self.arg {
            // Bare arguments allow almost anything but brackets, quotes and blanks.
            if arg
                .bytes()
                .any(|b| b"[]\"' \t\r\n\\".contains(&b) || b < 0x20)
            {
                f.write_str("[")?;
                write_str(f, arg)?;
                f.write_str("]")?;
            } else {
                write!(f, "[{arg}]")?;
            }
        }
        for _ in &self.transformers {
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn write_targs(f: &mut fmt::Formatter<'_>, args: &[TArg]) -> fmt::Result {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        match arg {
            TArg::Field(field) => write!(f, "{field}")?,
            TArg::Str(s) => {
                // Always quoted: a bare word here would read as a field or a macro.
                f.write_str("\"")?;
                write_escaped(f, s)?;
                f.write_str("\"")?;
            }
            TArg::List(items) => {
                f.write_str("(")?;
                write_targs(f, items)?;
                f.write_str(")")?;
            }
        }
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " and "
                } else {
                    " or "
                };
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            Expr::Not(inner) => write!(f, "not ({inner})"),
            Expr::Macro { name, .. } => f.write_str(name),
            Expr::Check {
                field,
                op,
                modifier,
                value,
                ..
            } => {
                write!(f, "{field} {}", op.text())?;
                if let Some(m) = modifier {
                    write!(f, " {}", m.text())?;
                }
                match value {
                    Value::None => Ok(()),
                    Value::Str(s) => {
                        f.write_str(" ")?;
                        write_str(f, s)
                    }
                    Value::List(items) => {
                        f.write_str(" (")?;
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write_str(f, item)?;
                        }
                        f.write_str(")")
                    }
                    Value::Field(other) if other.is_plain() => {
                        write!(f, " val({other})")
                    }
                    Value::Field(other) => write!(f, " {other}"),
                }
            }
        }
    }
}
