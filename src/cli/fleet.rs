//! `falco-api fleet status`: the nodes following this server's rules, and any they refused.

use clap::Subcommand;

use crate::cli::ConnectArgs;
use crate::proto::fleet::{service_client::ServiceClient, StatusRequest};

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Every following node's applied revision, and any change a node refused (with why).
    Status {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(connect: ConnectArgs, command: FleetCommand) -> anyhow::Result<i32> {
    let FleetCommand::Status { json } = command;
    let mut client = ServiceClient::new(connect.channel().await?);
    let s = client.status(StatusRequest {}).await?.into_inner();
    let behind = s
        .nodes
        .iter()
        .filter(|n| n.applied_revision != s.published_revision || !n.error.is_empty())
        .count();
    if json {
        for n in &s.nodes {
            println!(
                "{}",
                serde_json::json!({
                    "hostname": n.hostname, "applied_revision": n.applied_revision,
                    "seen_revision": n.seen_revision, "error": n.error,
                    "local_revision": n.local_revision, "time": n.time,
                    "published_revision": s.published_revision,
                })
            );
        }
    } else {
        if !s.following.is_empty() {
            println!("this server's rules follow {}", s.following);
        }
        println!(
            "published revision {}; {} nodes, {} behind or refusing",
            s.published_revision,
            s.nodes.len(),
            behind
        );
        for n in &s.nodes {
            let state = if !n.error.is_empty() {
                format!("REFUSED revision {}: {}", n.seen_revision, n.error)
            } else if n.applied_revision == s.published_revision {
                "up to date".to_string()
            } else {
                "behind".to_string()
            };
            println!(
                "{:<32} applied {:>6} (local {:>6}) at {}  {state}",
                n.hostname, n.applied_revision, n.local_revision, n.time
            );
        }
    }
    Ok(if behind == 0 { 0 } else { 1 })
}
