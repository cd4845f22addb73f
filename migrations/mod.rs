//! On-disk schema steps, run forward in order by `src/store/migrate.rs`. Step N takes a database
//! at schema version N-1 to N. A step never changes once released: a new layout gets a new step.
//! Each step keeps its own frozen copies of the record types it reads, so later changes to the
//! crate's types cannot change what an old step does.
//!
//! Steps must be safe to re-run from the start after a crash part-way through (the version is
//! recorded only after a step completes).

mod v1_initial;
mod v2_event_ids;
mod v3_blocks;
mod v4_drops;
mod v5_versioned;

pub struct Step {
    pub version: u32,
    pub name: &'static str,
    pub apply: fn(&sled::Db) -> Result<(), String>,
}

pub const STEPS: &[Step] = &[
    Step {
        version: 1,
        name: "initial layout",
        apply: v1_initial::apply,
    },
    Step {
        version: 2,
        name: "event ids and rules revisions",
        apply: v2_event_ids::apply,
    },
    Step {
        version: 3,
        name: "outputs log in blocks",
        apply: v3_blocks::apply,
    },
    Step {
        version: 4,
        name: "drops log",
        apply: v4_drops::apply,
    },
    Step {
        version: 5,
        name: "versioned rules and configs",
        apply: v5_versioned::apply,
    },
];

pub use v1_initial::write_fixture as write_v1_fixture;
