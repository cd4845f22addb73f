//! The tables of the database, in one place so that every reader and writer agrees on names and
//! types. Keys are numbers or text (redb orders both naturally); values are postcard bytes unless
//! the table says otherwise.

use redb::TableDefinition;

/// Small numbers: `schema_version`, the global `revision`, `history.oldest`, and each ring log's
/// oldest retained seq (`<ring table>.oldest`).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `<log>/<name>` → the consumer's acknowledged seq.
pub const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("consumers");
/// Versioned target → postcard [`super::Current`].
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// Derived state a component saves so a restart need not rebuild it (`falco_events` counts):
/// name → the component's own bytes. Never the only copy of anything.
pub const SAVED: TableDefinition<&str, &[u8]> = TableDefinition::new("saved");
/// Revision → postcard [`super::HistoryRecord`].
pub const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
/// (target, revision) for every history entry that changed the target.
pub const HISTORY_INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("history.index");
/// The outputs log: first seq of a block → the block (a record count, a codec byte, then the
/// postcard records, usually zstd-compressed; see `store::block`).
pub const RING_OUTPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ring.outputs");
/// The drops log, same layout.
pub const RING_DROPS: TableDefinition<u64, &[u8]> = TableDefinition::new("ring.drops");
/// When the records of the outputs log were appended: the first seq of an append → nanoseconds
/// since the Unix epoch, never decreasing along the log. The appends that grew the newest block
/// are stamped in that block instead (see `store::block`) and move here when a newer one starts.
pub const RING_OUTPUTS_TIMES: TableDefinition<u64, u64> =
    TableDefinition::new("ring.outputs.times");
/// The same for the drops log.
pub const RING_DROPS_TIMES: TableDefinition<u64, u64> = TableDefinition::new("ring.drops.times");

pub const SCHEMA_VERSION_KEY: &str = "schema_version";
pub const REVISION_KEY: &str = "revision";
pub const HISTORY_OLDEST_KEY: &str = "history.oldest";
