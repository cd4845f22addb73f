//! `falco-api eval`: evaluate rules files on recorded events, offline (what `falco -r RULES -e
//! EVENTS` was to rules authors). Alerts are printed as JSON lines, then a summary line.

use crate::base::event::counted;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::base::event::Priority;
use crate::engine::format::{alert_json, JsonAlert};
use crate::engine::{input, EvalOptions, EventData, LoadOptions, Matching, RuleSet};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MatchingArg {
    First,
    All,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Rules files, loaded in the order given (repeatable).
    #[arg(long = "rules", short = 'r', required = true)]
    pub rules: Vec<PathBuf>,
    /// The events' source: k8s_audit (audit Event / EventList JSON lines), syscall (objects of
    /// field name → value), or any custom source name (JSON objects).
    #[arg(long, default_value = "k8s_audit")]
    pub source: String,
    /// first: at most one alert per event, the first matching rule (Falco's default).
    #[arg(long, value_enum, default_value = "first")]
    pub matching: MatchingArg,
    /// Skip rules less severe than this.
    #[arg(long, default_value = "debug")]
    pub min_priority: Priority,
    /// Only load and compile the rules; print errors and warnings.
    #[arg(long)]
    pub validate: bool,
    /// A field catalog (`falco --list --format json` of the Falco you run): rules may use its
    /// fields, validated but not evaluated where falco-api does not implement them.
    #[arg(long)]
    pub fields: Option<PathBuf>,
    /// The events file: JSON lines, a JSON array, or one document (an EventList, a CloudTrail
    /// log file). Not needed with --validate.
    #[arg(required_unless_present = "validate")]
    pub events: Option<PathBuf>,
}

/// Reads a field catalog and says, per source, how many of its fields falco-api evaluates.
fn read_catalog(
    path: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<crate::engine::catalog::Catalog>> {
    let c = crate::engine::catalog::Catalog::read(path).map_err(anyhow::Error::msg)?;
    for (source, listed, native) in c.summary() {
        eprintln!(
            "field catalog: {source}: {listed} fields, {native} evaluated by falco-api, {} \
             validated only",
            listed - native
        );
    }
    Ok(std::sync::Arc::new(c))
}

pub fn eval(args: EvalArgs) -> anyhow::Result<i32> {
    let files = crate::engine::files::read_rules_files(&args.rules).map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let opts = LoadOptions {
        catalog: args.fields.as_deref().map(read_catalog).transpose()?,
        ..LoadOptions::default()
    };
    let set = match RuleSet::load(&files, &opts) {
        Ok(set) => set,
        Err(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!("error: {}", e.error);
            return Ok(1);
        }
    };
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    if args.validate {
        println!(
            "{} loaded from {} in {:.1} ms ({})",
            counted(set.infos().len() as u64, "rule", "rules"),
            counted(files.len() as u64, "file", "files"),
            started.elapsed().as_secs_f64() * 1e3,
            counted(set.warnings.len() as u64, "warning", "warnings")
        );
        return Ok(0);
    }
    let path = args
        .events
        .expect("clap requires events without --validate");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let opts = EvalOptions {
        matching: match args.matching {
            MatchingArg::First => Matching::First,
            MatchingArg::All => Matching::All,
        },
        min_priority: args.min_priority,
    };
    let hostname = crate::base::hostname();
    let (mut events, mut alerts, mut rejected) = (0u64, 0u64, 0u64);
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    // As `send` reads a file: JSON lines, a JSON array, one document (a CloudTrail log file's
    // records one by one).
    for (place, payload) in super::send::payloads(&text, &args.source) {
        let decoded = match input::decode(&args.source, &payload, 0) {
            Ok(d) => d,
            Err(e) => {
                rejected += 1;
                eprintln!("{}: {place}: event rejected: {e}", path.display());
                continue;
            }
        };
        for d in decoded {
            events += 1;
            let data = EventData {
                source: &args.source,
                json: &d.json,
                time_ns: d.time_ns,
                hostname: &hostname,
                num: events,
            };
            for alert in set.evaluate(&data, &opts) {
                alerts += 1;
                *by_rule.entry(alert.rule.name.clone()).or_default() += 1;
                let line = crate::engine::format::alert_line(
                    d.time_ns,
                    alert.rule.priority,
                    &alert.rendered.message,
                    false,
                );
                println!(
                    "{}",
                    alert_json(&JsonAlert {
                        time_ns: d.time_ns,
                        rule: &alert.rule.name,
                        priority: alert.rule.priority,
                        source: &alert.rule.source,
                        hostname: &hostname,
                        output: &line,
                        fields: &alert.rendered.fields,
                        tags: &alert.rule.tags,
                        include_output: true,
                        include_tags: true,
                        message: None,
                        include_output_fields: true,
                    })
                );
            }
        }
    }
    let summary = serde_json::json!({
        "summary": { "events": events, "alerts": alerts, "rejected": rejected, "by_rule": by_rule }
    });
    println!("{summary}");
    Ok(if rejected > 0 { 2 } else { 0 })
}
