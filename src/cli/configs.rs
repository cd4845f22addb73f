//! `falco-api config …`: the client of the configs service (get, set, unset, history, rollback).

use anyhow::Context;
use clap::Subcommand;

use super::rules::print_header;
use super::ConnectArgs;
use crate::proto::configs::{self as cpb, service_client::ServiceClient as ConfigsClient};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Effective values with their origin (default, boot, api) and what each accepts, now or
    /// as of a revision.
    Get {
        /// Keys to show (default: all).
        keys: Vec<String>,
        /// As of this revision (0: now).
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// Set keys atomically: key=value ...
    Set {
        /// key=value pairs.
        #[arg(required = true)]
        values: Vec<String>,
        /// Compare-and-swap: the current revision.
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// Return keys to their boot or default values.
    Unset {
        /// Keys to return.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Compare-and-swap: the current revision.
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// History, newest first, with each change's old and new value.
    History {
        /// Only changes of this key.
        key: Option<String>,
        /// Changes at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Changes before this revision (the next page; 0: the newest).
        #[arg(long, default_value_t = 0)]
        before: u64,
    },
    /// Restore every key as of a revision.
    Rollback {
        /// The revision to restore (see `config history`); recorded as a new revision.
        revision: u64,
        /// Compare-and-swap: the current revision.
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
}

type Configs = ConfigsClient<tonic::transport::Channel>;

pub async fn config(connect: ConnectArgs, command: ConfigCommand) -> anyhow::Result<i32> {
    let mut c = ConfigsClient::new(connect.channel().await?);
    let changed = match command {
        ConfigCommand::Get { keys, revision } => return config_get(&mut c, keys, revision).await,
        ConfigCommand::Set {
            values,
            expect,
            comment,
        } => {
            let values = key_values(&values)?;
            let req = cpb::SetRequest {
                values,
                expected_revision: expect,
                comment,
            };
            c.set(req).await?.into_inner()
        }
        ConfigCommand::Unset {
            keys,
            expect: expected_revision,
            comment,
        } => {
            let req = cpb::UnsetRequest {
                keys,
                expected_revision,
                comment,
            };
            c.unset(req).await?.into_inner()
        }
        ConfigCommand::History { key, limit, before } => {
            let req = cpb::HistoryRequest {
                key: key.unwrap_or_default(),
                before,
                limit,
            };
            return config_history(&mut c, req).await;
        }
        ConfigCommand::Rollback {
            revision,
            expect,
            comment,
        } => return rollback(&mut c, revision, expect, comment).await,
    };
    warn_all(&changed.warnings);
    println!("revision {}", changed.revision);
    Ok(0)
}

async fn rollback(
    c: &mut Configs,
    revision: u64,
    expected_revision: Option<u64>,
    comment: String,
) -> anyhow::Result<i32> {
    let req = cpb::RollbackRequest {
        revision,
        expected_revision,
        comment,
    };
    let r = c.rollback(req).await?.into_inner();
    warn_all(&r.warnings);
    println!(
        "rolled back to revision {revision}: now revision {}",
        r.revision
    );
    Ok(0)
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// `key=value` arguments as a map.
fn key_values(values: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    values
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("'{kv}' is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

async fn config_get(c: &mut Configs, keys: Vec<String>, revision: u64) -> anyhow::Result<i32> {
    let r = c
        .get(cpb::GetRequest { keys, revision })
        .await?
        .into_inner();
    println!("revision {}", r.revision);
    let width = r
        .entries
        .iter()
        .map(|e| e.key.len())
        .max()
        .unwrap_or(0)
        .max(30);
    for e in r.entries {
        let rev = if e.revision > 0 {
            format!(", rev {}", e.revision)
        } else {
            String::new()
        };
        println!(
            "{:<width$} {:<20} {:<18} {}",
            e.key,
            e.value,
            format!("({}{rev})", e.origin),
            e.accepts
        );
    }
    Ok(0)
}

async fn config_history(c: &mut Configs, req: cpb::HistoryRequest) -> anyhow::Result<i32> {
    let h = c.history(req).await?.into_inner();
    for e in h.entries {
        print_header(e.revision, &e.time, &e.action, &e.author, &e.comment);
        let before = cpb::GetRequest {
            keys: e.changes.iter().map(|ch| ch.key.clone()).collect(),
            revision: e.revision - 1,
        };
        let old = c
            .get(before)
            .await
            .map(|r| r.into_inner().entries)
            .unwrap_or_default();
        for ch in e.changes {
            let before = old
                .iter()
                .find(|o| o.key == ch.key)
                .map_or("?".to_string(), |o| o.value.clone());
            let after = ch.value.unwrap_or_else(|| "(unset)".into());
            println!("  {}: {before} -> {after}", ch.key);
        }
    }
    if h.next_before > 0 {
        println!("(more: --before {})", h.next_before);
    }
    Ok(0)
}
