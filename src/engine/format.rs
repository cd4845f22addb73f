//! Output formatting: `%field` substitution (`<NA>` when missing, lists as `(a,b)`, optional
//! width), the text alert line and the JSON alert document.

use super::ast::FieldRef;
use super::compiler::getter;
use super::eval::Getter;
use super::extract::{EventData, Extracted};
use super::parser::parse_field_prefix;
use super::time::{clock_time, iso_time};
use crate::base::event::Priority;

enum Segment {
    Text(String),
    Field {
        key: String,
        getter: Getter,
        width: Option<usize>,
        listed: bool,
    },
}

/// A compiled output format.
pub struct OutputFormat {
    segments: Vec<Segment>,
}

/// A rendered alert message and its output fields (`None` when the value was missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub message: String,
    pub fields: Vec<(String, Option<String>)>,
}

impl OutputFormat {
    pub fn compile(source: &str, format: &str) -> Result<OutputFormat, String> {
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let width = if digits > 0 {
                after[..digits].parse().ok()
            } else {
                None
            };
            let spec = &after[digits..];
            let offset = format.len() - rest.len() + at;
            let Some((mut field, mut consumed)) = parse_field_prefix(spec) else {
                return Err(format!(
                    "invalid formatting syntax at offset {offset}: '%' must be followed by a field"
                ));
            };
            if field.name == "container.info" && field.transformers.is_empty() {
                rest = &spec[consumed..];
                continue;
            }
            let compiled = longest_known(source, &mut field, &mut consumed)
                .map_err(|e| format!("{e} (in output at offset {offset})"))?;
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Field {
                key: field.plain(),
                listed: field.transformers.is_empty(),
                getter: compiled,
                width,
            });
            rest = &spec[consumed..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(OutputFormat { segments })
    }

    pub fn render(&self, e: &EventData<'_>) -> Rendered {
        let mut message = String::new();
        let mut fields: Vec<(String, Option<String>)> = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::Text(t) => message.push_str(t),
                Segment::Field {
                    key,
                    getter,
                    width,
                    listed,
                } => {
                    let value = getter.get(e).map(|v| value_text(&v));
                    let shown = value.as_deref().unwrap_or("<NA>");
                    match width {
                        Some(w) => message.push_str(&fit(shown, *w)),
                        None => message.push_str(shown),
                    }
                    if *listed && !fields.iter().any(|(k, _)| k == key) {
                        fields.push((key.clone(), value));
                    }
                }
            }
        }
        fields.sort();
        Rendered { message, fields }
    }
}

/// A value as output text: lists as `(a,b)`.
pub fn value_text(v: &Extracted<'_>) -> String {
    match v {
        Extracted::One(s) => s.to_string(),
        Extracted::Many(items) => format!("({})", items.join(",")),
    }
}

/// Pads with spaces or truncates to exactly `w` bytes (on a character boundary).
fn fit(s: &str, w: usize) -> String {
    if s.len() >= w {
        let mut end = w;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    } else {
        format!("{s:<w$}")
    }
}

/// The text alert line `<time>: <Priority> <message>`, JSON-string-escaped as Falco does.
pub fn alert_line(time_ns: i64, priority: Priority, message: &str, iso8601: bool) -> String {
    let time = if iso8601 {
        iso_time(time_ns)
    } else {
        clock_time(time_ns, false)
    };
    let line = format!("{time}: {} {message}", priority.name());
    let quoted = serde_json::to_string(&line).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// What goes into a JSON alert document.
pub struct JsonAlert<'a> {
    pub time_ns: i64,
    pub rule: &'a str,
    pub priority: Priority,
    pub source: &'a str,
    pub hostname: &'a str,
    pub output: &'a str,
    pub fields: &'a [(String, Option<String>)],
    pub tags: &'a [String],
    pub include_output: bool,
    pub include_tags: bool,
    /// Falco's `json_include_message_property`: the output without time and priority.
    pub message: Option<&'a str>,
    /// Falco's `json_include_output_fields_property`.
    pub include_output_fields: bool,
}

/// The JSON alert document (keys in Falco's order, which is alphabetical).
pub fn alert_json(a: &JsonAlert<'_>) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("hostname".into(), a.hostname.into());
    if let Some(message) = a.message {
        doc.insert("message".into(), message.into());
    }
    if a.include_output {
        doc.insert("output".into(), a.output.into());
    }
    let fields: serde_json::Map<String, serde_json::Value> = a
        .fields
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone().map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect();
    if a.include_output_fields {
        doc.insert("output_fields".into(), fields.into());
    }
    doc.insert("priority".into(), a.priority.name().into());
    doc.insert("rule".into(), a.rule.into());
    doc.insert("source".into(), a.source.into());
    if a.include_tags {
        doc.insert("tags".into(), a.tags.to_vec().into());
    }
    doc.insert("time".into(), iso_time(a.time_ns).into());
    serde_json::Value::Object(doc).to_string()
}

/// The getter of `field`; when the longest field-looking text is unknown, of its shorter
/// prefixes (`%proc.name.x` is `%proc.name` then `.x`), shortening `field` and `consumed`.
fn longest_known(
    source: &str,
    field: &mut FieldRef,
    consumed: &mut usize,
) -> Result<Getter, String> {
    loop {
        match getter(source, field) {
            Ok(g) => return Ok(g),
            Err(e) => match field.name.rfind('.') {
                Some(dot) if field.transformers.is_empty() && field.name[..dot].contains('.') => {
                    field.name.truncate(dot);
                    field.arg = None;
                    *consumed = dot;
                }
                _ => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_alerts_follow_falcos_json_include_properties() {
        let fields = [("proc.name".to_string(), Some("cat".to_string()))];
        let tags = ["t".to_string()];
        let mut a = JsonAlert {
            time_ns: 0,
            rule: "r",
            priority: Priority::Warning,
            source: "syscall",
            hostname: "h",
            output: "00:00:00.000000000: Warning cat ran",
            fields: &fields,
            tags: &tags,
            include_output: true,
            include_tags: true,
            message: None,
            include_output_fields: true,
        };
        let doc: serde_json::Value = serde_json::from_str(&alert_json(&a)).unwrap();
        assert_eq!(doc["output_fields"]["proc.name"], "cat");
        assert!(doc.get("message").is_none());
        a.message = Some("cat ran");
        a.include_output_fields = false;
        let doc: serde_json::Value = serde_json::from_str(&alert_json(&a)).unwrap();
        assert_eq!(doc["message"], "cat ran");
        assert!(doc.get("output_fields").is_none());
        assert_eq!(doc["output"], "00:00:00.000000000: Warning cat ran");
    }
}
