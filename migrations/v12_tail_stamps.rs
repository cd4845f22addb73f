//! Schema 12: a log's newest block may carry the append stamps of the records that grew it (the
//! codec byte's high bit, see `src/store/block.rs`) instead of the time table holding them; they
//! move to the table when a newer block starts. Blocks of schema 11 carry none and read the same,
//! so nothing is rewritten: the step only records that a binary unaware of stamped blocks (which
//! would call their codec unknown and miss the newest block's stamps) must not open this database.

pub fn apply(_txn: &redb::WriteTransaction) -> Result<(), String> {
    Ok(())
}
