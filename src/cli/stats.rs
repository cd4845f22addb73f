//! `falco-api tail --stats`: the server's vital signs for a person, from the metrics service,
//! refreshed once a second (rates from the difference between two readings).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::cli::ConnectArgs;
use crate::proto::metrics::{service_client::ServiceClient, Request};

/// One reading: `name{labels}` → value.
#[derive(Default)]
pub struct Reading {
    samples: BTreeMap<String, f64>,
}

impl Reading {
    /// Reads the samples of a text exposition (comments skipped).
    pub fn parse(text: &str) -> Reading {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((series, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    samples.insert(series.to_string(), v);
                }
            }
        }
        Reading { samples }
    }

    /// The sample `series` (name with its labels as printed), or 0.
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Every sample of the family `name`: (labels as printed, value).
    fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.samples.iter().filter_map(move |(k, v)| {
            let rest = k.strip_prefix(name)?;
            if rest.is_empty() {
                Some(("", *v))
            } else {
                rest.strip_prefix('{')
                    .and_then(|r| r.strip_suffix('}'))
                    .map(|labels| (labels, *v))
            }
        })
    }

    fn sum(&self, name: &str) -> f64 {
        self.family(name).map(|(_, v)| v).sum()
    }
}

/// The vital signs as text; `before` (with the seconds between the readings) gives rates.
pub fn render(now: &Reading, before: Option<(&Reading, f64)>) -> String {
    let rate = |series: &str| match before {
        Some((b, secs)) if secs > 0.0 => {
            format!("{:.1}/s", (now.get(series) - b.get(series)) / secs)
        }
        _ => "-".into(),
    };
    let sum_rate = |name: &str| match before {
        Some((b, secs)) if secs > 0.0 => format!("{:.1}/s", (now.sum(name) - b.sum(name)) / secs),
        _ => "-".into(),
    };
    let mut out = String::new();
    for log in ["outputs", "drops"] {
        let l = format!("{{log=\"{log}\"}}");
        let _ = writeln!(
            out,
            "{log:<8} head {:>10}  oldest {:>10}  retained {:>10}  subscribers {:>3}  appended {}",
            now.get(&format!("falco_api_log_head_seq{l}")),
            now.get(&format!("falco_api_log_oldest_seq{l}")),
            now.get(&format!("falco_api_log_records{l}")),
            now.get(&format!("falco_api_log_subscribers{l}")),
            rate(&format!("falco_api_log_head_seq{l}")),
        );
    }
    let _ = writeln!(
        out,
        "store    {:.1} MiB on disk",
        now.get("falco_api_store_size_bytes") / (1024.0 * 1024.0)
    );
    let list = |name: &str| -> String {
        let items: Vec<String> = now
            .family(name)
            .map(|(labels, v)| format!("{} {v}", labels.replace('"', "")))
            .collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "alerts   {}", list("falco_api_alerts_appended_total"));
    let _ = writeln!(out, "drops    {}", list("falco_api_dropped_events_total"));
    let _ = writeln!(
        out,
        "inputs   {} ({})",
        list("falco_api_inputs_events_total"),
        sum_rate("falco_api_inputs_events_total")
    );
    let _ = writeln!(
        out,
        "queue    {} of {} events",
        now.get("falco_api_ingest_queue_depth"),
        now.get("falco_api_ingest_queue_capacity")
    );
    let mean_ms = |name: &str, labels: &str| {
        let count = now.get(&format!("{name}_count{labels}"));
        if count == 0.0 {
            "-".to_string()
        } else {
            format!(
                "{:.3} ms",
                1000.0 * now.get(&format!("{name}_sum{labels}")) / count
            )
        }
    };
    let _ = writeln!(
        out,
        "commit   outputs mean {} ({} commits), drops mean {}; evaluation mean {} a batch",
        mean_ms("falco_api_commit_duration_seconds", "{log=\"outputs\"}"),
        now.get("falco_api_commit_duration_seconds_count{log=\"outputs\"}"),
        mean_ms("falco_api_commit_duration_seconds", "{log=\"drops\"}"),
        mean_ms("falco_api_evaluation_duration_seconds", ""),
    );
    let _ = writeln!(
        out,
        "rules    revision {}, {} files, {} loaded, {} enabled; config revision {}",
        now.get("falco_api_rules_revision"),
        now.get("falco_api_rules_files"),
        now.get("falco_api_rules_loaded"),
        now.get("falco_api_rules_enabled"),
        now.get("falco_api_config_revision"),
    );
    let _ = writeln!(
        out,
        "events   falco_events: {} series, {} alerts",
        now.family("falco_events").count(),
        now.sum("falco_events")
    );
    let lag: Vec<String> = now
        .family("falco_api_consumer_lag_records")
        .map(|(labels, v)| format!("{} lag {v}", labels.replace('"', "")))
        .collect();
    if !lag.is_empty() {
        let _ = writeln!(out, "consumers {}", lag.join(", "));
    }
    for (labels, v) in now.family("falco_api_falco_node_last_seen_seconds") {
        let seen = chrono::DateTime::from_timestamp(v as i64, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let drops = now.get(&format!(
            "falco_api_falco_node_syscall_drops_total{{{labels}}}"
        ));
        let _ = writeln!(
            out,
            "falco    {} last seen {seen}, syscall drops {drops}",
            labels.replace('"', "")
        );
    }
    let _ = writeln!(out, "grpc     {}", list("falco_api_grpc_requests_total"));
    out
}

/// Prints the vital signs once (`once`) or every second until interrupted.
pub async fn run(connect: &ConnectArgs, once: bool) -> anyhow::Result<i32> {
    let mut client = ServiceClient::new(connect.channel().await?);
    let mut before: Option<(Reading, Instant)> = None;
    loop {
        let text = client.get(Request {}).await?.into_inner().text;
        let now = Reading::parse(&text);
        let taken = Instant::now();
        let prior = before
            .as_ref()
            .map(|(r, t)| (r, taken.duration_since(*t).as_secs_f64()));
        let screen = render(&now, prior);
        if once {
            print!("{screen}");
            return Ok(0);
        }
        // Clear the terminal and draw again.
        print!("\x1b[2J\x1b[H{screen}");
        before = Some((now, taken));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_parse_and_render_with_rates() {
        let a = Reading::parse(
            "# TYPE x counter\nfalco_api_log_head_seq{log=\"outputs\"} 10\nfalco_events{rule=\"a b\",priority=\"4\"} 3\nfalco_events{rule=\"c\",priority=\"1\"} 4\n",
        );
        let b = Reading::parse("falco_api_log_head_seq{log=\"outputs\"} 30\n");
        assert_eq!(a.get("falco_api_log_head_seq{log=\"outputs\"}"), 10.0);
        assert_eq!(a.sum("falco_events"), 7.0);
        let screen = render(&b, Some((&a, 2.0)));
        assert!(screen.contains("appended 10.0/s"), "{screen}");
        assert!(render(&a, None).contains("falco_events: 2 series, 7 alerts"));
    }
}
