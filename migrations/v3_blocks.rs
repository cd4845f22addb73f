//! Schema 3: the outputs log stores records in blocks (`b` + first seq → a postcard `Vec` of
//! records; `o` → the oldest retained seq) in tree `ring.outputs`, instead of one entry per record
//! in `log.outputs`. Record encodings are unchanged, so blocks are built from the stored bytes.
//!
//! Re-runnable: the new tree is cleared first and the old one removed only at the end.

const BLOCK_RECORDS: usize = 256;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn block(records: &[sled::IVec]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = records.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

fn key(first: u64) -> Vec<u8> {
    let mut k = vec![b'b'];
    k.extend_from_slice(&first.to_be_bytes());
    k
}

pub fn apply(db: &sled::Db) -> Result<(), String> {
    let old = db.open_tree("log.outputs").map_err(err)?;
    let new = db.open_tree("ring.outputs").map_err(err)?;
    new.clear().map_err(err)?;
    let mut pending: Vec<sled::IVec> = Vec::new();
    let mut first = 0u64;
    let mut oldest = None;
    for item in old.iter() {
        let (k, v) = item.map_err(err)?;
        let seq = u64::from_be_bytes(
            k.as_ref()
                .try_into()
                .map_err(|_| "bad key in log.outputs")?,
        );
        oldest.get_or_insert(seq);
        if pending.is_empty()
            || pending.len() == BLOCK_RECORDS
            || seq != first + pending.len() as u64
        {
            if !pending.is_empty() {
                new.insert(key(first), block(&pending)).map_err(err)?;
                pending.clear();
            }
            first = seq;
        }
        pending.push(v);
    }
    if !pending.is_empty() {
        new.insert(key(first), block(&pending)).map_err(err)?;
    }
    if let Some(oldest) = oldest {
        new.insert("o", &oldest.to_be_bytes()).map_err(err)?;
    }
    db.flush().map_err(err)?;
    db.drop_tree("log.outputs").map_err(err)?;
    Ok(())
}
