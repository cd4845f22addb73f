//! `falco-api rules tune`: an exception from a stored alert, previewed (and saved unless
//! `--dry-run`) through the rules service's `tune` call.

use clap::Args;

use super::{print_warnings, when};
use crate::proto::rules::{self as rpb, service_client::ServiceClient};

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The alert (its seq, as `tail` and the console show it).
    #[arg(long)]
    pub alert: u64,
    /// A field to key the exception on, with the alert's value (repeatable). With none, the
    /// fields the alert offers are listed.
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// The operator: one for every field, or one per field in order (repeatable); `=` when
    /// none: =, !=, in, startswith, endswith, contains, pmatch, glob.
    #[arg(long = "comp")]
    pub comps: Vec<String>,
    /// The exception to add the values to, or a new exception's name (default: the rule's
    /// exception keyed on the same fields, else a new `falco_api_…` one).
    #[arg(long)]
    pub exception: Option<String>,
    /// Why: recorded in the history with the change.
    #[arg(long, short = 'm', default_value = "")]
    pub comment: String,
    /// Show the exception and its preview without saving it.
    #[arg(long)]
    pub dry_run: bool,
    /// The preview's recent window, in days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Compare-and-swap: the current revision.
    #[arg(long)]
    pub expect: Option<u64>,
}

pub async fn tune(
    c: &mut ServiceClient<tonic::transport::Channel>,
    a: TuneArgs,
) -> anyhow::Result<i32> {
    let listing = a.fields.is_empty();
    let req = rpb::TuneRequest {
        alert_seq: a.alert,
        fields: a.fields,
        comps: a.comps,
        exception: a.exception.unwrap_or_default(),
        comment: a.comment,
        dry_run: a.dry_run || listing,
        expected_revision: a.expect,
        days: a.days,
        examples: 3,
    };
    let r = c.tune(req).await?.into_inner();
    println!("rule:      {} ({})", r.rule, r.source);
    if listing {
        println!(
            "alert {} carries these fields of {}: {}",
            a.alert,
            r.source,
            r.offered_fields.join(", ")
        );
        eprintln!("name the fields to key the exception on with --field");
        return Ok(2);
    }
    print_tuned(&r);
    Ok(0)
}

/// The exception, its preview, the entry, and whether it was saved.
fn print_tuned(r: &rpb::TuneResponse) {
    let how = if r.reused {
        "values added to the rule's exception"
    } else {
        "a new exception"
    };
    println!("exception: {} ({how})", r.exception);
    for f in &r.fields {
        println!("  {} {} {:?}", f.field, f.comp, f.value);
    }
    if let Some(p) = &r.preview {
        print_preview(p);
    }
    println!("entry appended to {}:", r.file);
    for line in r.entry.lines() {
        println!("  {line}");
    }
    print_warnings(&r.warnings);
    if r.revision == 0 {
        println!("dry run: nothing saved");
    } else {
        println!("saved: revision {}", r.revision);
    }
}

fn print_preview(p: &rpb::TunePreview) {
    let all = p.all.unwrap_or_default();
    let recent = p.recent.unwrap_or_default();
    let reach = if p.limited {
        format!(
            "the newest {} records, back to {}",
            p.scanned,
            when(&p.reaches)
        )
    } else {
        format!("the whole log, back to {}", when(&p.reaches))
    };
    println!("preview over the rule's stored alerts ({reach}):");
    let line = |label: &str, c: &rpb::TuneCounts| {
        println!(
            "  {label}: {} alerts, {} suppressed, {} still alerting{}",
            c.examined,
            c.suppressed,
            c.examined - c.suppressed - c.uncounted,
            if c.uncounted > 0 {
                format!(", {} not counted", c.uncounted)
            } else {
                String::new()
            }
        )
    };
    line("all", &all);
    line(&format!("since {}", when(&p.recent_since)), &recent);
    if !p.missing_fields.is_empty() {
        println!(
            "  some of the rule's alerts do not carry {}: those are not counted",
            p.missing_fields.join(", ")
        );
    }
    for (label, list) in [
        ("suppressed", &p.suppressed),
        ("still alerting", &p.alerting),
    ] {
        for e in list {
            println!(
                "  {label}: #{} {} {}: {}",
                e.seq,
                when(&e.time),
                e.hostname,
                e.output
            );
        }
    }
}
