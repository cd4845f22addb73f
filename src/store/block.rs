//! The layout of one log block (schemas 9 and later): the record count as a varint, a codec byte,
//! then the records' stored forms one after another (see [`super::codec::LogRecord`]: alerts as
//! framed protobuf since schema 10, drop records as postcard), either as they are (codec 0) or
//! compressed with zstd (codec 1, preceded by their length as a varint). The count comes first so that
//! retention can size a block without reading the rest of it.
//!
//! Since schema 12 the codec byte may carry [`STAMPED`]: the append stamps of the records added
//! to the block after its first append follow it (a count, then for each its seq's offset from
//! the block's first seq and its time as a delta from the previous one, the first from 0, all
//! varints). The newest block keeps there the stamps that would otherwise cost the time table a
//! write per append; they move to the table when a newer block starts. Codec 2 ([`OPEN`]) is the
//! newest block grown as an open zstd frame (see [`Growing`]).
//!
//! Blocks are cut so that what is stored stays under [`BLOCK_BYTES`]: redb gives a value too
//! large for a 4 KiB leaf a page of a power-of-two size, so blocks just under 32 KiB fill their
//! pages (a 256 KiB block took a 512 KiB page, and the file grew to 3.1x the records). Measured
//! with `bench log` at 1 KiB events, 16 KiB and 32 KiB blocks used the same disk, 32 KiB
//! appended faster, 64 KiB used 1.8x. Compressed blocks gather up to [`RAW_BLOCK_BYTES`] of
//! records (about 25 KiB once compressed on the corpus alert mix) and are halved until they fit.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;

use bytes::Bytes;

use super::codec::{push_varint, take_frame, LogRecord};
use super::{Result, StoreError};

mod growing;

pub use growing::{Growing, OPEN_GROWTH_BYTES};

/// Most records in one block.
pub const BLOCK_RECORDS: usize = 4096;
/// What a block may take on disk before it is cut, unless one record alone is larger.
pub const BLOCK_BYTES: usize = 32 * 1024 - 200;
/// redb's page size.
const PAGE: u64 = 4096;
/// What a leaf holding one value adds to it (its header, offsets and key), rounded up.
const LEAF_OVERHEAD: u64 = 64;
/// A leaf's header, and what each entry adds to its value in a leaf (key and offsets).
const LEAF_HEADER: u64 = 8;
const LEAF_ENTRY: u64 = 16;
/// Records gathered into one compressed block before it is compressed.
const RAW_BLOCK_BYTES: usize = 128 * 1024;
/// The zstd level: 1 compressed the corpus alert mix 5.1x at 128 KiB blocks, level 3 5.4x at
/// the same speed here but slower under load; lz4 (lz4_flex) 3.5x.
const ZSTD_LEVEL: i32 = 1;
/// A block that says it holds more than this once decompressed is corrupt.
const MAX_RAW_BYTES: u64 = 1 << 30;

const PLAIN: u8 = 0;
const ZSTD: u8 = 1;
/// An open zstd frame: what a streaming compressor flushed so far, preceded like [`ZSTD`] by the
/// records' length. Only the newest block is open (see [`Growing`]).
const OPEN: u8 = 2;
/// Set on the codec byte of a block that carries append stamps.
const STAMPED: u8 = 0x80;
/// Most stamps one block may carry (one per append that grew it).
const MAX_STAMPS: u64 = BLOCK_RECORDS as u64;

/// How new blocks are written. Every codec is always readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd, with plain blocks where it would not save space.
    #[default]
    Zstd,
    /// Plain blocks, cut at [`BLOCK_BYTES`] (the layout of schemas 6–8 but for the codec byte).
    None,
}

fn corrupt(tree: &str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: tree.into(),
        message: message.into(),
    }
}

/// Reads a varint from the front of `bytes`: its value and its length.
fn read_varint(tree: &str, bytes: &[u8]) -> Result<(u64, usize)> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((n, i + 1));
        }
    }
    Err(corrupt(tree, "block with a truncated varint"))
}

/// The record count at the front of a block, without reading the records.
pub fn block_len(tree: &str, bytes: &[u8]) -> Result<u64> {
    read_varint(tree, bytes).map(|(n, _)| n)
}

/// What comes before a block's records: its record count, codec, append stamps (offsets from
/// the block's first seq and times) and where the codec's data starts.
struct Header {
    count: u64,
    codec: u8,
    stamps: Vec<(u64, u64)>,
    body: usize,
}

fn header(tree: &str, bytes: &[u8]) -> Result<Header> {
    let (count, mut at) = read_varint(tree, bytes)?;
    let byte = *bytes
        .get(at)
        .ok_or_else(|| corrupt(tree, "block without a codec"))?;
    at += 1;
    let mut stamps = Vec::new();
    if byte & STAMPED != 0 {
        let (n, used) = read_varint(tree, &bytes[at..])?;
        at += used;
        if n > MAX_STAMPS {
            return Err(corrupt(tree, format!("block claims {n} append stamps")));
        }
        let mut time = 0u64;
        for _ in 0..n {
            let (offset, used) = read_varint(tree, &bytes[at..])?;
            at += used;
            let (delta, used) = read_varint(tree, &bytes[at..])?;
            at += used;
            time = time.saturating_add(delta);
            stamps.push((offset, time));
        }
    }
    Ok(Header {
        count,
        codec: byte & !STAMPED,
        stamps,
        body: at,
    })
}

/// The append stamps a block carries: each as (offset of its seq from the block's first seq,
/// nanoseconds), in the order they were taken.
pub fn block_stamps(tree: &str, bytes: &[u8]) -> Result<Vec<(u64, u64)>> {
    header(tree, bytes).map(|h| h.stamps)
}

/// The bytes a block's records take uncompressed (their stored forms).
pub fn raw_len(tree: &str, bytes: &[u8]) -> Result<u64> {
    let h = header(tree, bytes)?;
    match h.codec {
        PLAIN => Ok((bytes.len() - h.body) as u64),
        ZSTD | OPEN => read_varint(tree, &bytes[h.body..]).map(|(n, _)| n),
        _ => Err(corrupt(tree, "block without a known codec")),
    }
}

thread_local! {
    // One zstd context per thread, kept: making one per block cost 3% of a `bench log` run in
    // context set-up, plus the kernel zeroing its fresh pages.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(raw)
    })
}

fn decompress(packed: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(packed, len)
    })
}

/// One block made of `records` (each a stored form), compressed when that saves space.
pub fn encode_block(records: &[Vec<u8>], compression: Compression) -> Vec<u8> {
    pack(records.len() as u64, &records.concat(), compression, &[])
}

/// A block of `count` records whose stored forms are `raw`, compressed when that saves space,
/// carrying `stamps` (see [`block_stamps`]).
fn pack(count: u64, raw: &[u8], compression: Compression, stamps: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 12 + 8 * stamps.len());
    let codec_at = put_header(&mut out, count, PLAIN, stamps);
    if compression == Compression::Zstd {
        if let Ok(packed) = compress(raw) {
            if packed.len() + 10 < raw.len() {
                out[codec_at] = ZSTD | (out[codec_at] & STAMPED);
                push_varint(&mut out, raw.len() as u64);
                out.extend_from_slice(&packed);
                return out;
            }
        }
    }
    out.extend_from_slice(raw);
    out
}

/// Writes what comes before a block's codec data (see [`header`]); returns where the codec
/// byte is.
fn put_header(out: &mut Vec<u8>, count: u64, codec: u8, stamps: &[(u64, u64)]) -> usize {
    push_varint(out, count);
    let at = out.len();
    if stamps.is_empty() {
        out.push(codec);
        return at;
    }
    out.push(codec | STAMPED);
    push_varint(out, stamps.len() as u64);
    let mut time = 0;
    for &(offset, t) in stamps {
        push_varint(out, offset);
        push_varint(out, t.saturating_sub(time));
        time = t;
    }
    at
}

/// Whether a block is an open frame (the newest block of a log as it grows, see [`Growing`]).
pub fn block_is_open(tree: &str, bytes: &[u8]) -> Result<bool> {
    header(tree, bytes).map(|h| h.codec == OPEN)
}

/// The file space a block of `len` stored bytes takes: when it shares a leaf page with others,
/// its share of the page (a page divided by how many such blocks fit in one: two 2.1 KB blocks do
/// not, so each takes a page); else the power-of-two run of pages redb gives a value too large
/// for one page (a 17 KiB block takes 32 KiB). Retention counts this against `max_bytes`, so
/// the pages the log holds, not only its values, stay within the budget.
pub fn footprint(len: u64) -> u64 {
    let need = len + LEAF_OVERHEAD;
    if need <= PAGE {
        let fit = ((PAGE - LEAF_HEADER) / (len + LEAF_ENTRY)).max(1);
        PAGE / fit
    } else {
        need.div_ceil(PAGE).next_power_of_two() * PAGE
    }
}

/// A block's record count and its records' stored bytes, decompressed.
fn unpack<'a>(tree: &str, bytes: &'a [u8]) -> Result<(u64, Cow<'a, [u8]>)> {
    let Header {
        count, codec, body, ..
    } = header(tree, bytes)?;
    let rest = &bytes[body..];
    match codec {
        PLAIN => Ok((count, Cow::Borrowed(rest))),
        ZSTD | OPEN => {
            let (len, at) = read_varint(tree, rest)?;
            if len > MAX_RAW_BYTES {
                return Err(corrupt(
                    tree,
                    format!("block claims {len} bytes of records"),
                ));
            }
            let unpack = if codec == ZSTD {
                decompress
            } else {
                growing::decompress_open
            };
            let unpacked = unpack(&rest[at..], len as usize)
                .map_err(|e| corrupt(tree, format!("cannot decompress block: {e}")))?;
            if unpacked.len() as u64 != len {
                return Err(corrupt(tree, "block shorter than it says"));
            }
            Ok((count, Cow::Owned(unpacked)))
        }
        other => Err(corrupt(tree, format!("block with unknown codec {other}"))),
    }
}

/// The records of a block, decoded.
pub fn decode_block<T: LogRecord>(tree: &str, bytes: &[u8]) -> Result<Vec<T>> {
    let (count, raw) = unpack(tree, bytes)?;
    let mut raw = &raw[..];
    let mut out = Vec::with_capacity((count as usize).min(BLOCK_RECORDS));
    for _ in 0..count {
        let (record, used) =
            T::take(raw).map_err(|e| corrupt(tree, format!("cannot decode record: {e}")))?;
        out.push(record);
        raw = &raw[used..];
    }
    if !raw.is_empty() {
        return Err(corrupt(tree, "block with bytes after its records"));
    }
    Ok(out)
}

/// The payloads of a block of framed records (see [`super::codec::Framed`]), as slices of one
/// shared buffer: nothing is decoded or copied per record.
pub fn block_frames(tree: &str, bytes: &[u8]) -> Result<Vec<Bytes>> {
    let (count, raw) = unpack(tree, bytes)?;
    let raw = Bytes::from(raw.into_owned());
    let mut out = Vec::with_capacity((count as usize).min(BLOCK_RECORDS));
    let mut at = 0;
    for _ in 0..count {
        let (payload, used) = take_frame(&raw[at..])
            .map_err(|e| corrupt(tree, format!("cannot read record: {e}")))?;
        out.push(raw.slice(at + payload.start..at + payload.end));
        at += used;
    }
    if at != raw.len() {
        return Err(corrupt(tree, "block with bytes after its records"));
    }
    Ok(out)
}

/// Encoded records cut into stored blocks: at most [`BLOCK_RECORDS`] records each, and at most
/// [`BLOCK_BYTES`] stored unless one record alone is larger. Returns each block with the range
/// of `encoded` it holds, in order.
pub fn build_blocks(encoded: &[Vec<u8>], compression: Compression) -> Vec<(Range<usize>, Vec<u8>)> {
    let gather = match compression {
        Compression::Zstd => RAW_BLOCK_BYTES,
        Compression::None => BLOCK_BYTES,
    };
    let mut out = Vec::new();
    for part in cut(encoded, 0..encoded.len(), gather) {
        split_to_fit(encoded, part, compression, &mut out);
    }
    out
}

/// `range` of `encoded` in runs of at most `max_bytes` (a longer record makes a run alone).
fn cut(encoded: &[Vec<u8>], range: Range<usize>, max_bytes: usize) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let mut end = start;
        let mut bytes = 0;
        while end < range.end && end - start < BLOCK_RECORDS {
            let next = bytes + encoded[end].len();
            if end > start && next > max_bytes {
                break;
            }
            bytes = next;
            end += 1;
        }
        parts.push(start..end);
        start = end;
    }
    parts
}

/// Encodes `part` as one block, or as halves (recursively) while it is too large to store in
/// one page. Depth is bounded by log2 of [`BLOCK_RECORDS`].
fn split_to_fit(
    encoded: &[Vec<u8>],
    part: Range<usize>,
    compression: Compression,
    out: &mut Vec<(Range<usize>, Vec<u8>)>,
) {
    let block = encode_block(&encoded[part.clone()], compression);
    if block.len() <= BLOCK_BYTES || part.len() == 1 {
        out.push((part, block));
        return;
    }
    let mid = part.start + part.len() / 2;
    split_to_fit(encoded, part.start..mid, compression, out);
    split_to_fit(encoded, mid..part.end, compression, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::put_frame;

    /// The pages redb allocates for values of one size, per value, measured on a real file.
    fn pages_per_value(len: usize) -> u64 {
        const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("db")).unwrap();
        let allocated = |db: &redb::Database| {
            let txn = db.begin_write().unwrap();
            let pages = txn.stats().unwrap().allocated_pages();
            txn.abort().unwrap();
            pages
        };
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap().insert(0, &[][..]).unwrap();
        txn.commit().unwrap();
        let before = allocated(&db);
        let value = vec![7u8; len];
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            for key in 1..=64u64 {
                table.insert(key, value.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        (allocated(&db) - before) * PAGE / 64
    }

    #[test]
    fn a_blocks_footprint_is_what_redb_allocates_for_it() {
        for len in [5_000, 9_000, 17_000, 30_000, BLOCK_BYTES, 100_000] {
            let measured = pages_per_value(len);
            let model = footprint(len as u64);
            // Branch pages add a little to the measurement; the model counts leaves.
            assert!(
                measured >= model && measured <= model + model / 16,
                "{len} B: redb took {measured} B per value, the model says {model}"
            );
        }
        // Blocks sharing a leaf: a page over how many fit in one (what fills a leaf; splits
        // leave some leaves part-full, which this does not count).
        for (len, fit) in [
            (300, 12),
            (600, 6),
            (1_000, 4),
            (2_000, 2),
            (2_100, 1),
            (4_000, 1),
        ] {
            assert_eq!(footprint(len), PAGE / fit, "{len} B");
            let measured = pages_per_value(len as usize);
            assert!(
                measured >= footprint(len),
                "{len} B: redb took {measured} B per value"
            );
        }
    }

    /// A framed test record.
    #[derive(Debug, PartialEq)]
    struct Text(Vec<u8>);

    impl LogRecord for Text {
        fn put(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
            put_frame(out, &self.0);
            Ok(())
        }

        fn take(bytes: &[u8]) -> std::result::Result<(Self, usize), String> {
            let (payload, used) = take_frame(bytes)?;
            Ok((Text(bytes[payload].to_vec()), used))
        }
    }

    fn framed(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Text(text.to_vec()).put(&mut out).unwrap();
        out
    }

    fn records(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        (0..n as u64)
            .map(|i| {
                let text: String = (0..len)
                    .map(|k| {
                        let x = (i * 31 + k as u64 * 17 + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        char::from(b'a' + (x >> 59) as u8)
                    })
                    .collect();
                framed(format!("{i} {text}").as_bytes())
            })
            .collect()
    }

    fn roundtrip(encoded: &[Vec<u8>], compression: Compression) -> Vec<(Range<usize>, Vec<u8>)> {
        let blocks = build_blocks(encoded, compression);
        let mut next = 0;
        for (range, block) in &blocks {
            assert_eq!(range.start, next, "blocks are contiguous");
            next = range.end;
            assert!(block.len() <= BLOCK_BYTES || range.len() == 1);
            assert_eq!(block_len("t", block).unwrap(), range.len() as u64);
            let decoded: Vec<Text> = decode_block("t", block).unwrap();
            let expect: Vec<Text> = encoded[range.clone()]
                .iter()
                .map(|r| Text::take(r).unwrap().0)
                .collect();
            assert_eq!(decoded, expect);
            let frames = block_frames("t", block).unwrap();
            assert_eq!(frames.len(), expect.len());
            for (frame, Text(payload)) in frames.iter().zip(&expect) {
                assert_eq!(&frame[..], &payload[..]);
            }
        }
        assert_eq!(next, encoded.len());
        blocks
    }

    #[test]
    fn repetitive_records_compress_into_fewer_smaller_blocks() {
        let encoded: Vec<Vec<u8>> = (0..3000u64)
            .map(|i| framed(format!("{i} {}", "Warning shell in container ".repeat(20)).as_bytes()))
            .collect();
        let raw: usize = encoded.iter().map(Vec::len).sum();
        let packed = roundtrip(&encoded, Compression::Zstd);
        let plain = roundtrip(&encoded, Compression::None);
        let stored = |b: &[(Range<usize>, Vec<u8>)]| b.iter().map(|(_, b)| b.len()).sum::<usize>();
        assert!(stored(&packed) * 10 < raw, "{} of {raw}", stored(&packed));
        assert!(packed.len() < plain.len());
        assert!(stored(&plain) >= raw);
    }

    #[test]
    fn incompressible_records_are_halved_until_they_fit() {
        let encoded = records(400, 900, 1);
        let blocks = roundtrip(&encoded, Compression::Zstd);
        assert!(blocks.len() > 1);
        let one = roundtrip(&records(1, 200_000, 2), Compression::Zstd);
        assert_eq!(
            one.len(),
            1,
            "a record larger than a block makes a block alone"
        );
    }

    /// A block grown one record at a time, whether from a plain or a compressed first block and
    /// whether kept in memory or read back at each step, is an open frame that reads back every
    /// record and the stamps it was last given; closed, it is an ordinary compressed block
    /// without stamps, smaller than the open one. A block that cannot take more stays as it was,
    /// and damaged open blocks are errors.
    #[test]
    fn grown_blocks_are_open_frames_carrying_their_stamps() {
        for (compression, encoded) in [
            (Compression::Zstd, records(40, 60, 4)),
            (Compression::None, records(40, 60, 5)),
        ] {
            let mut block = encode_block(&encoded[..1], compression);
            assert!(block_stamps("t", &block).unwrap().is_empty());
            assert!(!block_is_open("t", &block).unwrap());
            let mut stamps = Vec::new();
            let mut kept = Growing::new(encoded[0].clone());
            for i in 1..encoded.len() {
                stamps.push((i as u64, 1_000_000_000_000 + 7 * i as u64 * i as u64));
                let grow = &encoded[i..i + 1];
                let mut again = Growing::read("t", &block).unwrap();
                let open;
                (block, open) = kept.grow(i as u64, grow, &stamps).unwrap();
                assert!(open, "small appends grow the open frame");
                let (other, _) = again.grow(i as u64, grow, &stamps).unwrap();
                assert_eq!(
                    unpack("t", &other).unwrap(),
                    unpack("t", &block).unwrap(),
                    "read back at step {i}"
                );
                assert_eq!(block_stamps("t", &other).unwrap(), stamps);
            }
            assert!(block_is_open("t", &block).unwrap());
            assert_eq!(block_stamps("t", &block).unwrap(), stamps);
            assert_eq!(block_len("t", &block).unwrap(), 40);
            let total: usize = encoded.iter().map(Vec::len).sum();
            assert_eq!(raw_len("t", &block).unwrap(), total as u64);
            let decoded: Vec<Text> = decode_block("t", &block).unwrap();
            let expect: Vec<Text> = encoded.iter().map(|r| Text::take(r).unwrap().0).collect();
            assert_eq!(decoded, expect);
            assert_eq!(block_frames("t", &block).unwrap().len(), 40);

            let closed = kept.close(40);
            assert!(!block_is_open("t", &closed).unwrap());
            assert!(block_stamps("t", &closed).unwrap().is_empty());
            assert_eq!(decode_block::<Text>("t", &closed).unwrap(), expect);
            assert!(
                closed.len() < block.len(),
                "{} closed, {} open",
                closed.len(),
                block.len()
            );

            let too_big = kept.grow(40, &records(1, RAW_BLOCK_BYTES, 6), &[]);
            assert!(too_big.is_none(), "too large to grow");
            let (next, _) = kept.grow(40, &encoded[..1], &stamps[..1]).unwrap();
            assert_eq!(block_stamps("t", &next).unwrap(), &stamps[..1]);
            assert_eq!(block_len("t", &next).unwrap(), 41);
            let decoded: Vec<Text> = decode_block("t", &next).unwrap();
            assert_eq!(
                &decoded[..40],
                &expect[..],
                "as it was before the refused growth"
            );

            for cut in [2, 3, 4, 8] {
                assert!(block_stamps("t", &block[..cut]).is_err(), "cut at {cut}");
                assert!(decode_block::<Text>("t", &block[..cut]).is_err());
            }
            for cut in [block.len() - 1, block.len() - 20, block.len() / 2 + 40] {
                assert!(
                    decode_block::<Text>("t", &block[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
            // An open frame holding more than its block says.
            let h = header("t", &next).unwrap();
            let (_, used) = read_varint("t", &next[h.body..]).unwrap();
            let mut short = Vec::new();
            put_header(&mut short, 41, OPEN, &[]);
            push_varint(&mut short, total as u64);
            short.extend_from_slice(&next[h.body + used..]);
            let e = decode_block::<Text>("t", &short).unwrap_err();
            assert!(e.to_string().contains("decompress"), "{e}");
        }
        // An append of OPEN_GROWTH_BYTES or more recompresses the block whole, closed, with its
        // stamps, and the next small one opens a frame again.
        let mut growing = Growing::new(records(1, 100, 7).concat());
        let big = records(20, OPEN_GROWTH_BYTES / 20 + 10, 8);
        let (block, open) = growing.grow(1, &big, &[(1, 5)]).unwrap();
        assert!(!open);
        assert_eq!(block[1], ZSTD | STAMPED);
        assert_eq!(block_stamps("t", &block).unwrap(), [(1, 5)]);
        assert_eq!(decode_block::<Text>("t", &block).unwrap().len(), 21);
        let (block, open) = growing
            .grow(21, &records(1, 100, 9), &[(1, 5), (21, 9)])
            .unwrap();
        assert!(open && block_is_open("t", &block).unwrap());
        assert_eq!(decode_block::<Text>("t", &block).unwrap().len(), 22);

        let mut many = vec![1, ZSTD | STAMPED];
        push_varint(&mut many, u64::MAX);
        let e = block_stamps("t", &many).unwrap_err();
        assert!(e.to_string().contains("append stamps"), "{e}");
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let encoded = records(50, 100, 3);
        let (_, block) = &build_blocks(&encoded, Compression::Zstd)[0];
        for cut in [0, 1, 2, 3, block.len() / 2, block.len() - 1] {
            assert!(
                decode_block::<Text>("t", &block[..cut]).is_err(),
                "cut at {cut}"
            );
            assert!(block_frames("t", &block[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = block.clone();
        bad[1] = 9;
        let e = decode_block::<Text>("t", &bad).unwrap_err();
        assert!(e.to_string().contains("unknown codec 9"), "{e}");
        let mut huge = vec![1, ZSTD];
        push_varint(&mut huge, u64::MAX);
        assert!(decode_block::<Text>("t", &huge).is_err());
    }
}
