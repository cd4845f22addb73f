//! `falco status` (what the Falco receiver has taken from each Falco, and the rules and config
//! it last wrote) and `falco setup` (the falco.yaml settings that point a Falco at this server).

use std::path::PathBuf;

use clap::Subcommand;

use super::ConnectArgs;
use crate::config::{HttpKind, ServeConfig};
use crate::proto::sidecar::{self as pb, service_client::ServiceClient};

#[derive(Subcommand, Debug)]
pub enum FalcoCommand {
    /// Every Falco node seen (last alert, alert and event rates, drops), and whether the rules
    /// directory and config file written for Falco are up to date.
    Status {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the falco.yaml settings that connect Falco to this falco-api's configuration.
    Setup {
        /// falco-api's boot config file (as given to `serve --config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// As `serve --falco-http`.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:2801")]
        falco_http: Option<String>,
    },
}

pub async fn run(connect: ConnectArgs, command: FalcoCommand) -> anyhow::Result<i32> {
    match command {
        FalcoCommand::Status { json } => status(connect, json).await,
        FalcoCommand::Setup { config, falco_http } => {
            let config = ServeConfig::resolve(&crate::config::Overrides {
                config_file: config,
                falco_http,
                ..Default::default()
            })?;
            print!("{}", setup(&config, &connect));
            Ok(0)
        }
    }
}

fn time_text(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

async fn status(connect: ConnectArgs, json: bool) -> anyhow::Result<i32> {
    let mut client = ServiceClient::new(connect.channel().await?);
    let s = client.status(pb::StatusRequest {}).await?.into_inner();
    if json {
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "hostname": n.hostname,
                    "last_seen": time_text(n.last_seen.as_ref()),
                    "alerts": n.alerts,
                    "alert_rate": n.alert_rate,
                    "event_rate": n.event_rate,
                    "syscall_drops": n.syscall_drops,
                    "drop_alerts": n.drop_alerts,
                    "metrics_time": time_text(n.metrics_time.as_ref()),
                    "metrics": n.metrics.iter().map(|m| (m.name.clone(), m.value.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                    "origins": n.origins,
                })
            })
            .collect();
        let sync: Vec<_> = s
            .sync
            .iter()
            .map(|t| {
                serde_json::json!({
                    "kind": t.kind, "path": t.path, "written_revision": t.written_revision,
                    "wanted_revision": t.wanted_revision, "error": t.error,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "nodes": nodes, "sync": sync }));
        return Ok(0);
    }
    if s.nodes.is_empty() {
        println!("no Falco node has sent alerts (see `falco-api falco setup`)");
    } else {
        println!(
            "{:<24} {:<25} {:>9} {:>9} {:>11} {:>13}",
            "HOSTNAME", "LAST SEEN", "ALERTS", "ALERTS/S", "EVENTS/S", "SYSCALL DROPS"
        );
        for n in &s.nodes {
            println!(
                "{:<24} {:<25} {:>9} {:>9.2} {:>11.1} {:>13}",
                n.hostname,
                time_text(n.last_seen.as_ref()),
                n.alerts,
                n.alert_rate,
                n.event_rate,
                n.syscall_drops
            );
        }
    }
    let mut behind = false;
    for t in &s.sync {
        let what = if t.kind == "rules_dir" {
            "rules dir"
        } else {
            "config file"
        };
        if t.error.is_empty() && t.written_revision >= t.wanted_revision {
            println!(
                "{what} {}: up to date (revision {})",
                t.path, t.written_revision
            );
        } else {
            behind = true;
            println!(
                "{what} {}: behind by revision {} (written: {}): {}",
                t.path, t.wanted_revision, t.written_revision, t.error
            );
        }
    }
    Ok(if behind { 1 } else { 0 })
}

/// The falco.yaml settings for `config`.
pub fn setup(config: &ServeConfig, connect: &ConnectArgs) -> String {
    let mut out = String::from(
        "# falco.yaml settings that connect Falco to falco-api (printed by `falco-api falco setup`).\n\
         # Put them in falco.yaml, or in a file of its config_files.\n\
         json_output: true\n\
         json_include_output_property: true\n\
         json_include_tags_property: true\n",
    );
    let receiver = config.http.iter().find_map(|e| match e.kind {
        HttpKind::Falco { mtls } => Some((e, mtls)),
        HttpKind::Webhook | HttpKind::Metrics { .. } | HttpKind::Console => None,
    });
    match receiver {
        Some((e, mtls)) => {
            let scheme = if e.tls { "https" } else { "http" };
            let host = if e.addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                e.addr.ip().to_string()
            };
            let addr =
                std::net::SocketAddr::new(host.parse().unwrap_or(e.addr.ip()), e.addr.port());
            out.push_str(&format!(
                "http_output:\n  enabled: true\n  url: \"{scheme}://{addr}/\"\n  keep_alive: true\n"
            ));
            if e.tls {
                out.push_str("  ca_cert: \"/etc/falco/certs/falco-api-ca.crt\"   # the CA of falco-api's tls.cert\n");
            }
            if mtls {
                out.push_str(
                    "  mtls: true\n  client_cert: \"/etc/falco/certs/client/client.crt\"   # a certificate with the ingest role\n  client_key: \"/etc/falco/certs/client/client.key\"\n",
                );
            }
        }
        None => {
            let server = connect
                .server
                .clone()
                .unwrap_or_else(|| format!("unix://{}", config.listen_socket().display()));
            out.push_str(&format!(
                "# falco-api's http_output receiver is off (serve --falco-http, or falco.listen);\n\
                 # Falco's program output feeds it instead:\n\
                 program_output:\n  enabled: true\n  keep_alive: true\n  program: \"falco-api send --alerts - --server {server}\"\n"
            ));
        }
    }
    let mut rules = vec![
        "/etc/falco/falco_rules.yaml".to_string(),
        "/etc/falco/falco_rules.local.yaml".to_string(),
    ];
    match &config.falco.rules_dir {
        Some(dir) => rules.push(format!(
            "{}   # written by falco-api (falco.rules_dir)",
            dir.display()
        )),
        None => rules.push(
            "/etc/falco/rules.d   # set falco.rules_dir to have falco-api write its rules here"
                .into(),
        ),
    }
    out.push_str("rules_files:\n");
    for r in rules {
        out.push_str(&format!("  - {r}\n"));
    }
    let config_dir = config
        .falco
        .config_file
        .as_ref()
        .and_then(|f| f.parent())
        .map_or("/etc/falco/config.d".to_string(), |d| {
            d.display().to_string()
        });
    out.push_str(&format!(
        "config_files:\n  - {config_dir}{}\nwatch_config_files: true\n",
        if config.falco.config_file.is_some() {
            "   # holds falco.config_file"
        } else {
            ""
        }
    ));
    out.push_str(
        "# Falco's drop and metrics alerts, for `falco-api falco status` and the drops log:\n\
         syscall_event_drops:\n  actions: [log, alert]\n\
         metrics:\n  enabled: true\n  interval: 1m\n  output_rule: true\n",
    );
    out
}
