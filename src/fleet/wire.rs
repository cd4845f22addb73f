//! How a record travels through JetStream: its subject, headers and body, and back.
//!
//! Alerts: subject `falco.alerts.<hostname>.<source>.<priority>`, body = Falco's alert JSON (any
//! NATS tool can read it), headers `Nats-Msg-Id` (the alert's UUID: JetStream drops a
//! re-publish within its window), `Falco-Api-Seq`, `Falco-Api-Rules-Revision`,
//! `Falco-Api-Origin`. Drops: subject `falco.drops.<hostname>.<stage>`, body = the drop record as
//! JSON, `Nats-Msg-Id` = its UUID.

use async_nats::HeaderMap;
use serde_json::json;

use crate::base::event::{DropRecord, Origin, OutputEvent, Priority};

pub const ALERTS_PREFIX: &str = "falco.alerts";
pub const DROPS_PREFIX: &str = "falco.drops";
pub const MSG_ID: &str = "Nats-Msg-Id";
pub const SEQ: &str = "Falco-Api-Seq";
pub const RULES_REVISION: &str = "Falco-Api-Rules-Revision";
pub const ORIGIN: &str = "Falco-Api-Origin";
pub const HOSTNAME: &str = "Falco-Api-Hostname";
/// Set on protobuf bodies (`fleet.format: protobuf`): a `falco.outputs.response`.
pub const CONTENT_TYPE: &str = "Content-Type";
pub const PROTOBUF: &str = "application/x-protobuf; proto=falco.outputs.response";

/// A subject token: what NATS allows in one (no `.`, `*`, `>` or white space), never empty.
pub fn token(text: &str) -> String {
    let t: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

fn uuid(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).to_string()
}

/// An alert's subject, headers and body: Falco's alert JSON, or with `protobuf` the
/// `falco.outputs.response` a gRPC subscriber would get.
pub fn alert(seq: u64, ev: &OutputEvent, protobuf: bool) -> (String, HeaderMap, Vec<u8>) {
    let subject = format!(
        "{ALERTS_PREFIX}.{}.{}.{}",
        token(&ev.hostname),
        token(&ev.source),
        ev.priority.name().to_ascii_lowercase()
    );
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, uuid(&ev.id).as_str());
    headers.insert(SEQ, seq.to_string().as_str());
    headers.insert(RULES_REVISION, ev.rules_revision.to_string().as_str());
    headers.insert(ORIGIN, ev.origin.name());
    if protobuf {
        use prost::Message;
        headers.insert(CONTENT_TYPE, PROTOBUF);
        let body = crate::proto::convert::event_response(seq, ev.clone()).encode_to_vec();
        return (subject, headers, body);
    }
    // Falco writes an absent field as null; the stored "<NA>" goes back to null.
    let fields: Vec<(String, Option<String>)> = ev
        .output_fields
        .iter()
        .map(|(k, v)| (k.clone(), (v != "<NA>").then(|| v.clone())))
        .collect();
    let body = crate::engine::format::alert_json(&crate::engine::format::JsonAlert {
        time_ns: ev.time_ns,
        rule: &ev.rule,
        priority: ev.priority,
        source: &ev.source,
        hostname: &ev.hostname,
        output: &ev.output,
        fields: &fields,
        tags: &ev.tags,
        include_output: true,
        include_tags: true,
        message: None,
        include_output_fields: true,
    });
    (subject, headers, body.into_bytes())
}

/// A drop record's subject, headers and body; `hostname` is the node's.
pub fn drop_record(seq: u64, d: &DropRecord, hostname: &str) -> (String, HeaderMap, Vec<u8>) {
    let subject = format!("{DROPS_PREFIX}.{}.{}", token(hostname), token(&d.stage));
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, uuid(&d.id).as_str());
    headers.insert(SEQ, seq.to_string().as_str());
    headers.insert(HOSTNAME, hostname);
    let body = json!({
        "time_ns": d.time_ns, "stage": d.stage, "source": d.source, "client": d.client,
        "n_drops": d.n_drops, "n_evts": d.n_evts, "message": d.message, "hostname": hostname,
    });
    (subject, headers, body.to_string().into_bytes())
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

fn parse_uuid(text: Option<&str>) -> Result<[u8; 16], String> {
    let text = text.ok_or("no Nats-Msg-Id header")?;
    uuid::Uuid::parse_str(text)
        .map(|u| *u.as_bytes())
        .map_err(|e| format!("Nats-Msg-Id '{text}' is not a UUID: {e}"))
}

/// What a fleet message holds.
#[derive(Debug, PartialEq)]
pub enum Record {
    Alert(OutputEvent),
    Drop(DropRecord),
}

/// Reads a fleet message back into the record it carries (the same UUID, time, origin and rules
/// revision as on the node).
pub fn decode(subject: &str, headers: Option<&HeaderMap>, body: &[u8]) -> Result<Record, String> {
    let id = parse_uuid(header(headers, MSG_ID))?;
    if subject.starts_with(DROPS_PREFIX) {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("drop record: {e}"))?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let number = |k: &str| v[k].as_u64().unwrap_or(0);
        return Ok(Record::Drop(DropRecord {
            time_ns: v["time_ns"].as_i64().unwrap_or(0),
            stage: text("stage"),
            source: text("source"),
            client: text("client"),
            n_drops: number("n_drops"),
            n_evts: number("n_evts"),
            message: text("message"),
            id,
        }));
    }
    let origin = header(headers, ORIGIN)
        .and_then(|o| Origin::ALL.into_iter().find(|x| x.name() == o))
        .unwrap_or(Origin::FalcoHttp);
    if header(headers, CONTENT_TYPE).is_some_and(|c| c.starts_with("application/x-protobuf")) {
        return from_protobuf(body, id, origin).map(Record::Alert);
    }
    let parsed = crate::falco::parse(body, origin, "").map_err(|e| e.to_string())?;
    let mut ev = parsed.event;
    ev.id = id;
    ev.origin = origin;
    ev.rules_revision = header(headers, RULES_REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    Ok(Record::Alert(ev))
}

fn from_protobuf(body: &[u8], id: [u8; 16], origin: Origin) -> Result<OutputEvent, String> {
    use prost::Message;
    let r = crate::proto::outputs::Response::decode(body)
        .map_err(|e| format!("not a falco.outputs.response: {e}"))?;
    let time_ns = r.time.map_or(0, |t| {
        t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos)
    });
    let priority = Priority::from_number(r.priority)
        .ok_or_else(|| format!("priority {} is not a priority", r.priority))?;
    let mut ev = OutputEvent::new(time_ns, priority, r.rule, r.output, r.source)
        .with_hostname(r.hostname)
        .with_fields(r.output_fields)
        .with_origin(origin);
    ev.tags = r.tags;
    ev.tags.sort();
    ev.tags.dedup();
    ev.id = id;
    ev.rules_revision = r.rules_revision;
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_round_trips_through_its_message() {
        let mut ev = OutputEvent::new(
            1_796_032_800_123_456_789,
            Priority::Critical,
            "Terminal shell",
            "12:00:00: Critical shell",
            "syscall",
        )
        .with_hostname("node.a b")
        .with_origin(Origin::Engine)
        .with_fields([("proc.name", "bash"), ("k8s.ns.name", "<NA>")]);
        ev.tags = vec!["container".into(), "shell".into()];
        ev.rules_revision = 7;
        let (subject, headers, body) = alert(42, &ev, false);
        assert_eq!(subject, "falco.alerts.node_a_b.syscall.critical");
        assert_eq!(headers.get(SEQ).unwrap().as_str(), "42");
        let back = decode(&subject, Some(&headers), &body).unwrap();
        assert_eq!(back, Record::Alert(ev.clone()));
        let (subject, headers, body) = alert(42, &ev, true);
        assert_eq!(headers.get(CONTENT_TYPE).unwrap().as_str(), PROTOBUF);
        let back = decode(&subject, Some(&headers), &body).unwrap();
        assert_eq!(back, Record::Alert(ev), "the protobuf body round-trips too");
    }

    #[test]
    fn a_drop_round_trips_and_bad_messages_are_refused() {
        let d = DropRecord::now("ingest_queue_full", "syscall", "uid:1", 3, 9, "full".into());
        let (subject, headers, body) = drop_record(5, &d, "node-1");
        assert_eq!(subject, "falco.drops.node-1.ingest_queue_full");
        assert_eq!(
            decode(&subject, Some(&headers), &body).unwrap(),
            Record::Drop(d)
        );
        assert!(decode("falco.alerts.x", None, b"{}").is_err());
        assert_eq!(token(""), "_");
        assert_eq!(token("a.b*c>d e"), "a_b_c_d_e");
    }
}
