//! The soak's backups: taken over gRPC while the load runs (and cut short by the kill), then
//! restored and opened like a real data directory and checked against what was acknowledged
//! before each was asked for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::Channel;

use super::Acked;
use crate::proto::store::{service_client::ServiceClient as StoreClient, BackupRequest};
use crate::store::{Store, StoreOptions};

/// The most a log's stored bytes may exceed its byte budget by: the newest block stays on disk
/// whatever the budget (see `store::ring`), and a block is at most one 32 KiB page.
const NEWEST_BLOCK_SLACK: u64 = 32 << 10;

/// A backup the server completed during a round, and what had been acknowledged when it was
/// asked for.
pub(super) struct Taken {
    pub file: PathBuf,
    /// How many of the round's acknowledged alerts came before the request.
    pub alerts_before: usize,
    /// The highest outputs seq any reply or stream had shown before the request.
    pub head_before: u64,
    /// The last config revision acknowledged before the request.
    pub revision_before: u64,
    /// What the server said the backup holds.
    pub summary: crate::proto::store::BackupSummary,
}

/// The retention the soak's server runs with, which every backup must respect too.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub capacity: u64,
    pub max_bytes: u64,
}

/// Takes a backup at once and then every `every` until aborted (by the kill); each completed one is written to
/// `dir` and recorded in `acked`.
pub(super) async fn take(
    channel: Channel,
    acked: Arc<Mutex<Acked>>,
    dir: PathBuf,
    every: Duration,
) -> anyhow::Result<()> {
    let mut client = StoreClient::new(channel).max_decoding_message_size(8 << 20);
    for i in 0u64.. {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let (alerts_before, head_before, revision_before) = {
            let a = acked.lock().unwrap_or_else(PoisonError::into_inner);
            (
                a.alerts.len(),
                a.seen_head,
                a.config.as_ref().map_or(0, |c| c.0),
            )
        };
        let mut stream = client.backup(BackupRequest {}).await?.into_inner();
        let mut bytes = Vec::new();
        let mut summary = None;
        while let Some(message) = stream.message().await? {
            bytes.extend_from_slice(&message.chunk);
            summary = summary.or(message.summary);
        }
        let mut a = acked.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(summary) = summary else {
            a.incomplete_backups += 1;
            continue;
        };
        let file = dir.join(format!("backup-{i}.redb"));
        std::fs::write(&file, &bytes)?;
        a.backups.push(Taken {
            file,
            alerts_before,
            head_before,
            revision_before,
            summary,
        });
    }
    Ok(())
}

/// Restores `taken` into a scratch directory under `scratch`, opens it as a store and checks it;
/// returns the violations found. Removes the backup and the restored directory afterwards.
pub(super) fn verify(
    taken: &Taken,
    alerts: &[(u64, String)],
    limits: Limits,
    scratch: &Path,
) -> anyhow::Result<Vec<String>> {
    let restored = scratch.join("restored");
    let _ = std::fs::remove_dir_all(&restored);
    let checked = check(taken, alerts, limits, &restored);
    let _ = std::fs::remove_dir_all(&restored);
    let _ = std::fs::remove_file(&taken.file);
    checked
}

fn check(
    taken: &Taken,
    alerts: &[(u64, String)],
    limits: Limits,
    restored: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    let name = taken.file.display();
    let summary = crate::store::restore(&taken.file, restored)?;
    let (said_oldest, said_newest) = (taken.summary.outputs_oldest, taken.summary.outputs_newest);
    if (summary.outputs.oldest, summary.outputs.newest) != (said_oldest, said_newest) {
        violations.push(format!(
            "{name}: the server said it holds outputs {said_oldest}..{said_newest}, restore found {:?}",
            summary.outputs
        ));
    }
    if summary.revision < taken.revision_before {
        violations.push(format!(
            "{name}: revision {} is older than {} acknowledged before the backup was asked for",
            summary.revision, taken.revision_before
        ));
    }
    // Open it as `serve` would, with limits that trim nothing, to see exactly what it holds.
    let store = Store::open(
        restored,
        &StoreOptions {
            outputs_capacity: u64::MAX >> 2,
            outputs_max_bytes: u64::MAX >> 2,
            ..StoreOptions::default()
        },
    )?;
    let log = store.outputs();
    let bounds = log.bounds();
    if bounds.newest < taken.head_before {
        violations.push(format!(
            "{name}: ends at seq {}, but seq {} was acknowledged before the backup was asked for",
            bounds.newest, taken.head_before
        ));
    }
    if bounds.len() > limits.capacity {
        violations.push(format!(
            "{name}: holds {} alerts, over the capacity {}",
            bounds.len(),
            limits.capacity
        ));
    }
    if log.retained_bytes() > limits.max_bytes + NEWEST_BLOCK_SLACK {
        violations.push(format!(
            "{name}: holds {} stored bytes of alerts, over the budget {} (+ one block)",
            log.retained_bytes(),
            limits.max_bytes
        ));
    }
    let records = log.read(bounds.oldest.saturating_sub(1), bounds.newest, usize::MAX)?;
    let mut found = std::collections::HashMap::new();
    for (i, (seq, event)) in records.iter().enumerate() {
        if *seq != bounds.oldest + i as u64 {
            violations.push(format!(
                "{name}: not contiguous, seq {seq} where {} was due",
                bounds.oldest + i as u64
            ));
            break;
        }
        let marker = event
            .output_fields
            .iter()
            .find(|(k, _)| k == "proc.name")
            .map(|(_, v)| v.as_str());
        found.insert(*seq, marker.unwrap_or_default());
    }
    if records.len() as u64 != bounds.len() {
        violations.push(format!(
            "{name}: {} records readable of {} retained",
            records.len(),
            bounds.len()
        ));
    }
    for (seq, marker) in alerts.iter().take(taken.alerts_before) {
        if *seq < bounds.oldest {
            continue; // trimmed by retention before the backup's point
        }
        match found.get(seq) {
            Some(m) if m == marker => {}
            Some(m) => violations.push(format!(
                "{name}: seq {seq} holds {m}, acknowledged as {marker}"
            )),
            None => violations.push(format!(
                "{name}: acknowledged alert {marker} (seq {seq}) is missing"
            )),
        }
    }
    Ok(violations)
}

/// Temporary backup copies the server left in its data directory (it removes them when a backup
/// ends, and at start for a server killed during one).
pub(super) fn leftovers(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup-") && n.ends_with(".partial"))
        .collect()
}
