//! `falco-api send`: stream events from a file into `falco.inputs`, with a progress bar, and
//! report what was accepted, rejected and matched.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ConnectArgs;
use crate::proto::inputs::{service_client::ServiceClient, Event, Request};

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The events' source: k8s_audit, syscall, aws_cloudtrail, okta, github, gcp_auditlog, or
    /// another name for JSON events.
    #[arg(long, default_value = "k8s_audit")]
    pub source: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// FILE holds Falco's alerts, one per line (its file_output, or `-` for its program_output
    /// on standard input), stored as they are, without evaluation.
    #[arg(long)]
    pub alerts: bool,
    /// With --alerts: keep reading FILE as Falco appends to it, resuming after a restart where
    /// the server says the last run stopped (follows rotation and truncation).
    #[arg(long, requires = "alerts")]
    pub follow: bool,
    /// With --follow: the name the position is stored under (default: FILE's absolute path).
    #[arg(long, requires = "follow")]
    pub name: Option<String>,
    /// Events (or alert lines) per request message.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// JSON lines, a JSON array of events, or one EventList document (with --alerts: alert
    /// lines, `-` for standard input).
    pub file: PathBuf,
}

/// Splits a file into event payloads, each with where it is in the file for messages: a
/// whole-file JSON array (`item N`), a CloudTrail log file's `{"Records": [...]}` (`record N`,
/// so a large log file is not one payload) or single document (`the document`), else JSON lines
/// (`line N`, the file's own line numbers: blank lines count, and are skipped).
pub fn payloads(text: &str, source: &str) -> Vec<(String, Vec<u8>)> {
    let trimmed = text.trim();
    if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if source == "aws_cloudtrail" {
            if let Some(serde_json::Value::Array(records)) = value.get_mut("Records") {
                return std::mem::take(records)
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (format!("record {}", i + 1), r.to_string().into_bytes()))
                    .collect();
            }
        }
        match value {
            serde_json::Value::Array(items) => {
                return items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (format!("item {}", i + 1), item.to_string().into_bytes()))
                    .collect()
            }
            other => return vec![("the document".into(), other.to_string().into_bytes())],
        }
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (format!("line {}", i + 1), l.as_bytes().to_vec()))
        .collect()
}

pub async fn send(args: SendArgs) -> anyhow::Result<i32> {
    if args.alerts {
        let opts = super::alerts::AlertsOptions {
            file: args.file.clone(),
            follow: args.follow,
            name: args.name.clone(),
            batch: args.batch,
            quiet: args.quiet,
        };
        return super::alerts::send_alerts(&args.connect, opts).await;
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (places, payloads): (Vec<String>, Vec<Vec<u8>>) =
        payloads(&text, &args.source).into_iter().unzip();
    let total = payloads.len() as u64;
    let mut client =
        ServiceClient::new(args.connect.channel().await?).max_encoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    let batch = args.batch.max(1);
    let source = args.source.clone();
    tokio::spawn(async move {
        let mut seq = 0u64;
        for chunk in payloads.chunks(batch) {
            let events = chunk
                .iter()
                .map(|p| {
                    seq += 1;
                    Event {
                        source: source.clone(),
                        payload: p.clone(),
                        time: None,
                        hostname: String::new(),
                        seq,
                    }
                })
                .collect();
            if tx.send(Request { events }).await.is_err() {
                break;
            }
        }
    });
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut stream = client.send(ReceiverStream::new(rx)).await?.into_inner();
    let (mut acked, mut matched, mut rejected, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let mut last_seq = 0;
    while let Some(ack) = stream.message().await? {
        for r in &ack.rejected {
            let place = usize::try_from(r.seq)
                .ok()
                .and_then(|n| places.get(n.checked_sub(1)?))
                .map_or_else(|| format!("event {}", r.seq), String::clone);
            bar.suspend(|| eprintln!("{}: {place} rejected: {}", args.file.display(), r.reason));
        }
        rejected += ack.rejected.len() as u64;
        matched += ack.matched;
        dropped += ack.dropped;
        last_seq = last_seq.max(ack.accepted_up_to);
        acked = last_seq.max(acked);
        bar.set_position(acked + dropped);
        if acked + dropped >= total {
            break;
        }
    }
    bar.finish_and_clear();
    let accepted = acked.saturating_sub(rejected);
    println!(
        "{total} {}: {accepted} accepted, {rejected} rejected, {dropped} dropped, {matched} matched a rule",
        if total == 1 { "event" } else { "events" }
    );
    // 0: every event accepted; 1: some were rejected or dropped (each named above).
    Ok(if rejected > 0 || dropped > 0 { 1 } else { 0 })
}
