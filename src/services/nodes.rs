//! What falco-api knows about the Falco nodes that send it alerts (through the http_output
//! receiver or `send --alerts`): when each was last heard from, its alert rate, the system calls
//! it reported dropping, and its latest metrics snapshot; and whether the rules directory and
//! config file falco-api writes for Falco are up to date. Kept in memory and rebuilt from the
//! outputs log at start ([`Nodes::observe`] on every retained alert).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::base::event::{Origin, OutputEvent};

/// Falco's rule for its own dropped system calls.
pub const SYSCALL_DROP_RULE: &str = "Falco internal: syscall event drop";
/// Falco's rule for its periodic metrics (`metrics.output_rule: true`).
pub const METRICS_RULE: &str = "Falco internal: metrics snapshot";
/// Nodes remembered at most; past it, the node heard from longest ago is forgotten.
const MAX_NODES: usize = 10_000;
/// A node is known by at most this many bytes of its hostname.
const MAX_HOSTNAME: usize = 256;
/// A snapshot keeps at most this many fields, with names of at most [`MAX_FIELD_NAME`] bytes
/// and values of at most [`MAX_FIELD_VALUE`] (Falco's has ~100 short ones).
const MAX_SNAPSHOT_FIELDS: usize = 512;
const MAX_FIELD_NAME: usize = 128;
const MAX_FIELD_VALUE: usize = 128;
/// Bytes of snapshots kept across all nodes; a node's newer snapshot that would pass it is
/// not kept (its older one, if any, stays).
const MAX_SNAPSHOT_BYTES: usize = 16 << 20;
/// The alert rate is counted over windows of this many seconds.
const RATE_WINDOW_NS: i64 = 60_000_000_000;

/// One Falco node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub hostname: String,
    /// The newest alert's time, as Falco stamped it (ns since the epoch).
    pub last_seen_ns: i64,
    pub alerts: u64,
    /// Alerts per second in the last complete minute.
    pub alert_rate: f64,
    pub syscall_drops: u64,
    pub drop_alerts: u64,
    pub metrics_time_ns: i64,
    /// The latest metrics snapshot's fields.
    pub metrics: Vec<(String, String)>,
    pub origins: Vec<&'static str>,
    window_start_ns: i64,
    window_count: u64,
}

impl Node {
    /// Falco's event rate from its latest metrics snapshot.
    pub fn event_rate(&self) -> f64 {
        self.metric("falco.evts_rate_sec")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn metric(&self, name: &str) -> Option<&str> {
        self.metrics
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// One more alert from this node: last seen, origins, the alert rate's window, drop alerts.
    fn count(&mut self, ev: &OutputEvent) {
        self.alerts += 1;
        self.last_seen_ns = self.last_seen_ns.max(ev.time_ns);
        if !self.origins.contains(&ev.origin.name()) {
            self.origins.push(ev.origin.name());
        }
        if ev.time_ns >= self.window_start_ns + RATE_WINDOW_NS {
            let elapsed = ev.time_ns - self.window_start_ns;
            // A window with nothing after it means the rate has since fallen to nothing.
            self.alert_rate = if elapsed < 2 * RATE_WINDOW_NS {
                self.window_count as f64 / (elapsed as f64 / 1e9)
            } else {
                0.0
            };
            self.window_start_ns = ev.time_ns;
            self.window_count = 0;
        }
        self.window_count += 1;
        if ev.source == "internal" && ev.rule == SYSCALL_DROP_RULE {
            self.drop_alerts += 1;
            self.syscall_drops += field(ev, "n_drops").unwrap_or(0);
        }
    }
}

/// Whether a file or directory falco-api writes for Falco holds the newest revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncState {
    pub path: String,
    pub written: u64,
    pub wanted: u64,
    /// Why the last write failed; empty when it succeeded.
    pub error: String,
}

/// A fleet node's report on the rules it follows (see `crate::fleet::rules`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FleetNode {
    pub hostname: String,
    /// The publisher's revision this node's rules are at (0: none applied yet).
    pub applied_revision: u64,
    /// The newest publisher revision the node has seen.
    pub seen_revision: u64,
    /// Why the newest one was not applied; empty when it was.
    pub error: String,
    /// The node's own revision after applying.
    pub local_revision: u64,
    pub time: String,
}

/// What a rules publisher knows about its followers.
#[derive(Default)]
pub struct Fleet {
    nodes: Mutex<BTreeMap<String, FleetNode>>,
    published: Mutex<u64>,
}

impl Fleet {
    pub fn report(&self, node: FleetNode) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes.len() < MAX_NODES || nodes.contains_key(&node.hostname) {
            nodes.insert(node.hostname.clone(), node);
        }
    }

    pub fn list(&self) -> Vec<FleetNode> {
        values(&self.nodes)
    }

    pub fn set_published(&self, revision: u64) {
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = revision;
    }

    /// The revision last published (0: not a publisher, or nothing published yet).
    pub fn published(&self) -> u64 {
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fields of a snapshot worth keeping: short names and values, at most
/// [`MAX_SNAPSHOT_FIELDS`] of them.
fn snapshot_fields(fields: &[(String, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter(|(k, v)| k.len() <= MAX_FIELD_NAME && v.len() <= MAX_FIELD_VALUE)
        .take(MAX_SNAPSHOT_FIELDS)
        .cloned()
        .collect()
}

fn snapshot_bytes(fields: &[(String, String)]) -> usize {
    fields.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
}

#[derive(Default)]
pub struct Nodes {
    /// Rules followers, on a fleet rules publisher.
    pub fleet: Fleet,
    nodes: Mutex<BTreeMap<String, Node>>,
    /// Bytes of every node's kept snapshot.
    snapshots: Mutex<usize>,
    /// `rules_dir` and `config_file`, when configured.
    sync: Mutex<BTreeMap<&'static str, SyncState>>,
}

impl Nodes {
    /// Counts an alert stored from a Falco node; alerts falco-api produced itself are ignored.
    pub fn observe(&self, ev: &OutputEvent) {
        if matches!(ev.origin, Origin::Engine | Origin::Internal) {
            return;
        }
        let hostname = crate::base::event::clip(&ev.hostname, MAX_HOSTNAME);
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshots = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !nodes.contains_key(hostname) && nodes.len() >= MAX_NODES {
            let oldest = nodes
                .values()
                .min_by_key(|n| n.last_seen_ns)
                .map(|n| n.hostname.clone());
            if let Some(gone) = oldest.and_then(|h| nodes.remove(&h)) {
                *snapshots = snapshots.saturating_sub(snapshot_bytes(&gone.metrics));
            }
        }
        let node = nodes.entry(hostname.to_string()).or_insert_with(|| Node {
            hostname: hostname.to_string(),
            window_start_ns: ev.time_ns,
            ..Node::default()
        });
        node.count(ev);
        if ev.rule == METRICS_RULE && ev.time_ns >= node.metrics_time_ns {
            let fields = snapshot_fields(&ev.output_fields);
            let (old, new) = (snapshot_bytes(&node.metrics), snapshot_bytes(&fields));
            if *snapshots - old + new <= MAX_SNAPSHOT_BYTES {
                *snapshots = *snapshots - old + new;
                node.metrics_time_ns = ev.time_ns;
                node.metrics = fields;
            }
        }
    }

    /// Every node, by hostname.
    pub fn list(&self) -> Vec<Node> {
        values(&self.nodes)
    }

    pub fn set_sync(&self, kind: &'static str, state: SyncState) {
        self.sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind, state);
    }

    pub fn sync_states(&self) -> Vec<(&'static str, SyncState)> {
        self.sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

/// A locked map's values, in key order.
fn values<T: Clone>(map: &Mutex<BTreeMap<String, T>>) -> Vec<T> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect()
}

fn field(ev: &OutputEvent, name: &str) -> Option<u64> {
    ev.output_fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::event::Priority;

    fn alert(host: &str, t: i64, rule: &str) -> OutputEvent {
        OutputEvent::new(t, Priority::Debug, rule, "x", "internal")
            .with_hostname(host)
            .with_origin(Origin::FalcoHttp)
    }

    #[test]
    fn nodes_count_alerts_drops_and_keep_the_latest_metrics() {
        let nodes = Nodes::default();
        let s = 1_000_000_000;
        for i in 0..120 {
            nodes.observe(&alert("a", i * s / 2, "r"));
        }
        nodes.observe(&alert("a", 60 * s, SYSCALL_DROP_RULE).with_fields([("n_drops", "7")]));
        nodes.observe(
            &alert("a", 71 * s, METRICS_RULE).with_fields([("falco.evts_rate_sec", "12.5")]),
        );
        nodes.observe(&alert("a", 5 * s, METRICS_RULE).with_fields([("falco.evts_rate_sec", "1")]));
        nodes.observe(
            &OutputEvent::new(0, Priority::Debug, "r", "x", "syscall").with_hostname("engine"),
        );
        let list = nodes.list();
        assert_eq!(list.len(), 1, "the engine's own alerts are no node");
        let a = &list[0];
        assert_eq!(a.alerts, 123);
        assert_eq!(a.syscall_drops, 7);
        assert_eq!(a.drop_alerts, 1);
        assert_eq!(
            a.event_rate(),
            12.5,
            "an older snapshot does not replace a newer one"
        );
        assert_eq!(a.last_seen_ns, 71 * s);
        assert!((a.alert_rate - 2.0).abs() < 0.1, "{}", a.alert_rate);
        assert_eq!(a.origins, vec!["falco-http"]);
    }
}
