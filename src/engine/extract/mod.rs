//! Field extraction: from an event (its JSON payload, time, source and host) to a field's value.
//! Extractors are built once per field at compile time; evaluation only walks the parsed JSON.

use std::borrow::Cow;

use serde_json::Value;

use super::fields::{self, Arg, FieldInfo};

mod cloudtrail;
mod k8s_audit;
mod plugins;

use k8s_audit::ka;
pub use k8s_audit::{audit_time, split_audit_payload};

/// One event as the evaluator sees it. The payload is parsed once and shared by every field.
pub struct EventData<'a> {
    pub source: &'a str,
    pub json: &'a Value,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub hostname: &'a str,
    pub num: u64,
}

/// An extracted value: one text, or the elements of a list field (never empty).
#[derive(Clone, Debug, PartialEq)]
pub enum Extracted<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Extracted<'_> {
    pub fn items(&self) -> &[Cow<'_, str>] {
        match self {
            Extracted::One(v) => std::slice::from_ref(v),
            Extracted::Many(v) => v,
        }
    }
}

pub type ExtractFn = dyn for<'a> Fn(&EventData<'a>) -> Option<Extracted<'a>> + Send + Sync;

fn ex<F>(f: F) -> Box<ExtractFn>
where
    F: for<'a> Fn(&EventData<'a>) -> Option<Extracted<'a>> + Send + Sync + 'static,
{
    Box::new(f)
}

/// A JSON value as text: strings raw, anything else compact JSON.
pub fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn at<'a>(mut v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    for key in path {
        v = v.get(key)?;
    }
    Some(v)
}

/// A string the way the Go plugins' fastjson `GetStringBytes` reads it: the text of a JSON
/// string, `""` for a missing or non-string value.
fn go_str(v: Option<&Value>) -> Cow<'_, str> {
    match v {
        Some(Value::String(s)) => Cow::Borrowed(s),
        _ => Cow::Borrowed(""),
    }
}

fn one(v: Cow<'_, str>) -> Option<Extracted<'_>> {
    Some(Extracted::One(v))
}

fn many(items: Vec<Cow<'_, str>>) -> Option<Extracted<'_>> {
    (!items.is_empty()).then_some(Extracted::Many(items))
}

/// The resolved extractor for one field as written, and what the registry says about it.
pub struct Resolved {
    pub info: FieldInfo,
    pub extract: Box<ExtractFn>,
}

/// Registered fields that never extract: the okta plugin counts MFA failures in a per-actor cache
/// across events, and `evt.reltime*` count from a capture's start.
const NOT_EVALUATED: &[&str] = &[
    "okta.mfa.failure.countlast",
    "okta.mfa.deny.countlast",
    "evt.reltime",
    "evt.reltime.s",
    "evt.reltime.ns",
];

/// Resolves `name[arg]` for `source`: checks the registry and the argument, builds the extractor.
pub fn resolve(source: &str, name: &str, arg: Option<&str>) -> Result<Resolved, String> {
    let registry = fields::registry(source);
    let mut info = fields::lookup(registry, name);
    let mut key_from_name = None;
    if info.is_none() && source == "syscall" {
        // `evt.arg.flags` is `evt.arg` with the key written after a dot.
        for family in ["evt.arg", "evt.rawarg"] {
            if let Some(key) = name.strip_prefix(family).and_then(|r| r.strip_prefix('.')) {
                info = fields::lookup(registry, family);
                key_from_name = Some(key.to_string());
            }
        }
    }
    let (info, catalog_only) = match info {
        Some(info) => (info, false),
        None => match super::catalog::lookup(source, name) {
            Some(info) => (info, true),
            None => return Err(format!("filter_check called with nonexistent field {name}")),
        },
    };
    let arg_ok = match (info.arg, arg, &key_from_name) {
        (_, Some(_), Some(_)) => false,
        (Arg::None, None, _) => true,
        (Arg::None, Some(_), _) => false,
        (Arg::RequiredKey | Arg::RequiredIndex, None, None) => false,
        (Arg::RequiredIndex | Arg::OptionalIndex, Some(a), _) => a.parse::<usize>().is_ok(),
        _ => true,
    };
    if !arg_ok {
        let want = match info.arg {
            Arg::None => "takes no argument".to_string(),
            Arg::OptionalIndex | Arg::RequiredIndex => {
                "takes a numeric index argument ([N])".into()
            }
            Arg::RequiredKey | Arg::OptionalKey => "needs a key argument ([key])".into(),
        };
        return Err(format!("field {name} {want}"));
    }
    if source != "syscall" && NOT_EVALUATED.contains(&name) {
        super::catalog::note_native(name);
    }
    if catalog_only {
        // Validated against the catalog, never evaluated (the loader warns about each use).
        return Ok(Resolved {
            info,
            extract: ex(|_| None),
        });
    }
    let extract = match source {
        "syscall" => payload(name, arg, key_from_name.as_deref()),
        _ if name.starts_with("ka.") => ka(name, arg)?,
        _ if name.starts_with("json.") || name.starts_with("jevt.") => json_field(name, arg),
        _ if name.starts_with("evt.") => generic(name)
            .ok_or_else(|| format!("filter_check called with nonexistent field {name}"))?,
        // A field the source plugin never extracts (as the plugin's own code does).
        "aws_cloudtrail" => cloudtrail::extractor(name, arg).unwrap_or_else(|| ex(|_| None)),
        _ => plugins::extractor(source, name, arg)
            .ok_or_else(|| format!("filter_check called with nonexistent field {name}"))?,
    };
    Ok(Resolved { info, extract })
}

/// Generic event fields, from the event's metadata.
fn generic(name: &str) -> Option<Box<ExtractFn>> {
    Some(match name {
        "evt.num" => ex(|e| Some(Extracted::One(Cow::Owned(e.num.to_string())))),
        "evt.time" => ex(|e| {
            Some(Extracted::One(Cow::Owned(super::time::clock_time(
                e.time_ns, false,
            ))))
        }),
        "evt.time.s" => ex(|e| {
            Some(Extracted::One(Cow::Owned(super::time::clock_time(
                e.time_ns, true,
            ))))
        }),
        "evt.time.iso8601" | "evt.datetime" | "evt.datetime.s" => {
            ex(|e| Some(Extracted::One(Cow::Owned(super::time::iso_time(e.time_ns)))))
        }
        "evt.rawtime" | "evt.rawtime.ns" => {
            ex(|e| Some(Extracted::One(Cow::Owned(e.time_ns.to_string()))))
        }
        "evt.rawtime.s" => ex(|e| {
            Some(Extracted::One(Cow::Owned(
                e.time_ns.div_euclid(1_000_000_000).to_string(),
            )))
        }),
        "evt.source" => ex(|e| Some(Extracted::One(Cow::Borrowed(e.source)))),
        "evt.hostname" => ex(|e| Some(Extracted::One(Cow::Borrowed(e.hostname)))),
        "evt.pluginname" => ex(|e| {
            let name = fields::plugin_of(e.source).unwrap_or("json");
            Some(Extracted::One(Cow::Borrowed(name)))
        }),
        "evt.plugininfo" => ex(|e| {
            let info = match e.source {
                "aws_cloudtrail" => cloudtrail::plugin_info(e.json)?,
                "github" => plugins::github_info(e.json),
                _ => e.json.to_string(),
            };
            Some(Extracted::One(Cow::Owned(info)))
        }),
        "evt.is_async" => ex(|_| Some(Extracted::One(Cow::Borrowed("false")))),
        // Relative to the first event of a capture, which a server has no notion of; and events
        // here are never asynchronous. Neither extracts (Falco's answer for the latter).
        "evt.reltime" | "evt.reltime.s" | "evt.reltime.ns" | "evt.asynctype" => ex(|_| None),
        _ => return None,
    })
}

/// Syscall-style events: the payload is an object of field name → value, looked up as written
/// (`proc.aname[2]`); generic fields fall back to the event's metadata.
fn payload(name: &str, arg: Option<&str>, key_from_name: Option<&str>) -> Box<ExtractFn> {
    let key = match (arg, key_from_name) {
        (Some(a), _) => format!("{name}[{a}]"),
        _ => name.to_string(),
    };
    let fallback = generic(name);
    ex(move |e| match e.json.get(&key) {
        Some(Value::Null) | None => fallback.as_ref().and_then(|f| f(e)),
        Some(Value::Array(items)) => many(items.iter().map(text).collect()),
        Some(v) => Some(Extracted::One(text(v))),
    })
}

/// A JSON pointer: leading `/` optional, `~1` → `/`, `~0` → `~`, numbers index arrays.
pub fn pointer_segments(pointer: &str) -> Vec<String> {
    let trimmed = pointer.strip_prefix('/').unwrap_or(pointer);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn walk<'a>(mut v: &'a Value, segments: &[String]) -> Option<&'a Value> {
    for seg in segments {
        v = match v {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn json_field(name: &str, arg: Option<&str>) -> Box<ExtractFn> {
    match name.split_once('.').map(|(_, rest)| rest) {
        Some("value") => {
            let segments = pointer_segments(arg.unwrap_or(""));
            ex(move |e| walk(e.json, &segments).map(|v| Extracted::One(text(v))))
        }
        Some("obj") => ex(|e| {
            Some(Extracted::One(Cow::Owned(
                serde_json::to_string_pretty(e.json).unwrap_or_default(),
            )))
        }),
        _ => ex(|e| Some(Extracted::One(Cow::Owned(e.time_ns.to_string())))),
    }
}
