//! `falco-api rules …`: the client of the rules service, and the history header `config …` shares.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{print_warnings, when, ConnectArgs};
use crate::proto::rules::{self as rpb, service_client::ServiceClient as RulesClient};

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// List the rules files (names, revisions, digests).
    List {
        /// As of this revision (0: now).
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// Print a rules file, now or as of a revision.
    Get {
        /// The file's name (as `rules list` shows it).
        name: String,
        /// As of this revision (0: now).
        #[arg(long, default_value_t = 0)]
        revision: u64,
    },
    /// Create or replace a rules file from a local file (named after it unless --name).
    Put {
        /// The local rules file (YAML).
        file: PathBuf,
        /// Store it under this name instead of the file's own.
        #[arg(long)]
        name: Option<String>,
        /// Compare-and-swap: the file's current revision (0: it must not exist).
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// Delete a rules file.
    Rm {
        /// The file's name.
        name: String,
        /// Compare-and-swap: the file's current revision.
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// History, newest first, with a diff of each file change.
    History {
        /// A file name, rule:<name>, tag:<tag>, or nothing for all.
        target: Option<String>,
        /// Changes at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Changes before this revision (the next page; 0: the newest).
        #[arg(long, default_value_t = 0)]
        before: u64,
        /// Leave out the diffs.
        #[arg(long)]
        no_diff: bool,
        /// Diff lines shown per change at most (0: all); a new file is summed up in one line.
        #[arg(long, default_value_t = 40)]
        diff_lines: usize,
    },
    /// Restore a file (or, with no name, all rules) as of a revision.
    Rollback {
        /// The revision to restore (see `rules history`); recorded as a new revision.
        revision: u64,
        /// Restore only this file (default: every rules file and toggle).
        #[arg(long)]
        name: Option<String>,
        /// Compare-and-swap: the current revision.
        #[arg(long)]
        expect: Option<u64>,
        /// Why: recorded in the history with the change.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// Check local files against the current set without changing anything.
    Validate {
        /// Local rules files, checked together with the stored ones they would replace.
        files: Vec<PathBuf>,
    },
    /// The effective rules: name, source, priority, tags, enabled, file.
    Effective,
    /// Enable rules by name or tag.
    Enable(ToggleArgs),
    /// Disable rules by name or tag.
    Disable(ToggleArgs),
    /// Turn a stored alert into an exception on its rule (previewed; saved unless --dry-run).
    Tune(super::tune::TuneArgs),
}

#[derive(Args, Debug)]
pub struct ToggleArgs {
    /// Rule names.
    pub rules: Vec<String>,
    /// Tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Compare-and-swap: the current revision.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Why: recorded in the history with the change.
    #[arg(long, short = 'm', default_value = "")]
    pub comment: String,
}

type Rules = RulesClient<tonic::transport::Channel>;

pub async fn rules(connect: ConnectArgs, command: RulesCommand) -> anyhow::Result<i32> {
    let mut c = RulesClient::new(connect.channel().await?);
    match command {
        RulesCommand::List { revision } => list_files(&mut c, revision).await?,
        RulesCommand::Get { name, revision } => {
            let f = c.get(rpb::GetRequest { name, revision }).await?;
            print!("{}", f.into_inner().content);
        }
        RulesCommand::Put {
            file,
            name,
            expect,
            comment,
        } => put_file(&mut c, &file, name, expect, comment).await?,
        RulesCommand::Rm {
            name,
            expect,
            comment,
        } => delete(&mut c, name, expect, comment).await?,
        RulesCommand::History {
            target,
            limit,
            before,
            no_diff,
            diff_lines,
        } => {
            let diffs = (!no_diff).then_some(diff_lines);
            history(&mut c, target.unwrap_or_default(), before, limit, diffs).await?
        }
        RulesCommand::Rollback {
            revision,
            name,
            expect,
            comment,
        } => {
            let name = name.unwrap_or_default();
            rollback(&mut c, revision, name, expect, comment).await?
        }
        RulesCommand::Validate { files } => return validate(&mut c, &files).await,
        RulesCommand::Effective => effective(&mut c).await?,
        RulesCommand::Enable(a) | RulesCommand::Disable(a)
            if a.rules.is_empty() && a.tags.is_empty() =>
        {
            anyhow::bail!("name at least one rule or --tag");
        }
        RulesCommand::Enable(a) => return toggle(&mut c, a, true).await,
        RulesCommand::Disable(a) => return toggle(&mut c, a, false).await,
        RulesCommand::Tune(a) => return super::tune::tune(&mut c, a).await,
    }
    Ok(0)
}

async fn delete(
    c: &mut Rules,
    name: String,
    expect: Option<u64>,
    comment: String,
) -> anyhow::Result<()> {
    let req = rpb::DeleteRequest {
        name: name.clone(),
        expected_revision: expect,
        comment,
    };
    let r = c.delete(req).await?.into_inner();
    print_warnings(&r.warnings);
    println!("{name} deleted: revision {}", r.revision);
    Ok(())
}

async fn rollback(
    c: &mut Rules,
    revision: u64,
    name: String,
    expected_revision: Option<u64>,
    comment: String,
) -> anyhow::Result<()> {
    let req = rpb::RollbackRequest {
        revision,
        name,
        expected_revision,
        comment,
    };
    let r = c.rollback(req).await?.into_inner();
    print_warnings(&r.warnings);
    println!(
        "rolled back to revision {revision}: now revision {}",
        r.revision
    );
    Ok(())
}

async fn list_files(c: &mut Rules, revision: u64) -> anyhow::Result<()> {
    let r = c.list(rpb::ListRequest { revision }).await?.into_inner();
    println!("revision {}", r.revision);
    for f in r.files {
        println!(
            "{:<40} rev {:<6} {}",
            f.name,
            f.revision,
            &f.digest[..12.min(f.digest.len())]
        );
    }
    Ok(())
}

/// A file's content and the name it is stored under (its own name unless given).
fn read_named(file: &std::path::Path, name: Option<String>) -> anyhow::Result<(String, String)> {
    let content =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = match name {
        Some(n) => n,
        None => file
            .file_name()
            .context("the file has no name")?
            .to_string_lossy()
            .into_owned(),
    };
    Ok((name, content))
}

async fn put_file(
    c: &mut Rules,
    file: &std::path::Path,
    name: Option<String>,
    expect: Option<u64>,
    comment: String,
) -> anyhow::Result<()> {
    let (name, content) = read_named(file, name)?;
    let req = rpb::PutRequest {
        name: name.clone(),
        content,
        expected_revision: expect,
        comment,
    };
    let r = c.put(req).await.map_err(describe)?.into_inner();
    print_warnings(&r.warnings);
    println!("{name}: revision {}", r.revision);
    Ok(())
}

/// Prints history entries; with `diffs`, each file change's diff, at most that many lines.
async fn history(
    c: &mut Rules,
    target: String,
    before: u64,
    limit: u32,
    diffs: Option<usize>,
) -> anyhow::Result<()> {
    let req = rpb::HistoryRequest {
        target,
        before,
        limit,
    };
    let h = c.history(req).await?.into_inner();
    for e in h.entries {
        print_header(e.revision, &e.time, &e.action, &e.author, &e.comment);
        for ch in &e.changes {
            println!("  {} {}", ch.action, ch.target);
            let file_change =
                (ch.action == "put" || ch.action == "delete") && !ch.target.contains(':');
            if let (Some(max), true) = (diffs, file_change) {
                print_diff(c, &ch.target, e.revision, max).await;
            }
        }
    }
    if h.next_before > 0 {
        println!("(more: --before {})", h.next_before);
    }
    Ok(())
}

/// The change `revision` made to file `name`, as a unified diff of at most `max` lines (0: all);
/// a file created or deleted whole is one line saying so.
async fn print_diff(c: &mut Rules, name: &str, revision: u64, max: usize) {
    let old = file_at(c, name, revision - 1).await;
    let new = file_at(c, name, revision).await;
    let get = format!("falco-api rules get {name} --revision");
    if old.is_empty() || new.is_empty() {
        let (what, text, at) = if old.is_empty() {
            ("new file", &new, revision)
        } else {
            ("deleted file", &old, revision - 1)
        };
        println!("    ({what}, {} lines: {get} {at})", text.lines().count());
        return;
    }
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header(&format!("rev {}", revision - 1), &format!("rev {revision}"))
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let shown = if max == 0 {
        lines.len()
    } else {
        max.min(lines.len())
    };
    for line in &lines[..shown] {
        println!("    {line}");
    }
    if shown < lines.len() {
        println!(
            "    … {} more diff lines (--diff-lines 0 for all, or {get} {revision})",
            lines.len() - shown
        );
    }
}

async fn validate(c: &mut Rules, files: &[std::path::PathBuf]) -> anyhow::Result<i32> {
    let mut req = rpb::ValidateRequest::default();
    for f in files {
        let (name, content) = read_named(f, None)?;
        req.files.push(rpb::RulesFile {
            name,
            content,
            ..Default::default()
        });
    }
    let r = c.validate(req).await?.into_inner();
    print_warnings(&r.warnings);
    for e in &r.errors {
        eprintln!(
            "error: {}:{}:{}: {} {}",
            e.file, e.line, e.column, e.item, e.message
        );
    }
    println!("{}", if r.ok { "valid" } else { "invalid" });
    Ok(if r.ok { 0 } else { 1 })
}

async fn effective(c: &mut Rules) -> anyhow::Result<()> {
    let r = c.effective(rpb::EffectiveRequest {}).await?.into_inner();
    println!("revision {}", r.revision);
    for rule in r.rules {
        let priority =
            crate::base::event::Priority::from_number(rule.priority).map_or("?", |p| p.name());
        let state = match (rule.compiled, rule.enabled) {
            (false, _) => "not run",
            (true, true) => "enabled",
            (true, false) => "disabled",
        };
        println!(
            "{:<8} {:<13} {:<10} {:<50} [{}] {}",
            state,
            priority,
            rule.source,
            rule.name,
            rule.tags.join(","),
            rule.file
        );
    }
    Ok(())
}

async fn toggle(
    c: &mut RulesClient<tonic::transport::Channel>,
    a: ToggleArgs,
    enabled: bool,
) -> anyhow::Result<i32> {
    let req = rpb::ToggleRequest {
        rules: a.rules,
        tags: a.tags,
        enabled,
        expected_revision: a.expect,
        comment: a.comment,
    };
    let r = c.toggle(req).await?.into_inner();
    print_warnings(&r.warnings);
    println!(
        "{}: revision {}",
        if enabled { "enabled" } else { "disabled" },
        r.revision
    );
    Ok(0)
}

async fn file_at(
    c: &mut RulesClient<tonic::transport::Channel>,
    name: &str,
    revision: u64,
) -> String {
    if revision == 0 {
        return String::new();
    }
    c.get(rpb::GetRequest {
        name: name.into(),
        revision,
    })
    .await
    .map(|r| r.into_inner().content)
    .unwrap_or_default()
}

/// The first line of a history entry, the same for rules and config.
pub(super) fn print_header(
    revision: u64,
    time: &Option<prost_types::Timestamp>,
    action: &str,
    author: &str,
    c: &str,
) {
    println!(
        "revision {revision} · {} · {action} by {author}{}",
        when(time),
        comment(c)
    );
}

fn comment(c: &str) -> String {
    if c.is_empty() {
        String::new()
    } else {
        format!(": {c}")
    }
}

/// A refused put: the status message plus the positions from its details.
fn describe(status: tonic::Status) -> anyhow::Error {
    if let Ok(details) = <rpb::ValidateResponse as prost::Message>::decode(status.details()) {
        for w in &details.warnings {
            eprintln!("warning: {}:{}:{}: {}", w.file, w.line, w.column, w.message);
        }
    }
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}
