//! The newest block of a compressed log while appends of a few records grow it. Recompressing
//! the whole block at each append cost a fifth of a one-alert-per-commit run (up to 128 KiB
//! compressed again for every alert), so the block is kept as one zstd frame left open: each
//! append compresses only the records it adds, against those before it in the frame's window,
//! and flushes; the block stores what was flushed so far ([`OPEN`]). When a newer block starts,
//! the open block is closed into an ordinary [`ZSTD`] block (compressed once, whole, which packs
//! tighter than the flushed pieces) so that every block but the newest reads with one call.
//! Appends of [`OPEN_GROWTH_BYTES`] or more compress the block whole at once, closed: their own
//! bytes are most of the work, and the block then needs no closing.

use std::cell::RefCell;

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, InBuffer, OutBuffer, ResetDirective};

use super::super::codec::push_varint;
use super::{
    pack, put_header, unpack, Compression, Result, BLOCK_BYTES, BLOCK_RECORDS, OPEN,
    RAW_BLOCK_BYTES, ZSTD_LEVEL,
};

/// Appends of fewer stored bytes grow the open frame; larger ones recompress the block whole.
pub const OPEN_GROWTH_BYTES: usize = 16 * 1024;

/// log2 of the frame's window: the whole of the most a block gathers, so every record can refer
/// to any before it.
const WINDOW_LOG: u32 = RAW_BLOCK_BYTES.trailing_zeros();

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd_safe::get_error_name(code))
}

/// A zstd frame being written: the compressor and what it has flushed.
struct Frame {
    cctx: CCtx<'static>,
    packed: Vec<u8>,
}

impl Frame {
    fn start() -> std::io::Result<Self> {
        let mut cctx = CCtx::create();
        cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL))
            .map_err(zstd_error)?;
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG))
            .map_err(zstd_error)?;
        Ok(Frame {
            cctx,
            packed: Vec::new(),
        })
    }

    /// Compresses `data` into the frame and flushes, so that `packed` decodes to everything
    /// pushed so far.
    fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut input = InBuffer::around(data);
        loop {
            self.packed
                .reserve(zstd_safe::compress_bound(data.len() - input.pos()) + 64);
            let at = self.packed.len();
            let mut output = OutBuffer::around_pos(&mut self.packed, at);
            let left = self
                .cctx
                .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_flush)
                .map_err(zstd_error)?;
            if left == 0 && input.pos() == data.len() {
                return Ok(());
            }
        }
    }
}

/// The newest block of a compressed log as it grows: its records' stored forms and, once it
/// has grown, the open frame holding them.
pub struct Growing {
    raw: Vec<u8>,
    frame: Option<Frame>,
}

impl Growing {
    /// A block whose records' stored forms are `raw`, as last written whole.
    pub fn new(raw: Vec<u8>) -> Self {
        Growing { raw, frame: None }
    }

    /// The block stored as `bytes`, whatever its codec.
    pub fn read(tree: &str, bytes: &[u8]) -> Result<Self> {
        unpack(tree, bytes).map(|(_, raw)| Growing::new(raw.into_owned()))
    }

    /// Adds `records` (stored forms) to the block of `count` records and returns it as it is
    /// to be stored, carrying `stamps` (see [`super::block_stamps`]), and whether it is an open
    /// frame (unless the records take [`OPEN_GROWTH_BYTES`] or more). `None`, with the records
    /// as they were, when the block would gather more than [`RAW_BLOCK_BYTES`], hold more than
    /// [`BLOCK_RECORDS`] or store more than [`BLOCK_BYTES`]: the records then start a block of
    /// their own.
    pub fn grow(
        &mut self,
        count: u64,
        records: &[Vec<u8>],
        stamps: &[(u64, u64)],
    ) -> Option<(Vec<u8>, bool)> {
        let added: usize = records.iter().map(Vec::len).sum();
        let count = count + records.len() as u64;
        if count > BLOCK_RECORDS as u64 || self.raw.len() + added > RAW_BLOCK_BYTES {
            return None;
        }
        let before = self.raw.len();
        self.raw.reserve(added);
        for r in records {
            self.raw.extend_from_slice(r);
        }
        let open = added < OPEN_GROWTH_BYTES;
        let out = if open {
            self.push_open(before, count, stamps)
        } else {
            // A frame left open would lack these records.
            self.frame = None;
            Some(pack(count, &self.raw, Compression::Zstd, stamps))
        };
        match out {
            Some(out) if out.len() <= BLOCK_BYTES => Some((out, open)),
            _ => {
                // A frame that took the records would hold some the block does not.
                self.frame = None;
                self.raw.truncate(before);
                None
            }
        }
    }

    /// The open block of `count` records after the records from `raw[from..]` were compressed
    /// into the frame (started, from the records before them, if there is none yet).
    fn push_open(&mut self, from: usize, count: u64, stamps: &[(u64, u64)]) -> Option<Vec<u8>> {
        let frame = match &mut self.frame {
            Some(frame) => frame,
            slot => {
                let mut frame = Frame::start().ok()?;
                frame.push(&self.raw[..from]).ok()?;
                slot.insert(frame)
            }
        };
        frame.push(&self.raw[from..]).ok()?;
        let mut out = Vec::with_capacity(frame.packed.len() + 16 + 8 * stamps.len());
        put_header(&mut out, count, OPEN, stamps);
        push_varint(&mut out, self.raw.len() as u64);
        out.extend_from_slice(&frame.packed);
        Some(out)
    }

    /// The block of `count` records closed: its records compressed whole, as any block but the
    /// newest is stored, without stamps (the table takes them as the block stops growing).
    pub fn close(&self, count: u64) -> Vec<u8> {
        pack(count, &self.raw, Compression::Zstd, &[])
    }
}

thread_local! {
    static OPEN_DECOMPRESSOR: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// The `len` bytes an open frame's flushed output holds: exactly `len`, or an error.
pub(super) fn decompress_open(packed: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    OPEN_DECOMPRESSOR.with_borrow_mut(|slot| {
        let dctx = slot.get_or_insert_with(DCtx::create);
        dctx.reset(ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        // Room for a byte more than `len`, so that a frame holding more is found out.
        let mut out = Vec::with_capacity(len + 1);
        let mut input = InBuffer::around(packed);
        while input.pos() < packed.len() {
            let progress = (input.pos(), out.len());
            dctx.decompress_stream(&mut OutBuffer::around_pos(&mut out, progress.1), &mut input)
                .map_err(zstd_error)?;
            if (input.pos(), out.len()) == progress {
                return Err(std::io::Error::other("bytes after the records"));
            }
        }
        if out.len() != len {
            return Err(std::io::Error::other(format!(
                "{} bytes of records where the block says {len}",
                out.len()
            )));
        }
        Ok(out)
    })
}
