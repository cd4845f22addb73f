//! Turning a received payload into the events the engine evaluates: a k8s audit payload may hold
//! an `Event`, an `EventList` or an array of them, each timed by its `stageTimestamp`; any other
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
}
