//! Rules for the fleet through a JetStream key-value bucket.
//!
//! The publisher (`fleet.rules: publish`) mirrors its rules after every committed change: key
//! `files.<hex name>` per file (deleted with the file), `toggles`, then `head` (the revision
//! published, written last). A follower (`fleet.rules: follow`) watches the bucket; at each
//! `head` it applies the whole published state through its own validated commit path (author
//! `fleet:<publisher>`) — a set its engine cannot load is refused and its rules stay — and
//! writes `status.<hex hostname>`: the revision applied and any error. Local rules writes on a
//! follower are refused (FAILED_PRECONDITION naming the publisher).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use crate::config::FleetConfig;
use crate::services::control::Change;
use crate::services::control::Committed;
use crate::services::nodes::FleetNode as NodeStatus;
use crate::services::App;

const FILES: &str = "files.";
const TOGGLES: &str = "toggles";
const HEAD: &str = "head";
const STATUS: &str = "status.";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct FileValue {
    name: String,
    content: String,
    /// The publisher's revision that last changed the file, its author and comment.
    revision: u64,
    #[serde(default)]
    author: String,
    #[serde(default)]
    comment: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct TogglesValue {
    toggles: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Head {
    revision: u64,
    publisher: String,
    author: String,
    comment: String,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The bucket, created if missing.
async fn bucket(app: &App, js: &jetstream::Context, cfg: &FleetConfig) -> Option<kv::Store> {
    loop {
        if let Ok(store) = js.get_key_value(&cfg.rules_bucket).await {
            return Some(store);
        }
        // The bucket's stream, made as JetStream's key-value convention has it (ADR-8). Made
        // here rather than with create_key_value, whose account query nats-server 2.9 (Debian's)
        // answers in a shape this client does not read.
        let stream = jetstream::stream::Config {
            name: format!("KV_{}", cfg.rules_bucket),
            subjects: vec![format!("$KV.{}.>", cfg.rules_bucket)],
            max_messages_per_subject: 16,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: cfg.replicas,
            storage: jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        if let Err(e) = js.get_or_create_stream(stream).await {
            tracing::warn!(error = %e, bucket = %cfg.rules_bucket, "cannot open the fleet rules bucket yet; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = app.shutdown.cancelled() => return None,
        }
    }
}

/// Publishes every committed rules change, and keeps the followers' reports.
pub async fn publish(app: App, js: jetstream::Context, cfg: FleetConfig) {
    let Some(store) = bucket(&app, &js, &cfg).await else {
        return;
    };
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    app.hooks.add(Box::new(move |what| {
        if let Committed::Rules(r) = what {
            tx.send_replace(r);
        }
        Vec::new()
    }));
    // Followers' reports, until the publisher stops.
    let reports = tokio::spawn(watch_reports(store.clone(), app.clone()));
    let publisher = app.current_hostname();
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = app.shutdown.cancelled() => break,
            }
        }
        first = false;
        // Until NATS takes it, try again every second.
        while let Err(e) = publish_once(&app, &store, &publisher).await {
            tracing::warn!(error = %e, "cannot publish the rules to the fleet yet; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = app.shutdown.cancelled() => { reports.abort(); return; }
            }
        }
    }
    reports.abort();
}

/// Reads the followers' status reports into `Nodes`, watching the bucket again a second after
/// a watch ends, until shutdown.
async fn watch_reports(store: kv::Store, app: App) {
    let shutdown = app.shutdown.clone();
    loop {
        if let Ok(mut watch) = store.watch_with_history(format!("{STATUS}>")).await {
            loop {
                let entry = tokio::select! {
                    e = watch.next() => e,
                    _ = shutdown.cancelled() => return,
                };
                let Some(Ok(entry)) = entry else { break };
                if let Ok(s) = serde_json::from_slice::<NodeStatus>(&entry.value) {
                    app.nodes.fleet.report(s);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn publish_once(app: &App, store: &kv::Store, publisher: &str) -> Result<(), String> {
    let a = app.clone();
    let (files, toggles, revision) = tokio::task::spawn_blocking(move || a.rules.snapshot())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // What the bucket holds now (after a restart, or if another writer changed it).
    let mut published: BTreeMap<String, FileValue> = BTreeMap::new();
    {
        if let Ok(mut keys) = store.keys().await {
            while let Some(Ok(key)) = keys.next().await {
                if key.starts_with(FILES) {
                    if let Ok(Some(v)) = store.get(&key).await {
                        if let Ok(f) = serde_json::from_slice::<FileValue>(&v) {
                            published.insert(key, f);
                        }
                    }
                }
            }
        }
    }
    let mut wanted: BTreeMap<String, FileValue> = BTreeMap::new();
    for (name, (content, rev)) in files {
        let record = app.rules.record(rev).ok().flatten();
        wanted.insert(
            format!("{FILES}{}", hex::encode(&name)),
            FileValue {
                name,
                content,
                revision: rev,
                author: record
                    .as_ref()
                    .map(|r| r.author.clone())
                    .unwrap_or_default(),
                comment: record.map(|r| r.comment).unwrap_or_default(),
            },
        );
    }
    for (key, value) in &wanted {
        if published.get(key) != Some(value) {
            let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            store
                .put(key, bytes.into())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for key in published.keys() {
        if !wanted.contains_key(key) {
            store.delete(key).await.map_err(|e| e.to_string())?;
        }
    }
    let toggles = serde_json::to_vec(&TogglesValue { toggles }).map_err(|e| e.to_string())?;
    store
        .put(TOGGLES, toggles.into())
        .await
        .map_err(|e| e.to_string())?;
    let record = app.rules.record(revision).ok().flatten();
    let head = Head {
        revision,
        publisher: publisher.to_string(),
        author: record
            .as_ref()
            .map(|r| r.author.clone())
            .unwrap_or_default(),
        comment: record.map(|r| r.comment).unwrap_or_default(),
    };
    store
        .put(
            HEAD,
            serde_json::to_vec(&head).map_err(|e| e.to_string())?.into(),
        )
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.fleet.set_published(revision);
    Ok(())
}

/// Follows the published rules: applies each published state and reports.
pub async fn follow(app: App, js: jetstream::Context, cfg: FleetConfig) {
    app.rules
        .set_publisher(Some(format!("the fleet bucket {}", cfg.rules_bucket)));
    let Some(store) = bucket(&app, &js, &cfg).await else {
        return;
    };
    let hostname = app.current_hostname();
    let mut status = NodeStatus {
        hostname: hostname.clone(),
        ..Default::default()
    };
    loop {
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the fleet rules bucket; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = app.shutdown.cancelled() => return,
                }
            }
        };
        let mut files: BTreeMap<String, FileValue> = BTreeMap::new();
        let mut toggles = BTreeMap::new();
        loop {
            let entry = tokio::select! {
                e = watch.next() => e,
                _ = app.shutdown.cancelled() => return,
            };
            let Some(Ok(entry)) = entry else { break };
            let deleted = !matches!(entry.operation, kv::Operation::Put);
            if entry.key.starts_with(FILES) {
                if deleted {
                    files.remove(&entry.key);
                } else if let Ok(f) = serde_json::from_slice::<FileValue>(&entry.value) {
                    files.insert(entry.key.clone(), f);
                }
            } else if entry.key == TOGGLES && !deleted {
                if let Ok(t) = serde_json::from_slice::<TogglesValue>(&entry.value) {
                    toggles = t.toggles;
                }
            } else if entry.key == HEAD && !deleted {
                let Ok(head) = serde_json::from_slice::<Head>(&entry.value) else {
                    continue;
                };
                app.rules.set_publisher(Some(head.publisher.clone()));
                status.seen_revision = head.revision;
                let wanted: BTreeMap<String, String> = files
                    .values()
                    .map(|f| (f.name.clone(), f.content.clone()))
                    .collect();
                let (a, t) = (app.clone(), toggles.clone());
                let author = format!("fleet:{}", head.publisher);
                let comment = format!(
                    "fleet revision {} by {}{}",
                    head.revision,
                    head.author,
                    if head.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", head.comment)
                    }
                );
                let applied = tokio::task::spawn_blocking(move || {
                    a.rules
                        .replace_all(&wanted, &t, Change::by(&author, &comment))
                })
                .await;
                match applied {
                    Ok(Ok(done)) => {
                        status.applied_revision = head.revision;
                        status.error.clear();
                        if let Some((local, _)) = done {
                            status.local_revision = local;
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(revision = head.revision, error = %e, "the fleet's rules do not load here; keeping the current rules");
                        status.error = e.to_string();
                    }
                    Err(e) => status.error = e.to_string(),
                }
                status.time = now();
                if let Ok(bytes) = serde_json::to_vec(&status) {
                    let key = format!("{STATUS}{}", hex::encode(&hostname));
                    if let Err(e) = store.put(&key, bytes.into()).await {
                        tracing::warn!(error = %e, "cannot report to the fleet rules bucket");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = app.shutdown.cancelled() => return,
        }
    }
}
