//! Schema 7: every alert records where it came from (`origin`). Alerts stored before were all
//! produced inside falco-api: by its engine, or its own drop notices (rule `Falco internal: event
//! drop`, source `internal`). Each block of the outputs log is rewritten in place, inside the
//! step's transaction; a crash part-way leaves schema 6 and the step starts over.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const RING_OUTPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ring.outputs");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum PriorityV6 {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

/// The alert record of schemas 2–6.
#[derive(Debug, Deserialize)]
struct OutputEventV6 {
    time_ns: i64,
    priority: PriorityV6,
    rule: String,
    output: String,
    output_fields: Vec<(String, String)>,
    hostname: String,
    tags: Vec<String>,
    source: String,
    id: [u8; 16],
    rules_revision: u64,
}

/// Schema 7's origins, in their stored order.
#[derive(Debug, Serialize)]
enum OriginV7 {
    Engine,
    Internal,
}

#[derive(Debug, Serialize)]
struct OutputEventV7 {
    time_ns: i64,
    priority: PriorityV6,
    rule: String,
    output: String,
    output_fields: Vec<(String, String)>,
    hostname: String,
    tags: Vec<String>,
    source: String,
    id: [u8; 16],
    rules_revision: u64,
    origin: OriginV7,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn apply(txn: &redb::WriteTransaction) -> Result<(), String> {
    let mut table = txn.open_table(RING_OUTPUTS).map_err(err)?;
    let keys: Vec<u64> = table
        .iter()
        .map_err(err)?
        .map(|item| item.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    for key in keys {
        let old: Vec<OutputEventV6> = {
            let block = table
                .get(key)
                .map_err(err)?
                .ok_or_else(|| format!("block {key} vanished"))?;
            postcard::from_bytes(block.value()).map_err(|e| format!("block {key}: {e}"))?
        };
        let new: Vec<OutputEventV7> = old
            .into_iter()
            .map(|e| {
                let internal = e.source == "internal" && e.rule == "Falco internal: event drop";
                OutputEventV7 {
                    time_ns: e.time_ns,
                    priority: e.priority,
                    rule: e.rule,
                    output: e.output,
                    output_fields: e.output_fields,
                    hostname: e.hostname,
                    tags: e.tags,
                    source: e.source,
                    id: e.id,
                    rules_revision: e.rules_revision,
                    origin: if internal {
                        OriginV7::Internal
                    } else {
                        OriginV7::Engine
                    },
                }
            })
            .collect();
        let bytes = postcard::to_allocvec(&new).map_err(err)?;
        table.insert(key, bytes.as_slice()).map_err(err)?;
    }
    Ok(())
}
