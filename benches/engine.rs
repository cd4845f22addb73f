//! Engine throughput on Falco's k8s audit corpus events against falco-rules 1.0.1 + k8saudit
//! 0.18.0 rules, beside the bare serde_json parse of the same payloads (the cost the engine cannot
//! avoid), and the rule set's compile time. Needs the corpus: FALCO_API_CORPUS, or
//! ../shared/corpus next to the checkout.
//!
//! The `aws_cloudtrail` group does the same for CloudTrail records (a mix of identity types,
//! services and event names built here) against the cloudtrail plugin's own rules.
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
        ..LoadOptions::default()
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
    cloudtrail(c);

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

/// CloudTrail records of several identity types, services, regions and event names, some of which
/// the plugin's rules alert on.
fn cloudtrail_records() -> Vec<String> {
    let names = [
        ("signin.amazonaws.com", "ConsoleLogin"),
        ("ec2.amazonaws.com", "RunInstances"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("s3.amazonaws.com", "GetObject"),
        ("s3.amazonaws.com", "PutBucketPolicy"),
        ("iam.amazonaws.com", "CreateUser"),
        ("lambda.amazonaws.com", "CreateFunction20150331"),
        ("sts.amazonaws.com", "AssumeRole"),
    ];
    let identities = [
        serde_json::json!({"type": "IAMUser", "userName": "alice", "accountId": "123456789012",
                           "arn": "arn:aws:iam::123456789012:user/alice", "principalId": "AIDA1"}),
        serde_json::json!({"type": "AssumedRole", "principalId": "AROA1:ci", "accountId": "123456789012",
                           "arn": "arn:aws:sts::123456789012:assumed-role/deployer/ci",
                           "sessionContext": {"sessionIssuer": {"userName": "deployer"}}}),
        serde_json::json!({"type": "Root", "accountId": "123456789012", "principalId": "123456789012"}),
        serde_json::json!({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}),
    ];
    let regions = ["us-east-1", "eu-west-3", "ap-south-1"];
    (0..240)
        .map(|i| {
            let (src, name) = names[i % names.len()];
            serde_json::json!({
                "eventVersion": "1.08",
                "userIdentity": identities[i % identities.len()],
                "eventTime": format!("2026-12-01T02:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                "eventSource": src,
                "eventName": name,
                "awsRegion": regions[i % regions.len()],
                "sourceIPAddress": format!("203.0.113.{}", i % 250),
                "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0",
                "requestParameters": {"bucketName": "logs", "key": format!("k/{i}"),
                                      "userName": "bob", "availabilityZone": "us-east-1a"},
                "responseElements": if name == "ConsoleLogin" {
                    serde_json::json!({"ConsoleLogin": "Success"})
                } else {
                    serde_json::json!({"reservationId": "r-1", "subnetId": "subnet-1"})
                },
                "additionalEventData": {"MFAUsed": if i % 3 == 0 { "No" } else { "Yes" }},
                "requestID": format!("req-{i}"),
                "eventID": format!("ev-{i}"),
                "readOnly": name.starts_with("Describe") || name == "GetObject",
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": "123456789012"
            })
            .to_string()
        })
        .collect()
}

/// Evaluating CloudTrail records with the cloudtrail plugin's rules, beside parsing them.
fn cloudtrail(c: &mut Criterion) {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/plugin-rules/aws_cloudtrail_rules.yaml");
    let files = vec![RulesFile {
        name: "aws_cloudtrail_rules.yaml".into(),
        content: std::fs::read_to_string(rules).expect("cloudtrail rules"),
    }];
    let set = RuleSet::load(&files, &LoadOptions::default()).expect("cloudtrail rules load");
    let records = cloudtrail_records();
    let eval = EvalOptions::default();
    let mut group = c.benchmark_group("aws_cloudtrail");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("serde_json parse (baseline)", |b| {
        b.iter(|| {
            for r in &records {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    group.bench_function("parse + evaluate", |b| {
        b.iter(|| {
            let mut alerts = 0;
            for (n, r) in records.iter().enumerate() {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                let data = EventData {
                    source: "aws_cloudtrail",
                    json: &v,
                    time_ns: 0,
                    hostname: "h",
                    num: n as u64 + 1,
                };
                alerts += set.evaluate(&data, &eval).len();
            }
            std::hint::black_box(alerts)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
