//! The tuning file's text: its heading, and each entry in Falco's own syntax (an
//! `override: {exceptions: append}` item per tuning), with every name and value quoted so that it
//! reads back exactly.

use crate::base::event::OutputEvent;
use crate::engine::loader::{ExceptionDef, Slot};

/// The tuning file's content with `entry` appended (a new file gets a heading first).
pub(super) fn appended(current: Option<&String>, entry: &str) -> String {
    let mut out = match current {
        Some(c) => c.clone(),
        None => String::from(
            "# falco-api tuning: exceptions added from alerts (`falco-api rules tune`, the console's\n\
             # \"Tune this rule\"). It loads after the rules it tunes; each entry appends to one\n\
             # rule's exceptions, which Falco reads the same way. Edit it like any rules file.\n",
        ),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(entry);
    out
}

/// An exception's fields as a list, and its operators (Falco's defaults when it names none:
/// `in` for the one-field form, `=` for each field of the list form).
pub(super) fn fields_and_comps(ex: &ExceptionDef) -> (Vec<String>, Vec<String>) {
    match (&ex.fields, &ex.comps) {
        (Some(Slot::Scalar(f)), Some(Slot::Scalar(c))) => (vec![f.clone()], vec![c.trim().into()]),
        (Some(Slot::Scalar(f)), _) => (vec![f.clone()], vec!["in".into()]),
        (Some(Slot::List(fs)), Some(Slot::List(cs))) => (
            fs.clone(),
            cs.iter().map(|c| c.trim().to_string()).collect(),
        ),
        (Some(Slot::List(fs)), _) => (fs.clone(), vec!["=".into(); fs.len()]),
        (None, _) => (Vec::new(), Vec::new()),
    }
}

/// A YAML scalar that reads back as exactly `s` (a JSON string is a YAML double-quoted scalar).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn slot(s: &Slot) -> String {
    match s {
        Slot::Scalar(v) => q(v),
        Slot::List(items) => format!(
            "[{}]",
            items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The tuning file entry: a comment saying where it came from, then the rule's exceptions
/// appended in Falco's override syntax (fields and comps only for a new exception).
pub(super) fn entry(
    rule: &str,
    ex: &ExceptionDef,
    reused: bool,
    alert: &OutputEvent,
    seq: u64,
) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = format!(
        "# From alert {} ({}, {}).\n- rule: {}\n  exceptions:\n    - name: {}\n",
        seq,
        crate::engine::time::iso_time(alert.time_ns),
        one_line(&alert.hostname),
        q(rule),
        q(&ex.name)
    );
    if !reused {
        let (fields, comps) = fields_and_comps(ex);
        let list = |items: &[String]| items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("      fields: [{}]\n", list(&fields)));
        out.push_str(&format!("      comps: [{}]\n", list(&comps)));
    }
    out.push_str("      values:\n");
    for tuple in &ex.values {
        match ex.fields {
            Some(Slot::Scalar(_)) => out.push_str(&format!("        - {}\n", slot(&tuple[0]))),
            _ => out.push_str(&format!(
                "        - [{}]\n",
                tuple.iter().map(slot).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    out.push_str("  override:\n    exceptions: append\n");
    out
}
