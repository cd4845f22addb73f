//! Schema 2: output records gain a unique id (UUIDv7) and the rules revision that produced them;
//! logs move to `log.<name>` trees and consumer keys become `<log>/<name>`, so that several logs
//! (outputs, drops) can share the consumers tree.
//!
//! Re-runnable: the new tree is cleared first and the old trees are removed only at the end.

use serde::{Deserialize, Serialize};

use super::v1_initial::OutputEventV1;

/// The output record of schema 2 (frozen; field order is the encoding).
#[derive(Serialize, Deserialize)]
struct OutputEventV2 {
    time_ns: i64,
    priority: u8,
    rule: String,
    output: String,
    output_fields: Vec<(String, String)>,
    hostname: String,
    tags: Vec<String>,
    source: String,
    id: [u8; 16],
    rules_revision: u64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn apply(db: &sled::Db) -> Result<(), String> {
    let old = db.open_tree("outputs").map_err(err)?;
    let new = db.open_tree("log.outputs").map_err(err)?;
    new.clear().map_err(err)?;
    for item in old.iter() {
        let (key, value) = item.map_err(err)?;
        let v1: OutputEventV1 = postcard::from_bytes(&value)
            .map_err(|e| format!("output record {:?} is not a schema-1 record: {e}", key))?;
        // Time-ordered ids derived from the event time keep replayed ids stable and sortable.
        let secs = (v1.time_ns.max(0) / 1_000_000_000) as u64;
        let nanos = (v1.time_ns.max(0) % 1_000_000_000) as u32;
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos));
        let v2 = OutputEventV2 {
            time_ns: v1.time_ns,
            priority: v1.priority,
            rule: v1.rule,
            output: v1.output,
            output_fields: v1.output_fields,
            hostname: v1.hostname,
            tags: v1.tags,
            source: v1.source,
            id: *id.as_bytes(),
            rules_revision: 0,
        };
        new.insert(key, postcard::to_allocvec(&v2).map_err(err)?)
            .map_err(err)?;
    }
    let consumers = db.open_tree("consumers").map_err(err)?;
    let mut batch = sled::Batch::default();
    for item in consumers.iter() {
        let (key, value) = item.map_err(err)?;
        if !key.contains(&b'/') {
            let mut moved = b"outputs/".to_vec();
            moved.extend_from_slice(&key);
            batch.insert(moved, value);
            batch.remove(key);
        }
    }
    consumers.apply_batch(batch).map_err(err)?;
    db.flush().map_err(err)?;
    db.drop_tree("outputs").map_err(err)?;
    Ok(())
}
