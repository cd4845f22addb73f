//! The record → message conversions every transport shares: the gRPC streams, the fleet's
//! wire format and the benchmarks encode stored records through these, and nothing else.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use crate::base::event::{DropRecord, Origin, OutputEvent, Priority};
use crate::proto::{drops, outputs, schema};
use crate::store::{take_frame, Framed, LogRecord};

/// A protobuf timestamp from nanoseconds since the epoch.
pub fn timestamp(time_ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time_ns.div_euclid(1_000_000_000),
        nanos: time_ns.rem_euclid(1_000_000_000) as i32,
    }
}

/// Maps a source name to upstream's enum: any name it does not know is a plugin's.
pub fn source_enum(source: &str) -> schema::Source {
    match source {
        "syscall" => schema::Source::Syscall,
        "k8s_audit" => schema::Source::K8sAudit,
        "internal" => schema::Source::Internal,
        _ => schema::Source::Plugin,
    }
}

/// A stored alert as `falco.outputs.response`, at `seq`.
#[allow(deprecated)] // source_deprecated must stay filled for old clients
pub fn event_response(seq: u64, ev: OutputEvent) -> outputs::Response {
    outputs::Response {
        time: Some(timestamp(ev.time_ns)),
        priority: ev.priority as i32,
        source_deprecated: source_enum(&ev.source) as i32,
        rule: ev.rule,
        output: ev.output,
        output_fields: ev.output_fields.into_iter().collect(),
        hostname: ev.hostname,
        tags: ev.tags,
        id: uuid::Uuid::from_bytes(ev.id).to_string(),
        source: ev.source,
        seq,
        lost: 0,
        rules_revision: ev.rules_revision,
        origin: ev.origin.name().to_string(),
    }
}

/// A stored drop record as `falco.drops.response`, at `seq`.
pub fn drop_response(seq: u64, d: DropRecord) -> drops::Response {
    drops::Response {
        time: Some(timestamp(d.time_ns)),
        stage: d.stage,
        source: d.source,
        client: d.client,
        n_drops: d.n_drops,
        n_evts: d.n_evts,
        message: d.message,
        seq,
        id: uuid::Uuid::from_bytes(d.id).to_string(),
        lost: 0,
    }
}

/// Nanoseconds since the epoch from a protobuf timestamp, when they fit.
fn time_ns(t: &prost_types::Timestamp) -> Option<i64> {
    t.seconds
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(t.nanos))
}

/// The alert a stored `falco.outputs.response` holds (the inverse of [`event_response`]).
pub fn event_from_response(r: outputs::Response) -> Result<OutputEvent, String> {
    let time_ns = match &r.time {
        Some(t) => time_ns(t).ok_or_else(|| format!("time {t:?} is out of range"))?,
        None => 0,
    };
    Ok(OutputEvent {
        time_ns,
        priority: Priority::from_number(r.priority)
            .ok_or_else(|| format!("priority {} is not a priority", r.priority))?,
        rule: r.rule,
        output: r.output,
        output_fields: r.output_fields.into_iter().collect(),
        hostname: r.hostname,
        tags: r.tags,
        source: r.source,
        id: *uuid::Uuid::parse_str(&r.id)
            .map_err(|e| format!("id '{}': {e}", r.id))?
            .as_bytes(),
        rules_revision: r.rules_revision,
        origin: Origin::from_name(&r.origin)
            .ok_or_else(|| format!("origin '{}' is not known", r.origin))?,
    })
}

/// Alerts are stored as the `falco.outputs.response` a subscriber receives, without its `seq`
/// (the log's key), length-framed; streams send the stored bytes as they are.
impl LogRecord for OutputEvent {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), String> {
        put_event(self, out);
        Ok(())
    }

    fn take(bytes: &[u8]) -> Result<(Self, usize), String> {
        let (payload, used) = take_frame(bytes)?;
        let response =
            outputs::Response::decode(&bytes[payload]).map_err(|e| format!("protobuf: {e}"))?;
        Ok((event_from_response(response)?, used))
    }
}

impl Framed for OutputEvent {}

/// The encoded size of string field `tag` holding `s` (nothing when empty, as proto3 omits it).
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        repeated_len(tag, s)
    }
}

/// [`str_len`] for an element of a repeated field, which is written even when empty.
fn repeated_len(tag: u32, s: &str) -> usize {
    key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
}

fn put_str(tag: u32, s: &str, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn put_nonempty(tag: u32, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        put_str(tag, s, out);
    }
}

fn varint_len(tag: u32, n: u64) -> usize {
    if n == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(n)
    }
}

fn put_varint(tag: u32, n: u64, out: &mut Vec<u8>) {
    if n != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(n, out);
    }
}

/// Writes `ev` as a frame holding `event_response(0, ev)` encoded, straight from the borrowed
/// record (the append path, where building the message would copy every string once more).
/// The fields are written in tag order, as prost writes them.
fn put_event(ev: &OutputEvent, out: &mut Vec<u8>) {
    let mut id_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::from_bytes(ev.id)
        .hyphenated()
        .encode_lower(&mut id_text);
    let time = timestamp(ev.time_ns);
    let priority = ev.priority as u64;
    let source = source_enum(&ev.source) as u64;
    let origin = ev.origin.name();
    let entry_len = |(k, v): &(String, String)| str_len(1, k) + str_len(2, v);
    let fields: usize = ev
        .output_fields
        .iter()
        .map(|kv| {
            let n = entry_len(kv);
            key_len(6) + encoded_len_varint(n as u64) + n
        })
        .sum();
    let len = prost::encoding::message::encoded_len(1, &time)
        + varint_len(2, priority)
        + varint_len(3, source)
        + str_len(4, &ev.rule)
        + str_len(5, &ev.output)
        + fields
        + str_len(7, &ev.hostname)
        + ev.tags.iter().map(|t| repeated_len(8, t)).sum::<usize>()
        + str_len(9, &ev.source)
        + str_len(21, id)
        + varint_len(23, ev.rules_revision)
        + str_len(24, origin);
    out.reserve(len + 10);
    encode_varint(len as u64, out);
    prost::encoding::message::encode(1, &time, out);
    put_varint(2, priority, out);
    put_varint(3, source, out);
    put_nonempty(4, &ev.rule, out);
    put_nonempty(5, &ev.output, out);
    for kv in &ev.output_fields {
        encode_key(6, WireType::LengthDelimited, out);
        encode_varint(entry_len(kv) as u64, out);
        put_nonempty(1, &kv.0, out);
        put_nonempty(2, &kv.1, out);
    }
    put_nonempty(7, &ev.hostname, out);
    for tag in &ev.tags {
        put_str(8, tag, out);
    }
    put_nonempty(9, &ev.source, out);
    put_nonempty(21, id, out);
    put_varint(23, ev.rules_revision, out);
    put_nonempty(24, origin, out);
}

/// The fields of a stored alert that stream filters look at; decoding it skips the output line
/// and the output fields (the bulk of an alert) without reading them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AlertHeader {
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(string, tag = "4")]
    pub rule: String,
    #[prost(string, tag = "7")]
    pub hostname: String,
    #[prost(string, repeated, tag = "8")]
    pub tags: Vec<String>,
    #[prost(string, tag = "9")]
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_alert_is_its_response_framed_and_comes_back_whole() {
        let ev = OutputEvent::new(
            -1_500_000_001,
            Priority::Critical,
            "Read sensitive file untrusted",
            "an output line",
            "k8s_audit",
        )
        .with_fields([("fd.name", "/etc/shadow"), ("user.name", "root")])
        .with_tags(["filesystem"])
        .with_hostname("h")
        .with_origin(Origin::FalcoHttp);
        let mut stored = Vec::new();
        ev.put(&mut stored).unwrap();
        let (payload, used) = take_frame(&stored).unwrap();
        assert_eq!(used, stored.len());
        assert_eq!(
            outputs::Response::decode(&stored[payload]).unwrap(),
            event_response(0, ev.clone())
        );
        assert_eq!(
            stored,
            event_response(0, ev.clone()).encode_length_delimited_to_vec(),
            "the same bytes prost writes"
        );
        assert_eq!(OutputEvent::take(&stored).unwrap(), (ev, stored.len()));
        assert!(OutputEvent::take(&stored[..stored.len() - 1]).is_err());
        let header = AlertHeader::decode(&stored[take_frame(&stored).unwrap().0]).unwrap();
        assert_eq!(
            (header.priority, header.rule.as_str(), header.tags.len()),
            (2, "Read sensitive file untrusted", 1)
        );
    }

    #[test]
    fn defaults_empty_tags_and_repeated_field_names_encode_as_prost_reads_them() {
        let mut ev = OutputEvent::new(0, Priority::Emergency, "", "", "syscall")
            .with_tags(["", "x"])
            .with_origin(Origin::Internal);
        ev.output_fields = vec![
            ("b".into(), String::new()),
            (String::new(), "v".into()),
            ("b".into(), "last".into()),
        ];
        let mut stored = Vec::new();
        ev.put(&mut stored).unwrap();
        let (payload, _) = take_frame(&stored).unwrap();
        let mut want = event_response(0, ev.clone());
        want.output_fields.insert("b".into(), "last".into());
        assert_eq!(outputs::Response::decode(&stored[payload]).unwrap(), want);
    }
}
