//! Schema 11: the time tables (`ring.outputs.times`, `ring.drops.times`) hold one stamp per
//! append (its first seq → nanoseconds) rather than one per block, because a log's newest block
//! now grows by the appends that follow it. Every stamp schema 10 wrote is a block's first seq
//! and the time its records were appended together, which reads the same under the new rule, so
//! nothing is rewritten: the step only records that a binary reading one stamp per block (and
//! trimming stamps by block) must not open this database.

pub fn apply(_txn: &redb::WriteTransaction) -> Result<(), String> {
    Ok(())
}
