//! The soak's checks against the restarted server: what the last round was told must be there,
//! except what retention trimmed, and retention must hold.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::backups::Limits;
use super::{Acked, CONSUMER_DELAY};
use crate::proto::configs::{self, service_client::ServiceClient as ConfigsClient};
use crate::proto::drops::{self, service_client::ServiceClient as DropsClient};
use crate::proto::outputs::{self, service_client::ServiceClient as OutputsClient};

/// What the server held at the last check.
#[derive(Clone, Copy, Default)]
pub(super) struct Seen {
    pub oldest: u64,
    pub head: u64,
    pub consumer: u64,
    pub revision: u64,
}

#[derive(Default)]
pub(super) struct Report {
    /// Alerts, config changes and consumer positions checked.
    pub kinds: [u64; 3],
    /// Acknowledged alerts retention had trimmed by the check.
    pub trimmed: u64,
    pub violations: Vec<String>,
    pub seen: Seen,
}

/// The whole retained outputs log, oldest first: (seq, marker). A `get` after seq 0 that accepts
/// a trimmed start (`from_oldest`) replays everything retained.
async fn retained_outputs(channel: &Channel) -> anyhow::Result<Vec<(u64, String)>> {
    let mut client = OutputsClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut stream = client
        .get(outputs::Request {
            after_seq: Some(0),
            from_oldest: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        if m.seq == 0 {
            continue; // the notice of what retention trimmed
        }
        let marker = m.output_fields.get("proc.name").cloned();
        out.push((m.seq, marker.unwrap_or_default()));
    }
    Ok(out)
}

/// Checks what the last round was told against the restarted server, whose outputs log is
/// bounded by `limits` (so older acknowledged alerts may have been trimmed, oldest first).
pub(super) async fn verify(
    channel: &Channel,
    acked: &Acked,
    last: Seen,
    limits: Limits,
) -> anyhow::Result<Report> {
    let mut r = Report::default();
    let retained = retained_outputs(channel).await?;
    let (oldest, head) = match (retained.first(), retained.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ => (last.head + 1, last.head),
    };
    for (i, (seq, _)) in retained.iter().enumerate() {
        if *seq != oldest + i as u64 {
            r.violations.push(format!(
                "outputs log not contiguous: seq {seq} where {} was due",
                oldest + i as u64
            ));
            break;
        }
    }
    if oldest < last.oldest {
        r.violations.push(format!(
            "the oldest retained seq went back from {} to {oldest}",
            last.oldest
        ));
    }
    if head < acked.seen_head.max(last.head) {
        r.violations.push(format!(
            "outputs head went back from {} to {head}",
            acked.seen_head.max(last.head)
        ));
    }
    if retained.len() as u64 > limits.capacity {
        r.violations.push(format!(
            "{} alerts retained, over the capacity {}",
            retained.len(),
            limits.capacity
        ));
    }
    let log: HashMap<u64, &str> = retained.iter().map(|(s, m)| (*s, m.as_str())).collect();
    for (seq, marker) in &acked.alerts {
        if *seq < oldest {
            r.trimmed += 1;
            continue;
        }
        r.kinds[0] += 1;
        match log.get(seq) {
            Some(found) if found == marker => {}
            Some(found) => r
                .violations
                .push(format!("seq {seq} holds {found}, acknowledged as {marker}")),
            None => r.violations.push(format!(
                "acknowledged alert {marker} (seq {seq}) is missing"
            )),
        }
    }
    check_drops(channel, &mut r).await?;
    let revision = check_config(channel, acked, last.revision, &mut r).await?;
    let consumer = check_consumer(channel, acked, last.consumer, head, &mut r).await?;
    r.seen = Seen {
        oldest,
        head,
        consumer,
        revision,
    };
    Ok(r)
}

/// The drops log: contiguous from its oldest retained record.
async fn check_drops(channel: &Channel, r: &mut Report) -> anyhow::Result<()> {
    let mut client = DropsClient::new(channel.clone());
    let mut stream = client
        .get(drops::Request {
            after_seq: Some(0),
            from_oldest: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut next = None;
    while let Some(d) = stream.message().await? {
        if d.seq == 0 {
            continue;
        }
        if next.is_some_and(|n| d.seq != n) {
            r.violations.push(format!(
                "drops log not contiguous: seq {} where {} was due",
                d.seq,
                next.unwrap_or_default()
            ));
        }
        next = Some(d.seq + 1);
    }
    Ok(())
}

/// The last acknowledged config change is there, and revisions never went back. Returns the
/// current revision.
async fn check_config(
    channel: &Channel,
    acked: &Acked,
    last_revision: u64,
    r: &mut Report,
) -> anyhow::Result<u64> {
    let mut client = ConfigsClient::new(channel.clone());
    let got = client
        .get(configs::GetRequest {
            keys: vec!["hostname".into()],
            revision: 0,
        })
        .await?
        .into_inner();
    if got.revision < last_revision {
        r.violations.push(format!(
            "revision went back from {last_revision} to {}",
            got.revision
        ));
    }
    if let Some((acked_rev, value)) = &acked.config {
        r.kinds[1] += 1;
        match got.entries.first() {
            Some(e) if e.revision > *acked_rev => {}
            Some(e) if e.revision == *acked_rev && &e.value == value => {}
            other => r.violations.push(format!(
                "acknowledged config change {value} (revision {acked_rev}) is missing: {other:?}"
            )),
        }
    }
    Ok(got.revision)
}

/// The consumer: never behind what it acknowledged more than the batching delay before the
/// kill (retention may move it forward). Returns its position.
async fn check_consumer(
    channel: &Channel,
    acked: &Acked,
    last_consumer: u64,
    head: u64,
    r: &mut Report,
) -> anyhow::Result<u64> {
    let position = consumer_position(channel, head).await?;
    let killed_at = acked.killed_at.unwrap_or_else(Instant::now);
    let durable = acked
        .consumer
        .iter()
        .filter(|(at, _)| killed_at.duration_since(*at) > CONSUMER_DELAY)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0);
    if !acked.consumer.is_empty() {
        r.kinds[2] += 1;
    }
    let floor = durable.max(last_consumer.min(head));
    if position < floor {
        r.violations.push(format!(
            "consumer position {position} is behind {floor} (acknowledged more than \
             {CONSUMER_DELAY:?} before the kill, or stored before)"
        ));
    }
    Ok(position)
}

/// The consumer's stored position: a `sub` that names it, without acknowledging anything,
/// resumes right after it (or reports what retention trimmed from under it).
async fn consumer_position(channel: &Channel, head: u64) -> anyhow::Result<u64> {
    let first = outputs::Request {
        consumer: "soak".into(),
        from_oldest: true,
        ..Default::default()
    };
    let (_tx, mut stream) = crate::bench::subscribe(channel, first).await?;
    match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
        Ok(Ok(Some(m))) if m.seq > 0 => Ok(m.seq - 1),
        Ok(Ok(Some(m))) => Ok(m
            .output_fields
            .get("next_seq")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1)
            - 1),
        // Nothing after it: it is at the head.
        _ => Ok(head),
    }
}
