//! `falco-api backup FILE` (online, from the running server) and `falco-api restore FILE
//! --data-dir DIR` (offline: makes a new data directory from a backup).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Args;

use super::ConnectArgs;
use crate::proto::store::{service_client::ServiceClient, BackupRequest, BackupSummary};

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Where to write the backup (a new file; mode 0600).
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file `falco-api backup` wrote.
    pub file: PathBuf,
    /// The data directory to make (it must not exist, or be empty); then `serve --data-dir DIR`.
    #[arg(long)]
    pub data_dir: PathBuf,
}

fn print_summary(s: &BackupSummary) {
    let bounds = |oldest, newest| crate::store::Bounds { oldest, newest };
    let summary = crate::store::BackupSummary {
        schema_version: s.schema_version,
        outputs: bounds(s.outputs_oldest, s.outputs_newest),
        drops: bounds(s.drops_oldest, s.drops_newest),
        revision: s.revision,
        consumers: s.consumers,
        bytes: s.bytes,
    };
    println!("{summary}");
}

/// Streams the server's backup into `FILE.partial`, syncs it and renames it into place, so a
/// backup cut short never looks complete.
pub async fn backup(args: BackupArgs) -> anyhow::Result<i32> {
    if args.file.exists() {
        anyhow::bail!("{} exists: give backup a new file", args.file.display());
    }
    let partial = args.file.with_extension("partial");
    let mut client = ServiceClient::new(args.connect.channel().await?);
    let mut stream = client.backup(BackupRequest {}).await?.into_inner();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", partial.display()))?;
    let received = async {
        let mut summary = None;
        while let Some(message) = stream.message().await? {
            out.write_all(&message.chunk)?;
            if message.summary.is_some() {
                summary = message.summary;
            }
        }
        let summary = summary.ok_or_else(|| anyhow::anyhow!("the backup stream ended early"))?;
        out.sync_all()?;
        std::fs::rename(&partial, &args.file)?;
        let dir = match args.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
        anyhow::Ok(summary)
    }
    .await;
    match received {
        Ok(summary) => {
            println!("backup written to {}", args.file.display());
            print_summary(&summary);
            Ok(0)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let s = crate::store::restore(&args.file, &args.data_dir)?;
    println!(
        "restored {} into {} (start it with: falco-api serve --data-dir {})",
        args.file.display(),
        args.data_dir.display(),
        args.data_dir.display()
    );
    println!("{s}");
    Ok(0)
}
