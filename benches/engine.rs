//! Engine throughput on Falco's k8s audit corpus events against falco-rules 1.0.1 + k8saudit
//! 0.18.0 rules, beside the bare serde_json parse of the same payloads (the cost the engine cannot
//! avoid), and the rule set's compile time. Needs the corpus: FALCO_API_CORPUS, or
//! ../shared/corpus next to the checkout.
//!
//!     cargo bench --bench engine

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use falco_api::engine::extract::{audit_time, split_audit_payload};
use falco_api::engine::{EvalOptions, EventData, LoadOptions, RuleSet, RulesFile};

fn corpus() -> PathBuf {
    std::env::var_os("FALCO_API_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"))
}

fn rules() -> Vec<RulesFile> {
    let root = corpus();
    [
        "rules/falco-rules-1.0.1/rules/falco_rules.yaml",
        "plugins/k8saudit-0.18.0/plugins/k8saudit/rules/k8s_audit_rules.yaml",
    ]
    .iter()
    .map(|rel| RulesFile {
        name: rel.to_string(),
        content: std::fs::read_to_string(root.join(rel)).expect("corpus rules file"),
    })
    .collect()
}

/// Every audit event of the corpus, each as one compact JSON payload.
fn payloads() -> Vec<String> {
    let dir = corpus().join("falco-legacy/test/trace_files/k8s_audit");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus events")
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Ok(events) = split_audit_payload(v) {
                out.extend(events.iter().map(|e| e.to_string()));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let files = rules();
    let opts = LoadOptions {
        enabled_sources: Some(vec!["k8s_audit".into()]),
    };
    let set = RuleSet::load(&files, &opts).expect("corpus rules load");
    let payloads = payloads();
    let eval = EvalOptions::default();

    let mut group = c.benchmark_group("k8s_audit");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("serde_json parse (baseline)", |b| {
        b.iter(|| {
            for p in &payloads {
                let v: serde_json::Value = serde_json::from_str(p).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    group.bench_function("parse + evaluate", |b| {
        b.iter(|| {
            let mut alerts = 0;
            for (n, p) in payloads.iter().enumerate() {
                let v: serde_json::Value = serde_json::from_str(p).unwrap();
                let time_ns = audit_time(&v).unwrap_or(0);
                let data = EventData {
                    source: "k8s_audit",
                    json: &v,
                    time_ns,
                    hostname: "h",
                    num: n as u64,
                };
                alerts += set.evaluate(&data, &eval).len();
            }
            std::hint::black_box(alerts)
        })
    });
    group.finish();

    let mut compile = c.benchmark_group("compile");
    compile.sample_size(10);
    compile.bench_function("falco-rules 1.0.1 + k8saudit 0.18.0", |b| {
        b.iter(|| RuleSet::load(&files, &opts).unwrap())
    });
    compile.bench_function("same, all sources (syscall rules compiled too)", |b| {
        b.iter(|| RuleSet::load(&files, &LoadOptions::default()).unwrap())
    });
    compile.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
