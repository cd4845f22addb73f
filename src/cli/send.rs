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
    /// The events' source: k8s_audit, syscall, or a custom source name.
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

/// Splits a file into event payloads: a whole-file JSON array or EventList, else JSON lines.
pub fn payloads(text: &str) -> Vec<Vec<u8>> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
        match value {
            serde_json::Value::Array(items) => {
                return items
                    .into_iter()
                    .map(|i| i.to_string().into_bytes())
                    .collect()
            }
            other => return vec![other.to_string().into_bytes()],
        }
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

pub async fn send(args: SendArgs) -> anyhow::Result<i32> {
    if args.alerts {
        let opts = super::falco::AlertsOptions {
            file: args.file.clone(),
            follow: args.follow,
            name: args.name.clone(),
            batch: args.batch,
            quiet: args.quiet,
        };
        return super::falco::send_alerts(&args.connect, opts).await;
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let payloads = payloads(&text);
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
            bar.suspend(|| eprintln!("event {} rejected: {}", r.seq, r.reason));
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
    println!("{total} events: {accepted} accepted, {rejected} rejected, {dropped} dropped, {matched} matched a rule");
    Ok(if rejected > 0 || dropped > 0 { 1 } else { 0 })
}
