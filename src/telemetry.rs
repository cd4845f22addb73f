//! The server's counters and histograms, and falco-exporter's `falco_events`, kept in memory and
//! exposed by `GET /metrics` (`crate::http::metrics`) and the metrics gRPC service. Components
//! record into them as work happens; what can be read off the running state (log heads, lag,
//! queue depth) is computed at scrape time instead.
//!
//! Built on the `prometheus` crate, whose text encoder writes the 0.0.4 exposition format with
//! names as given: `falco_events` must stay `falco_events` (OpenMetrics would rename a counter to
//! `…_total`, and every dashboard built for falco-exporter queries the old name).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
};
use serde::{Deserialize, Serialize};

use crate::event::{DropRecord, OutputEvent};

/// `metrics.max_series` when unset.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// The `rule` label of the series that takes every label set past `metrics.max_series`.
pub const OVERFLOW_RULE: &str = "falco-api: other label sets (over metrics.max_series)";
/// falco-exporter's label names, in its order.
pub const EVENT_LABELS: [&str; 7] = [
    "rule",
    "priority",
    "hostname",
    "source",
    "k8s_ns_name",
    "k8s_pod_name",
    "tags",
];
/// Distinct values a label that clients choose (a source name, a gRPC path) may take before the
/// rest are counted as `other`.
const MAX_FREE_LABEL_VALUES: usize = 256;

/// Every instrument; one per server, shared through `App`.
pub struct Telemetry {
    registry: Registry,
    /// Counting off (`bench … --no-metrics`): nothing is recorded.
    enabled: bool,
    pub events: FalcoEvents,
    pub alerts_appended: IntCounterVec,
    pub dropped_events: IntCounterVec,
    pub inputs_events: IntCounterVec,
    pub eval_seconds: Histogram,
    pub commit_seconds: HistogramVec,
    pub commit_records: HistogramVec,
    pub grpc_requests: IntCounterVec,
    pub http_requests: IntCounterVec,
    free_labels: Mutex<HashMap<&'static str, HashSet<String>>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(DEFAULT_MAX_SERIES, true)
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry.register(Box::new(c.clone())).expect("unique name");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("unique name");
    h
}

impl Telemetry {
    pub fn new(max_series: usize, enabled: bool) -> Telemetry {
        let r = Registry::new();
        // 10 µs … ~5 s, doubling.
        let seconds = exponential_buckets(1e-5, 2.0, 20).expect("valid buckets");
        let sizes = exponential_buckets(1.0, 2.0, 14).expect("valid buckets");
        Telemetry {
            enabled,
            events: FalcoEvents::new(max_series),
            alerts_appended: counter(
                &r,
                "falco_api_alerts_appended_total",
                "Alerts appended to the outputs log, by what produced them.",
                &["origin"],
            ),
            dropped_events: counter(
                &r,
                "falco_api_dropped_events_total",
                "Events or alerts lost, as recorded in the drops log, by stage.",
                &["stage"],
            ),
            inputs_events: counter(
                &r,
                "falco_api_inputs_events_total",
                "Events offered for evaluation (inputs, webhook), by source and result \
                 (accepted, rejected, dropped).",
                &["source", "result"],
            ),
            eval_seconds: histogram(
                &r,
                "falco_api_evaluation_duration_seconds",
                "Time an evaluation thread spent on one batch of events.",
                &[],
                seconds.clone(),
            )
            .with_label_values::<&str>(&[]),
            commit_seconds: histogram(
                &r,
                "falco_api_commit_duration_seconds",
                "Time one durable (fsynced) group commit to a log took.",
                &["log"],
                seconds,
            ),
            commit_records: histogram(
                &r,
                "falco_api_commit_group_records",
                "Records one group commit wrote.",
                &["log"],
                sizes,
            ),
            grpc_requests: counter(
                &r,
                "falco_api_grpc_requests_total",
                "gRPC calls finished, by method and status code.",
                &["method", "code"],
            ),
            http_requests: counter(
                &r,
                "falco_api_http_requests_total",
                "HTTP requests answered, by endpoint and status.",
                &["endpoint", "status"],
            ),
            registry: r,
            free_labels: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The registered instruments' families.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// `value`, or `other` once `label` has taken [`MAX_FREE_LABEL_VALUES`] distinct values.
    pub fn bounded(&self, label: &'static str, value: &str) -> String {
        let mut seen = self
            .free_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let set = seen.entry(label).or_default();
        if set.contains(value) {
            return value.to_string();
        }
        if set.len() >= MAX_FREE_LABEL_VALUES {
            return "other".to_string();
        }
        set.insert(value.to_string());
        value.to_string()
    }

    /// A durable commit of `alerts` to the outputs log.
    pub fn outputs_committed(&self, alerts: &[OutputEvent], last_seq: u64, took: Duration) {
        if !self.enabled {
            return;
        }
        self.committed("outputs", alerts.len(), took);
        self.events.count_stored(alerts, last_seq);
        let mut run: Option<(crate::event::Origin, u64)> = None;
        for a in alerts {
            match &mut run {
                Some((o, n)) if *o == a.origin => *n += 1,
                _ => {
                    if let Some((o, n)) = run.take() {
                        self.alerts_appended
                            .with_label_values(&[o.name()])
                            .inc_by(n);
                    }
                    run = Some((a.origin, 1));
                }
            }
        }
        if let Some((o, n)) = run {
            self.alerts_appended
                .with_label_values(&[o.name()])
                .inc_by(n);
        }
    }

    /// A durable commit of `drops` to the drops log.
    pub fn drops_committed(&self, drops: &[DropRecord], took: Duration) {
        if !self.enabled {
            return;
        }
        self.committed("drops", drops.len(), took);
        for d in drops {
            let stage = self.bounded("stage", &d.stage);
            self.dropped_events
                .with_label_values(&[stage.as_str()])
                .inc_by(d.n_drops);
        }
    }

    fn committed(&self, log: &str, records: usize, took: Duration) {
        self.commit_seconds
            .with_label_values(&[log])
            .observe(took.as_secs_f64());
        self.commit_records
            .with_label_values(&[log])
            .observe(records as f64);
    }

    /// Events of one batch from `source`: `accepted`, `rejected` or `dropped`.
    pub fn inputs(&self, source: &str, result: &str, n: u64) {
        if !self.enabled || n == 0 {
            return;
        }
        let source = self.bounded("source", source);
        self.inputs_events
            .with_label_values(&[source.as_str(), result])
            .inc_by(n);
    }
}

/// falco-exporter's label set of one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLabels {
    pub rule: String,
    pub priority: String,
    pub hostname: String,
    pub source: String,
    pub k8s_ns_name: String,
    pub k8s_pod_name: String,
    pub tags: String,
}

impl EventLabels {
    pub fn of(e: &OutputEvent) -> EventLabels {
        let mut key = String::new();
        key_into(&mut key, e);
        decode_key(&key).expect("a key just encoded decodes")
    }

    fn values(&self) -> [&str; 7] {
        [
            &self.rule,
            &self.priority,
            &self.hostname,
            &self.source,
            &self.k8s_ns_name,
            &self.k8s_pod_name,
            &self.tags,
        ]
    }
}

/// An output field's value, or "" (falco-exporter's rule for the k8s labels).
fn output_field<'a>(e: &'a OutputEvent, name: &str) -> &'a str {
    match e
        .output_fields
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
    {
        Ok(i) => &e.output_fields[i].1,
        Err(_) => e
            .output_fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str()),
    }
}

/// One alert's label set as one string (each value length-prefixed, so any bytes round-trip);
/// written into a reused buffer so counting an alert whose series exists allocates nothing.
fn key_into(key: &mut String, e: &OutputEvent) {
    fn field(key: &mut String, v: &str) {
        let _ = write!(key, "{}:", v.len());
        key.push_str(v);
    }
    key.clear();
    field(key, &e.rule);
    let _ = write!(key, "1:{}", e.priority as u8);
    field(key, &e.hostname);
    field(key, &e.source);
    field(key, output_field(e, "k8s.ns.name"));
    field(key, output_field(e, "k8s.pod.name"));
    // ",a,b,": both commas, the tags, and one comma between each two.
    let tags_len = 2 + e.tags.iter().map(|t| t.len() + 1).sum::<usize>() - e.tags.len().min(1);
    let _ = write!(key, "{tags_len}:,");
    for (i, t) in e.tags.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(t);
    }
    key.push(',');
}

fn decode_key(mut key: &str) -> Option<EventLabels> {
    let mut values = Vec::with_capacity(7);
    while !key.is_empty() {
        let (len, rest) = key.split_once(':')?;
        let len: usize = len.parse().ok()?;
        values.push(rest.get(..len)?.to_string());
        key = rest.get(len..)?;
    }
    let [rule, priority, hostname, source, k8s_ns_name, k8s_pod_name, tags]: [String; 7] =
        values.try_into().ok()?;
    Some(EventLabels {
        rule,
        priority,
        hostname,
        source,
        k8s_ns_name,
        k8s_pod_name,
        tags,
    })
}

/// `falco_events`: alerts stored in the outputs log, per falco-exporter label set, at most
/// `max_series` label sets (later ones go to the overflow series).
pub struct FalcoEvents {
    table: Mutex<EventTable>,
}

#[derive(Default)]
struct EventTable {
    series: HashMap<String, u64>,
    overflow: u64,
    max: usize,
    /// The newest seq counted as it was stored.
    upto: u64,
    /// Changed since last saved.
    dirty: bool,
    /// The log's older alerts are counted too.
    ready: bool,
    scratch: String,
}

/// What is saved so a restart does not count the log again: the counts as of outputs seq `upto`.
#[derive(Deserialize)]
struct Saved {
    upto: u64,
    series: HashMap<String, u64>,
    overflow: u64,
}

impl FalcoEvents {
    fn new(max_series: usize) -> FalcoEvents {
        FalcoEvents {
            table: Mutex::new(EventTable {
                max: max_series,
                ..EventTable::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts alerts just stored at seqs up to `last_seq`.
    pub fn count_stored(&self, alerts: &[OutputEvent], last_seq: u64) {
        let mut t = self.lock();
        t.add(alerts);
        t.upto = t.upto.max(last_seq);
        t.dirty = true;
    }

    /// Counts alerts read back from the log at start (they were stored before this process).
    pub fn count(&self, alerts: &[OutputEvent]) {
        self.lock().add(alerts);
    }

    /// Whether the counts cover the log yet (see [`FalcoEvents::set_ready`]).
    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    /// The counts now cover every alert in the log: they may be served and saved.
    pub fn set_ready(&self) {
        let mut t = self.lock();
        t.ready = true;
        t.dirty = true;
    }

    /// Label sets counted (the overflow series excluded).
    pub fn series(&self) -> usize {
        self.lock().series.len()
    }

    /// The sum over every series.
    pub fn total(&self) -> u64 {
        let t = self.lock();
        t.series.values().sum::<u64>() + t.overflow
    }

    /// The family, sorted by label values.
    pub fn family(&self) -> MetricFamily {
        let (mut rows, overflow) = {
            let t = self.lock();
            let rows: Vec<(String, u64)> = t.series.iter().map(|(k, v)| (k.clone(), *v)).collect();
            (rows, t.overflow)
        };
        rows.sort_unstable();
        let mut metrics: Vec<Metric> = rows
            .iter()
            .filter_map(|(k, v)| Some(event_metric(&decode_key(k)?, *v)))
            .collect();
        if overflow > 0 {
            let labels = EventLabels {
                rule: OVERFLOW_RULE.into(),
                priority: String::new(),
                hostname: String::new(),
                source: String::new(),
                k8s_ns_name: String::new(),
                k8s_pod_name: String::new(),
                tags: String::new(),
            };
            metrics.push(event_metric(&labels, overflow));
        }
        let mut f = MetricFamily::default();
        f.set_name("falco_events".into());
        f.set_help(
            "Alerts stored in the outputs log (falco-exporter's metric: same name and labels)."
                .into(),
        );
        f.set_field_type(MetricType::COUNTER);
        f.set_metric(metrics);
        f
    }

    /// The counts and the last seq they include, when they changed since the last call and
    /// cover the log; `None` otherwise.
    pub fn save(&self) -> Option<Vec<u8>> {
        let mut t = self.lock();
        if !t.ready || !t.dirty {
            return None;
        }
        t.dirty = false;
        let saved = SavedRef {
            upto: t.upto,
            series: &t.series,
            overflow: t.overflow,
        };
        postcard::to_stdvec(&saved).ok()
    }

    /// Adds saved counts to what is counted; returns the last seq they include, or `None`
    /// (nothing added) when `bytes` is not a saved table.
    pub fn restore(&self, bytes: &[u8]) -> Option<u64> {
        let saved: Saved = postcard::from_bytes(bytes).ok()?;
        let mut t = self.lock();
        let mut keys: Vec<(String, u64)> = saved.series.into_iter().collect();
        keys.sort_unstable();
        for (k, n) in keys {
            t.add_key(k, n);
        }
        t.overflow += saved.overflow;
        Some(saved.upto)
    }
}

impl EventTable {
    fn add(&mut self, alerts: &[OutputEvent]) {
        let mut key = std::mem::take(&mut self.scratch);
        for a in alerts {
            key_into(&mut key, a);
            if let Some(n) = self.series.get_mut(key.as_str()) {
                *n += 1;
            } else {
                self.add_key(key.clone(), 1);
            }
        }
        self.scratch = key;
    }

    /// `n` more for the series `key`, or for the overflow series when `key` is new and there
    /// are `max` series already.
    fn add_key(&mut self, key: String, n: u64) {
        if let Some(have) = self.series.get_mut(&key) {
            *have += n;
        } else if self.series.len() < self.max {
            self.series.insert(key, n);
        } else {
            if self.overflow == 0 {
                tracing::warn!(
                    max_series = self.max,
                    "falco_events reached metrics.max_series label sets; alerts with new label \
                     sets are counted in the series whose rule is '{OVERFLOW_RULE}'"
                );
            }
            self.overflow += n;
        }
    }
}

/// The last seq saved counts include, if `bytes` are saved counts.
pub fn saved_upto(bytes: &[u8]) -> Option<u64> {
    postcard::from_bytes::<Saved>(bytes).ok().map(|s| s.upto)
}

/// [`Saved`] borrowed, for writing.
#[derive(Serialize)]
struct SavedRef<'a> {
    upto: u64,
    series: &'a HashMap<String, u64>,
    overflow: u64,
}

fn event_metric(labels: &EventLabels, value: u64) -> Metric {
    let pairs = EVENT_LABELS
        .iter()
        .zip(labels.values())
        .map(|(name, value)| label(name, value))
        .collect();
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(pairs);
    m.set_counter(c);
    m
}

/// A label pair.
pub fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// The text exposition (format 0.0.4) of `families`.
pub fn encode(families: &[MetricFamily]) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(families, &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Priority;

    fn alert(rule: &str, tags: &[&str], fields: &[(&str, &str)]) -> OutputEvent {
        let mut e = OutputEvent::new(0, Priority::Warning, rule, "out", "syscall")
            .with_hostname("node-1")
            .with_fields(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        e.tags = tags.iter().map(|t| t.to_string()).collect();
        e
    }

    #[test]
    fn labels_are_falco_exporters() {
        let e = alert(
            "Terminal shell in container",
            &["container", "shell"],
            &[
                ("k8s.ns.name", "prod"),
                ("k8s.pod.name", "web-1"),
                ("a", "b"),
            ],
        );
        assert_eq!(
            EventLabels::of(&e),
            EventLabels {
                rule: "Terminal shell in container".into(),
                priority: "4".into(),
                hostname: "node-1".into(),
                source: "syscall".into(),
                k8s_ns_name: "prod".into(),
                k8s_pod_name: "web-1".into(),
                tags: ",container,shell,".into(),
            }
        );
        let bare = EventLabels::of(&alert("r:1:2", &[], &[]));
        assert_eq!(bare.rule, "r:1:2", "colons in values survive the key");
        assert_eq!(
            (bare.k8s_ns_name.as_str(), bare.k8s_pod_name.as_str()),
            ("", "")
        );
        assert_eq!(bare.tags, ",,", "falco-exporter joins no tags as ',,'");
        assert_eq!(EventLabels::of(&alert("r", &["one"], &[])).tags, ",one,");
    }

    #[test]
    fn overflow_takes_new_label_sets_and_save_restores() {
        let t = Telemetry::new(2, true);
        let alerts: Vec<OutputEvent> = (0..5)
            .map(|i| alert(&format!("r{}", i % 4), &[], &[]))
            .collect();
        t.events.count(&alerts);
        assert_eq!(t.events.series(), 2);
        assert_eq!(t.events.total(), 5);
        let text = encode(&[t.events.family()]);
        assert!(text.contains("# TYPE falco_events counter"), "{text}");
        assert!(
            text.contains(&format!(
                "falco_events{{rule=\"{OVERFLOW_RULE}\",priority=\"\",hostname=\"\",source=\"\",k8s_ns_name=\"\",k8s_pod_name=\"\",tags=\"\"}} 2"
            )),
            "{text}"
        );
        assert!(text.contains("falco_events{rule=\"r0\",priority=\"4\",hostname=\"node-1\",source=\"syscall\",k8s_ns_name=\"\",k8s_pod_name=\"\",tags=\",,\"} 2"), "{text}");
        assert!(
            t.events.save().is_none(),
            "not saved before the log is counted"
        );
        t.events.set_ready();
        t.events.count_stored(&alerts[..1], 77);
        let saved = t.events.save().expect("changed");
        assert!(t.events.save().is_none(), "unchanged since");
        let back = Telemetry::new(1, true);
        back.events.count(&alerts[1..2]);
        assert_eq!(back.events.restore(&saved), Some(77));
        assert_eq!(back.events.series(), 1, "a smaller limit folds the surplus");
        assert_eq!(
            back.events.total(),
            7,
            "saved counts add to those counted meanwhile"
        );
        assert_eq!(back.events.restore(b"\xff\xff"), None);
    }

    #[test]
    fn free_labels_are_bounded() {
        let t = Telemetry::default();
        for i in 0..MAX_FREE_LABEL_VALUES {
            assert_eq!(t.bounded("source", &format!("s{i}")), format!("s{i}"));
        }
        assert_eq!(t.bounded("source", "one-more"), "other");
        assert_eq!(t.bounded("source", "s3"), "s3");
    }
}
