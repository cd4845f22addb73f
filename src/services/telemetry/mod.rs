//! The server's counters and histograms, and falco-exporter's `falco_events`, kept in memory and
//! exposed by `GET /metrics` (`crate::http::metrics`) and the metrics gRPC service. Components
//! record into them as work happens; what can be read off the running state (log heads, lag,
//! queue depth) is computed at scrape time instead.
//!
//! Built on the `prometheus` crate, whose text encoder writes the 0.0.4 exposition format with
//! names as given: `falco_events` must stay `falco_events` (OpenMetrics would rename a counter to
//! `…_total`, and every dashboard built for falco-exporter queries the old name).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
};

use crate::base::event::{DropRecord, OutputEvent};

mod events;

pub use events::{saved_upto, EventLabels, FalcoEvents, MAX_LABEL_BYTES};

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
/// Commits queued for the counting thread at most (then the commit thread waits for it).
const COUNT_QUEUE: usize = 256;

/// Told of each durable commit to the outputs log: its alerts, the last seq, the commit's time.
pub type OutputsObserver = Box<dyn Fn(Vec<OutputEvent>, u64, Duration) + Send + Sync>;

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

    /// What the outputs log's commit thread calls after each durable commit: the timings are
    /// recorded there; the alerts go to a thread of their own that counts them (and frees them),
    /// so counting never lengthens the commit path. The thread ends when the returned closure
    /// is dropped.
    pub fn outputs_observer(self: &Arc<Self>) -> OutputsObserver {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<OutputEvent>, u64)>(COUNT_QUEUE);
        let telemetry = self.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-count".into())
            .spawn(move || {
                for (alerts, last) in rx {
                    telemetry.count_alerts(&alerts, last);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the metrics counting thread; alerts are counted on the commit thread");
        }
        let telemetry = self.clone();
        Box::new(move |alerts, last, took| {
            if !telemetry.enabled {
                return;
            }
            telemetry.committed("outputs", alerts.len(), took);
            if let Err(std::sync::mpsc::SendError((alerts, last))) = tx.send((alerts, last)) {
                telemetry.count_alerts(&alerts, last);
            }
        })
    }

    fn count_alerts(&self, alerts: &[OutputEvent], last_seq: u64) {
        self.events.count_stored(alerts, last_seq);
        let mut run: Option<(crate::base::event::Origin, u64)> = None;
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
    pub fn drops_committed(&self, drops: Vec<DropRecord>, took: Duration) {
        if !self.enabled {
            return;
        }
        self.committed("drops", drops.len(), took);
        for d in &drops {
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
    use crate::base::event::Priority;

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
        assert_eq!(bare.rule, "r:1:2");
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
        t.events.set_ready(0);
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
