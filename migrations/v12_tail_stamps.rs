//! Schema 12: a log's newest block grows as an open zstd frame (codec 2: what a streaming
//! compressor flushed so far, closed into an ordinary block when a newer block starts) and
//! carries the append stamps of the records that grew it (the codec byte's high bit) instead of
//! the time table holding them; they move to the table when a newer block starts (see
//! `src/store/block.rs`). Blocks of schema 11 are neither and read the same, so nothing is
//! rewritten: the step only records that a binary unaware of these blocks (which would call
//! their codec unknown and miss the newest block's stamps) must not open this database.

pub fn apply(_txn: &redb::WriteTransaction) -> Result<(), String> {
    Ok(())
}
