//! Schema 4: the drops log (`ring.drops`, the same block layout as `ring.outputs`) joins the
//! database. Creating an empty tree is all it takes, so re-running is harmless.

pub fn apply(db: &sled::Db) -> Result<(), String> {
    db.open_tree("ring.drops")
        .map(|_| ())
        .map_err(|e| e.to_string())
}
