//! Schema 10: alerts are stored as the `falco.outputs.response` protobuf a subscriber receives
//! (without its seq), each preceded by its length as a varint, so streams send the stored bytes
//! as they are. Blocks keep their keys, record counts, times and codec rule (zstd level 1 where
//! it saves space); only the outputs log changes (drop records stay postcard). The blocks are
//! rewritten inside the step's transaction, so a crash part-way leaves schema 9 and the step
//! starts over.

use std::collections::BTreeMap;

use prost::Message;
use redb::{ReadableTable, TableDefinition};
use serde::Deserialize;

const RING_OUTPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ring.outputs");

const PLAIN: u8 = 0;
const ZSTD: u8 = 1;
const LEVEL: i32 = 1;
/// A block that says it holds more than this once decompressed is corrupt.
const MAX_RAW_BYTES: u64 = 1 << 30;
/// Blocks rewritten per pass over the table (each pass reads from where the last stopped).
const PASS: usize = 256;

#[derive(Clone, Copy, Debug, Deserialize)]
enum PriorityV9 {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

#[derive(Clone, Copy, Debug, Deserialize)]
enum OriginV9 {
    Engine,
    Internal,
    FalcoHttp,
    FalcoFile,
    FalcoProgram,
}

/// The alert record of schemas 7–9 (postcard).
#[derive(Debug, Deserialize)]
struct OutputEventV9 {
    time_ns: i64,
    priority: PriorityV9,
    rule: String,
    output: String,
    output_fields: Vec<(String, String)>,
    hostname: String,
    tags: Vec<String>,
    source: String,
    id: [u8; 16],
    rules_revision: u64,
    origin: OriginV9,
}

/// `falco.outputs.response` as schema 10 stores it (seq and lost are never stored).
#[derive(Clone, PartialEq, Message)]
struct ResponseV10 {
    #[prost(message, optional, tag = "1")]
    time: Option<prost_types::Timestamp>,
    #[prost(int32, tag = "2")]
    priority: i32,
    #[prost(int32, tag = "3")]
    source_deprecated: i32,
    #[prost(string, tag = "4")]
    rule: String,
    #[prost(string, tag = "5")]
    output: String,
    #[prost(btree_map = "string, string", tag = "6")]
    output_fields: BTreeMap<String, String>,
    #[prost(string, tag = "7")]
    hostname: String,
    #[prost(string, repeated, tag = "8")]
    tags: Vec<String>,
    #[prost(string, tag = "9")]
    source: String,
    #[prost(string, tag = "21")]
    id: String,
    #[prost(uint64, tag = "23")]
    rules_revision: u64,
    #[prost(string, tag = "24")]
    origin: String,
}

impl From<OutputEventV9> for ResponseV10 {
    fn from(ev: OutputEventV9) -> Self {
        let source_deprecated = match ev.source.as_str() {
            "syscall" => 0,
            "k8s_audit" => 1,
            "internal" => 2,
            _ => 3,
        };
        let origin = match ev.origin {
            OriginV9::Engine => "engine",
            OriginV9::Internal => "falco-api",
            OriginV9::FalcoHttp => "falco-http",
            OriginV9::FalcoFile => "falco-file",
            OriginV9::FalcoProgram => "falco-program",
        };
        ResponseV10 {
            time: Some(prost_types::Timestamp {
                seconds: ev.time_ns.div_euclid(1_000_000_000),
                nanos: ev.time_ns.rem_euclid(1_000_000_000) as i32,
            }),
            priority: ev.priority as i32,
            source_deprecated,
            rule: ev.rule,
            output: ev.output,
            output_fields: ev.output_fields.into_iter().collect(),
            hostname: ev.hostname,
            tags: ev.tags,
            source: ev.source,
            id: uuid::Uuid::from_bytes(ev.id).to_string(),
            rules_revision: ev.rules_revision,
            origin: origin.to_string(),
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A schema 9 block of alerts in the schema 10 layout.
pub fn convert(block: &[u8]) -> Result<Vec<u8>, String> {
    let (count, at) = read_varint(block).ok_or("no record count")?;
    let (&codec, rest) = block[at..].split_first().ok_or("no codec byte")?;
    let unpacked;
    let mut raw = match codec {
        PLAIN => rest,
        ZSTD => {
            let (len, at) = read_varint(rest).ok_or("no raw length")?;
            if len > MAX_RAW_BYTES {
                return Err(format!("claims {len} bytes of records"));
            }
            unpacked = zstd::bulk::decompress(&rest[at..], len as usize).map_err(err)?;
            &unpacked[..]
        }
        other => return Err(format!("unknown codec {other}")),
    };
    let mut records = Vec::with_capacity(raw.len() + raw.len() / 4);
    for _ in 0..count {
        let (old, tail): (OutputEventV9, _) = postcard::take_from_bytes(raw).map_err(err)?;
        raw = tail;
        ResponseV10::from(old)
            .encode_length_delimited(&mut records)
            .map_err(err)?;
    }
    if !raw.is_empty() {
        return Err("bytes after the records".into());
    }
    let mut out = Vec::with_capacity(records.len() / 3 + 16);
    push_varint(&mut out, count);
    match zstd::bulk::compress(&records, LEVEL) {
        Ok(packed) if packed.len() + 10 < records.len() => {
            out.push(ZSTD);
            push_varint(&mut out, records.len() as u64);
            out.extend_from_slice(&packed);
        }
        _ => {
            out.push(PLAIN);
            out.extend_from_slice(&records);
        }
    }
    Ok(out)
}

pub fn apply(txn: &redb::WriteTransaction) -> Result<(), String> {
    let mut blocks = txn.open_table(RING_OUTPUTS).map_err(err)?;
    let mut from = 0u64;
    loop {
        let mut pass = Vec::with_capacity(PASS);
        for item in blocks.range(from..).map_err(err)?.take(PASS) {
            let (first, block) = item.map_err(err)?;
            let first = first.value();
            let new =
                convert(block.value()).map_err(|e| format!("ring.outputs block {first}: {e}"))?;
            pass.push((first, new));
        }
        let Some(&(last, _)) = pass.last() else {
            break;
        };
        for (first, block) in pass {
            blocks.insert(first, block.as_slice()).map_err(err)?;
        }
        from = last + 1;
    }
    Ok(())
}
