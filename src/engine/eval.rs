//! Compiled conditions and their evaluation. Everything text-shaped on the right-hand side (sets,
//! regexes, globs, path prefixes, numbers) is prepared at compile time.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use base64::Engine as _;

use super::ast::{Modifier, Op, Transformer};
use super::extract::{EventData, ExtractFn, Extracted};
use super::fields::FieldType;

/// A field with its transformers (innermost last), ready to extract.
pub struct Getter {
    pub extract: Box<ExtractFn>,
    /// Applied in order (innermost first).
    pub transformers: Vec<Transformer>,
    pub ty: FieldType,
    pub list: bool,
}

impl Getter {
    pub fn get<'a>(&self, e: &EventData<'a>) -> Option<Extracted<'a>> {
        let mut v = (self.extract)(e)?;
        for t in &self.transformers {
            v = transform(*t, v)?;
        }
        Some(v)
    }
}

fn transform(t: Transformer, v: Extracted<'_>) -> Option<Extracted<'_>> {
    let one = |s: Cow<'_, str>| -> Option<String> {
        Some(match t {
            Transformer::ToLower => s.to_ascii_lowercase(),
            Transformer::ToUpper => s.to_ascii_uppercase(),
            Transformer::Basename => s.rsplit('/').next().unwrap_or("").to_string(),
            Transformer::B64 => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .ok()?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Transformer::Len => s.len().to_string(),
        })
    };
    match (t, v) {
        (Transformer::Len, Extracted::Many(items)) => {
            Some(Extracted::One(Cow::Owned(items.len().to_string())))
        }
        (_, Extracted::One(s)) => one(s).map(|s| Extracted::One(Cow::Owned(s))),
        (_, Extracted::Many(items)) => {
            let out: Option<Vec<_>> = items.into_iter().map(|s| one(s).map(Cow::Owned)).collect();
            out.map(Extracted::Many)
        }
    }
}

pub enum Rhs {
    None,
    Text(String),
    Number(f64),
    Set(HashSet<String>),
    Numbers(Vec<f64>),
    Regex(regex::Regex),
    Glob(String),
    Paths(Vec<Vec<String>>),
    Nets(Vec<Net>),
    Bytes(Vec<u8>),
    Field(Box<Getter>),
    /// `oneof`/`anyof`/`allof`: the operator against each element, counted.
    Each(Modifier, Vec<Rhs>),
}

pub struct Check {
    pub lhs: Getter,
    pub op: Op,
    pub rhs: Rhs,
}

pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Check(Box<Check>),
}

impl Cond {
    pub fn eval(&self, e: &EventData<'_>) -> bool {
        match self {
            Cond::And(items) => items.iter().all(|c| c.eval(e)),
            Cond::Or(items) => items.iter().any(|c| c.eval(e)),
            Cond::Not(inner) => !inner.eval(e),
            Cond::Check(check) => check.eval(e),
        }
    }
}

/// An IP network for `ipnet` comparisons.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse().ok()?, p.parse().ok()?),
            None => {
                let addr: IpAddr = text.parse().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        Some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix.min(32))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix.min(128))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Check {
    fn eval(&self, e: &EventData<'_>) -> bool {
        let Some(value) = self.lhs.get(e) else {
            return false;
        };
        if self.op == Op::Exists {
            return true;
        }
        if let Rhs::Field(other) = &self.rhs {
            let Some(right) = other.get(e) else {
                return false;
            };
            return self.compare_fields(&value, &right);
        }
        match (&value, self.op) {
            (Extracted::Many(items), Op::In) => items.iter().all(|v| self.member(v)),
            (Extracted::Many(items), _) => items.iter().any(|v| self.member(v)),
            (Extracted::One(v), _) => self.scalar(v),
        }
    }

    fn member(&self, v: &str) -> bool {
        match &self.rhs {
            Rhs::Set(set) => set.contains(v),
            Rhs::Numbers(nums) => v.parse::<f64>().is_ok_and(|n| nums.contains(&n)),
            Rhs::Nets(nets) => v
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Rhs::Paths(paths) => pmatch(paths, v),
            _ => false,
        }
    }

    fn scalar(&self, v: &str) -> bool {
        match &self.rhs {
            Rhs::Each(modifier, each) => {
                let mut hits = each.iter().filter(|r| self.compare(r, v));
                match modifier {
                    Modifier::AnyOf => hits.next().is_some(),
                    Modifier::OneOf => hits.next().is_some() && hits.next().is_none(),
                    Modifier::AllOf => !each.is_empty() && hits.count() == each.len(),
                }
            }
            rhs => self.compare(rhs, v),
        }
    }

    fn compare(&self, rhs: &Rhs, v: &str) -> bool {
        let numeric = matches!(self.lhs.ty, FieldType::Number)
            || self.lhs.transformers.last() == Some(&Transformer::Len);
        match (self.op, rhs) {
            (Op::In | Op::Intersects | Op::PMatch, _) => self.member(v),
            (Op::Eq | Op::Ne, Rhs::Nets(nets)) => {
                let hit = v
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| nets.iter().any(|n| n.contains(ip)));
                hit == (self.op == Op::Eq)
            }
            (op, Rhs::Number(n)) if numeric => match parse_number(v) {
                Some(x) => compare_order(op, x.partial_cmp(n)),
                None => false,
            },
            (op, Rhs::Number(_) | Rhs::Text(_))
                if op.is_num_op() || matches!(op, Op::Eq | Op::Ne) =>
            {
                let text = match rhs {
                    Rhs::Text(t) => t.as_str(),
                    _ => return false,
                };
                compare_order(op, Some(v.as_bytes().cmp(text.as_bytes())))
            }
            (Op::Contains, Rhs::Text(t)) => v.contains(t.as_str()),
            (Op::IContains, Rhs::Text(t)) => {
                v.to_ascii_lowercase().contains(&t.to_ascii_lowercase())
            }
            (Op::StartsWith, Rhs::Text(t)) => v.starts_with(t.as_str()),
            (Op::EndsWith, Rhs::Text(t)) => v.ends_with(t.as_str()),
            (Op::Glob, Rhs::Glob(p)) => fnmatch(p.as_bytes(), v.as_bytes(), false),
            (Op::IGlob, Rhs::Glob(p)) => fnmatch(p.as_bytes(), v.as_bytes(), true),
            (Op::Regex, Rhs::Regex(re)) => re.is_match(v),
            (Op::BContains, Rhs::Bytes(b)) => {
                !b.is_empty() && v.as_bytes().windows(b.len()).any(|w| w == b.as_slice())
            }
            (Op::BStartsWith, Rhs::Bytes(b)) => v.as_bytes().starts_with(b),
            _ => false,
        }
    }

    fn compare_fields(&self, left: &Extracted<'_>, right: &Extracted<'_>) -> bool {
        let rights = right.items();
        match (left, self.op) {
            (Extracted::Many(items), Op::In) => items.iter().all(|l| rights.contains(l)),
            (Extracted::Many(items), Op::Intersects) => items.iter().any(|l| rights.contains(l)),
            (Extracted::One(l), Op::In | Op::Intersects) => rights.contains(l),
            (Extracted::One(l), op) => {
                let r = &rights[0];
                let numeric = matches!(self.lhs.ty, FieldType::Number);
                match op {
                    Op::Contains => l.contains(r.as_ref()),
                    Op::IContains => l.to_ascii_lowercase().contains(&r.to_ascii_lowercase()),
                    Op::StartsWith => l.starts_with(r.as_ref()),
                    Op::EndsWith => l.ends_with(r.as_ref()),
                    Op::Glob => fnmatch(r.as_bytes(), l.as_bytes(), false),
                    Op::IGlob => fnmatch(r.as_bytes(), l.as_bytes(), true),
                    _ if numeric => match (parse_number(l), parse_number(r)) {
                        (Some(a), Some(b)) => compare_order(op, a.partial_cmp(&b)),
                        _ => false,
                    },
                    _ => compare_order(op, Some(l.as_bytes().cmp(r.as_bytes()))),
                }
            }
            _ => false,
        }
    }
}

pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    match t {
        "true" => Some(1.0),
        "false" => Some(0.0),
        _ => t.parse::<f64>().ok(),
    }
}

fn compare_order(op: Op, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (op, ord) {
        (_, None) => false,
        (Op::Eq, Some(o)) => o == Equal,
        (Op::Ne, Some(o)) => o != Equal,
        (Op::Lt, Some(o)) => o == Less,
        (Op::Le, Some(o)) => o != Greater,
        (Op::Gt, Some(o)) => o == Greater,
        (Op::Ge, Some(o)) => o != Less,
        _ => false,
    }
}

/// Path-prefix match: some pattern's components (globs allowed) prefix the value's components.
fn pmatch(paths: &[Vec<String>], value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').filter(|p| !p.is_empty()).collect();
    paths.iter().any(|pattern| {
        pattern.len() <= parts.len()
            && pattern
                .iter()
                .zip(&parts)
                .all(|(p, v)| fnmatch(p.as_bytes(), v.as_bytes(), false))
    })
}

/// fnmatch(3) with no flags (or FNM_CASEFOLD): `*` matches `/` too; `?`, `[...]`, `\` escapes.
pub fn fnmatch(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, t));
            p += 1;
            continue;
        }
        if let Some(next) = (p < pattern.len())
            .then(|| one_byte(pattern, p, text[t], fold))
            .flatten()
        {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches the text byte `c` against the pattern item at `pattern[p]` (not `*`): the index after
/// the item, or `None` when it does not match.
fn one_byte(pattern: &[u8], p: usize, c: u8, fold: bool) -> Option<usize> {
    let eq = |a: u8, b: u8| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => match bracket(pattern, p, c, fold) {
            Some((matched, next)) => matched.then_some(next),
            None => eq(b'[', c).then_some(p + 1),
        },
        b'\\' if p + 1 < pattern.len() => eq(pattern[p + 1], c).then_some(p + 2),
        other => eq(other, c).then_some(p + 1),
    }
}

/// A `[...]` class at `pattern[start]`: (does `c` match, index after the class), or `None` if
/// the class is not terminated (then `[` is literal).
fn bracket(pattern: &[u8], start: usize, c: u8, fold: bool) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    let lower = |b: u8| if fold { b.to_ascii_lowercase() } else { b };
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = b;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|h| *h != b']') {
            let hi = pattern[i + 2];
            if lower(lo) <= lower(c) && lower(c) <= lower(hi) {
                matched = true;
            }
            i += 3;
        } else {
            if lower(lo) == lower(c) {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_behaves_like_libc() {
        assert!(fnmatch(b"*.log", b"/var/a.log", false));
        assert!(
            fnmatch(b"/etc/*", b"/etc/x/y", false),
            "* matches / without FNM_PATHNAME"
        );
        assert!(fnmatch(b"a?c", b"abc", false));
        assert!(fnmatch(b"[a-c]x", b"bx", false));
        assert!(!fnmatch(b"[!a-c]x", b"bx", false));
        assert!(fnmatch(b"ABC", b"abc", true));
        assert!(!fnmatch(b"ABC", b"abc", false));
        assert!(fnmatch(b"a\\*", b"a*", false));
        assert!(!fnmatch(b"a\\*", b"ab", false));
    }

    #[test]
    fn pmatch_matches_path_prefixes() {
        let paths = [vec!["var".to_string(), "run".to_string()], vec![]];
        assert!(pmatch(&paths[..1], "/var/run/x"));
        assert!(!pmatch(&paths[..1], "/var/runx"));
        assert!(pmatch(&paths[1..], "/anything"), "/ matches everything");
    }

    #[test]
    fn networks() {
        let net = Net::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.1.2.3".parse().unwrap()));
    }
}
