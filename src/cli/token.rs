//! `falco-api token create|list|revoke|rotate-key`: tokens for the web console, over the socket.

use clap::Subcommand;

use crate::cli::ConnectArgs;
use crate::proto::tokens::{self as pb, service_client::ServiceClient};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a token (printed once; only its hash is stored).
    Create {
        /// The console shows and records its user as token:NAME.
        #[arg(long)]
        name: String,
        /// reader (sees everything) or admin (also changes rules and configuration).
        #[arg(long)]
        role: String,
        /// Expires after this long: 30d, 12h, 90m, 3600s or seconds (default: never).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Every token with its role, age, expiry and whether it is revoked.
    List {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it and its console sessions stop working at once.
    Revoke {
        /// The token's name (as given to create).
        name: String,
    },
    /// Replace the key console sessions are signed with: every session ends at once (tokens
    /// stay valid and sign in again). Do this if the data directory may have been read.
    RotateKey,
}

/// `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl '{text}': expected a number with d, h, m or s"))?;
    let scale = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        other => anyhow::bail!("--ttl '{text}': unknown unit '{other}' (d, h, m or s)"),
    };
    n.checked_mul(scale)
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow::anyhow!("--ttl '{text}' is out of range"))
}

fn when(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn run(connect: ConnectArgs, command: TokenCommand) -> anyhow::Result<i32> {
    let mut client = ServiceClient::new(connect.channel().await?);
    match command {
        TokenCommand::Create { name, role, ttl } => {
            let ttl_secs = ttl.as_deref().map(parse_ttl).transpose()?.unwrap_or(0);
            let r = client
                .create(pb::CreateRequest {
                    name,
                    role,
                    ttl_secs,
                })
                .await?
                .into_inner();
            let info = r.info.unwrap_or_default();
            eprintln!(
                "token for token:{} (role {}{}); it is shown only now:",
                info.name,
                info.role,
                expires(info.expires_ns)
            );
            println!("{}", r.token);
        }
        TokenCommand::List { json } => {
            let tokens = client.list(pb::ListRequest {}).await?.into_inner().tokens;
            tokens.iter().for_each(|t| print_token(t, json));
        }
        TokenCommand::Revoke { name } => {
            client
                .revoke(pb::RevokeRequest { name: name.clone() })
                .await?;
            println!("revoked token:{name}");
        }
        TokenCommand::RotateKey => {
            client.rotate_key(pb::RotateKeyRequest {}).await?;
            println!("rotated the console session key: every console session has ended");
        }
    }
    Ok(0)
}

/// `, expires <when>`, or nothing for a token that does not expire.
fn expires(ns: i64) -> String {
    if ns == 0 {
        String::new()
    } else {
        format!(", expires {}", when(ns))
    }
}

fn print_token(t: &pb::TokenInfo, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": t.name, "role": t.role, "created": when(t.created_ns),
                "expires": (t.expires_ns != 0).then(|| when(t.expires_ns)),
                "revoked": t.revoked, "author": t.author,
            })
        );
    } else {
        println!(
            "{:<24} {:<7} created {} by {}{}{}",
            t.name,
            t.role,
            when(t.created_ns),
            t.author,
            expires(t.expires_ns),
            if t.revoked { ", REVOKED" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttls_parse() {
        assert_eq!(super::parse_ttl("30d").unwrap(), 30 * 86_400);
        assert_eq!(super::parse_ttl("90m").unwrap(), 5_400);
        assert_eq!(super::parse_ttl("3600").unwrap(), 3_600);
        assert!(super::parse_ttl("0").is_err());
        assert!(super::parse_ttl("5y").is_err());
        assert!(super::parse_ttl("d").is_err());
    }
}
