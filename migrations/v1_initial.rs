//! Schema 1, the first layout: tree `outputs` (seq → postcard `OutputEventV1`) and tree
//! `consumers` (consumer name → acknowledged seq, outputs only).

use serde::{Deserialize, Serialize};

/// The output record of schema 1 (frozen).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputEventV1 {
    pub time_ns: i64,
    pub priority: u8,
    pub rule: String,
    pub output: String,
    pub output_fields: Vec<(String, String)>,
    pub hostname: String,
    pub tags: Vec<String>,
    pub source: String,
}

pub fn apply(db: &sled::Db) -> Result<(), String> {
    db.open_tree("outputs").map_err(|e| e.to_string())?;
    db.open_tree("consumers").map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes a schema-1 database with `events` output records and one consumer, for the migration
/// tests and for regenerating `fixtures/db-v1`.
pub fn write_fixture(db: &sled::Db, events: u64, consumer: (&str, u64)) -> Result<(), String> {
    apply(db)?;
    let outputs = db.open_tree("outputs").map_err(|e| e.to_string())?;
    for seq in 1..=events {
        let rec = OutputEventV1 {
            time_ns: 1_700_000_000_000_000_000 + seq as i64,
            priority: (seq % 8) as u8,
            rule: format!("rule {seq}"),
            output: format!("output {seq}"),
            output_fields: vec![("ka.verb".into(), "create".into())],
            hostname: "fixture-host".into(),
            tags: vec!["k8s".into()],
            source: "k8s_audit".into(),
        };
        let bytes = postcard::to_allocvec(&rec).map_err(|e| e.to_string())?;
        outputs
            .insert(seq.to_be_bytes(), bytes)
            .map_err(|e| e.to_string())?;
    }
    let consumers = db.open_tree("consumers").map_err(|e| e.to_string())?;
    consumers
        .insert(consumer.0, &consumer.1.to_be_bytes())
        .map_err(|e| e.to_string())?;
    let meta = db.open_tree("meta").map_err(|e| e.to_string())?;
    meta.insert("schema_version", &1u32.to_be_bytes())
        .map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    Ok(())
}
