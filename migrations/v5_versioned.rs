//! Schema 5: versioned state — `state` (target → current value and revision), `history`
//! (revision → the change record), `history.index` (target, revision) — for rules files, rule
//! toggles and config entries. New empty trees; re-running is harmless.

pub fn apply(db: &sled::Db) -> Result<(), String> {
    for tree in ["state", "history", "history.index"] {
        db.open_tree(tree).map_err(|e| e.to_string())?;
    }
    Ok(())
}
