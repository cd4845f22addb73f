//! The domain records that flow through falco-api: output events (alerts) and their priorities.
//! These are what the store persists and the services translate to and from the wire types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Falco's alert priorities, most severe first. The numbers are the wire numbers of
/// `falco.schema.priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Priority {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// The title-case name Falco prints in alert lines (`Informational`, not `Info`).
    pub fn name(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }

    pub fn from_number(n: i32) -> Option<Priority> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// True when `self` is at least as severe as `min`.
    pub fn at_least(self, min: Priority) -> bool {
        self <= min
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid priority '{0}' (expected one of emergency, alert, critical, error, warning, notice, informational/info, debug)")]
pub struct InvalidPriority(pub String);

impl FromStr for Priority {
    type Err = InvalidPriority;

    /// Case-insensitive, with Falco's `info` alias.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "info" {
            return Ok(Priority::Informational);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(&lower))
            .ok_or_else(|| InvalidPriority(s.to_string()))
    }
}

/// Where an alert came from. Stored with each alert (schema 7) and sent as `origin` on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// Produced by falco-api's engine from an event sent through `inputs` or the webhook.
    #[default]
    Engine,
    /// falco-api's own notices (drop alerts).
    Internal,
    /// Posted by Falco's `http_output`.
    FalcoHttp,
    /// Read from a file Falco's `file_output` writes (`send --alerts FILE`).
    FalcoFile,
    /// Read from standard input, as Falco's `program_output` writes it (`send --alerts -`).
    FalcoProgram,
}

impl Origin {
    pub const ALL: [Origin; 5] = [
        Origin::Engine,
        Origin::Internal,
        Origin::FalcoHttp,
        Origin::FalcoFile,
        Origin::FalcoProgram,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Origin::Engine => "engine",
            Origin::Internal => "falco-api",
            Origin::FalcoHttp => "falco-http",
            Origin::FalcoFile => "falco-file",
            Origin::FalcoProgram => "falco-program",
        }
    }

    pub fn from_name(name: &str) -> Option<Origin> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One alert, as stored in the outputs log. The log assigns its sequence number (the key), so it
/// is not part of the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEvent {
    /// Event time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub priority: Priority,
    pub rule: String,
    /// The formatted alert line (or the whole JSON document when JSON output is on).
    pub output: String,
    /// Output fields, sorted by name; every value is a string, as on the wire.
    pub output_fields: Vec<(String, String)>,
    pub hostname: String,
    /// Sorted and de-duplicated.
    pub tags: Vec<String>,
    /// Source name: `syscall`, `k8s_audit`, `internal`, or a plugin's / custom source's name.
    pub source: String,
    /// UUIDv7, unique per event.
    pub id: [u8; 16],
    /// The rules revision that produced the event; 0 when not known.
    pub rules_revision: u64,
    /// What produced it.
    pub origin: Origin,
}

impl OutputEvent {
    /// A new event with a fresh id; tags are sorted and de-duplicated, fields sorted by name.
    pub fn new(
        time_ns: i64,
        priority: Priority,
        rule: impl Into<String>,
        output: impl Into<String>,
        source: impl Into<String>,
    ) -> OutputEvent {
        OutputEvent {
            time_ns,
            priority,
            rule: rule.into(),
            output: output.into(),
            output_fields: Vec::new(),
            hostname: String::new(),
            tags: Vec::new(),
            source: source.into(),
            id: *uuid::Uuid::now_v7().as_bytes(),
            rules_revision: 0,
            origin: Origin::Engine,
        }
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self.tags.sort();
        self.tags.dedup();
        self
    }

    pub fn with_fields<I, K, V>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.output_fields = fields
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.output_fields.sort();
        self
    }

    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    pub fn id_string(&self) -> String {
        uuid::Uuid::from_bytes(self.id).to_string()
    }
}

/// Where a loss happened.
pub mod stage {
    /// The ingest queue was full under the `drop` policy.
    pub const INGEST_QUEUE_FULL: &str = "ingest_queue_full";
    /// The client exceeded its ingest rate.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// An event payload exceeded the size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// A subscriber or consumer fell behind the trimmed outputs log.
    pub const SUBSCRIBER_LAGGED: &str = "subscriber_lagged";
    /// System calls Falco itself dropped (its `Falco internal: syscall event drop` alerts).
    pub const FALCO_SYSCALL_DROP: &str = "falco_syscall_drop";
    /// Events whose evaluation failed inside the engine (a caught panic).
    pub const EVALUATION_FAILED: &str = "evaluation_failed";
    /// Alerts throttled by `outputs.rate` / `outputs.max_burst`.
    pub const OUTPUTS_RATE_LIMITED: &str = "outputs_rate_limited";
}

/// One loss, as stored in the drops log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRecord {
    pub time_ns: i64,
    /// One of [`stage`]'s names.
    pub stage: String,
    pub source: String,
    /// The client (or consumer) the loss concerns; empty when none.
    pub client: String,
    /// Events lost in the window.
    pub n_drops: u64,
    /// Events seen in the window.
    pub n_evts: u64,
    pub message: String,
    pub id: [u8; 16],
}

impl DropRecord {
    pub fn now(
        stage: &str,
        source: &str,
        client: &str,
        n_drops: u64,
        n_evts: u64,
        message: String,
    ) -> Self {
        DropRecord {
            time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            stage: stage.to_string(),
            source: source.to_string(),
            client: client.to_string(),
            n_drops,
            n_evts,
            message,
            id: *uuid::Uuid::now_v7().as_bytes(),
        }
    }
}

/// Which output events a subscriber wants; an empty criterion matches everything.
#[derive(Clone, Debug, Default)]
pub struct OutputFilter {
    /// At least one of these tags.
    pub tags: Vec<String>,
    /// One of these rule names.
    pub rules: Vec<String>,
    /// At least this severe.
    pub min_priority: Option<Priority>,
    /// One of these source names.
    pub sources: Vec<String>,
    /// One of these hostnames (a falco-api extension: a fleet collector holds many hosts).
    pub hostnames: Vec<String>,
}

impl OutputFilter {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.rules.is_empty()
            && self.min_priority.is_none()
            && self.sources.is_empty()
            && self.hostnames.is_empty()
    }

    pub fn matches(&self, event: &OutputEvent) -> bool {
        self.matches_key(&AlertKey {
            priority: Some(event.priority),
            rule: &event.rule,
            source: &event.source,
            hostname: &event.hostname,
            tags: &event.tags,
        })
    }

    pub fn matches_key(&self, alert: &AlertKey<'_>) -> bool {
        let in_list =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|x| x == value);
        (self.tags.is_empty() || alert.tags.iter().any(|t| self.tags.contains(t)))
            && in_list(&self.rules, alert.rule)
            && self
                .min_priority
                .is_none_or(|min| alert.priority.is_some_and(|p| p.at_least(min)))
            && in_list(&self.sources, alert.source)
            && in_list(&self.hostnames, alert.hostname)
    }
}

/// What an [`OutputFilter`] looks at in an alert (a stored alert's header is enough).
pub struct AlertKey<'a> {
    /// `None` when a stored number is not a priority: no minimum priority matches it.
    pub priority: Option<Priority>,
    pub rule: &'a str,
    pub source: &'a str,
    pub hostname: &'a str,
    pub tags: &'a [String],
}

/// `1 file`, `2 files`: a count and its noun, for messages.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_parses_falco_names_case_insensitively() {
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warning);
        assert_eq!("info".parse::<Priority>().unwrap(), Priority::Informational);
        assert_eq!(
            "Informational".parse::<Priority>().unwrap(),
            Priority::Informational
        );
        assert!("loud".parse::<Priority>().is_err());
        assert!(Priority::Critical.at_least(Priority::Warning));
        assert!(!Priority::Debug.at_least(Priority::Warning));
    }

    #[test]
    fn filter_needs_every_criterion() {
        let ev = OutputEvent::new(0, Priority::Warning, "r1", "out", "k8s_audit")
            .with_tags(["k8s", "network"]);
        assert!(OutputFilter::default().matches(&ev));
        let by_tag = OutputFilter {
            tags: vec!["network".into()],
            ..Default::default()
        };
        assert!(by_tag.matches(&ev));
        let strict = OutputFilter {
            min_priority: Some(Priority::Error),
            ..by_tag.clone()
        };
        assert!(!strict.matches(&ev));
        let other_source = OutputFilter {
            sources: vec!["syscall".into()],
            ..by_tag
        };
        assert!(!other_source.matches(&ev));
        let host = |h: &str| OutputFilter {
            hostnames: vec![h.into()],
            ..Default::default()
        };
        assert!(host("node-1").matches(&ev.clone().with_hostname("node-1")));
        assert!(!host("node-2").matches(&ev.with_hostname("node-1")));
    }
}
