//! The tuning preview: what an exception would have done to the rule's alerts the outputs log
//! still holds, evaluated on each alert's stored output fields.

use std::collections::VecDeque;

use crate::base::event::OutputEvent;
use crate::engine::tuning::AlertMatcher;
use crate::services::control::ControlError;
use crate::store::RingLog;

/// How many of the newest records a preview reads at most (the rest of a longer log is left
/// out, and the preview says so).
pub const SCAN_LIMIT: u64 = 2_000_000;

/// Records read per step.
const CHUNK: usize = 4096;

/// Counts over a set of the rule's alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// The rule's alerts looked at.
    pub examined: u64,
    /// Of those, the ones the exception matches.
    pub suppressed: u64,
    /// Of those, the ones lacking a field the exception reads (neither suppressed nor not).
    pub uncounted: u64,
}

impl Counts {
    fn add(&mut self, outcome: &Result<bool, String>) {
        self.examined += 1;
        match outcome {
            Ok(true) => self.suppressed += 1,
            Ok(false) => {}
            Err(_) => self.uncounted += 1,
        }
    }

    /// The alerts that would still be raised.
    pub fn alerting(&self) -> u64 {
        self.examined - self.suppressed - self.uncounted
    }
}

/// One of the rule's stored alerts, as an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub seq: u64,
    pub time_ns: i64,
    pub hostname: String,
    pub output: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    /// Every retained alert of the rule (within the scan).
    pub all: Counts,
    /// Those of the last `recent_since_ns`.. onwards.
    pub recent: Counts,
    pub recent_since_ns: i64,
    /// The oldest record the scan read: how far back the counts reach.
    pub reaches_ns: Option<i64>,
    /// Fields the exception reads that some of the rule's alerts do not carry.
    pub missing: Vec<String>,
    /// The newest few alerts the exception matches, and the newest few it does not.
    pub suppressed: Vec<Example>,
    pub alerting: Vec<Example>,
    /// Records read, and whether the log holds older ones the scan left out.
    pub scanned: u64,
    pub limited: bool,
}

/// Evaluates `matcher` on every retained alert of `alert`'s rule and source in `log` (the newest
/// [`SCAN_LIMIT`] records), counting all of them and those of the last `window_ns`.
pub fn scan(
    log: &RingLog<OutputEvent>,
    alert: &OutputEvent,
    matcher: &AlertMatcher,
    window_ns: u64,
    examples: usize,
) -> Result<Preview, ControlError> {
    let bounds = log.bounds();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut tally = Tally {
        p: Preview {
            recent_since_ns: now.saturating_sub(window_ns.min(i64::MAX as u64) as i64),
            ..Preview::default()
        },
        suppressed: VecDeque::new(),
        alerting: VecDeque::new(),
        examples,
    };
    let first = bounds
        .oldest
        .max(bounds.newest.saturating_sub(SCAN_LIMIT - 1));
    tally.p.limited = first > bounds.oldest;
    let mut after = first.saturating_sub(1);
    while after < bounds.newest {
        let chunk = log.read(after, bounds.newest, CHUNK)?;
        let Some(&(last, _)) = chunk.last() else {
            break;
        };
        after = last;
        for (seq, ev) in chunk {
            tally.p.scanned += 1;
            tally.p.reaches_ns.get_or_insert(ev.time_ns);
            if ev.rule == alert.rule && ev.source == alert.source {
                let outcome = matcher.matches(&ev.output_fields);
                tally.add(seq, &ev, outcome);
            }
        }
    }
    let mut p = tally.p;
    p.suppressed = tally.suppressed.into_iter().rev().collect();
    p.alerting = tally.alerting.into_iter().rev().collect();
    Ok(p)
}

/// The counts so far, and the newest examples of each kind (oldest first).
struct Tally {
    p: Preview,
    suppressed: VecDeque<Example>,
    alerting: VecDeque<Example>,
    examples: usize,
}

impl Tally {
    fn add(&mut self, seq: u64, ev: &OutputEvent, outcome: Result<bool, String>) {
        self.p.all.add(&outcome);
        if ev.time_ns >= self.p.recent_since_ns {
            self.p.recent.add(&outcome);
        }
        let kept = match outcome {
            Ok(true) => &mut self.suppressed,
            Ok(false) => &mut self.alerting,
            Err(field) => {
                if !self.p.missing.contains(&field) {
                    self.p.missing.push(field);
                }
                return;
            }
        };
        kept.push_back(Example {
            seq,
            time_ns: ev.time_ns,
            hostname: ev.hostname.clone(),
            output: ev.output.clone(),
        });
        if kept.len() > self.examples {
            kept.pop_front();
        }
    }
}
