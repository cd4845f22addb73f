//! Conformance against Falco's own corpus (`../shared/corpus`, path in FALCO_API_CORPUS): every
//! rules file loads, and the 132 k8s-audit regression cases give Falco's results. Ignored unless
//! run explicitly (`.ci/run` runs them with the corpus path set); without the variable they fail
//! rather than pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use falco_api::base::event::Priority;
use falco_api::engine::extract::{audit_time, split_audit_payload};
use falco_api::engine::{EvalOptions, EventData, LoadOptions, RuleSet, RulesFile};
use serde_json::Value;

pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("FALCO_API_CORPUS")
        .map(PathBuf::from)
        .expect("FALCO_API_CORPUS must point at the shared corpus (see .ci/run)");
    assert!(
        dir.join("cases.json").exists(),
        "{} holds no cases.json",
        dir.display()
    );
    dir
}

pub fn rules_file(root: &std::path::Path, rel: &str) -> RulesFile {
    let content = std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    RulesFile {
        name: rel.to_string(),
        content,
    }
}

/// What one case produced.
#[derive(Default, Debug)]
pub struct Outcome {
    pub counts: BTreeMap<String, u64>,
    pub priorities: Vec<Priority>,
    pub rejected: Vec<String>,
}

pub fn run_events(set: &RuleSet, events_file: &std::path::Path) -> Outcome {
    let mut out = Outcome::default();
    let text = std::fs::read_to_string(events_file).unwrap();
    let opts = EvalOptions::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                out.rejected.push(format!("invalid JSON: {e}"));
                continue;
            }
        };
        let events = match split_audit_payload(value) {
            Ok(events) => events,
            Err(e) => {
                out.rejected.push(e);
                continue;
            }
        };
        for (n, ev) in events.iter().enumerate() {
            let Some(time_ns) = audit_time(ev) else {
                out.rejected.push("event has no stageTimestamp".into());
                continue;
            };
            let data = EventData {
                source: "k8s_audit",
                json: ev,
                time_ns,
                hostname: "host",
                num: n as u64,
            };
            for alert in set.evaluate(&data, &opts) {
                *out.counts.entry(alert.rule.name.clone()).or_default() += 1;
                out.priorities.push(alert.rule.priority);
            }
        }
    }
    out
}

#[test]
#[ignore = "the conformance corpus: run with `scripts/test.sh -- --ignored` (FALCO_API_CORPUS, default ../shared/corpus; .ci/run does)"]
fn every_corpus_rules_file_loads_and_each_prefix_compiles() {
    let root = corpus();
    let sets: &[&[&str]] = &[
        &["rules/falco-rules-1.0.1/rules/falco_rules.yaml"],
        &[
            "rules/main/rules/falco_rules.yaml",
            "rules/main/rules/falco-incubating_rules.yaml",
            "rules/main/rules/falco-sandbox_rules.yaml",
        ],
        &["plugins/k8saudit-0.18.0/plugins/k8saudit/rules/k8s_audit_rules.yaml"],
        &[
            "rules/falco-rules-1.0.1/rules/falco_rules.yaml",
            "plugins/k8saudit-0.6.0/plugins/k8saudit/rules/k8s_audit_rules.yaml",
        ],
    ];
    for files in sets {
        let files: Vec<RulesFile> = files.iter().map(|f| rules_file(&root, f)).collect();
        let set = RuleSet::load(&files, &LoadOptions::default()).unwrap_or_else(|e| {
            panic!(
                "loading {:?}: {e}",
                files.iter().map(|f| &f.name).collect::<Vec<_>>()
            )
        });
        let total = set.infos().len();
        assert!(total > 0);
        assert_eq!(
            set.rules().len(),
            total,
            "every rule of these files compiles (all sources enabled)"
        );
    }
}

#[test]
#[ignore = "the conformance corpus: run with `scripts/test.sh -- --ignored` (FALCO_API_CORPUS, default ../shared/corpus; .ci/run does)"]
fn all_132_k8s_audit_cases_give_falcos_results() {
    let root = corpus();
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 132);
    let mut failures = Vec::new();
    for case in cases {
        if let Err(why) = check_case(&root, case) {
            failures.push(format!("{}: {why}", case["name"].as_str().unwrap()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 132 cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_case(root: &std::path::Path, case: &Value) -> Result<(), String> {
    let name = case["name"].as_str().unwrap();
    let files: Vec<RulesFile> = case["rules_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| rules_file(root, f.as_str().unwrap()))
        .collect();
    let sources: Vec<String> = case["enabled_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let expect = &case["expect"];
    let loaded = RuleSet::load(
        &files,
        &LoadOptions {
            enabled_sources: Some(sources),
            ..LoadOptions::default()
        },
    );
    if name.starts_with("compat_engine_v4_") {
        // Current Falco refuses `contains` on a list field (see the corpus README).
        let err = loaded
            .err()
            .ok_or("expected a load error for contains on a list field")?;
        let msg = err.to_string();
        if !(msg.contains("'contains'") && msg.contains("ka.req.role.rules.resources")) {
            return Err(format!(
                "load error does not name the operator and field: {msg}"
            ));
        }
        return Ok(());
    }
    let set = match (loaded, expect["load_ok"].as_bool()) {
        (Ok(set), Some(true)) => set,
        (Err(e), Some(true)) => return Err(format!("load failed: {e}")),
        (Ok(_), Some(false)) => return Err("load should have failed".into()),
        (Err(_), _) => return Ok(()),
        (Ok(set), None) => set,
    };
    let out = run_events(&set, &root.join(case["events_file"].as_str().unwrap()));
    check_outcome(expect, &out)
}

/// Compares what a case produced with what Falco's suites expect.
pub fn check_outcome(expect: &Value, out: &Outcome) -> Result<(), String> {
    if let Some(counts) = expect["counts"].as_object() {
        for (rule, n) in counts {
            let got = out.counts.get(rule).copied().unwrap_or(0);
            if got != n.as_u64().unwrap() {
                return Err(format!(
                    "rule '{rule}': {got} alerts, expected {n} (all: {:?})",
                    out.counts
                ));
            }
        }
    }
    if let Some(any) = expect["any_detection"].as_bool() {
        if any == out.counts.is_empty() {
            return Err(format!("any_detection {any}, got {:?}", out.counts));
        }
    }
    let level = |v: &Value| v.as_str().unwrap().parse::<Priority>().unwrap();
    // As in Falco's legacy harness, `detect_level` says which level the detections are at; with
    // `any_detection: false` (two cases) it means no alert at that level.
    if let Some(l) = expect.get("detect_level") {
        let detected = out.priorities.contains(&level(l));
        if detected != expect["any_detection"].as_bool().unwrap_or(true) {
            return Err(format!(
                "detect_level {l}: alerts at levels {:?}",
                out.priorities
            ));
        }
    }
    for p in expect["nonzero_priorities"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if !out.priorities.contains(&level(p)) {
            return Err(format!("no alert at {p}: {:?}", out.priorities));
        }
    }
    for p in expect["zero_priorities"].as_array().into_iter().flatten() {
        if out.priorities.contains(&level(p)) {
            return Err(format!("unexpected alert at {p}: {:?}", out.counts));
        }
    }
    if let Some(s) = expect["stderr_contains"].as_str() {
        if !out.rejected.iter().any(|r| r.contains(s)) {
            return Err(format!(
                "expected a rejection containing '{s}', got {:?}",
                out.rejected
            ));
        }
    }
    Ok(())
}

/// The corpus cases end to end: events go through falco.inputs, alerts come back from a `sub`
/// stream, and the expectations are the same as the engine's.
#[tokio::test]
#[ignore = "the conformance corpus: run with `scripts/test.sh -- --ignored` (FALCO_API_CORPUS, default ../shared/corpus; .ci/run does)"]
async fn the_k8s_audit_cases_end_to_end_through_the_server() {
    use falco_api::proto::inputs::Event;
    use falco_api::proto::outputs::Request;

    let root = corpus();
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if name.starts_with("compat_engine_v4_") {
            continue; // load errors: covered by the engine test
        }
        let texts: Vec<String> = case["rules_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(root.join(f.as_str().unwrap())).unwrap())
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let server =
            crate::common::TestServer::start_with(100_000, Default::default(), &refs).await;
        let text =
            std::fs::read_to_string(root.join(case["events_file"].as_str().unwrap())).unwrap();
        let events: Vec<Event> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| Event {
                source: "k8s_audit".into(),
                payload: l.as_bytes().to_vec(),
                time: None,
                hostname: String::new(),
                seq: i as u64 + 1,
            })
            .collect();
        let acks = crate::common::events::send_all(&server, vec![events]).await;
        let mut out = Outcome {
            rejected: acks
                .iter()
                .flat_map(|a| a.rejected.iter().map(|r| r.reason.clone()))
                .collect(),
            ..Outcome::default()
        };
        let alerts: u64 = acks
            .iter()
            .map(|a| {
                if a.last_output_seq > 0 {
                    a.last_output_seq - a.first_output_seq + 1
                } else {
                    0
                }
            })
            .sum();
        let mut client = server.outputs().await;
        let mut sub = crate::common::Sub::open(
            &mut client,
            Request {
                after_seq: Some(0),
                ..Default::default()
            },
        )
        .await;
        for _ in 0..alerts {
            let r = sub.next().await.unwrap().unwrap();
            *out.counts.entry(r.rule.clone()).or_default() += 1;
            out.priorities
                .push(Priority::from_number(r.priority).unwrap());
        }
        drop(sub);
        server.stop().await;
        ran += 1;
        if let Err(why) = check_outcome(&case["expect"], &out) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(ran >= 120, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed end to end:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
