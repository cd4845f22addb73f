//! On-disk schema steps, run forward in order by `src/store/migrate.rs`. Step N takes a database
//! at schema version N-1 to N. Steps 1–5 are the sled era ([`LEGACY_STEPS`], run on a sled
//! database before it is converted); step 6 converts sled into redb ([`v6_redb`]); later steps
//! ([`STEPS`]) run on the redb database, each in one write transaction. A step never changes once released: a new layout gets a new step.
//! Each step keeps its own frozen copies of the record types it reads, so later changes to the
//! crate's types cannot change what an old step does.
//!
//! Steps must be safe to re-run from the start after a crash part-way through (the version is
//! recorded only after a step completes).

mod v10_protobuf_alerts;
mod v11_append_stamps;
mod v12_tail_stamps;
mod v1_initial;
mod v2_event_ids;
mod v3_blocks;
mod v4_drops;
mod v5_versioned;
pub mod v6_redb;
mod v7_origins;
mod v8_block_times;
mod v9_compressed_blocks;

/// A step of the sled era.
pub struct LegacyStep {
    pub version: u32,
    pub name: &'static str,
    pub apply: fn(&sled::Db) -> Result<(), String>,
}

/// A step on the redb database, applied inside the write transaction that records its version.
pub struct Step {
    pub version: u32,
    pub name: &'static str,
    pub apply: fn(&redb::WriteTransaction) -> Result<(), String>,
}

/// The schema that moved the store to redb.
pub const REDB_VERSION: u32 = 6;
pub const REDB_STEP_NAME: &str = "sled to redb";

/// Steps after [`REDB_VERSION`].
pub const STEPS: &[Step] = &[
    Step {
        version: 7,
        name: "alert origins",
        apply: v7_origins::apply,
    },
    Step {
        version: 8,
        name: "block times",
        apply: v8_block_times::apply,
    },
    Step {
        version: 9,
        name: "compressed blocks",
        apply: v9_compressed_blocks::apply,
    },
    Step {
        version: 10,
        name: "alerts stored as protobuf",
        apply: v10_protobuf_alerts::apply,
    },
    Step {
        version: 11,
        name: "a stamp per append",
        apply: v11_append_stamps::apply,
    },
    Step {
        version: 12,
        name: "the newest block open, with its stamps",
        apply: v12_tail_stamps::apply,
    },
];

/// The newest schema.
pub const SCHEMA_VERSION: u32 = REDB_VERSION + STEPS.len() as u32;

pub const LEGACY_STEPS: &[LegacyStep] = &[
    LegacyStep {
        version: 1,
        name: "initial layout",
        apply: v1_initial::apply,
    },
    LegacyStep {
        version: 2,
        name: "event ids and rules revisions",
        apply: v2_event_ids::apply,
    },
    LegacyStep {
        version: 3,
        name: "outputs log in blocks",
        apply: v3_blocks::apply,
    },
    LegacyStep {
        version: 4,
        name: "drops log",
        apply: v4_drops::apply,
    },
    LegacyStep {
        version: 5,
        name: "versioned rules and configs",
        apply: v5_versioned::apply,
    },
];

pub use v1_initial::write_fixture as write_v1_fixture;
