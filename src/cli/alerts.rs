//! `send --alerts FILE|-`: Falco's file or program output sent to the Falco receiver service —
//! read whole (with a progress bar), taken from standard input as it comes, or followed as Falco
//! appends, across rotation and truncation, resuming where the stored position says.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ConnectArgs;
use crate::proto::sidecar::{self as pb, service_client::ServiceClient};

/// How often a followed file is looked at once its end is reached.
const POLL: Duration = Duration::from_millis(100);
/// A line longer than this is not an alert Falco wrote (the receiver's and the ingest's limit):
/// it is reported by its line number and stepped past, never held in memory.
pub const MAX_LINE: usize = 1 << 20;
/// A request carries lines of at most this many bytes together, well under the server's
/// message limit (`limits.max_message_bytes`, 16 MiB by default).
const BATCH_BYTES: usize = 4 << 20;

/// One line read with [`read_line`].
#[derive(Debug, PartialEq)]
enum Line {
    /// A whole line (its newline removed; invalid UTF-8 replaced, as Falco's text is meant to be).
    Text(String),
    /// A line of this many bytes, over [`MAX_LINE`]: skipped.
    TooLong(u64),
}

/// Reads one line of at most [`MAX_LINE`] bytes; returns it, the bytes consumed, and whether
/// its newline was seen (a line at the end of the input may lack one). A longer line is
/// consumed without being kept. `None` at the end of the input.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<(Line, u64, bool)>> {
    let mut buf = Vec::new();
    let mut consumed = 0u64;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            if consumed == 0 {
                return Ok(None);
            }
            return Ok(Some((finish(buf, consumed), consumed, false)));
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = (MAX_LINE + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        consumed += take as u64;
        if done {
            return Ok(Some((finish(buf, consumed), consumed, true)));
        }
    }
}

fn finish(mut buf: Vec<u8>, consumed: u64) -> Line {
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.len() > MAX_LINE {
        return Line::TooLong(consumed);
    }
    Line::Text(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// Options of `send --alerts`.
pub struct AlertsOptions {
    pub file: PathBuf,
    pub follow: bool,
    pub name: Option<String>,
    pub batch: usize,
    pub quiet: bool,
}

/// Says that the line starting at byte `at` was stepped past for its size.
fn report_skipped(at: u64, bytes: u64) {
    eprintln!("line at byte {at} skipped: {bytes} bytes, over the {MAX_LINE}-byte limit");
}

/// A device and inode as one number, to tell a rotated file from the one that replaced it.
fn file_id(meta: &std::fs::Metadata) -> u64 {
    meta.dev().rotate_left(32) ^ meta.ino()
}

type Lines = Vec<String>;

/// Reads alert lines from a file (with a progress bar) or standard input (as program_output
/// writes them, sent as they come), or follows a file; returns the exit status.
pub async fn send_alerts(connect: &ConnectArgs, opts: AlertsOptions) -> anyhow::Result<i32> {
    let mut client =
        ServiceClient::new(connect.channel().await?).max_encoding_message_size(64 << 20);
    if opts.follow {
        return follow(&mut client, opts).await;
    }
    let stdin = opts.file == Path::new("-");
    let origin = if stdin { "falco-program" } else { "falco-file" };
    let (reader, total): (Box<dyn Read + Send>, u64) = if stdin {
        (Box::new(std::io::stdin()), 0)
    } else {
        let f = File::open(&opts.file)
            .with_context(|| format!("cannot read {}", opts.file.display()))?;
        let len = f.metadata()?.len();
        (Box::new(f), len)
    };
    let bar = if opts.quiet || stdin {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Lines are read on a thread (a pipe blocks) and sent in batches of what is there. A line
    // over MAX_LINE is reported by its number and skipped; a read error ends the input loudly.
    let (lines_tx, mut lines_rx) = mpsc::channel::<(String, u64, u64)>(opts.batch.max(1) * 4);
    let reading = std::thread::spawn(move || -> Result<u64, String> {
        let mut reader = BufReader::new(reader);
        let (mut number, mut skipped) = (0u64, 0u64);
        loop {
            let (line, len) = match read_line(&mut reader) {
                Ok(Some((line, len, _))) => (line, len),
                Ok(None) => return Ok(skipped),
                Err(e) => return Err(format!("reading stopped after line {number}: {e}")),
            };
            number += 1;
            let text = match line {
                Line::Text(t) => t,
                Line::TooLong(n) => {
                    eprintln!("line {number} skipped: {n} bytes, over the {MAX_LINE}-byte limit");
                    skipped += 1;
                    String::new()
                }
            };
            if lines_tx.blocking_send((text, len, number)).is_err() {
                return Ok(skipped);
            }
        }
    });
    // Each request's byte count goes to the progress bar when its reply comes back.
    let (req_tx, req_rx) = mpsc::channel(4);
    let (bytes_tx, mut bytes_rx) = mpsc::unbounded_channel();
    let batch = opts.batch.max(1);
    let sender = tokio::spawn(async move {
        while let Some(first) = lines_rx.recv().await {
            let mut size = first.0.len();
            let mut lines = vec![first];
            while lines.len() < batch && size < BATCH_BYTES {
                match lines_rx.try_recv() {
                    Ok(l) => {
                        size += l.0.len();
                        lines.push(l);
                    }
                    Err(_) => break,
                }
            }
            let bytes: u64 = lines.iter().map(|l| l.1).sum();
            let (lines, numbers): (Lines, Vec<u64>) = lines
                .into_iter()
                .filter(|l| !l.0.trim().is_empty())
                .map(|l| (l.0, l.2))
                .unzip();
            if lines.is_empty() {
                continue;
            }
            let req = pb::AlertsRequest {
                lines,
                origin: origin.into(),
                ..Default::default()
            };
            let _ = bytes_tx.send((bytes, numbers));
            if req_tx.send(req).await.is_err() {
                break;
            }
        }
    });
    let mut stream = client
        .alerts(ReceiverStream::new(req_rx))
        .await?
        .into_inner();
    let (mut stored, mut rejected, mut drops) = (0u64, 0u64, 0u64);
    let name = opts.file.display().to_string();
    while let Some(reply) = stream.message().await? {
        // Each reply answers one request, in order: its lines' numbers in the file.
        let (bytes, numbers) = bytes_rx.try_recv().unwrap_or_default();
        for r in &reply.rejected {
            let line = numbers.get(r.index as usize).copied().unwrap_or(0);
            bar.suspend(|| eprintln!("{name}: line {line} rejected: {}", r.reason));
        }
        stored += reply.stored;
        rejected += reply.rejected.len() as u64;
        drops += reply.drops;
        bar.inc(bytes);
    }
    let _ = sender.await;
    bar.finish_and_clear();
    let skipped = match reading.join() {
        Ok(Ok(skipped)) => skipped,
        Ok(Err(e)) => {
            eprintln!("{e}");
            rejected += 1;
            0
        }
        Err(_) => anyhow::bail!("the reading thread failed"),
    };
    println!(
        "{stored} alerts stored, {} rejected, {drops} Falco drop alerts recorded as drops",
        rejected + skipped
    );
    Ok(if rejected + skipped > 0 { 1 } else { 0 })
}

/// Follows a file Falco appends to: resumes where the stored position says, sends complete
/// lines as they appear with the position after them (stored with the alerts in one
/// transaction), and follows rotation (a new file at the path) and truncation.
async fn follow(
    client: &mut ServiceClient<tonic::transport::Channel>,
    opts: AlertsOptions,
) -> anyhow::Result<i32> {
    anyhow::ensure!(
        opts.file != Path::new("-"),
        "--follow needs a file, not standard input"
    );
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => std::fs::canonicalize(&opts.file)
            .unwrap_or_else(|_| opts.file.clone())
            .display()
            .to_string(),
    };
    let known = client
        .position(pb::PositionRequest {
            follow: name.clone(),
        })
        .await?
        .into_inner();
    let mut current = open_resuming(&opts.file, &known)?;
    if !opts.quiet {
        eprintln!(
            "following {} from byte {} (stream '{name}')",
            opts.file.display(),
            current.offset
        );
    }
    let (tx, rx) = mpsc::channel::<pb::AlertsRequest>(1);
    let mut replies = client.alerts(ReceiverStream::new(rx)).await?.into_inner();
    let mut stored = 0u64;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (lines, end) = current.read_lines(opts.batch.max(1), BATCH_BYTES)?;
        if !lines.is_empty() || end != current.offset {
            let req = pb::AlertsRequest {
                lines,
                origin: "falco-file".into(),
                follow: name.clone(),
                follow_offset: end,
                follow_file_id: current.id,
            };
            tx.send(req).await.context("the server closed the stream")?;
            let reply = replies
                .message()
                .await?
                .context("the server closed the stream")?;
            for r in &reply.rejected {
                eprintln!("alert rejected: {}", r.reason);
            }
            stored += reply.stored;
            current.offset = end;
            continue;
        }
        // At the end: has the file been rotated or truncated?
        match std::fs::metadata(&opts.file) {
            Ok(meta) if file_id(&meta) != current.id => {
                // Whatever the old file still held has been read (we were at its end); a last
                // line without a newline is read now.
                let (tail, end) = current.read_rest()?;
                if !tail.is_empty() {
                    let req = pb::AlertsRequest {
                        lines: vec![tail],
                        origin: "falco-file".into(),
                        follow: name.clone(),
                        follow_offset: end,
                        follow_file_id: current.id,
                    };
                    tx.send(req).await?;
                    replies.message().await?;
                }
                current = Followed::open(&opts.file, 0)?;
                continue;
            }
            Ok(meta) if meta.len() < current.offset => {
                eprintln!(
                    "{} was truncated; reading it from the start",
                    opts.file.display()
                );
                current = Followed::open(&opts.file, 0)?;
                continue;
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut stop => break,
        }
    }
    if !opts.quiet {
        eprintln!("{stored} alerts stored; stopped at byte {}", current.offset);
    }
    Ok(0)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The followed file: where reading has reached, and which file it is.
struct Followed {
    reader: BufReader<File>,
    offset: u64,
    id: u64,
    /// Inside a line over [`MAX_LINE`] that has no newline yet: its bytes are stepped past as
    /// they come (reported once, when its end is reached).
    skipping: Option<u64>,
}

impl Followed {
    fn open(path: &Path, offset: u64) -> anyhow::Result<Followed> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_file(file, offset)
    }

    fn from_file(mut file: File, offset: u64) -> anyhow::Result<Followed> {
        let id = file_id(&file.metadata()?);
        file.seek(SeekFrom::Start(offset))?;
        Ok(Followed {
            reader: BufReader::new(file),
            offset,
            id,
            skipping: None,
        })
    }

    /// Up to `max` complete lines of `max_bytes` together after the offset (blank ones
    /// skipped) and the offset after them; a last line without its newline stays for later,
    /// unless it is already over [`MAX_LINE`]: then it is stepped past as it grows.
    fn read_lines(&mut self, max: usize, max_bytes: usize) -> anyhow::Result<(Lines, u64)> {
        let mut lines = Vec::new();
        let mut end = self.offset;
        let mut size = 0;
        while lines.len() < max && size < max_bytes {
            let Some((line, n, complete)) = read_line(&mut self.reader)? else {
                break;
            };
            match (line, complete) {
                (Line::TooLong(_), complete) => {
                    end += n;
                    let so_far = self.skipping.unwrap_or(0) + n;
                    self.skipping = Some(so_far);
                    if complete {
                        report_skipped(end - so_far, so_far);
                        self.skipping = None;
                    }
                }
                (Line::Text(text), true) => {
                    end += n;
                    if let Some(before) = self.skipping.take() {
                        report_skipped(end - n - before, before + n);
                        continue;
                    }
                    size += text.len();
                    if !text.is_empty() {
                        lines.push(text);
                    }
                }
                (Line::Text(_), false) => {
                    if self.skipping.is_some() {
                        // The rest of an oversized line, still without its newline.
                        end += n;
                        self.skipping = self.skipping.map(|s| s + n);
                    } else {
                        // Incomplete: read it again next time, from its start.
                        self.reader.seek(SeekFrom::Start(end))?;
                    }
                    break;
                }
            }
        }
        Ok((lines, end))
    }

    /// The rest of the file after the offset (a last line without a newline), within
    /// [`MAX_LINE`].
    fn read_rest(&mut self) -> anyhow::Result<(String, u64)> {
        match read_line(&mut self.reader)? {
            Some((Line::Text(text), n, _)) if self.skipping.is_none() => {
                Ok((text.trim().to_string(), self.offset + n))
            }
            Some((_, n, _)) => Ok((String::new(), self.offset + n)),
            None => Ok((String::new(), self.offset)),
        }
    }
}

/// Opens the followed file where the stored position says. When the file at the path is not
/// the one the position belongs to (it was rotated while nobody was reading), the rotated file
/// is looked for beside it by its inode and its rest is read first.
fn open_resuming(path: &Path, known: &pb::PositionResponse) -> anyhow::Result<Followed> {
    if !known.known {
        return Followed::open(path, 0);
    }
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if file_id(&meta) == known.file_id {
        let offset = if meta.len() < known.offset {
            0
        } else {
            known.offset
        };
        return Followed::open(path, offset);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for entry in std::fs::read_dir(dir)?.flatten() {
        if let Ok(m) = entry.metadata() {
            if m.is_file() && file_id(&m) == known.file_id && m.len() >= known.offset {
                eprintln!(
                    "{} was rotated; reading the rest of {} first",
                    path.display(),
                    entry.path().display()
                );
                return Followed::from_file(File::open(entry.path())?, known.offset);
            }
        }
    }
    eprintln!(
        "{} was replaced and the file read before is gone; reading the new one from the start",
        path.display()
    );
    Followed::open(path, 0)
}
