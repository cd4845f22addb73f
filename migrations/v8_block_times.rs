//! Schema 8: every block of both logs is stamped with the time it was appended
//! (`ring.outputs.times`, `ring.drops.times`: first seq → nanoseconds since the Unix epoch), for
//! age retention and time queries. Blocks written before were not stamped; each gets the newest
//! event time among its records and those before it, so stamps never decrease along the log.
//! Records are only read; the step writes the two new tables inside its transaction, so a crash
//! part-way leaves schema 7 and the step starts over.

use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Deserialize;

type Blocks = TableDefinition<'static, u64, &'static [u8]>;
type Times = TableDefinition<'static, u64, u64>;

const LOGS: [(Blocks, Times, Decoder); 2] = [
    (
        TableDefinition::new("ring.outputs"),
        TableDefinition::new("ring.outputs.times"),
        times::<OutputEventV7>,
    ),
    (
        TableDefinition::new("ring.drops"),
        TableDefinition::new("ring.drops.times"),
        times::<DropRecordV7>,
    ),
];

/// A block's records' event times.
type Decoder = fn(&[u8]) -> Result<Vec<i64>, postcard::Error>;

trait Timed {
    fn time_ns(&self) -> i64;
}

fn times<T: DeserializeOwned + Timed>(block: &[u8]) -> Result<Vec<i64>, postcard::Error> {
    let records: Vec<T> = postcard::from_bytes(block)?;
    Ok(records.iter().map(Timed::time_ns).collect())
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum PriorityV7 {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum OriginV7 {
    Engine,
    Internal,
    FalcoHttp,
    FalcoFile,
    FalcoProgram,
}

/// The alert record of schema 7.
#[derive(Deserialize)]
#[allow(dead_code)]
struct OutputEventV7 {
    time_ns: i64,
    priority: PriorityV7,
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

/// The drop record of schemas 4–7.
#[derive(Deserialize)]
#[allow(dead_code)]
struct DropRecordV7 {
    time_ns: i64,
    stage: String,
    source: String,
    client: String,
    n_drops: u64,
    n_evts: u64,
    message: String,
    id: [u8; 16],
}

impl Timed for OutputEventV7 {
    fn time_ns(&self) -> i64 {
        self.time_ns
    }
}

impl Timed for DropRecordV7 {
    fn time_ns(&self) -> i64 {
        self.time_ns
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn apply(txn: &redb::WriteTransaction) -> Result<(), String> {
    for (definition, stamps, decode) in LOGS {
        let name = redb::TableHandle::name(&definition).to_string();
        let blocks = txn.open_table(definition).map_err(err)?;
        let mut stamps = txn.open_table(stamps).map_err(err)?;
        let mut time = 0u64;
        for item in blocks.iter().map_err(err)? {
            let (first, block) = item.map_err(err)?;
            let first = first.value();
            let newest = decode(block.value())
                .map_err(|e| format!("{name} block {first}: {e}"))?
                .into_iter()
                .max()
                .unwrap_or(0);
            time = time.max(u64::try_from(newest).unwrap_or(0));
            stamps.insert(first, time).map_err(err)?;
        }
    }
    Ok(())
}
