//! Runs the data-driven engine cases in `fixtures/engine/*.yaml` (see its README).

use std::path::Path;

use falco_api::engine::{EvalOptions, EventData, LoadOptions, Matching, RuleSet, RulesFile};
use serde_json::Value;

fn rules_files(case: &Value, source: &str) -> Vec<RulesFile> {
    let texts: Vec<String> = if let Some(cond) = case["condition"].as_str() {
        let quoted = serde_json::to_string(cond).unwrap();
        vec![format!(
            "- rule: test\n  desc: generated\n  condition: {quoted}\n  output: \"test\"\n  priority: WARNING\n  source: {source}\n"
        )]
    } else if let Some(rules) = case["rules"].as_str() {
        vec![rules.to_string()]
    } else {
        case["files"]
            .as_array()
            .expect("condition, rules or files")
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    texts
        .into_iter()
        .enumerate()
        .map(|(i, content)| RulesFile {
            name: format!("file{i}.yaml"),
            content,
        })
        .collect()
}

fn run_case(case: &Value) -> Result<(), String> {
    let source = case["source"].as_str().unwrap_or("syscall");
    let files = rules_files(case, source);
    let loaded = RuleSet::load(&files, &LoadOptions::default());
    if let Some(expected) = case.get("error") {
        let err = match loaded {
            Ok(_) => return Err("loading should have failed".into()),
            Err(e) => e,
        };
        let msg = err.to_string();
        if let Some(s) = expected["contains"].as_str() {
            if !msg.contains(s) {
                return Err(format!("error '{msg}' does not contain '{s}'"));
            }
        }
        if let Some(line) = expected["line"].as_u64() {
            if err.error.pos.line as u64 != line {
                return Err(format!(
                    "error at line {}, expected {line}: {msg}",
                    err.error.pos.line
                ));
            }
        }
        if let Some(col) = expected["col"].as_u64() {
            if err.error.pos.col as u64 != col {
                return Err(format!(
                    "error at column {}, expected {col}: {msg}",
                    err.error.pos.col
                ));
            }
        }
        return Ok(());
    }
    let set = loaded.map_err(|e| format!("load failed: {e}"))?;
    if let Some(w) = case["warning"].as_str() {
        if !set.warnings.iter().any(|d| d.to_string().contains(w)) {
            return Err(format!("no warning contains '{w}': {:?}", set.warnings));
        }
    }
    let matching = match case["matching"].as_str() {
        Some("all") => Matching::All,
        _ => Matching::First,
    };
    let opts = EvalOptions {
        matching,
        ..EvalOptions::default()
    };
    for (i, ev) in case["events"].as_array().into_iter().flatten().enumerate() {
        let data = EventData {
            source,
            json: &ev["event"],
            time_ns: 0,
            hostname: "h",
            num: i as u64,
        };
        let alerts = set.evaluate(&data, &opts);
        let names: Vec<&str> = alerts.iter().map(|a| a.rule.name.as_str()).collect();
        match &ev["match"] {
            Value::Bool(b) => {
                if *b != names.contains(&"test") {
                    return Err(format!("event {i}: expected match={b}, got {names:?}"));
                }
            }
            Value::Array(want) => {
                let want: Vec<&str> = want.iter().map(|w| w.as_str().unwrap()).collect();
                if want != names {
                    return Err(format!("event {i}: expected {want:?}, got {names:?}"));
                }
            }
            other => {
                return Err(format!(
                    "event {i}: 'match' must be a bool or a list, not {other}"
                ))
            }
        }
        if let Some(out) = ev["output"].as_str() {
            let got = alerts.first().map(|a| a.rendered.message.as_str());
            if got != Some(out) {
                return Err(format!("event {i}: output {got:?}, expected {out:?}"));
            }
        }
        if let Some(fields) = ev["fields"].as_object() {
            let got: serde_json::Map<String, Value> = alerts
                .first()
                .map(|a| {
                    a.rendered
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
                        .collect()
                })
                .unwrap_or_default();
            if &got != fields {
                return Err(format!("event {i}: fields {got:?}, expected {fields:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn engine_cases_from_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine");
    let mut total = 0;
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let cases: Vec<Value> =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for case in cases {
            total += 1;
            let name = case["name"]
                .as_str()
                .expect("every case has a name")
                .to_string();
            assert!(names.insert(name.clone()), "duplicate case name '{name}'");
            if let Err(why) = run_case(&case) {
                failures.push(format!(
                    "{} / {name}: {why}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(total >= 60, "only {total} cases found");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
