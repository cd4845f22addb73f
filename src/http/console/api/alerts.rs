//! Alerts and the overview: the alerts table (filters as the outputs service, plus hostname and
//! free text), one whole alert, and counts by rule, priority and host.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{answer, nonempty, rfc3339};
use crate::base::event::{OutputEvent, OutputFilter, Priority};
use crate::http::ApiError;
use crate::services::control::ControlError;
use crate::services::App;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/alerts", get(alerts))
        .route("/alert", get(alert))
        .route("/overview", get(overview))
}

// ---- alerts ----

/// The alert filters a page's URL holds; the outputs service's semantics, plus hostname and
/// free text (case-insensitive, on the output).
#[derive(Debug, Default, Deserialize, Clone)]
pub struct AlertQuery {
    /// Priority at least this severe: a name (`warning`) or number (0-7).
    pub priority: Option<String>,
    pub rule: Option<String>,
    pub tag: Option<String>,
    pub source: Option<String>,
    pub hostname: Option<String>,
    pub q: Option<String>,
    /// Alerts before this seq (history pages), newest first.
    pub before: Option<u64>,
    /// The stream starts after this seq (without a Last-Event-ID).
    pub after: Option<u64>,
    /// Only alerts the log stored at or after this time (RFC 3339): the time picker. History pages
    /// stop there; a stream without another position starts there.
    pub since: Option<String>,
    pub limit: Option<usize>,
}

fn parse_priority(text: &str) -> Option<Priority> {
    if let Ok(n) = text.parse::<i32>() {
        return Priority::from_number(n);
    }
    Priority::ALL.into_iter().find(|p| {
        p.name().eq_ignore_ascii_case(text)
            || (text.eq_ignore_ascii_case("info") && *p == Priority::Informational)
    })
}

impl AlertQuery {
    /// The seq before the first alert stored at or after `since`, if it is set.
    pub fn since_seq(&self, app: &App) -> Result<Option<u64>, String> {
        let Some(text) = nonempty(&self.since) else {
            return Ok(None);
        };
        let time = chrono::DateTime::parse_from_rfc3339(&text)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_nanos_opt()?).ok())
            .ok_or_else(|| format!("since '{text}' is not an RFC 3339 time"))?;
        Ok(Some(app.logs.outputs.seq_before(time)))
    }

    /// The filter, or why the query is wrong.
    pub fn filter(&self) -> Result<impl Fn(&OutputEvent) -> bool + Send + Sync + 'static, String> {
        let min_priority = match nonempty(&self.priority) {
            Some(p) => Some(parse_priority(&p).ok_or_else(|| {
                format!("priority '{p}' is not a priority (emergency … debug or 0-7)")
            })?),
            None => None,
        };
        let base = OutputFilter {
            tags: nonempty(&self.tag).into_iter().collect(),
            rules: nonempty(&self.rule).into_iter().collect(),
            min_priority,
            sources: nonempty(&self.source).into_iter().collect(),
            hostnames: nonempty(&self.hostname).into_iter().collect(),
        };
        let text = nonempty(&self.q).map(|q| q.to_lowercase());
        Ok(move |ev: &OutputEvent| {
            (base.is_empty() || base.matches(ev))
                && text
                    .as_ref()
                    .is_none_or(|t| ev.output.to_lowercase().contains(t))
        })
    }
}

/// List views (the table, the live stream) show at most this much of an alert's output and of
/// each field's value; the detail panel asks for the whole alert (`/alert?seq=`).
const SUMMARY_TEXT: usize = 2048;
const SUMMARY_FIELD: usize = 512;
const SUMMARY_FIELDS: usize = 64;
/// An `/alerts` answer holds alerts up to about this many bytes (at least one).
const ANSWER_BYTES: usize = 4 << 20;
/// Records read from the log at once while scanning backwards (alerts may be 1 MiB each).
const SCAN_STEP: u64 = 64;

/// `text` cut to at most `max` bytes on a character boundary; whether it was cut.
fn cut(text: &str, max: usize) -> (&str, bool) {
    let kept = crate::base::event::clip(text, max);
    (kept, kept.len() < text.len())
}

/// An alert as the page shows it: whole when `full`, else with its output and fields cut to a
/// list view's size (`truncated` says so).
pub fn alert_json(seq: u64, ev: &OutputEvent, full: bool) -> Value {
    let (text_max, field_max, fields_max) = if full {
        (usize::MAX, usize::MAX, usize::MAX)
    } else {
        (SUMMARY_TEXT, SUMMARY_FIELD, SUMMARY_FIELDS)
    };
    let (output, mut truncated) = cut(&ev.output, text_max);
    let mut fields = BTreeMap::new();
    for (k, v) in ev.output_fields.iter() {
        if fields.len() == fields_max {
            truncated = true;
            break;
        }
        let (k, k_cut) = cut(k, field_max);
        let (v, v_cut) = cut(v, field_max);
        truncated |= k_cut || v_cut;
        fields.insert(k, v);
    }
    let (rule, rule_cut) = cut(&ev.rule, text_max);
    let (hostname, host_cut) = cut(&ev.hostname, field_max);
    truncated |= rule_cut || host_cut || (!full && ev.tags.len() > fields_max);
    let tags: Vec<&str> = ev
        .tags
        .iter()
        .take(fields_max)
        .map(|t| cut(t, field_max).0)
        .collect();
    json!({
        "seq": seq,
        "time": rfc3339(ev.time_ns),
        "priority": ev.priority.name(),
        "priority_num": ev.priority as u8,
        "rule": rule,
        "output": output,
        "hostname": hostname,
        "source": cut(&ev.source, field_max).0,
        "tags": tags,
        "fields": fields,
        "rules_revision": ev.rules_revision,
        "origin": ev.origin.name(),
        "truncated": truncated,
    })
}

/// Visits the outputs log backwards from `before` (exclusive), newest first, reading at most
/// `scan` records a few at a time; `visit` returns false to stop.
fn scan_newest(
    app: &App,
    before: u64,
    scan: u64,
    mut visit: impl FnMut(u64, OutputEvent) -> bool,
) -> Result<(), crate::store::StoreError> {
    let ring = app.logs.outputs_log();
    let oldest = ring.bounds().oldest;
    let mut end = before.saturating_sub(1);
    let mut scanned = 0;
    while end >= oldest && end > 0 && scanned < scan {
        let start = end.saturating_sub(SCAN_STEP).max(oldest.saturating_sub(1));
        let mut batch = ring.read(start, end, SCAN_STEP as usize)?;
        scanned += batch.len() as u64;
        batch.reverse();
        for (seq, ev) in batch {
            if !visit(seq, ev) {
                return Ok(());
            }
        }
        if start == 0 || start < oldest {
            break;
        }
        end = start;
    }
    Ok(())
}

async fn alerts(State(app): State<App>, Query(q): Query<AlertQuery>) -> Response {
    let keep = match q.filter() {
        Ok(f) => f,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let floor = match q.since_seq(&app) {
        Ok(f) => f.unwrap_or(0),
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let head = app.logs.outputs.head();
    let before = q.before.unwrap_or(head + 1).min(head + 1);
    let limit = q.limit.unwrap_or(200).clamp(1, 2000);
    answer(move || -> Result<Value, crate::store::StoreError> {
        let mut found = Vec::new();
        let mut bytes = 0;
        let mut complete = true;
        scan_newest(&app, before, 200_000, |seq, ev| {
            if seq <= floor {
                return false;
            }
            if !keep(&ev) {
                return true;
            }
            let summary = alert_json(seq, &ev, false);
            bytes += summary.to_string().len();
            found.push(summary);
            if bytes >= ANSWER_BYTES && found.len() < limit {
                complete = false;
            }
            found.len() < limit && bytes < ANSWER_BYTES
        })?;
        Ok(json!({
            "alerts": found,
            "head": head,
            "oldest": app.logs.outputs.oldest(),
            "cut_at_bytes": (!complete).then_some(ANSWER_BYTES),
        }))
    })
    .await
}

#[derive(Deserialize)]
struct OneQuery {
    seq: u64,
}

/// One whole alert, for the detail panel.
async fn alert(State(app): State<App>, Query(q): Query<OneQuery>) -> Response {
    answer(move || -> Result<Value, ControlError> {
        let found = app
            .store
            .outputs()
            .read(q.seq.saturating_sub(1), q.seq, 1)?;
        match found.into_iter().find(|(s, _)| *s == q.seq) {
            Some((seq, ev)) => Ok(alert_json(seq, &ev, true)),
            None => Err(ControlError::NotFound(format!(
                "alert {} is not in the log (trimmed, or not written yet)",
                q.seq
            ))),
        }
    })
    .await
}

// ---- overview ----

async fn overview(State(app): State<App>) -> Response {
    answer(move || overview_of(&app)).await
}

/// Distinct rule and host names the overview counts at most.
const OVERVIEW_NAMES: usize = 10_000;

fn overview_of(app: &App) -> Result<Value, crate::store::StoreError> {
    const MINUTE: i64 = 60_000_000_000;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let hour_start = now - 60 * MINUTE;
    let day_start = now - 24 * 60 * MINUTE;
    let mut hour = vec![[0u64; 8]; 60];
    let mut day = vec![[0u64; 8]; 24];
    let mut rules: HashMap<String, u64> = HashMap::new();
    let mut hosts: HashMap<String, u64> = HashMap::new();
    let mut last_day = 0u64;
    // The last day, newest first, counted while scanning; at most the newest 200,000 alerts are
    // read, and at most OVERVIEW_NAMES rule and host names are counted (names are cut).
    let head = app.logs.outputs.head();
    let count = |m: &mut HashMap<String, u64>, name: &str| {
        let name = cut(name, SUMMARY_FIELD).0;
        if let Some(n) = m.get_mut(name) {
            *n += 1;
        } else if m.len() < OVERVIEW_NAMES {
            m.insert(name.to_string(), 1);
        }
    };
    scan_newest(app, head + 1, 200_000, |_, ev| {
        if ev.time_ns < day_start {
            return true;
        }
        last_day += 1;
        let p = ev.priority as usize;
        if ev.time_ns >= hour_start {
            let i = ((ev.time_ns - hour_start) / MINUTE).clamp(0, 59) as usize;
            hour[i][p] += 1;
        }
        let i = ((ev.time_ns - day_start) / (60 * MINUTE)).clamp(0, 23) as usize;
        day[i][p] += 1;
        count(&mut rules, &ev.rule);
        count(&mut hosts, &ev.hostname);
        true
    })?;
    let top = |m: HashMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(10);
        v.into_iter()
            .map(|(name, count)| json!({"name": name, "count": count}))
            .collect::<Vec<_>>()
    };
    let drops = app.logs.drops_log();
    let drop_bounds = drops.bounds();
    let mut drop_stages: BTreeMap<String, u64> = BTreeMap::new();
    let from = drop_bounds.newest.saturating_sub(10_000);
    for (_, d) in drops.read(from, drop_bounds.newest, 10_000)? {
        if d.time_ns >= day_start {
            *drop_stages.entry(d.stage.clone()).or_default() += d.n_drops;
        }
    }
    let nodes: Vec<Value> = app
        .nodes
        .list()
        .into_iter()
        .map(|n| {
            json!({
                "hostname": n.hostname, "last_seen": rfc3339(n.last_seen_ns),
                "alerts": n.alerts, "alert_rate": n.alert_rate, "event_rate": n.event_rate(),
                "syscall_drops": n.syscall_drops,
            })
        })
        .collect();
    Ok(json!({
        "now": rfc3339(now),
        "priorities": Priority::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "hour": hour, "day": day,
        "top_rules": top(rules), "top_hosts": top(hosts),
        "alerts_last_day": last_day,
        "drops_last_day": drop_stages,
        "nodes": nodes,
        "head": head, "oldest": app.logs.outputs.oldest(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_queries_filter_like_the_outputs_service() {
        let ev = OutputEvent::new(0, Priority::Warning, "r", "Shell In Pod", "syscall")
            .with_hostname("h1");
        let q = |f: AlertQuery| f.filter().unwrap()(&ev);
        assert!(q(AlertQuery::default()));
        assert!(q(AlertQuery {
            priority: Some("warning".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            priority: Some("error".into()),
            ..Default::default()
        }));
        assert!(q(AlertQuery {
            q: Some("shell in".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            hostname: Some("h2".into()),
            ..Default::default()
        }));
        assert!(!q(AlertQuery {
            rule: Some("x".into()),
            ..Default::default()
        }));
        assert!(AlertQuery {
            priority: Some("loud".into()),
            ..Default::default()
        }
        .filter()
        .is_err());
    }
}
