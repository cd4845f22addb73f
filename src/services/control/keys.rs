//! The runtime configuration keys: what each accepts, its default, and how a set of effective
//! values becomes the settings the running server uses. The boot file, the configs service and
//! the history all speak these keys.

use std::collections::BTreeMap;

use crate::base::event::Priority;
use crate::base::throttle::DropAlertSettings;
use crate::engine::Matching;
use crate::pipeline::{OutputSettings, QueuePolicy, Settings};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Bool,
    Int(u64, u64),
    Float(f64, f64),
    OneOf(&'static [&'static str]),
    Priority,
    /// A host name: 1-253 printable characters.
    Host,
    /// A tracing filter directive.
    LogFilter,
    /// A size in bytes: a number with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB).
    Bytes(u64, u64),
    /// A duration up to this many seconds (`30d`, `12h`, `2h30m`), kept as seconds; 0: none.
    Age(u64),
}

pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub description: &'static str,
}

const fn key(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    description: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        description,
    }
}

pub const KEYS: &[Key] = &[
    key(
        "priority",
        Kind::Priority,
        "debug",
        "minimum priority of the rules that run",
    ),
    key(
        "json_output",
        Kind::Bool,
        "false",
        "alerts' output field holds the whole JSON document",
    ),
    key(
        "json_include_output_property",
        Kind::Bool,
        "true",
        "JSON alerts include the output line",
    ),
    key(
        "json_include_tags_property",
        Kind::Bool,
        "true",
        "JSON alerts include the rule's tags",
    ),
    key(
        "json_include_message_property",
        Kind::Bool,
        "false",
        "JSON alerts include the output without time and priority as message",
    ),
    key(
        "json_include_output_fields_property",
        Kind::Bool,
        "true",
        "JSON alerts include output_fields",
    ),
    key(
        "time_format_iso_8601",
        Kind::Bool,
        "false",
        "alert lines start with an ISO 8601 time",
    ),
    key(
        "rule_matching",
        Kind::OneOf(&["first", "all"]),
        "first",
        "first: one alert per event; all: every matching rule",
    ),
    key(
        "outputs.rate",
        Kind::Float(0.0, 1e9),
        "0",
        "alerts per second stored (token bucket; 0: unlimited)",
    ),
    key(
        "outputs.max_burst",
        Kind::Int(1, 1_000_000_000),
        "1000",
        "alert burst allowed by outputs.rate",
    ),
    key(
        "outputs.capacity",
        Kind::Int(1, 1_000_000_000),
        "100000",
        "output events the outputs log retains",
    ),
    key(
        "outputs.max_bytes",
        Kind::Bytes(1 << 20, 1 << 50),
        "1073741824",
        "bytes of alerts the outputs log retains (oldest trimmed first)",
    ),
    key(
        "outputs.max_age",
        Kind::Age(100 * 365 * 86_400),
        "0",
        "how long the outputs log keeps an alert (30d, 12h; 0: no age limit)",
    ),
    key(
        "drops.capacity",
        Kind::Int(1, 1_000_000_000),
        "10000",
        "drop records the drops log retains",
    ),
    key(
        "drops.max_bytes",
        Kind::Bytes(1 << 20, 1 << 50),
        "67108864",
        "bytes of drop records the drops log retains",
    ),
    key(
        "drops.max_age",
        Kind::Age(100 * 365 * 86_400),
        "0",
        "how long the drops log keeps a drop record (30d, 12h; 0: no age limit)",
    ),
    key(
        "hostname",
        Kind::Host,
        "",
        "hostname on alerts (empty: the machine's, or FALCO_HOSTNAME)",
    ),
    key(
        "log_level",
        Kind::LogFilter,
        "info",
        "log filter: error, warn, info, debug, trace or a directive",
    ),
    key(
        "ingest.queue_size",
        Kind::Int(1, 10_000_000),
        "16384",
        "events the ingest queue holds",
    ),
    key(
        "ingest.policy",
        Kind::OneOf(&["block", "drop"]),
        "block",
        "when the queue is full: block (backpressure) or drop",
    ),
    key(
        "ingest.max_payload_bytes",
        Kind::Int(1, 67_108_864),
        "1048576",
        "largest accepted event payload",
    ),
    key(
        "ingest.client_rate",
        Kind::Float(0.0, 1e12),
        "0",
        "events per second per client (0: unlimited)",
    ),
    key(
        "ingest.client_burst",
        Kind::Float(0.0, 1e12),
        "0",
        "burst allowed by ingest.client_rate (0: one second's worth)",
    ),
    key(
        "drops.alert_threshold",
        Kind::Float(0.0, 1.0),
        "0.1",
        "mirror a drop into outputs when n_drops/n_evts exceeds this",
    ),
    key(
        "drops.alert_rate",
        Kind::Float(0.0, 1e6),
        "0.03333",
        "drop alerts per second",
    ),
    key(
        "drops.alert_max_burst",
        Kind::Float(0.0, 1e6),
        "1",
        "drop alert burst",
    ),
];

pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

impl Key {
    /// What the key accepts, for messages and `get`.
    pub fn accepts(&self) -> String {
        match self.kind {
            Kind::Bool => "true or false".into(),
            Kind::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
            Kind::Float(lo, hi) => format!("a number from {lo} to {hi}"),
            Kind::OneOf(values) => format!("one of: {}", values.join(", ")),
            Kind::Priority => "a priority: emergency, alert, critical, error, warning, notice, informational (info), debug".into(),
            Kind::Host => "a host name of up to 253 printable characters (empty: the machine's)".into(),
            Kind::LogFilter => "a log filter: error, warn, info, debug, trace, or a tracing directive".into(),
            Kind::Bytes(lo, hi) => format!(
                "a size from {lo} to {hi} bytes, as bytes or with a unit (512MiB, 20GiB, 1TB)"
            ),
            Kind::Age(hi) => format!(
                "a duration of up to {hi} seconds, as seconds or with units (90m, 12h, 30d, 1w, \
                 2h30m); 0: no limit"
            ),
        }
    }

    /// Checks `value` and returns its normal form, or a message naming the key and what it accepts.
    pub fn validate(&self, value: &str) -> Result<String, String> {
        let v = value.trim();
        let bad = || {
            format!(
                "invalid value '{value}' for {}: expected {}",
                self.name,
                self.accepts()
            )
        };
        Ok(match self.kind {
            Kind::Bool => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => "true".into(),
                "false" | "no" | "off" | "0" => "false".into(),
                _ => return Err(bad()),
            },
            Kind::Int(lo, hi) => match v.parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => n.to_string(),
                _ => return Err(bad()),
            },
            Kind::Float(lo, hi) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && n >= lo && n <= hi => n.to_string(),
                _ => return Err(bad()),
            },
            Kind::OneOf(values) => match values.iter().find(|x| x.eq_ignore_ascii_case(v)) {
                Some(x) => x.to_string(),
                None => return Err(bad()),
            },
            Kind::Priority => match v.parse::<Priority>() {
                Ok(p) => p.name().to_ascii_lowercase(),
                Err(_) => return Err(bad()),
            },
            Kind::Host => {
                if v.len() > 253 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(bad());
                }
                v.to_string()
            }
            Kind::LogFilter => {
                if tracing_subscriber::EnvFilter::try_new(v).is_err() || v.is_empty() {
                    return Err(bad());
                }
                v.to_string()
            }
            Kind::Bytes(lo, hi) => match parse_bytes(v) {
                Some(n) if (lo..=hi).contains(&n) => n.to_string(),
                _ => return Err(bad()),
            },
            Kind::Age(hi) => match crate::base::duration::parse_duration(v) {
                Some(ns) if ns % 1_000_000_000 == 0 && ns / 1_000_000_000 <= hi => {
                    (ns / 1_000_000_000).to_string()
                }
                _ => return Err(bad()),
            },
        })
    }
}

/// `20GiB`, `512 MiB`, `1TB`, `1048576`: a size in bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Validates every key of `values`.
pub fn validate_all(values: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    values
        .iter()
        .map(|(k, v)| {
            let key = find(k).ok_or_else(|| unknown_key(k))?;
            Ok((k.clone(), key.validate(v)?))
        })
        .collect()
}

pub fn unknown_key(name: &str) -> String {
    format!(
        "unknown config key '{name}' (known keys: {})",
        KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
    )
}

/// Defaults overlaid with `values` (already validated).
pub fn effective(values: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    KEYS.iter()
        .map(|k| {
            (
                k.name.to_string(),
                values
                    .get(k.name)
                    .cloned()
                    .unwrap_or_else(|| k.default.to_string()),
            )
        })
        .collect()
}

/// Everything the running server derives from the effective configuration.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub pipeline: Settings,
    pub outputs_capacity: u64,
    pub drops_capacity: u64,
    /// Bytes each log retains at most.
    pub outputs_max_bytes: u64,
    pub drops_max_bytes: u64,
    /// Seconds each log keeps a record (0: no age limit).
    pub outputs_max_age_secs: u64,
    pub drops_max_age_secs: u64,
    /// Alerts per second stored (0: unlimited), and burst.
    pub outputs_rate: f64,
    pub outputs_max_burst: f64,
    pub log_level: String,
}

/// The settings of an effective configuration; `workers` is a boot-only setting.
pub fn runtime(effective: &BTreeMap<String, String>, workers: usize) -> Runtime {
    let v = Values(effective);
    Runtime {
        pipeline: Settings {
            queue_size: v.count("ingest.queue_size") as usize,
            policy: if v.text("ingest.policy") == "drop" {
                QueuePolicy::Drop
            } else {
                QueuePolicy::Block
            },
            max_payload_bytes: v.count("ingest.max_payload_bytes") as usize,
            client_rate: client_rate(&v),
            workers,
            output: output_settings(&v),
            drop_alerts: DropAlertSettings {
                threshold: v.number("drops.alert_threshold"),
                rate: v.number("drops.alert_rate"),
                max_burst: v.number("drops.alert_max_burst"),
            },
        },
        outputs_capacity: v.count("outputs.capacity"),
        drops_capacity: v.count("drops.capacity"),
        outputs_max_bytes: v.count("outputs.max_bytes"),
        drops_max_bytes: v.count("drops.max_bytes"),
        outputs_max_age_secs: v.seconds("outputs.max_age"),
        drops_max_age_secs: v.seconds("drops.max_age"),
        outputs_rate: v.number("outputs.rate"),
        outputs_max_burst: v.number("outputs.max_burst"),
        log_level: v.text("log_level").to_string(),
    }
}

/// Effective values (already validated) read as what each key holds; a key not set has its
/// default.
struct Values<'a>(&'a BTreeMap<String, String>);

impl Values<'_> {
    fn text(&self, k: &str) -> &str {
        self.0
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| find(k).map_or("", |k| k.default))
    }

    fn flag(&self, k: &str) -> bool {
        self.text(k) == "true"
    }

    fn number(&self, k: &str) -> f64 {
        self.text(k).parse::<f64>().unwrap_or(0.0)
    }

    fn count(&self, k: &str) -> u64 {
        self.text(k).parse::<u64>().unwrap_or(1)
    }

    fn seconds(&self, k: &str) -> u64 {
        self.text(k).parse::<u64>().unwrap_or(0)
    }
}

fn output_settings(v: &Values) -> OutputSettings {
    OutputSettings {
        json_output: v.flag("json_output"),
        json_include_output_property: v.flag("json_include_output_property"),
        json_include_tags_property: v.flag("json_include_tags_property"),
        json_include_message_property: v.flag("json_include_message_property"),
        json_include_output_fields_property: v.flag("json_include_output_fields_property"),
        time_format_iso_8601: v.flag("time_format_iso_8601"),
        min_priority: v.text("priority").parse().unwrap_or(Priority::Debug),
        matching: if v.text("rule_matching") == "all" {
            Matching::All
        } else {
            Matching::First
        },
        hostname: v.text("hostname").to_string(),
    }
}

/// Per-client rate and burst; none when the rate is 0 (a burst of 0 means the rate, at least 1).
fn client_rate(v: &Values) -> Option<(f64, f64)> {
    match v.number("ingest.client_rate") {
        r if r > 0.0 => {
            let burst = v.number("ingest.client_burst");
            Some((r, if burst > 0.0 { burst } else { r.max(1.0) }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid() {
        for k in KEYS {
            assert_eq!(
                k.validate(k.default).as_deref(),
                Ok(k.default),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn bad_values_name_the_key_and_what_it_accepts() {
        let err = find("ingest.policy")
            .unwrap()
            .validate("sometimes")
            .unwrap_err();
        assert!(
            err.contains("ingest.policy") && err.contains("block, drop"),
            "{err}"
        );
        let err = find("outputs.capacity").unwrap().validate("0").unwrap_err();
        assert!(err.contains("an integer from 1 to"), "{err}");
        assert_eq!(
            find("priority").unwrap().validate("INFO").unwrap(),
            "informational"
        );
        let size = find("outputs.max_bytes").unwrap();
        assert_eq!(size.validate("20GiB").unwrap(), (20u64 << 30).to_string());
        assert_eq!(size.validate("512 MB").unwrap(), "512000000");
        assert!(size.validate("12").unwrap_err().contains("a size from"));
        assert!(size.validate("3 parsecs").is_err());
        let age = find("outputs.max_age").unwrap();
        assert_eq!(age.validate("30d").unwrap(), "2592000");
        assert_eq!(age.validate("0").unwrap(), "0");
        assert!(age.validate("500ms").unwrap_err().contains("a duration"));
        assert!(age.validate("200000w").is_err());
        assert!(
            validate_all(&[("nope".to_string(), "1".to_string())].into())
                .unwrap_err()
                .contains("unknown config key 'nope'")
        );
    }
}
