//! `falco_events`, falco-exporter's counter: alerts per label set, bounded in series and in
//! label bytes (the rest go to one overflow series), saved so a restart does not count the log
//! again.

use std::sync::{Mutex, PoisonError};

use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};
use serde::{Deserialize, Serialize};

use super::{label, EVENT_LABELS, OVERFLOW_RULE};
use crate::base::event::{clip, OutputEvent};

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
        Series::of(e, 0).labels()
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

/// The parts of one label set, borrowed from an alert or from a stored series; hashed and
/// compared part by part, so counting an alert whose series exists allocates nothing.
struct Parts<'a> {
    rule: &'a str,
    priority: u8,
    hostname: &'a str,
    source: &'a str,
    ns: &'a str,
    pod: &'a str,
    tags: &'a [String],
}

/// A `falco_events` label value is cut to this many bytes; tags are kept while they fit in
/// [`MAX_TAGS_BYTES`] together (a poster names them, and a scrape carries them all).
pub const MAX_LABEL_BYTES: usize = 256;
const MAX_TAGS_BYTES: usize = 1024;
/// The label bytes `falco_events` holds at most, per `metrics.max_series`: label sets past this
/// budget go to the overflow series too, so a scrape stays small whatever the names' sizes.
const LABEL_BYTES_PER_SERIES: usize = 256;

/// The leading tags that fit the tags budget.
fn clip_tags(tags: &[String]) -> &[String] {
    let mut bytes = 0;
    for (i, t) in tags.iter().enumerate() {
        bytes += t.len() + 1;
        if t.len() > MAX_LABEL_BYTES || bytes > MAX_TAGS_BYTES {
            return &tags[..i];
        }
    }
    tags
}

impl<'a> Parts<'a> {
    fn of(e: &'a OutputEvent) -> Parts<'a> {
        Parts {
            rule: clip(&e.rule, MAX_LABEL_BYTES),
            priority: e.priority as u8,
            hostname: clip(&e.hostname, MAX_LABEL_BYTES),
            source: clip(&e.source, MAX_LABEL_BYTES),
            ns: clip(output_field(e, "k8s.ns.name"), MAX_LABEL_BYTES),
            pod: clip(output_field(e, "k8s.pod.name"), MAX_LABEL_BYTES),
            tags: clip_tags(&e.tags),
        }
    }

    /// The label bytes this set adds to a scrape.
    fn bytes(&self) -> usize {
        self.rule.len()
            + self.hostname.len()
            + self.source.len()
            + self.ns.len()
            + self.pod.len()
            + self.tags.iter().map(|t| t.len() + 1).sum::<usize>()
    }

    fn hash(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(0x5eed_fa1c).build_hasher();
        for part in [self.rule, self.hostname, self.source, self.ns, self.pod] {
            h.write(part.as_bytes());
            h.write_u8(0xff);
        }
        h.write_u8(self.priority);
        for t in self.tags {
            h.write(t.as_bytes());
            h.write_u8(0xfe);
        }
        h.finish()
    }

    fn is(&self, s: &Series) -> bool {
        self.priority == s.priority
            && self.rule == s.rule
            && self.hostname == s.hostname
            && self.source == s.source
            && self.ns == s.ns
            && self.pod == s.pod
            && self.tags == s.tags.as_slice()
    }
}

/// One `falco_events` series.
#[derive(Clone, Serialize, Deserialize)]
struct Series {
    rule: String,
    priority: u8,
    hostname: String,
    source: String,
    ns: String,
    pod: String,
    tags: Vec<String>,
    count: u64,
}

impl Series {
    fn of(e: &OutputEvent, count: u64) -> Series {
        let p = Parts::of(e);
        Series {
            rule: p.rule.to_string(),
            priority: p.priority,
            hostname: p.hostname.to_string(),
            source: p.source.to_string(),
            ns: p.ns.to_string(),
            pod: p.pod.to_string(),
            tags: p.tags.to_vec(),
            count,
        }
    }

    fn clipped(self) -> Series {
        let c = |v: &str| clip(v, MAX_LABEL_BYTES).to_string();
        Series {
            rule: c(&self.rule),
            priority: self.priority,
            hostname: c(&self.hostname),
            source: c(&self.source),
            ns: c(&self.ns),
            pod: c(&self.pod),
            tags: clip_tags(&self.tags).to_vec(),
            count: self.count,
        }
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            rule: &self.rule,
            priority: self.priority,
            hostname: &self.hostname,
            source: &self.source,
            ns: &self.ns,
            pod: &self.pod,
            tags: &self.tags,
        }
    }

    fn labels(&self) -> EventLabels {
        EventLabels {
            rule: self.rule.clone(),
            priority: self.priority.to_string(),
            hostname: self.hostname.clone(),
            source: self.source.clone(),
            k8s_ns_name: self.ns.clone(),
            k8s_pod_name: self.pod.clone(),
            // falco-exporter: the tags joined by ',' between a leading and a trailing ','.
            tags: format!(",{},", self.tags.join(",")),
        }
    }
}

/// `falco_events`: alerts stored in the outputs log, per falco-exporter label set, at most
/// `max_series` label sets (later ones go to the overflow series).
pub struct FalcoEvents {
    table: Mutex<EventTable>,
}

#[derive(Default)]
struct EventTable {
    series: hashbrown::HashTable<Series>,
    overflow: u64,
    max: usize,
    /// Label bytes of the series held.
    bytes: usize,
    /// The newest seq counted as it was stored.
    upto: u64,
    /// Changed since last saved.
    dirty: bool,
    /// The log's older alerts are counted too.
    ready: bool,
}

/// What is saved so a restart does not count the log again: the counts as of outputs seq `upto`.
#[derive(Serialize, Deserialize)]
struct Saved {
    upto: u64,
    series: Vec<Series>,
    overflow: u64,
}

impl FalcoEvents {
    pub(super) fn new(max_series: usize) -> FalcoEvents {
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
        for a in alerts {
            t.add(&Parts::of(a), 1, || Series::of(a, 0));
        }
        t.upto = t.upto.max(last_seq);
        t.dirty = true;
    }

    /// Counts alerts read back from the log at start (they were stored before this process).
    pub fn count(&self, alerts: &[OutputEvent]) {
        let mut t = self.lock();
        for a in alerts {
            t.add(&Parts::of(a), 1, || Series::of(a, 0));
        }
    }

    /// Whether the counts cover the log yet (see [`FalcoEvents::set_ready`]).
    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    /// The counts now cover every alert in the log up to `seq`: they may be served and saved.
    pub fn set_ready(&self, seq: u64) {
        let mut t = self.lock();
        t.ready = true;
        t.dirty = true;
        t.upto = t.upto.max(seq);
    }

    /// Every alert up to this seq is counted (once [`FalcoEvents::ready`]).
    pub fn counted_to(&self) -> u64 {
        self.lock().upto
    }

    /// Label sets counted (the overflow series excluded).
    pub fn series(&self) -> usize {
        self.lock().series.len()
    }

    /// The sum over every series.
    pub fn total(&self) -> u64 {
        let t = self.lock();
        t.series.iter().map(|s| s.count).sum::<u64>() + t.overflow
    }

    /// The family, sorted by label values.
    pub fn family(&self) -> MetricFamily {
        let (rows, overflow) = {
            let t = self.lock();
            let rows: Vec<(EventLabels, u64)> =
                t.series.iter().map(|s| (s.labels(), s.count)).collect();
            (rows, t.overflow)
        };
        let mut rows = rows;
        rows.sort_unstable_by(|a, b| a.0.values().cmp(&b.0.values()));
        let mut metrics: Vec<Metric> = rows.iter().map(|(l, v)| event_metric(l, *v)).collect();
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
        let saved = Saved {
            upto: t.upto,
            series: t.series.iter().cloned().collect(),
            overflow: t.overflow,
        };
        postcard::to_stdvec(&saved).ok()
    }

    /// Adds saved counts to what is counted; returns the last seq they include, or `None`
    /// (nothing added) when `bytes` is not a saved table.
    pub fn restore(&self, bytes: &[u8]) -> Option<u64> {
        let mut saved: Saved = postcard::from_bytes(bytes).ok()?;
        saved
            .series
            .sort_unstable_by(|a, b| a.labels().values().cmp(&b.labels().values()));
        let mut t = self.lock();
        for s in saved.series {
            // Counts saved by an earlier version may carry longer labels than are kept now.
            let s = s.clipped();
            let n = s.count;
            let key = s.clone();
            t.add(&key.parts(), n, move || s);
        }
        t.overflow += saved.overflow;
        Some(saved.upto)
    }
}

impl EventTable {
    /// `n` more for the series `parts`, made by `new` when it is not there; the overflow series
    /// takes it when there are `max` series already.
    fn add(&mut self, parts: &Parts<'_>, n: u64, new: impl FnOnce() -> Series) {
        let hash = parts.hash();
        if let Some(s) = self.series.find_mut(hash, |s| parts.is(s)) {
            s.count += n;
        } else if self.series.len() < self.max
            && self.bytes + parts.bytes() <= self.max.saturating_mul(LABEL_BYTES_PER_SERIES)
        {
            let mut s = new();
            s.count = n;
            self.bytes += parts.bytes();
            self.series.insert_unique(hash, s, |s| s.parts().hash());
        } else {
            if self.overflow == 0 {
                tracing::warn!(
                    max_series = self.max,
                    "falco_events reached metrics.max_series label sets (or their label bytes); \
                     alerts with new label sets are counted in the series whose rule is \
                     '{OVERFLOW_RULE}'"
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
