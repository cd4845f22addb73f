//! Schema 6: the store moves from sled 0.34.7 to redb (one file, `falco-api.redb`). sled's flush
//! is `sync_file_range` (no real fsync) and its file grew without bound under the ring log's
//! append-and-trim workload; redb fsyncs each commit and reuses freed pages.
//!
//! Every record's bytes are copied unchanged (postcard encodings did not change); only keys and
//! the small numbers in `meta` change representation. The step writes into a fresh redb file that
//! the caller renames into place once it is complete, so re-running after a crash starts over.

use redb::TableDefinition;

// Frozen copies of the schema-6 tables (the store's own definitions may change in later steps).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("consumers");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const HISTORY_INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("history.index");
const RINGS: [(&str, TableDefinition<u64, &[u8]>); 2] = [
    ("ring.outputs", TableDefinition::new("ring.outputs")),
    ("ring.drops", TableDefinition::new("ring.drops")),
];

/// What was copied, for the log line and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub blocks: u64,
    pub consumers: u64,
    pub states: u64,
    pub revisions: u64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn be_u64(what: &str, bytes: &[u8]) -> Result<u64, String> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{what}: expected 8 bytes, found {}", bytes.len()))?;
    Ok(u64::from_be_bytes(arr))
}

fn text(what: &str, bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: key is not UTF-8"))
}

/// Copies a schema-5 sled database into the empty redb database `to`, in one transaction.
pub fn apply(from: &sled::Db, to: &redb::Database) -> Result<Copied, String> {
    let mut copied = Copied::default();
    let txn = to.begin_write().map_err(err)?;
    {
        let mut meta = txn.open_table(META).map_err(err)?;
        for (name, def) in RINGS {
            let tree = from.open_tree(name).map_err(err)?;
            let mut table = txn.open_table(def).map_err(err)?;
            for item in tree.iter() {
                let (k, v) = item.map_err(err)?;
                match k.first() {
                    Some(b'b') => {
                        table
                            .insert(be_u64(name, &k[1..])?, v.as_ref())
                            .map_err(err)?;
                        copied.blocks += 1;
                    }
                    Some(b'o') if k.len() == 1 => {
                        meta.insert(format!("{name}.oldest").as_str(), be_u64(name, &v)?)
                            .map_err(err)?;
                    }
                    _ => return Err(format!("{name}: unexpected key {k:?}")),
                }
            }
        }
        let mut consumers = txn.open_table(CONSUMERS).map_err(err)?;
        for item in from.open_tree("consumers").map_err(err)?.iter() {
            let (k, v) = item.map_err(err)?;
            consumers
                .insert(text("consumers", &k)?.as_str(), be_u64("consumers", &v)?)
                .map_err(err)?;
            copied.consumers += 1;
        }
        let mut state = txn.open_table(STATE).map_err(err)?;
        for item in from.open_tree("state").map_err(err)?.iter() {
            let (k, v) = item.map_err(err)?;
            state
                .insert(text("state", &k)?.as_str(), v.as_ref())
                .map_err(err)?;
            copied.states += 1;
        }
        let mut history = txn.open_table(HISTORY).map_err(err)?;
        for item in from.open_tree("history").map_err(err)?.iter() {
            let (k, v) = item.map_err(err)?;
            history
                .insert(be_u64("history", &k)?, v.as_ref())
                .map_err(err)?;
            copied.revisions += 1;
        }
        let mut index = txn.open_table(HISTORY_INDEX).map_err(err)?;
        for item in from.open_tree("history.index").map_err(err)?.iter() {
            let (k, _) = item.map_err(err)?;
            // target, a NUL, then the revision's 8 big-endian bytes.
            let split = k
                .len()
                .checked_sub(9)
                .ok_or("history.index: key too short")?;
            let target = text("history.index", &k[..split])?;
            let revision = be_u64("history.index", &k[split + 1..])?;
            index.insert((target.as_str(), revision), ()).map_err(err)?;
        }
        let sled_meta = from.open_tree("meta").map_err(err)?;
        for key in ["revision", "history.oldest"] {
            if let Some(v) = sled_meta.get(key).map_err(err)? {
                meta.insert(key, be_u64(key, &v)?).map_err(err)?;
            }
        }
        meta.insert("schema_version", 6).map_err(err)?;
    }
    txn.commit().map_err(err)?;
    Ok(copied)
}
