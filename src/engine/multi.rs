//! The multi-value transformers of libs 0.25 — `concat(a, b, …)`, `join(sep, (a, b, …))` and
//! `getopt(args, "optstring")[opt]` — with libsinsp's argument rules and messages
//! (`sinsp_filtercheck_multivalue_transformer`) and its extraction semantics.

use std::borrow::Cow;

use super::ast::{Call, FieldRef, Multi, TArg};
use super::eval::Getter;
use super::extract::{EventData, ExtractFn, Extracted};
use super::fields::FieldType;

/// Builds the getter of a field argument (the compiler's, passed in so this module does not
/// depend on the compiler that depends on it).
pub type GetterFn = fn(&str, &FieldRef) -> Result<Getter, String>;

/// A compiled argument: a field (or nested transformer), a constant, or a transformer list.
enum ArgGetter {
    Field(Getter),
    Const(String),
    List(Vec<ArgGetter>),
}

impl ArgGetter {
    fn compile(source: &str, arg: &TArg, getter: GetterFn) -> Result<ArgGetter, String> {
        Ok(match arg {
            TArg::Field(f) => ArgGetter::Field(getter(source, f)?),
            TArg::Str(s) => ArgGetter::Const(s.clone()),
            TArg::List(items) => ArgGetter::List(
                items
                    .iter()
                    .map(|i| ArgGetter::compile(source, i, getter))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// (type, is a list), as the transformers' argument checks see them.
    fn kind(&self) -> (FieldType, bool) {
        match self {
            ArgGetter::Field(g) => (g.ty, g.list),
            ArgGetter::Const(_) => (FieldType::String, false),
            ArgGetter::List(_) => (FieldType::String, true),
        }
    }

    /// Every value, in order; `None` when any part cannot be extracted.
    fn values<'a>(&self, e: &EventData<'a>, out: &mut Vec<Cow<'a, str>>) -> Option<()> {
        match self {
            ArgGetter::Field(g) => match g.get(e)? {
                Extracted::One(v) => out.push(v),
                Extracted::Many(items) => out.extend(items),
            },
            ArgGetter::Const(s) => out.push(Cow::Owned(s.clone())),
            ArgGetter::List(items) => {
                for item in items {
                    item.values(e, out)?;
                }
            }
        }
        Some(())
    }

    fn first<'a>(&self, e: &EventData<'a>) -> Option<Cow<'a, str>> {
        let mut out = Vec::with_capacity(1);
        self.values(e, &mut out)?;
        out.into_iter().next()
    }
}

/// Checks a call's arguments as libsinsp does and builds its extractor: (extract, type, list).
pub fn compile(
    source: &str,
    call: &Call,
    selector: Option<&str>,
    getter: GetterFn,
) -> Result<(Box<ExtractFn>, FieldType, bool), String> {
    let args: Vec<ArgGetter> = call
        .args
        .iter()
        .map(|a| ArgGetter::compile(source, a, getter))
        .collect::<Result<_, _>>()?;
    let kinds: Vec<(FieldType, bool)> = args.iter().map(ArgGetter::kind).collect();
    if call.multi != Multi::Getopt && selector.is_some() {
        return Err(format!(
            "transformer '{}' does not support field arguments",
            call.multi.name()
        ));
    }
    match call.multi {
        Multi::Join => {
            check_join(&kinds)?;
            Ok((join(args), FieldType::String, false))
        }
        Multi::Concat => {
            check_concat(&kinds)?;
            Ok((concat(args), FieldType::String, false))
        }
        Multi::Getopt => {
            let selector = check_getopt(&kinds, selector)?;
            let list = selector.is_none();
            Ok((getopt_fn(args, selector), FieldType::String, list))
        }
    }
}

/// (type, is a list) of each argument.
type Kinds = [(FieldType, bool)];

fn check_join(kinds: &Kinds) -> Result<(), String> {
    if kinds.len() != 2 {
        return Err("join() requires exactly 2 arguments: separator and list".into());
    }
    if kinds[0].1 {
        return Err("join() first argument (separator) must be a single value, not a list".into());
    }
    if !kinds[1].1 {
        return Err("join() second argument must be a list".into());
    }
    Ok(())
}

fn check_concat(kinds: &Kinds) -> Result<(), String> {
    if kinds.len() < 2 {
        return Err("concat() requires at least 2 arguments".into());
    }
    if kinds
        .iter()
        .any(|(ty, list)| *ty != FieldType::String || *list)
    {
        return Err("concat() arguments must be strings".into());
    }
    Ok(())
}

/// Checks getopt's arguments and returns its selector's option character, if any.
fn check_getopt(kinds: &Kinds, selector: Option<&str>) -> Result<Option<u8>, String> {
    if kinds.len() != 2 {
        return Err("getopt() requires exactly 2 arguments: args list and optstring".into());
    }
    if !kinds[0].1 {
        return Err("getopt() first argument must be a list".into());
    }
    if kinds[1].1 {
        return Err("getopt() second argument (optstring) must be a single value".into());
    }
    if kinds.iter().any(|(ty, _)| *ty != FieldType::String) {
        return Err("getopt() arguments must be strings".into());
    }
    match selector {
        Some(s) if s.len() == 1 => Ok(Some(s.as_bytes()[0])),
        Some(_) => Err("getopt() field argument must be a single option character".into()),
        None => Ok(None),
    }
}

fn join(args: Vec<ArgGetter>) -> Box<ExtractFn> {
    Box::new(move |e| {
        let sep = args[0].first(e)?;
        let mut items = Vec::new();
        args[1].values(e, &mut items)?;
        Some(Extracted::One(Cow::Owned(items.join(sep.as_ref()))))
    })
}

fn concat(args: Vec<ArgGetter>) -> Box<ExtractFn> {
    Box::new(move |e| {
        let mut out = String::new();
        for arg in &args {
            out.push_str(&arg.first(e)?);
        }
        Some(Extracted::One(Cow::Owned(out)))
    })
}

fn getopt_fn(args: Vec<ArgGetter>, selector: Option<u8>) -> Box<ExtractFn> {
    Box::new(move |e| {
        let optstring = args[1].first(e)?;
        let mut argv = Vec::new();
        args[0].values(e, &mut argv)?;
        let argv: Vec<&str> = argv.iter().map(|a| a.as_ref()).collect();
        let result = getopt(&argv, &optstring, selector)?;
        let result: Vec<Cow<'_, str>> = result.into_iter().map(Cow::Owned).collect();
        match selector {
            Some(_) => result.into_iter().next().map(Extracted::One),
            None if result.is_empty() => None,
            None => Some(Extracted::Many(result)),
        }
    })
}

/// Which option characters an optstring defines, and which of them take a value (`t:`); a
/// leading `:` only changes getopt(3)'s error character.
fn parse_optstring(spec: &[u8]) -> ([bool; 256], [bool; 256]) {
    let mut valid = [false; 256];
    let mut takes_value = [false; 256];
    let mut i = usize::from(spec.first() == Some(&b':'));
    while i < spec.len() {
        let c = spec[i];
        if c != b':' {
            valid[c as usize] = true;
            if spec.get(i + 1) == Some(&b':') {
                takes_value[c as usize] = true;
                i += 1;
            }
        }
        i += 1;
    }
    (valid, takes_value)
}

/// getopt(3) over `argv` (no program name): stops at `--` or the first non-option, skips long
/// options, expands clusters (`-nt`), takes an option's value from the rest of its token or the
/// next one. Without a selector: each option, then its value; `?` for an unknown option; `""`
/// for a missing value. With one: the last value (or the option itself) of that option, `None`
/// when it never appears.
pub fn getopt(argv: &[&str], optstring: &str, selector: Option<u8>) -> Option<Vec<String>> {
    let (valid, takes_value) = parse_optstring(optstring.as_bytes());
    let mut out = Vec::new();
    let mut selected: Option<String> = None;
    let mut idx = 0;
    'args: while idx < argv.len() {
        let arg = argv[idx].as_bytes();
        if arg == b"--" {
            break;
        }
        if arg.len() > 2 && arg.starts_with(b"--") {
            idx += 1;
            continue;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            break;
        }
        for pos in 1..arg.len() {
            let opt = arg[pos];
            if opt == b':' || !valid[opt as usize] {
                if selector.is_none() {
                    out.push("?".to_string());
                }
                continue;
            }
            let matches = selector.is_none_or(|s| s == opt);
            let name = (opt as char).to_string();
            if !takes_value[opt as usize] {
                if matches {
                    match selector {
                        Some(_) => selected = Some(name),
                        None => out.push(name),
                    }
                }
                continue;
            }
            let value = if pos + 1 < arg.len() {
                Some(String::from_utf8_lossy(&arg[pos + 1..]).into_owned())
            } else if idx + 1 < argv.len() {
                idx += 1;
                Some(argv[idx].to_string())
            } else {
                None
            };
            if matches {
                match (selector, value) {
                    (Some(_), Some(v)) => selected = Some(v),
                    (Some(_), None) => selected = Some(String::new()),
                    (None, Some(v)) => {
                        out.push(name);
                        out.push(v);
                    }
                    (None, None) => out.push(String::new()),
                }
            }
            idx += 1;
            continue 'args;
        }
        idx += 1;
    }
    match selector {
        Some(_) => selected.map(|v| vec![v]),
        None => Some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::getopt;

    fn list(argv: &[&str], spec: &str) -> Vec<String> {
        getopt(argv, spec, None).expect("list mode always answers")
    }

    fn pick(argv: &[&str], spec: &str, opt: char) -> Option<String> {
        getopt(argv, spec, Some(opt as u8)).map(|mut v| v.remove(0))
    }

    // Cases from libsinsp's multivalue_transformer_getopt unit test (facts, restated).
    #[test]
    fn getopt_list_mode_matches_libsinsp() {
        assert_eq!(list(&["-n", ""], "n"), ["n"]);
        assert_eq!(list(&["-t", "hello"], "t:"), ["t", "hello"]);
        assert_eq!(list(&["-nt", "hello"], "nt:"), ["n", "t", "hello"]);
        assert_eq!(list(&["-thello"], "t:"), ["t", "hello"]);
        assert_eq!(list(&["-n", "--", "-t"], "nt:"), ["n"]);
        assert_eq!(list(&["-x", "-n"], "n"), ["?", "n"]);
        assert_eq!(list(&["-lpe", "/bin/sh"], "lp:e:"), ["l", "p", "e"]);
        assert_eq!(
            list(&["-lpe", "/bin/sh"], "lpe:"),
            ["l", "p", "e", "/bin/sh"]
        );
        assert!(list(&["-n", "-t"], "").iter().all(|v| v == "?"));
        assert!(list(&[""], "n").is_empty());
        assert!(list(&["arg1", "-n", "arg2"], "n").is_empty());
        assert!(list(&["-", "-n"], "n").is_empty());
        assert_eq!(list(&["-t"], "t:"), [""]);
        assert_eq!(list(&["-t"], ":t:"), [""]);
        assert_eq!(list(&["-n", "--", "--"], "n"), ["n"]);
        assert!(list(&["--", "-n"], "n").is_empty());
        assert_eq!(list(&["-nat", "hello"], "na:t"), ["n", "a", "t"]);
        assert_eq!(list(&["-abcvalue"], "abc:"), ["a", "b", "c", "value"]);
        assert_eq!(
            list(&["-t", "v1", "-t", "v2"], "t:"),
            ["t", "v1", "t", "v2"]
        );
        assert_eq!(list(&["-p8080"], "p:"), ["p", "8080"]);
        assert_eq!(list(&["-t", "-123"], "t:"), ["t", "-123"]);
        assert_eq!(
            list(&["-e", "/bin/sh", "attacker.com", "4444"], "e:"),
            ["e", "/bin/sh"]
        );
        assert!(list(&["regular_file", "-f", "x"], "f:").is_empty());
        assert_eq!(list(&["-t", " "], "t:"), ["t", " "]);
        assert!(list(&["", "-n", ""], "n").is_empty());
        assert_eq!(list(&["-@", "-+"], "@+"), ["@", "+"]);
        assert_eq!(list(&["-nx"], "n"), ["n", "?"]);
        assert!(list(&["--exec"], "e:").is_empty());
        assert_eq!(list(&["--exec", "-n"], "n"), ["n"]);
        assert_eq!(list(&["-n", "file", "-t"], "nt"), ["n"]);
    }

    #[test]
    fn getopt_selector_mode_matches_libsinsp() {
        assert_eq!(
            pick(&["-n", "-t", "hello"], "nt:", 't').as_deref(),
            Some("hello")
        );
        assert_eq!(
            pick(&["-n", "-t", "hello"], "nt:", 'n').as_deref(),
            Some("n")
        );
        assert_eq!(
            pick(&["-t", "v1", "-t", "v2"], "t:", 't').as_deref(),
            Some("v2")
        );
        assert_eq!(pick(&["-t?"], "t:", 't').as_deref(), Some("?"));
        assert_eq!(pick(&["-t:"], ":t:", 't').as_deref(), Some(":"));
        assert_eq!(pick(&["-t"], "t:", 't').as_deref(), Some(""));
        assert_eq!(pick(&["-n"], "nt:", 't'), None);
        assert_eq!(pick(&["-t", "v1", "-t"], "t:", 't').as_deref(), Some(""));
    }
}
