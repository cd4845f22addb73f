//! The record → message conversions every transport shares: the gRPC streams, the fleet's
//! wire format and the benchmarks encode stored records through these, and nothing else.

use crate::base::event::{DropRecord, OutputEvent};
use crate::proto::{drops, outputs, schema};

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
