//! Turning a received payload into the events the engine evaluates: a k8s audit payload may hold
//! an `Event`, an `EventList` or an array of them, each timed by its `stageTimestamp`; a
//! CloudTrail payload one record or a log file's `{"Records": [...]}`, each timed by its
//! `eventTime`; okta and GCP audit events are timed by `published` / `timestamp`; any other
//! source's payload is one JSON object.

use serde_json::Value;

use super::extract::{audit_time, split_audit_payload};

/// One event ready for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub json: Value,
    pub time_ns: i64,
}

/// Decodes one payload of `source`. `default_time_ns` times events that carry no time of their
/// own (non-audit sources without `evt.rawtime`).
pub fn decode(source: &str, payload: &[u8], default_time_ns: i64) -> Result<Vec<Decoded>, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    decode_value(source, value, default_time_ns)
}

pub fn decode_value(
    source: &str,
    value: Value,
    default_time_ns: i64,
) -> Result<Vec<Decoded>, String> {
    if source == "k8s_audit" {
        return split_audit_payload(value)?
            .into_iter()
            .map(|json| match audit_time(&json) {
                Some(time_ns) => Ok(Decoded { json, time_ns }),
                None => Err("k8s audit event has no valid stageTimestamp".to_string()),
            })
            .collect();
    }
    if !value.is_object() {
        return Err(format!("a {source} event must be a JSON object"));
    }
    if let Some(time_key) = plugin_time_key(source) {
        return decode_plugin(source, value, time_key, default_time_ns);
    }
    let time_ns = value
        .get("evt.rawtime")
        .and_then(|t| {
            t.as_i64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(default_time_ns);
    Ok(vec![Decoded {
        json: value,
        time_ns,
    }])
}

/// A plugin source's events (a CloudTrail log's records one by one), each timed by `time_key`.
fn decode_plugin(
    source: &str,
    value: Value,
    time_key: &str,
    default_time_ns: i64,
) -> Result<Vec<Decoded>, String> {
    let records = match value {
        Value::Object(mut map) if source == "aws_cloudtrail" && map.contains_key("Records") => {
            match map.remove("Records") {
                Some(Value::Array(items)) => items,
                _ => return Err("a CloudTrail log's \"Records\" must be an array".into()),
            }
        }
        other => vec![other],
    };
    records
        .into_iter()
        .map(|json| {
            if !json.is_object() {
                return Err(format!("a {source} event must be a JSON object"));
            }
            let time_ns = json
                .get(time_key)
                .and_then(Value::as_str)
                .and_then(rfc3339_ns)
                .unwrap_or(default_time_ns);
            Ok(Decoded { json, time_ns })
        })
        .collect()
}

/// The key holding the event time in a plugin source's events, as each plugin reads it.
fn plugin_time_key(source: &str) -> Option<&'static str> {
    match source {
        "aws_cloudtrail" => Some("eventTime"),
        "okta" => Some("published"),
        "gcp_auditlog" => Some("timestamp"),
        _ => None,
    }
}

fn rfc3339_ns(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lists_split_and_non_audit_data_is_refused() {
        let list = br#"{"kind":"EventList","items":[{"kind":"Event","auditID":"a","stageTimestamp":"2019-01-01T00:00:00.000000001Z"},{"kind":"Event","auditID":"b","stageTimestamp":"2019-01-01T00:00:01Z"}]}"#;
        let events = decode("k8s_audit", list, 0).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time_ns, 1_546_300_800_000_000_001);
        let err = decode("k8s_audit", br#"{"kind": 0}"#, 0).unwrap_err();
        assert!(
            err.contains("data not recognized as a k8s audit event"),
            "{err}"
        );
        assert!(decode("k8s_audit", b"{nope", 0)
            .unwrap_err()
            .contains("invalid JSON"));
        let sys = decode("syscall", br#"{"evt.type":"open","evt.rawtime":42}"#, 7).unwrap();
        assert_eq!(sys[0].time_ns, 42);
        assert!(decode("syscall", b"[1]", 0).is_err());
    }

    #[test]
    fn cloudtrail_logs_split_into_records_timed_by_event_time() {
        let log = br#"{"Records":[{"eventName":"A","eventTime":"2026-12-01T02:00:00Z"},{"eventName":"B"}]}"#;
        let events = decode("aws_cloudtrail", log, 5).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time_ns, 1_796_090_400_000_000_000);
        assert_eq!(events[1].time_ns, 5);
        assert_eq!(events[1].json["eventName"], "B");
        let one = decode("aws_cloudtrail", br#"{"eventName":"C"}"#, 1).unwrap();
        assert_eq!(one.len(), 1);
        assert!(decode("aws_cloudtrail", br#"{"Records":{}}"#, 0).is_err());
        assert!(decode("aws_cloudtrail", br#"{"Records":[1]}"#, 0).is_err());
        let okta = decode("okta", br#"{"published":"2026-12-01T02:00:00.5Z"}"#, 0).unwrap();
        assert_eq!(okta[0].time_ns, 1_796_090_400_500_000_000);
    }
}
