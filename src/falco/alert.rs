//! Falco's alerts as it writes them: one JSON object per alert (`json_output: true`), or the
//! plain text line (`json_output: false`). Parsed into an [`OutputEvent`] with Falco's own time,
//! rule, priority, source, hostname, tags, output and output fields — never re-evaluated.

use crate::base::event::{stage, DropRecord, Origin, OutputEvent, Priority};
use crate::services::nodes::SYSCALL_DROP_RULE;
use crate::services::status::{Kind, ServiceError};

/// Output fields kept per alert at most (Falco's own alerts have a few dozen).
const MAX_FIELDS: usize = 4096;

/// Why a body is not one of Falco's alerts; the message names the field or the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("the alert is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("empty alert")]
    Empty,
    #[error("not a Falco alert: invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Falco alert: expected a JSON object")]
    NotAnObject,
    #[error("not a Falco alert: '{0}' must be a string")]
    NotAString(String),
    #[error("not a Falco alert: '{0}' is missing")]
    Missing(String),
    #[error("not a Falco alert: {0}")]
    Priority(#[from] crate::base::event::InvalidPriority),
    #[error("not a Falco alert: time '{0}' is not an RFC 3339 time")]
    Time(String),
    #[error("not a Falco alert: 'tags' must be strings")]
    TagsNotStrings,
    #[error("not a Falco alert: 'tags' must be an array")]
    TagsNotAnArray,
    #[error("not a Falco alert: {0} output fields (at most {MAX_FIELDS})")]
    TooManyFields(usize),
    #[error("not a Falco alert: 'output_fields' must be an object")]
    FieldsNotAnObject,
    #[error("not a Falco alert line: expected 'TIME: Priority output'")]
    LineShape,
    #[error("not a Falco alert line: '{0}' is not a priority")]
    LinePriority(String),
    #[error("not a Falco alert line: the time does not parse")]
    LineTime,
}

impl ServiceError for AlertError {
    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

/// One alert from Falco, and the drop record its internal drop alert implies.
#[derive(Debug, Clone)]
pub struct FalcoAlert {
    pub event: OutputEvent,
    pub drop: Option<DropRecord>,
}

/// Parses one alert: JSON when it starts with `{`, else Falco's text line. `hostname` is used
/// when the alert names none (text lines never do).
pub fn parse(body: &[u8], origin: Origin, hostname: &str) -> Result<FalcoAlert, AlertError> {
    let trimmed = std::str::from_utf8(body)?.trim();
    if trimmed.is_empty() {
        return Err(AlertError::Empty);
    }
    let event = if trimmed.starts_with('{') {
        from_json(trimmed)?
    } else {
        from_text(trimmed)?
    };
    let mut event = event.with_origin(origin);
    if event.hostname.is_empty() {
        event.hostname = hostname.to_string();
    }
    let drop = drop_record(&event);
    Ok(FalcoAlert { event, drop })
}

fn from_json(text: &str) -> Result<OutputEvent, AlertError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let obj = value.as_object().ok_or(AlertError::NotAnObject)?;
    let string = |key: &str| -> Result<Option<&str>, AlertError> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AlertError::NotAString(key.to_string())),
        }
    };
    let need = |key: &str| -> Result<&str, AlertError> {
        string(key)?.ok_or_else(|| AlertError::Missing(key.to_string()))
    };
    let rule = need("rule")?;
    let priority: Priority = need("priority")?.parse()?;
    let time = need("time")?;
    let time_ns = parse_time(time).ok_or_else(|| AlertError::Time(time.to_string()))?;
    let output = match (string("output")?, string("message")?) {
        (Some(o), _) => o,
        (None, Some(m)) => m,
        (None, None) => "",
    };
    let source = string("source")?.unwrap_or("syscall");
    let hostname = string("hostname")?.unwrap_or("");
    let tags = tags(obj.get("tags"))?;
    let fields = output_fields(obj.get("output_fields"))?;
    Ok(OutputEvent::new(time_ns, priority, rule, output, source)
        .with_tags(tags)
        .with_fields(fields)
        .with_hostname(hostname))
}

fn tags(v: Option<&serde_json::Value>) -> Result<Vec<String>, AlertError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or(AlertError::TagsNotStrings)
            })
            .collect(),
        Some(_) => Err(AlertError::TagsNotAnArray),
    }
}

/// `output_fields`: at most [`MAX_FIELDS`], each value as text.
fn output_fields(v: Option<&serde_json::Value>) -> Result<Vec<(String, String)>, AlertError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Object(map)) if map.len() > MAX_FIELDS => {
            Err(AlertError::TooManyFields(map.len()))
        }
        Some(serde_json::Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| (k.clone(), field_text(v)))
            .collect()),
        Some(_) => Err(AlertError::FieldsNotAnObject),
    }
}

/// A field's value as gRPC carried it: strings as they are, null as Falco's `<NA>`, numbers and
/// booleans as written, anything else as compact JSON.
fn field_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<NA>".into(),
        other => other.to_string(),
    }
}

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// `TIME: Priority output…`, TIME being `HH:MM:SS.nnnnnnnnn` (today, UTC) or ISO 8601 with
/// `time_format_iso_8601`. The rule is not in the line, except for Falco's internal drop alert.
fn from_text(line: &str) -> Result<OutputEvent, AlertError> {
    let (time, rest) = split_time(line).ok_or(AlertError::LineShape)?;
    let (word, output) = rest.split_once(' ').unwrap_or((rest, ""));
    let priority: Priority = word
        .parse()
        .map_err(|_| AlertError::LinePriority(word.to_string()))?;
    let time_ns = time.ok_or(AlertError::LineTime)?;
    let (rule, source) = if output.starts_with(SYSCALL_DROP_RULE) {
        (SYSCALL_DROP_RULE, "internal")
    } else {
        ("", "")
    };
    Ok(OutputEvent::new(time_ns, priority, rule, output, source))
}

/// The time prefix and the rest after `": "`.
fn split_time(line: &str) -> Option<(Option<i64>, &str)> {
    let (head, rest) = line.split_once(": ")?;
    if head.len() > 40 || !head.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let time = if head.contains('T') {
        chrono::DateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S%.f%z")
            .ok()
            .or_else(|| chrono::DateTime::parse_from_rfc3339(head).ok())
            .and_then(|t| t.timestamp_nanos_opt())
    } else {
        chrono::NaiveTime::parse_from_str(head, "%H:%M:%S%.f")
            .ok()
            .and_then(|t| {
                let now = chrono::Utc::now();
                let mut at = now.date_naive().and_time(t).and_utc();
                // A line from just before midnight read just after it.
                if at > now + chrono::Duration::hours(1) {
                    at -= chrono::Duration::days(1);
                }
                at.timestamp_nanos_opt()
            })
    };
    Some((time, rest))
}

/// Falco's internal drop alert as a drop record (stage `falco_syscall_drop`), with every
/// per-category counter in the message.
fn drop_record(ev: &OutputEvent) -> Option<DropRecord> {
    if ev.rule != SYSCALL_DROP_RULE || ev.source != "internal" {
        return None;
    }
    let get = |name: &str| {
        ev.output_fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    let n_drops = get("n_drops").or_else(|| leading_number(&ev.output))?;
    let counters: Vec<String> = ev
        .output_fields
        .iter()
        .filter(|(k, _)| k.starts_with("n_drops_") || k == "ebpf_enabled")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let message = if counters.is_empty() {
        ev.output.clone()
    } else {
        format!("{} ({})", ev.output, counters.join(" "))
    };
    let mut record = DropRecord::now(
        stage::FALCO_SYSCALL_DROP,
        "syscall",
        &ev.hostname,
        n_drops,
        get("n_evts").unwrap_or(0),
        message,
    );
    record.time_ns = ev.time_ns;
    Some(record)
}

/// `Falco internal: syscall event drop. 12 system calls dropped in last second.` → 12.
fn leading_number(output: &str) -> Option<u64> {
    output
        .split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_alert_keeps_falcos_own_values() {
        let body = br#"{"hostname":"node-1","output":"10:11:12.1: Warning Shell (user=root)","output_fields":{"evt.time":1746353472123456789,"user.name":"root","k8s.ns.name":null,"fd.is_server":true},"priority":"Warning","rule":"Shell","source":"syscall","tags":["shell","container"],"time":"2026-05-04T10:11:12.123456789Z"}"#;
        let a = parse(body, Origin::FalcoHttp, "fallback").unwrap();
        let e = a.event;
        assert_eq!(e.rule, "Shell");
        assert_eq!(e.priority, Priority::Warning);
        assert_eq!(e.hostname, "node-1");
        assert_eq!(e.time_ns, 1_777_889_472_123_456_789);
        assert_eq!(e.tags, vec!["container", "shell"]);
        assert_eq!(e.origin, Origin::FalcoHttp);
        let f: std::collections::BTreeMap<_, _> = e.output_fields.into_iter().collect();
        assert_eq!(f["evt.time"], "1746353472123456789");
        assert_eq!(f["k8s.ns.name"], "<NA>");
        assert_eq!(f["fd.is_server"], "true");
        assert!(a.drop.is_none());
    }

    #[test]
    fn what_is_not_an_alert_is_refused_with_the_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "invalid JSON"),
            (b"[1]", "not a Falco alert"),
            (
                br#"{"rule":"r","priority":"Loud","time":"2026-05-04T10:11:12Z"}"#,
                "invalid priority",
            ),
            (
                br#"{"priority":"Debug","time":"2026-05-04T10:11:12Z"}"#,
                "'rule' is missing",
            ),
            (
                br#"{"rule":"r","priority":"Debug","time":"yesterday"}"#,
                "not an RFC 3339",
            ),
            (
                br#"{"rule":"r","priority":"Debug","time":"2026-05-04T10:11:12Z","tags":"a"}"#,
                "'tags' must be an array",
            ),
            (b"hello world", "expected 'TIME: Priority output'"),
            (b"10:11:12.5: Loud x", "is not a priority"),
            (b"\xff\xfe", "not UTF-8"),
            (b"  ", "empty"),
        ];
        for (body, want) in cases {
            let e = parse(body, Origin::FalcoHttp, "h").unwrap_err().to_string();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn text_lines_give_time_priority_and_output() {
        let a = parse(
            b"2026-05-04T10:11:12.000000001+0000: Critical Sensitive file opened (user=root)",
            Origin::FalcoFile,
            "node-2",
        )
        .unwrap();
        assert_eq!(a.event.time_ns, 1_777_889_472_000_000_001);
        assert_eq!(a.event.priority, Priority::Critical);
        assert_eq!(a.event.output, "Sensitive file opened (user=root)");
        assert_eq!(a.event.hostname, "node-2");
        let b = parse(b"10:11:12.5: Informational hello", Origin::FalcoFile, "h").unwrap();
        assert_eq!(b.event.priority, Priority::Informational);
        assert_eq!(b.event.time_ns % 1_000_000_000, 500_000_000);
    }

    #[test]
    fn falcos_drop_alerts_become_drop_records() {
        let body = br#"{"hostname":"n","output":"Falco internal: syscall event drop. 9 system calls dropped in last second.","output_fields":{"ebpf_enabled":"0","n_drops":"9","n_drops_buffer_total":"9","n_drops_bug":"0","n_drops_page_faults":"0","n_drops_scratch_map":"0","n_evts":"100"},"priority":"Debug","rule":"Falco internal: syscall event drop","source":"internal","time":"2026-05-04T10:11:12Z"}"#;
        let a = parse(body, Origin::FalcoHttp, "h").unwrap();
        let d = a.drop.unwrap();
        assert_eq!(d.stage, stage::FALCO_SYSCALL_DROP);
        assert_eq!((d.n_drops, d.n_evts), (9, 100));
        assert_eq!(d.client, "n");
        assert!(
            d.message.contains("n_drops_buffer_total=9"),
            "{}",
            d.message
        );
        let text = parse(
            b"10:11:12.5: Debug Falco internal: syscall event drop. 12 system calls dropped in last second.",
            Origin::FalcoFile,
            "h",
        )
        .unwrap();
        assert_eq!(text.event.rule, SYSCALL_DROP_RULE);
        assert_eq!(text.drop.unwrap().n_drops, 12);
    }
}
