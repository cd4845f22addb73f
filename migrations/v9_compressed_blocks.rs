//! Schema 9: every log block gains a codec byte after its record count, and its records are
//! compressed with zstd where that saves space (`src/store/block.rs` reads both codecs). A block
//! of schemas 6–8 is a postcard `Vec`: a varint count, then the records one after another, so the
//! step moves bytes without decoding a record. Keys, times and the oldest seq are unchanged.
//! The step rewrites the blocks inside its transaction, so a crash part-way leaves schema 8 and
//! the step starts over.

use redb::{ReadableTable, TableDefinition};

type Blocks = TableDefinition<'static, u64, &'static [u8]>;

const LOGS: [Blocks; 2] = [
    TableDefinition::new("ring.outputs"),
    TableDefinition::new("ring.drops"),
];

const PLAIN: u8 = 0;
const ZSTD: u8 = 1;
const LEVEL: i32 = 1;
/// Blocks rewritten per pass over the table (each pass reads from where the last stopped).
const PASS: usize = 256;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The length of the varint at the front of `bytes`.
fn varint_len(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .take(10)
        .position(|b| b & 0x80 == 0)
        .map(|i| i + 1)
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A schema 8 block in the schema 9 layout.
pub fn convert(block: &[u8]) -> Option<Vec<u8>> {
    let at = varint_len(block)?;
    let (count, records) = block.split_at(at);
    let mut out = Vec::with_capacity(block.len() / 3 + 16);
    out.extend_from_slice(count);
    match zstd::bulk::compress(records, LEVEL) {
        Ok(packed) if packed.len() + 10 < records.len() => {
            out.push(ZSTD);
            push_varint(&mut out, records.len() as u64);
            out.extend_from_slice(&packed);
        }
        _ => {
            out.push(PLAIN);
            out.extend_from_slice(records);
        }
    }
    Some(out)
}

pub fn apply(txn: &redb::WriteTransaction) -> Result<(), String> {
    for definition in LOGS {
        let name = redb::TableHandle::name(&definition).to_string();
        let mut blocks = txn.open_table(definition).map_err(err)?;
        let mut from = 0u64;
        loop {
            let mut pass = Vec::with_capacity(PASS);
            for item in blocks.range(from..).map_err(err)?.take(PASS) {
                let (first, block) = item.map_err(err)?;
                let first = first.value();
                let new = convert(block.value())
                    .ok_or_else(|| format!("{name} block {first}: no record count"))?;
                pass.push((first, new));
            }
            let Some(&(last, _)) = pass.last() else {
                break;
            };
            for (first, block) in pass {
                blocks.insert(first, block.as_slice()).map_err(err)?;
            }
            from = last + 1;
        }
    }
    Ok(())
}
