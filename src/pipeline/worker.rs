//! An evaluation thread: takes batches off the queue, decodes and evaluates each event, and
//! formats the alerts into output events.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::{Job, OutputSettings, Pipeline, Work};
use crate::base::event::OutputEvent;
use crate::engine::format::{alert_json, alert_line, JsonAlert};
use crate::engine::isolate::panic_message;
use crate::engine::{input, Alert, EventData};

/// What one batch produced.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// The highest client sequence number of the batch.
    pub accepted_up_to: u64,
    /// Events (as sent) that matched at least one rule.
    pub matched: u64,
    /// Audit events evaluated (after EventLists were split).
    pub evaluated: u64,
    pub rejected: Vec<(u64, String)>,
    /// Rejections for oversize payloads (also in `rejected`), for the drops log.
    pub too_large: u64,
    /// Events whose evaluation failed inside the engine (a caught panic; also in `rejected`).
    pub failed: u64,
    pub outputs: Vec<OutputEvent>,
}

/// The thread's body: evaluates jobs until the queue closes. A panic that escapes an event's
/// own guard (see [`evaluate`]) is logged and the loop starts again, so the thread never dies.
pub(super) fn run(rx: Arc<Mutex<Receiver<Work>>>, hostname: String, took: prometheus::Histogram) {
    loop {
        match catch_unwind(AssertUnwindSafe(|| serve_jobs(&rx, &hostname, &took))) {
            Ok(()) => return,
            Err(payload) => tracing::error!(
                message = panic_message(payload.as_ref()),
                "an evaluation thread panicked outside an event; it goes on"
            ),
        }
    }
}

fn serve_jobs(rx: &Mutex<Receiver<Work>>, hostname: &str, took: &prometheus::Histogram) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.recv() {
                Ok(Work::Job(job)) => job,
                Ok(Work::Stop) | Err(_) => return,
            }
        };
        let host = if job.output.hostname.is_empty() {
            hostname
        } else {
            &job.output.hostname
        };
        let began = std::time::Instant::now();
        let result = evaluate(&job, host, job.max_payload);
        took.observe(began.elapsed().as_secs_f64());
        let _ = job.reply.send(result);
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn valid_source(source: &str) -> bool {
    !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn evaluate(job: &Job, hostname: &str, max_payload: usize) -> BatchResult {
    let mut result = BatchResult::default();
    let opts = Pipeline::eval_options(&job.output);
    for ev in &job.events {
        result.accepted_up_to = result.accepted_up_to.max(ev.seq);
        if !valid_source(&ev.source) {
            result
                .rejected
                .push((ev.seq, format!("invalid source name '{}'", ev.source)));
            continue;
        }
        if ev.payload.len() > max_payload {
            result.too_large += 1;
            result.rejected.push((
                ev.seq,
                format!(
                    "payload of {} bytes exceeds the limit of {max_payload} bytes",
                    ev.payload.len()
                ),
            ));
            continue;
        }
        let decoded =
            match input::decode(&ev.source, &ev.payload, ev.time_ns.unwrap_or_else(now_ns)) {
                Ok(d) => d,
                Err(reason) => {
                    result.rejected.push((ev.seq, reason));
                    continue;
                }
            };
        let host = if ev.hostname.is_empty() {
            hostname
        } else {
            &ev.hostname
        };
        let evaluated = catch_unwind(AssertUnwindSafe(|| {
            let mut outputs = Vec::new();
            for d in &decoded {
                let time_ns = ev.time_ns.unwrap_or(d.time_ns);
                let data = EventData {
                    source: &ev.source,
                    json: &d.json,
                    time_ns,
                    hostname: host,
                    num: ev.seq,
                };
                for alert in job.rules.evaluate(&data, &opts) {
                    let mut out = output_event(&alert, time_ns, host, &job.output);
                    out.rules_revision = job.rules.revision;
                    outputs.push(out);
                }
            }
            outputs
        }));
        match evaluated {
            Ok(outputs) => {
                result.evaluated += decoded.len() as u64;
                if !outputs.is_empty() {
                    result.matched += 1;
                }
                result.outputs.extend(outputs);
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(
                    seq = ev.seq,
                    message,
                    "evaluating an event panicked; it is rejected"
                );
                result.failed += 1;
                result.rejected.push((
                    ev.seq,
                    format!("internal error evaluating this event: {message}"),
                ));
            }
        }
    }
    result
}

/// An alert as the outputs log stores it, formatted per the output settings.
pub fn output_event(
    alert: &Alert<'_>,
    time_ns: i64,
    hostname: &str,
    s: &OutputSettings,
) -> OutputEvent {
    let rule = alert.rule;
    let line = alert_line(
        time_ns,
        rule.priority,
        &alert.rendered.message,
        s.time_format_iso_8601,
    );
    let output = if s.json_output {
        alert_json(&JsonAlert {
            time_ns,
            rule: &rule.name,
            priority: rule.priority,
            source: &rule.source,
            hostname,
            output: &line,
            fields: &alert.rendered.fields,
            tags: &rule.tags,
            include_output: s.json_include_output_property,
            include_tags: s.json_include_tags_property,
            message: s
                .json_include_message_property
                .then_some(alert.rendered.message.as_str()),
            include_output_fields: s.json_include_output_fields_property,
        })
    } else {
        line
    };
    let fields = alert
        .rendered
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_else(|| "<NA>".to_string())));
    let event = OutputEvent::new(
        time_ns,
        rule.priority,
        rule.name.clone(),
        output,
        rule.source.clone(),
    )
    .with_tags(rule.tags.iter().cloned())
    .with_fields(fields)
    .with_hostname(hostname);
    event
}
