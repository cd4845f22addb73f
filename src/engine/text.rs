//! Falco's text-level steps before parsing: one-level list expansion, list substitution into
//! condition strings, and the exceptions → condition rewriting. They are deliberately textual
//! (they ignore quoting), because that is what Falco does and rules depend on it.

use super::loader::{ExceptionDef, ListDef, Slot};

/// `"` + s + `"` when `s` has a space and is not already quoted, else `s`.
pub fn quote(s: &str) -> String {
    if s.contains(' ') && !s.starts_with('"') && !s.starts_with('\'') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// Each list's items with references to lists defined earlier (lower visibility) replaced by
/// that list's raw items: one level only.
pub fn expand_lists(lists: &[ListDef]) -> Vec<Vec<String>> {
    lists
        .iter()
        .map(|list| {
            let mut out = Vec::with_capacity(list.items.len());
            for item in &list.items {
                match lists
                    .iter()
                    .find(|l| &l.name == item && l.index < list.visibility)
                {
                    Some(referenced) => out.extend(referenced.items.iter().cloned()),
                    None => out.push(item.clone()),
                }
            }
            out
        })
        .collect()
}

fn is_delim(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b',' | b'=')
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Replaces every delimited occurrence of `name` in `text` by the list's items.
pub fn substitute_one(text: &str, name: &str, items: &[String]) -> String {
    if name.is_empty() || !text.contains(name) {
        return text.to_string();
    }
    let replacement = if items.is_empty() {
        " ".to_string()
    } else {
        format!(" {} ", quoted_items(items))
    };
    let s = text.as_bytes();
    let mut out = String::with_capacity(text.len() + replacement.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find(name) {
        let start = i + found;
        let end = start + name.len();
        let left_ok = start == 0 || is_delim(s[start - 1]);
        let right_ok = end == s.len() || is_delim(s[end]);
        if !(left_ok && right_ok) {
            i = start + 1;
            continue;
        }
        let (from, to) = replaced_span(s, copied, start, end, items.is_empty());
        out.push_str(&text[copied..from]);
        out.push_str(&replacement);
        copied = to;
        i = to.max(start + 1);
        if i >= s.len() {
            break;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The bytes a list name at `start..end` replaces: the name with the blanks around it (not
/// before `copied`); an empty list also takes one neighbouring comma: `(a, empty)` → `(a )`.
fn replaced_span(s: &[u8], copied: usize, start: usize, end: usize, empty: bool) -> (usize, usize) {
    let mut from = start;
    while from > copied && is_blank(s[from - 1]) {
        from -= 1;
    }
    let mut to = end;
    while to < s.len() && is_blank(s[to]) {
        to += 1;
    }
    if empty {
        if from > copied && s[from - 1] == b',' {
            from -= 1;
        } else if to < s.len() && s[to] == b',' {
            to += 1;
        }
    }
    (from, to)
}

/// The items quoted as needed and joined with `, `.
fn quoted_items(items: &[String]) -> String {
    items
        .iter()
        .map(|i| quote(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Substitutes every list (in definition order) into `text`.
pub fn substitute_lists(text: &str, lists: &[ListDef], expanded: &[Vec<String>]) -> String {
    let mut current = text.to_string();
    for (list, items) in lists.iter().zip(expanded) {
        if current.contains(&list.name) {
            current = substitute_one(&current, &list.name, items);
        }
    }
    current
}

fn is_list_comp(comp: &str) -> bool {
    matches!(comp, "in" | "intersects" | "pmatch")
        || comp.ends_with(" oneof")
        || comp.ends_with(" anyof")
        || comp.ends_with(" allof")
}

fn exception_value(slot: &Slot, comp: &str) -> String {
    match slot {
        Slot::List(items) => format!("({})", quoted_items(items)),
        Slot::Scalar(v) if is_list_comp(comp) => {
            if v.starts_with('(') {
                v.clone()
            } else {
                format!("({v})")
            }
        }
        Slot::Scalar(v) => quote(v),
    }
}

/// The rule condition with its exceptions appended as Falco builds it (spacing included).
pub fn apply_exceptions(condition: &str, exceptions: &[ExceptionDef]) -> String {
    let mut cond = format!("({condition})");
    for part in exceptions.iter().filter_map(exception_clause) {
        cond.push_str(" and not ");
        cond.push_str(&part);
    }
    cond
}

/// One exception as a condition clause; `None` when it has no fields or no values.
pub fn exception_clause(ex: &ExceptionDef) -> Option<String> {
    if ex.values.is_empty() {
        return None;
    }
    match ex.fields.as_ref()? {
        Slot::Scalar(field) => {
            let comp = match &ex.comps {
                Some(Slot::Scalar(c)) => c.trim().to_string(),
                _ => "in".to_string(),
            };
            let values: Vec<String> = ex
                .values
                .iter()
                .filter_map(|v| match v.first() {
                    Some(Slot::Scalar(s)) => Some(quote(s)),
                    _ => None,
                })
                .collect();
            Some(format!("({field} {comp} ({}))", values.join(", ")))
        }
        Slot::List(fields) => {
            let comps: Vec<String> = match &ex.comps {
                Some(Slot::List(c)) => c.iter().map(|c| c.trim().to_string()).collect(),
                _ => vec!["=".to_string(); fields.len()],
            };
            let tuples: Vec<String> = ex
                .values
                .iter()
                .map(|tuple| {
                    let parts: Vec<String> = fields
                        .iter()
                        .zip(&comps)
                        .zip(tuple)
                        .map(|((f, c), v)| format!(" {f} {c} {}", exception_value(v, c)))
                        .collect();
                    format!("({})", parts.join(" and "))
                })
                .collect();
            Some(format!("({})", tuples.join(" or ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::yaml::Pos;

    fn list(name: &str, items: &[&str], visibility: u64) -> ListDef {
        ListDef {
            name: name.into(),
            items: items.iter().map(|s| s.to_string()).collect(),
            index: visibility,
            visibility,
            file: "f".into(),
            pos: Pos::default(),
        }
    }

    #[test]
    fn substitution_is_delimited_and_textual() {
        let items = vec!["a".to_string(), "b c".to_string()];
        assert_eq!(
            substitute_one("x in (l)", "l", &items),
            "x in ( a, \"b c\" )"
        );
        assert_eq!(substitute_one("x in (ll)", "l", &items), "x in (ll)");
        assert_eq!(substitute_one("x=l", "l", &items), "x= a, \"b c\" ");
        assert_eq!(substitute_one("(a, empty)", "empty", &[]), "(a )");
        assert_eq!(substitute_one("'l'", "l", &items), "'l'");
    }

    #[test]
    fn lists_expand_one_level_from_earlier_lists_only() {
        let lists = vec![
            list("a", &["1", "2"], 1),
            list("b", &["a", "c", "z"], 2),
            list("z", &["9"], 3),
        ];
        let expanded = expand_lists(&lists);
        assert_eq!(expanded[1], vec!["1", "2", "c", "z"]);
    }

    #[test]
    fn exceptions_rewrite_like_falco() {
        let ex = ExceptionDef {
            name: "e".into(),
            fields: Some(Slot::List(vec!["proc.name".into(), "proc.cmdline".into()])),
            comps: None,
            values: vec![vec![
                Slot::Scalar("cat".into()),
                Slot::Scalar("cat /dev/null".into()),
            ]],
            pos: Pos::default(),
        };
        assert_eq!(
            apply_exceptions("evt.type=open and proc.name=cat", &[ex]),
            "(evt.type=open and proc.name=cat) and not (( proc.name = cat and  proc.cmdline = \"cat /dev/null\"))"
        );
    }
}
