//! Everything `GET /metrics` and the metrics service expose, gathered from the running server at
//! scrape time: the instruments of [`crate::services::telemetry`], `falco_events`, what can be read off
//! the state (log bounds, subscribers, consumer lag, the ingest queue, rules and config
//! revisions), and the Falco nodes' own metrics from their latest snapshots.

use prometheus::proto::{Gauge, Metric, MetricFamily, MetricType};

use crate::services::control::target::Kind;
use crate::services::nodes::Node;
use crate::services::telemetry::{encode, label};
use crate::services::App;

/// Consumer-lag series at most per log (consumer names are chosen by clients).
const MAX_CONSUMER_SERIES: usize = 1_000;

/// Waits (at most `within`) until every alert stored before the call is counted: alerts are
/// counted on a thread of their own just after their commit, so a scrape that follows an
/// acknowledgement sees it.
pub async fn settle(app: &App, within: std::time::Duration) {
    let head = app.logs.outputs.head();
    let deadline = std::time::Instant::now() + within;
    while app.telemetry.enabled()
        && app.telemetry.events.counted_to() < head
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// The whole exposition as text (format 0.0.4).
pub fn render(app: &App) -> String {
    encode(&gather(app))
}

/// Every family, sorted by name.
pub fn gather(app: &App) -> Vec<MetricFamily> {
    let mut out = app.telemetry.gather();
    out.push(app.telemetry.events.family());
    let mut g = Gauges::default();
    logs(app, &mut g);
    state(app, &mut g);
    falco_nodes(&app.nodes.list(), &mut g);
    out.extend(g.families);
    out.retain(|f| !f.get_metric().is_empty());
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// Families built by hand, one sample at a time (found by name: a scrape may hold many).
#[derive(Default)]
struct Gauges {
    families: Vec<MetricFamily>,
    index: std::collections::HashMap<String, usize>,
}

impl Gauges {
    /// Adds a sample to the family `name` (created with `help` and `kind` on first use).
    fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(kind);
                self.families.push(f);
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let mut m = Metric::from_label(labels.iter().map(|(k, v)| label(k, v)).collect());
        match kind {
            MetricType::COUNTER => {
                let mut c = prometheus::proto::Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                m.set_gauge(gauge);
            }
        }
        self.families[i].mut_metric().push(m);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, MetricType::GAUGE, labels, value);
    }
}

fn logs(app: &App, g: &mut Gauges) {
    let bounds = [
        (
            "outputs",
            app.store.outputs().bounds(),
            app.logs.outputs.subscribers(),
        ),
        (
            "drops",
            app.store.drops().bounds(),
            app.logs.drops.subscribers(),
        ),
    ];
    for (log, b, subscribers) in bounds {
        let consumers = app.store.consumers().list(log).unwrap_or_default();
        log_gauges(g, log, b, subscribers, &consumers);
    }
    retention_gauges(g, "outputs", app.store.outputs());
    retention_gauges(g, "drops", app.store.drops());
    if let Ok(bytes) = app.store.size_on_disk() {
        g.gauge(
            "falco_api_store_size_bytes",
            "Bytes the database file (both logs, rules, config, history) occupies on disk.",
            &[],
            bytes as f64,
        );
    }
}

fn state(app: &App, g: &mut Gauges) {
    let (depth, capacity) = app.pipeline.queue_depth();
    g.gauge(
        "falco_api_ingest_queue_depth",
        "Events queued for evaluation or being evaluated.",
        &[],
        depth as f64,
    );
    g.gauge(
        "falco_api_ingest_queue_capacity",
        "Events the ingest queue holds at most (ingest.queue_size).",
        &[],
        capacity as f64,
    );
    rules_gauges(app, g);
    if let Ok(newest) = app.config.last_change(10_000) {
        g.gauge(
            "falco_api_config_revision",
            "The newest revision that changed the configuration: a set, unset or rollback (0: none ever did).",
            &[],
            newest as f64,
        );
    }
    g.gauge(
        "falco_api_build_info",
        "Always 1; the labels name the build.",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("engine_version", &crate::engine::engine_version_string()),
        ],
        1.0,
    );
}

/// One log's limits (records, bytes, age) and what it retains against each.
fn retention_gauges<T: crate::store::LogRecord>(
    g: &mut Gauges,
    log: &str,
    ring: &crate::store::RingLog<T>,
) {
    let l = [("log", log)];
    let seconds = |ns: u64| ns as f64 / 1e9;
    g.gauge(
        "falco_api_log_capacity_records",
        "Most records a log retains (outputs.capacity, drops.capacity).",
        &l,
        ring.capacity() as f64,
    );
    g.gauge(
        "falco_api_log_max_bytes",
        "Most bytes of records a log retains (outputs.max_bytes, drops.max_bytes).",
        &l,
        ring.max_bytes() as f64,
    );
    g.gauge(
        "falco_api_log_retained_bytes",
        "File space the blocks a log retains take now (what max_bytes bounds).",
        &l,
        ring.retained_bytes() as f64,
    );
    g.gauge(
        "falco_api_log_max_age_seconds",
        "How long a log keeps a record (outputs.max_age, drops.max_age); 0: no age limit.",
        &l,
        seconds(ring.max_age_ns()),
    );
    let now = crate::store::Clock::system().now();
    g.gauge(
        "falco_api_log_oldest_age_seconds",
        "How long ago the oldest retained record was stored; 0 when the log is empty.",
        &l,
        ring.oldest_time()
            .map_or(0.0, |t| seconds(now.saturating_sub(t))),
    );
}

/// One log's bounds and subscribers, and the lag of its named consumers (at most
/// [`MAX_CONSUMER_SERIES`]).
fn log_gauges(
    g: &mut Gauges,
    log: &str,
    b: crate::store::Bounds,
    subscribers: usize,
    consumers: &[(String, u64)],
) {
    let l = [("log", log)];
    g.gauge(
        "falco_api_log_head_seq",
        "The newest durable seq of a log.",
        &l,
        b.newest as f64,
    );
    g.gauge(
        "falco_api_log_oldest_seq",
        "The oldest retained seq of a log (the head + 1 when empty).",
        &l,
        b.oldest as f64,
    );
    g.gauge(
        "falco_api_log_records",
        "Records a log retains.",
        &l,
        b.len() as f64,
    );
    g.gauge(
        "falco_api_log_subscribers",
        "Open subscriptions (sub, get, consumers) on a log.",
        &l,
        subscribers as f64,
    );
    for (name, acked) in consumers.iter().take(MAX_CONSUMER_SERIES) {
        g.gauge(
            "falco_api_consumer_lag_records",
            "Records a named consumer has not acknowledged (head - acknowledged seq).",
            &[("log", log), ("consumer", name)],
            b.newest.saturating_sub(*acked) as f64,
        );
    }
}

/// The rules in force: revision, rules loaded and enabled, files stored.
fn rules_gauges(app: &App, g: &mut Gauges) {
    let rules = app.pipeline.rules();
    g.gauge(
        "falco_api_rules_revision",
        "The revision the rules in force were built from.",
        &[],
        rules.revision as f64,
    );
    let infos = rules.infos();
    g.gauge(
        "falco_api_rules_loaded",
        "Rules in the effective set.",
        &[],
        infos.len() as f64,
    );
    g.gauge(
        "falco_api_rules_enabled",
        "Rules enabled (and compiled for a source this server runs).",
        &[],
        infos.iter().filter(|r| r.enabled && r.compiled).count() as f64,
    );
    let v = app.store.versioned();
    if let Ok(files) = v.current(Kind::File.prefix()) {
        g.gauge(
            "falco_api_rules_files",
            "Rules files stored.",
            &[],
            files.len() as f64,
        );
    }
}

/// How a field of Falco's metrics snapshot is exposed, after Falco's own Prometheus naming
/// (libs' metrics collector: `falcosecurity_<subsystem>_<name>_<unit>`, counters `_total`).
struct Mapped {
    name: String,
    kind: MetricType,
    value: f64,
    extra: Option<(&'static str, String)>,
}

/// Maps one snapshot field; `None` for fields with no Prometheus counterpart (rates, which
/// Prometheus computes itself, text values, and names the rule cannot place).
fn map_falco_metric(field: &str, value: &str) -> Option<Mapped> {
    let value: f64 = value.trim().parse().ok()?;
    let (subsystem, name) = field.split_once('.')?;
    if !["falco", "scap", "plugins"].contains(&subsystem) {
        return None;
    }
    if let Some(rule) = name.strip_prefix("rules.") {
        return Some(Mapped {
            name: "falcosecurity_falco_rules_matches_total".into(),
            kind: MetricType::COUNTER,
            value,
            extra: Some(("rule_name", rule.to_string())),
        });
    }
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let (stem, suffix, kind, value) = if let Some(stem) = name.strip_suffix("_mb") {
        (stem, "_bytes", MetricType::GAUGE, value * 1024.0 * 1024.0)
    } else if let Some(stem) = name.strip_suffix("_perc") {
        (stem, "_ratio", MetricType::GAUGE, value / 100.0)
    } else if name.ends_with("_sec") || name.ends_with("_rate") {
        return None;
    } else if let Some(stem) = name.strip_suffix("_ts") {
        (stem, "_timestamp_nanoseconds", MetricType::GAUGE, value)
    } else if name.starts_with("n_") || name.starts_with("num_") {
        (name, "_total", MetricType::COUNTER, value)
    } else {
        (name, "", MetricType::GAUGE, value)
    };
    Some(Mapped {
        name: format!("falcosecurity_{subsystem}_{}{suffix}", clean(stem)),
        kind,
        value,
        extra: None,
    })
}

/// Samples from Falco nodes' snapshots in one scrape at most, and distinct metric names among
/// them (Falco's own snapshot maps to about a hundred; a poster may name any), whatever the
/// nodes post.
const SNAPSHOT_SAMPLES: usize = 10_000;
const SNAPSHOT_FAMILIES: usize = 1_000;

fn falco_nodes(nodes: &[Node], g: &mut Gauges) {
    let mut samples = 0;
    let mut families = std::collections::HashSet::new();
    for n in nodes {
        let host = [("hostname", n.hostname.as_str())];
        g.gauge(
            "falco_api_falco_node_last_seen_seconds",
            "When a Falco node's newest alert was stamped (seconds since the epoch).",
            &host,
            n.last_seen_ns as f64 / 1e9,
        );
        g.sample(
            "falco_api_falco_node_syscall_drops_total",
            "System calls a Falco node reported dropping (its syscall event drop alerts).",
            MetricType::COUNTER,
            &host,
            n.syscall_drops as f64,
        );
        for (field, value) in &n.metrics {
            let Some(m) = map_falco_metric(field, value) else {
                continue;
            };
            if !families.contains(&m.name) {
                if families.len() >= SNAPSHOT_FAMILIES {
                    continue;
                }
                families.insert(m.name.clone());
            }
            samples += 1;
            if samples > SNAPSHOT_SAMPLES {
                return;
            }
            let mut labels = vec![("hostname", n.hostname.as_str())];
            if let Some((k, v)) = &m.extra {
                labels.push((k, v.as_str()));
            }
            g.sample(
                &m.name,
                "From the Falco node's latest metrics snapshot alert (https://falco.org/docs/metrics/).",
                m.kind,
                &labels,
                m.value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falco_snapshot_fields_map_to_falcos_prometheus_names() {
        let m = |f: &str, v: &str| map_falco_metric(f, v).map(|m| (m.name, m.kind, m.value));
        assert_eq!(
            m("scap.n_evts", "100"),
            Some((
                "falcosecurity_scap_n_evts_total".into(),
                MetricType::COUNTER,
                100.0
            ))
        );
        assert_eq!(
            m("falco.memory_rss_mb", "2"),
            Some((
                "falcosecurity_falco_memory_rss_bytes".into(),
                MetricType::GAUGE,
                2.0 * 1024.0 * 1024.0
            ))
        );
        assert_eq!(
            m("falco.cpu_usage_perc", "50"),
            Some((
                "falcosecurity_falco_cpu_usage_ratio".into(),
                MetricType::GAUGE,
                0.5
            ))
        );
        assert_eq!(
            m("falco.evts_rate_sec", "5"),
            None,
            "rates are computed by Prometheus"
        );
        assert_eq!(m("falco.version", "0.44.0"), None);
        assert_eq!(m("evt.time", "1"), None);
        let rule = map_falco_metric("falco.rules.Terminal shell", "3").expect("mapped");
        assert_eq!(rule.name, "falcosecurity_falco_rules_matches_total");
        assert_eq!(rule.extra, Some(("rule_name", "Terminal shell".into())));
    }
}
