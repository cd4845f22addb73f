//! Exceptions made from an alert: the value each field takes in the exception (as its comparison
//! operator wants it), and a matcher that evaluates an exception against a stored alert's output
//! fields exactly as the compiled rule would evaluate it against the event: the same clause text
//! (see [`text::exception_clause`]), parsed and compiled with the same operators, only with each
//! field read from the alert instead of extracted from an event.

use serde_json::{Map, Value};

use super::ast::{FieldRef, Op};
use super::compiler::{compile_with, getter};
use super::eval::{Cond, Getter};
use super::extract::{EventData, Extracted};
use super::loader::{ExceptionDef, Slot};
use super::text::exception_clause;
use super::yaml::Pos;

/// What an alert stores for a field the event did not have (Falco's own text for it).
pub const NOT_AVAILABLE: &str = "<NA>";

/// The comparison operators a tuning may use; `=` when none is asked for.
pub const COMPS: &[&str] = &[
    "=",
    "!=",
    "in",
    "startswith",
    "endswith",
    "contains",
    "pmatch",
    "glob",
];

/// Whether `comp` is one of [`COMPS`].
pub fn known_comp(comp: &str) -> bool {
    COMPS.contains(&comp)
}

/// The operators whose right-hand side is a list: the alert's value becomes a one-item list.
pub fn takes_list(comp: &str) -> bool {
    Op::parse_comp(comp).is_some_and(|(op, _)| op.is_list_op())
}

/// An alert's value as an exception value slot for `comp`.
pub fn value_slot(comp: &str, value: &str) -> Slot {
    if takes_list(comp) {
        Slot::List(vec![value.to_string()])
    } else {
        Slot::Scalar(value.to_string())
    }
}

/// One exception (fields, comps, values) compiled to run against stored alerts' output fields.
pub struct AlertMatcher {
    cond: Cond,
    /// The output-field names the exception reads.
    fields: Vec<String>,
}

impl AlertMatcher {
    /// Compiles `ex` for `source`; the message says why an exception cannot be written this way
    /// (the same error the rules compiler would give).
    pub fn new(source: &str, ex: &ExceptionDef) -> Result<AlertMatcher, String> {
        let clause = exception_clause(ex)
            .ok_or_else(|| format!("exception '{}' has no fields or no values", ex.name))?;
        let expr = super::parser::parse(&clause)
            .map_err(|e| format!("exception '{}' does not parse: {}", ex.name, e.message))?;
        let cond = compile_with(source, &expr, stored_field)
            .map_err(|e| format!("exception '{}': {}", ex.name, e.message))?;
        let fields = match &ex.fields {
            Some(Slot::Scalar(f)) => vec![f.clone()],
            Some(Slot::List(fs)) => fs.clone(),
            None => Vec::new(),
        };
        Ok(AlertMatcher { cond, fields })
    }

    /// Whether the exception suppresses an alert with these output fields; `Err` names the first
    /// field the alert does not carry (then nothing can be said).
    pub fn matches(&self, output_fields: &[(String, String)]) -> Result<bool, String> {
        let mut map = Map::new();
        for (k, v) in output_fields {
            map.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(missing) = self.fields.iter().find(|f| !map.contains_key(*f)) {
            return Err(missing.clone());
        }
        let json = Value::Object(map);
        let event = EventData {
            source: "",
            json: &json,
            time_ns: 0,
            hostname: "",
            num: 0,
        };
        Ok(self.cond.eval(&event))
    }
}

/// A new exception with one value tuple, in the list form Falco's rules use.
pub fn exception(
    name: &str,
    fields: &[String],
    comps: &[String],
    values: Vec<Slot>,
) -> ExceptionDef {
    ExceptionDef {
        name: name.to_string(),
        fields: Some(Slot::List(fields.to_vec())),
        comps: Some(Slot::List(comps.to_vec())),
        values: vec![values],
        pos: Pos::default(),
    }
}

/// The getter of `field` in `source` (its type and list-ness from the registry) reading the
/// value an alert stored under the field's text; transformers were applied when it was stored,
/// and [`NOT_AVAILABLE`] reads as absent, as the field was on the event.
fn stored_field(source: &str, field: &FieldRef) -> Result<Getter, String> {
    let mut g = getter(source, field)?;
    let key = field.to_string();
    g.transformers.clear();
    g.extract = Box::new(move |e: &EventData<'_>| {
        e.json
            .get(&key)
            .and_then(Value::as_str)
            .filter(|s| *s != NOT_AVAILABLE)
            .map(|s| Extracted::One(s.into()))
    });
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn matcher(fs: &[&str], comps: &[&str], values: &[&str]) -> AlertMatcher {
        let fs: Vec<String> = fs.iter().map(|s| s.to_string()).collect();
        let comps: Vec<String> = comps.iter().map(|s| s.to_string()).collect();
        let slots = comps
            .iter()
            .zip(values)
            .map(|(c, v)| value_slot(c, v))
            .collect();
        AlertMatcher::new("syscall", &exception("e", &fs, &comps, slots)).unwrap()
    }

    #[test]
    fn equality_and_list_comps_match_as_the_engine_compares() {
        let m = matcher(
            &["proc.name", "container.image.repository"],
            &["=", "in"],
            &["bash", "alpine"],
        );
        let hit = fields(&[
            ("proc.name", "bash"),
            ("container.image.repository", "alpine"),
        ]);
        let miss = fields(&[
            ("proc.name", "sh"),
            ("container.image.repository", "alpine"),
        ]);
        assert_eq!(m.matches(&hit), Ok(true));
        assert_eq!(m.matches(&miss), Ok(false));
        assert_eq!(
            m.matches(&fields(&[("proc.name", "bash")])),
            Err("container.image.repository".to_string())
        );
        let prefix = matcher(&["fd.name"], &["startswith"], &["/etc/"]);
        assert_eq!(
            prefix.matches(&fields(&[("fd.name", "/etc/shadow")])),
            Ok(true)
        );
        assert_eq!(
            prefix.matches(&fields(&[("fd.name", "/tmp/etc/")])),
            Ok(false)
        );
        let paths = matcher(&["fd.name"], &["pmatch"], &["/var/lib"]);
        assert_eq!(
            paths.matches(&fields(&[("fd.name", "/var/lib/x")])),
            Ok(true)
        );
        assert_eq!(
            paths.matches(&fields(&[("fd.name", "/var/libx")])),
            Ok(false)
        );
    }

    #[test]
    fn values_with_blanks_and_numbers_compare_like_the_compiled_rule() {
        let m = matcher(&["proc.cmdline"], &["="], &["bash -c ls"]);
        assert_eq!(
            m.matches(&fields(&[("proc.cmdline", "bash -c ls")])),
            Ok(true)
        );
        let n = matcher(&["proc.pid"], &["="], &["42"]);
        assert_eq!(n.matches(&fields(&[("proc.pid", "42")])), Ok(true));
        assert_eq!(n.matches(&fields(&[("proc.pid", "420")])), Ok(false));
    }

    #[test]
    fn values_the_condition_text_cannot_hold_never_match_silently() {
        // Exceptions become condition text (as in Falco): a value with blanks and a double quote
        // cannot be written back exactly, and the matcher says so with the parser's words (the
        // tuning refuses it; a rule carrying it would not load).
        let fs = vec!["proc.cmdline".to_string()];
        let comps = vec!["=".to_string()];
        let value = r#"bash -c "ls" (x)"#;
        let ex = exception("e", &fs, &comps, vec![value_slot("=", value)]);
        let err = AlertMatcher::new("syscall", &ex).err().unwrap();
        assert!(
            err.starts_with("exception 'e' does not parse: unexpected token"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_operators_are_refused_with_the_compilers_words() {
        let bad = exception(
            "e",
            &["no.such".to_string()],
            &["=".to_string()],
            vec![Slot::Scalar("x".into())],
        );
        let err = AlertMatcher::new("syscall", &bad).err().unwrap();
        assert!(err.contains("nonexistent field no.such"), "{err}");
        assert!(known_comp("pmatch") && !known_comp("regex"));
        assert!(takes_list("in") && !takes_list("="));
    }
}
