//! `falco-api tail`: follow (or drain) the outputs log, optionally as a durable consumer.

use clap::Args;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ConnectArgs;
use crate::base::event::Priority;
use crate::proto::outputs::{service_client::ServiceClient, Request, Response};

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Start after this seq (exclusive); 0 replays everything retained.
    #[arg(long, conflicts_with = "since")]
    pub after: Option<u64>,
    /// Start at the first record stored at or after this time: RFC 3339
    /// (2026-12-01T02:00:00Z) or a duration ago (90m, 2h, 7d).
    #[arg(long, value_parser = instant)]
    pub since: Option<prost_types::Timestamp>,
    /// End after the last record stored at or before this time (same forms as --since); the
    /// stream then ends, also without --once.
    #[arg(long, value_parser = instant)]
    pub until: Option<prost_types::Timestamp>,
    /// Durable consumer name: resume where it left off and acknowledge what is printed.
    #[arg(long)]
    pub consumer: Option<String>,
    /// If the start position was trimmed, start at the oldest retained event instead of failing.
    #[arg(long)]
    pub from_oldest: bool,
    /// Print what is retained now and exit instead of following.
    #[arg(long)]
    pub once: bool,
    /// Print each event as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only events with one of these tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only events of these rules (repeatable).
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    /// Only events at least this severe (emergency … debug).
    #[arg(long)]
    pub min_priority: Option<Priority>,
    /// Only events of these sources (repeatable).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Only events from these hosts (repeatable; a fleet collector holds many).
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
    /// Show the server's vital signs (logs, rates, queue, commits, rules, consumers, Falco
    /// nodes) instead of alerts, refreshed every second (`--once`: print them once).
    #[arg(long)]
    pub stats: bool,
}

pub async fn tail(args: TailArgs) -> anyhow::Result<i32> {
    if args.stats {
        return super::stats::run(&args.connect, args.once).await;
    }
    let mut client = ServiceClient::new(args.connect.channel().await?);
    let request = Request {
        start_time: args.since,
        end_time: args.until,
        after_seq: args.after,
        consumer: args.consumer.clone().unwrap_or_default(),
        ack: 0,
        from_oldest: args.from_oldest,
        tags: args.tags.clone(),
        rules: args.rules.clone(),
        min_priority: args.min_priority.map(|p| p as i32),
        sources: args.sources.clone(),
        hostnames: args.hostnames.clone(),
    };
    if args.once {
        let mut stream = client.get(request).await?.into_inner();
        let mut printed = 0u64;
        while let Some(response) = stream.message().await? {
            print_response(&response, args.json);
            printed += 1;
        }
        if printed == 0 {
            eprintln!("{}", nothing_new("alerts", &args));
        }
        return Ok(0);
    }
    let (tx, rx) = mpsc::channel(16);
    tx.send(request).await?;
    let mut stream = client.sub(ReceiverStream::new(rx)).await?.into_inner();
    while let Some(response) = stream.message().await.map_err(went_away)? {
        print_response(&response, args.json);
        if args.consumer.is_some() && response.seq > 0 {
            let ack = Request {
                ack: response.seq,
                ..Default::default()
            };
            if tx.send(ack).await.is_err() {
                break;
            }
        }
    }
    Ok(ended(&args))
}

/// `--since` / `--until`: a time, or a duration before now.
fn instant(text: &str) -> Result<prost_types::Timestamp, String> {
    let now = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    let ns = crate::base::duration::parse_instant(text, now)?;
    Ok(crate::proto::convert::timestamp(
        i64::try_from(ns).unwrap_or(i64::MAX),
    ))
}

/// Why `--once` printed nothing, for a person who expected something.
fn nothing_new(what: &str, args: &TailArgs) -> String {
    if args.since.is_some() || args.until.is_some() {
        return format!("no {what} stored in that time range");
    }
    match (&args.consumer, args.after) {
        (Some(c), _) => format!(
            "no {what}: consumer '{c}' has already seen every retained one (--after 0 prints them all)"
        ),
        (None, Some(n)) => format!("no {what} retained after seq {n}"),
        (None, None) => format!(
            "no new {what}: without --after or --consumer, --once drains the shared consumer \
             'default', which has seen every retained one (--after 0 prints them all)"
        ),
    }
}

/// A live stream ended: at `--until`, or because the server stopped. The exit status.
fn ended(args: &TailArgs) -> i32 {
    if args.until.is_some() {
        0
    } else {
        shut_down()
    }
}

/// A live stream ended: only a server that stops ends one. Says so; the exit status.
fn shut_down() -> i32 {
    eprintln!("the server shut down: the stream ended (run the command again once it is back)");
    3
}

/// A live stream that broke: the server went away.
fn went_away(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the server went away ({}): run the command again once it is back",
        status.message()
    )
}

/// `falco-api drops`: the drops log, with tail's position flags (filters other than --source do
/// not apply).
pub async fn drops(args: TailArgs) -> anyhow::Result<i32> {
    use crate::proto::drops::{
        service_client::ServiceClient as DropsClient, Request as DropsRequest, Response as Drop,
    };
    let mut client = DropsClient::new(args.connect.channel().await?);
    let request = DropsRequest {
        start_time: args.since,
        end_time: args.until,
        after_seq: args.after,
        consumer: args.consumer.clone().unwrap_or_default(),
        ack: 0,
        from_oldest: args.from_oldest,
        stages: Vec::new(),
        sources: args.sources.clone(),
    };
    let print = |d: &Drop| print_drop(d, args.json);
    if args.once {
        let mut stream = client.get(request).await?.into_inner();
        let mut printed = 0u64;
        while let Some(d) = stream.message().await? {
            print(&d);
            printed += 1;
        }
        if printed == 0 {
            eprintln!("{}", nothing_new("drop records", &args));
        }
        return Ok(0);
    }
    let (tx, rx) = mpsc::channel(16);
    tx.send(request).await?;
    let mut stream = client.sub(ReceiverStream::new(rx)).await?.into_inner();
    while let Some(d) = stream.message().await.map_err(went_away)? {
        print(&d);
        if args.consumer.is_some() && d.seq > 0 {
            let ack = DropsRequest {
                ack: d.seq,
                ..Default::default()
            };
            if tx.send(ack).await.is_err() {
                break;
            }
        }
    }
    Ok(ended(&args))
}

fn print_drop(d: &crate::proto::drops::Response, json: bool) {
    if json {
        let time = d
            .time
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32));
        let value = serde_json::json!({
            "seq": d.seq, "id": d.id, "time": time.map(|t| t.to_rfc3339()), "stage": d.stage,
            "source": d.source, "client": d.client, "n_drops": d.n_drops, "n_evts": d.n_evts,
            "message": d.message, "lost": d.lost,
        });
        println!("{value}");
    } else {
        println!(
            "{} {} {}/{} dropped ({}, client {}): {}",
            d.seq, d.stage, d.n_drops, d.n_evts, d.source, d.client, d.message
        );
    }
}

fn print_response(r: &Response, json: bool) {
    if !json {
        println!("{}", r.output);
        return;
    }
    let time = r
        .time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let priority = Priority::from_number(r.priority).map(|p| p.name());
    let value = serde_json::json!({
        "seq": r.seq,
        "id": r.id,
        "time": time,
        "priority": priority,
        "rule": r.rule,
        "source": r.source,
        "hostname": r.hostname,
        "output": r.output,
        "output_fields": r.output_fields,
        "tags": r.tags,
        "rules_revision": r.rules_revision,
        "lost": r.lost,
        "origin": r.origin,
    });
    println!("{value}");
}
