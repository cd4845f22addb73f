//! The official plugins' rules and events: every rules file of falcosecurity/plugins loads, each
//! plugin's fields validate with Falco's messages, and events of each source evaluate to the
//! plugins' alerts — through the engine, `eval`, and the inputs service to a legacy `sub`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use falco_api::engine::input::decode;
use falco_api::engine::{EvalOptions, EventData, LoadOptions, Matching, RuleSet, RulesFile};
use falco_api::pipeline::Settings;
use falco_api::proto::inputs::Event;
use serde_json::{json, Value};

use crate::common::events::send_all;
use crate::common::{Sub, TestServer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/plugin-rules")
        .join(name)
}

fn k8saudit_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../shared/corpus/plugins/k8saudit-0.18.0/plugins/k8saudit/rules/k8s_audit_rules.yaml",
    )
}

fn load(paths: &[PathBuf]) -> Result<RuleSet, String> {
    let files: Vec<RulesFile> = paths
        .iter()
        .map(|p| RulesFile {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            content: std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect();
    RuleSet::load(&files, &LoadOptions::default()).map_err(|e| e.to_string())
}

fn rules_of(name: &str) -> RuleSet {
    load(&[fixture(name)]).unwrap_or_else(|e| panic!("{name} should load: {e}"))
}

/// The rules a condition on `source` compiles to, or the load error.
fn condition(source: &str, cond: &str) -> Result<RuleSet, String> {
    let text = format!(
        "- rule: t\n  desc: d\n  condition: {}\n  output: o\n  priority: WARNING\n  source: {source}\n",
        serde_json::to_string(cond).unwrap()
    );
    RuleSet::load(
        &[RulesFile {
            name: "t.yaml".into(),
            content: text,
        }],
        &LoadOptions::default(),
    )
    .map_err(|e| e.to_string())
}

/// (rule, rendered output) of every rule `payload` triggers.
fn alerts(set: &RuleSet, source: &str, payload: &Value) -> Vec<(String, String)> {
    let opts = EvalOptions {
        matching: Matching::All,
        ..EvalOptions::default()
    };
    let mut out = Vec::new();
    for (i, ev) in decode(source, payload.to_string().as_bytes(), 0)
        .expect("decodes")
        .into_iter()
        .enumerate()
    {
        let data = EventData {
            source,
            json: &ev.json,
            time_ns: ev.time_ns,
            hostname: "h",
            num: i as u64 + 1,
        };
        for a in set.evaluate(&data, &opts) {
            out.push((a.rule.name.clone(), a.rendered.message.clone()));
        }
    }
    out
}

fn names(alerts: &[(String, String)]) -> Vec<&str> {
    alerts.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn every_rules_file_of_the_official_plugins_loads() {
    for file in [
        "aws_cloudtrail_rules.yaml",
        "gcp_auditlog_rules.yaml",
        "github.yaml",
        "okta_rules.yaml",
        "k8smeta_example_rule.yaml",
    ] {
        let set = rules_of(file);
        assert!(!set.rules().is_empty(), "{file} has rules");
    }
    // The GKE file appends exceptions to k8saudit's rules: it loads after them.
    let set =
        load(&[k8saudit_rules(), fixture("k8s_audit_rules_gke.yaml")]).expect("gke after k8saudit");
    assert!(set.rules().iter().any(|r| r.name == "Disallowed K8s User"));
    let Err(alone) = load(&[fixture("k8s_audit_rules_gke.yaml")]) else {
        panic!("the GKE file alone appends to rules that do not exist")
    };
    assert!(
        alone.contains("no rule by that name already exists"),
        "{alone}"
    );
}

fn root_console_login() -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "Root", "principalId": "123456789012",
                         "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"},
        "eventTime": "2026-12-01T02:00:00Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "Mozilla/5.0",
        "requestParameters": null,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"MFAUsed": "No"},
        "eventID": "e-1",
        "readOnly": false,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": true,
        "recipientAccountId": "123456789012"
    })
}

fn assumed_role_run_instances(region: &str) -> Value {
    json!({
        "userIdentity": {
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:alice",
            "arn": "arn:aws:sts::123456789012:assumed-role/deployer/alice",
            "accountId": "123456789012",
            "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "deployer"}}
        },
        "eventTime": "2026-12-01T02:05:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "awsRegion": region,
        "sourceIPAddress": "198.51.100.4",
        "requestParameters": {"availabilityZone": format!("{region}a"), "subnetId": "subnet-1"},
        "responseElements": {"reservationId": "r-1", "subnetId": "subnet-1",
                             "instancesSet": {"items": [{"instanceId": "i-1", "imageId": "ami-1"},
                                                        {"instanceId": "i-2", "imageId": "ami-2"}]}},
        "eventID": "e-2",
        "readOnly": false
    })
}

#[test]
fn cloudtrail_records_raise_the_plugins_alerts() {
    let set = rules_of("aws_cloudtrail_rules.yaml");
    let got = alerts(&set, "aws_cloudtrail", &root_console_login());
    assert_eq!(
        names(&got),
        [
            "Console Login Without MFA",
            "Console Root Login Without MFA"
        ]
    );
    // Root has no userName in the record: ct.user extracts nothing, as the plugin's does.
    assert!(
        got[1]
            .1
            .contains("(requesting user=<NA>, requesting IP=203.0.113.7, AWS region=us-east-1)"),
        "{}",
        got[1].1
    );
    let log = json!({"Records": [assumed_role_run_instances("eu-west-3"), assumed_role_run_instances("us-east-0")]});
    let got = alerts(&set, "aws_cloudtrail", &log);
    assert_eq!(
        names(&got),
        [
            "Run Instances",
            "Run Instances in Non-approved Region",
            "Run Instances"
        ],
        "a Records file is split into its records"
    );
    assert!(
        got[0].1.contains("requesting user=deployer"),
        "{}",
        got[0].1
    );
    assert!(got[1].1.contains("image id=i-1"), "{}", got[1].1);
    let failed = {
        let mut r = assumed_role_run_instances("eu-west-3");
        r["errorCode"] = json!("Client.UnauthorizedOperation");
        r
    };
    assert!(alerts(&set, "aws_cloudtrail", &failed).is_empty());
}

/// The value of `field` for `record`, through a rule's output (`<NA>` when not extracted).
fn extract(source: &str, field: &str, record: &Value) -> String {
    let text = format!(
        "- rule: t\n  desc: d\n  condition: evt.num > 0\n  output: \"[%{field}]\"\n  priority: WARNING\n  source: {source}\n"
    );
    let set = RuleSet::load(
        &[RulesFile {
            name: "t.yaml".into(),
            content: text,
        }],
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{field}: {e}"));
    let got = alerts(&set, source, record);
    let msg = &got[0].1;
    let start = msg.find('[').unwrap();
    msg[start + 1..msg.len() - 1].to_string()
}

#[test]
fn cloudtrail_fields_follow_the_plugins_extractor() {
    let role = assumed_role_run_instances("eu-west-3");
    let root = root_console_login();
    let ct = |f: &str, r: &Value| extract("aws_cloudtrail", f, r);
    assert_eq!(ct("ct.user", &role), "deployer");
    assert_eq!(ct("ct.originaluser", &role), "alice");
    assert_eq!(ct("ct.user", &root), "<NA>");
    assert_eq!(ct("ct.user.identitytype", &root), "Root");
    let service =
        json!({"userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}});
    assert_eq!(ct("ct.user", &service), "lambda.amazonaws.com");
    assert_eq!(
        ct("ct.user", &json!({"userIdentity": {"type": "AWSAccount"}})),
        "AWSAccount"
    );
    assert_eq!(
        ct("ct.user", &json!({"userIdentity": {"type": "Odd"}})),
        "<NA>"
    );
    assert_eq!(
        ct("ct.user", &json!({"userIdentity": {"type": "AssumedRole"}})),
        "AssumedRole"
    );
    assert_eq!(ct("ct.shortsrc", &root), "signin");
    assert_eq!(ct("ct.error", &root), "<NA>");
    assert_eq!(ct("ct.readonly", &root), "false");
    assert_eq!(ct("ct.managementevent", &root), "true");
    assert_eq!(ct("ct.user.accountid", &root), "123456789012");
    assert_eq!(ct("ct.region", &root), "us-east-1");
    assert_eq!(ct("ct.response", &root), r#"{"ConsoleLogin":"Success"}"#);
    assert_eq!(ct("ct.request", &root), "null");
    // A present non-string value reads as "" (fastjson's GetStringBytes).
    assert_eq!(
        ct(
            "ct.request.name",
            &json!({"requestParameters": {"name": 7}})
        ),
        ""
    );
    // The plugin's switch spells this field documentName: it never extracts.
    assert_eq!(
        ct(
            "ct.request.documentname",
            &json!({"requestParameters": {"documentName": "d"}})
        ),
        "<NA>"
    );
    assert_eq!(ct("ec2.imageids", &role), "(ami-1,ami-2)");
    assert_eq!(ct("ec2.imageids[1]", &role), "ami-2");
    assert_eq!(ct("ec2.imageid", &role), "ami-1");
    assert_eq!(ct("ec2.imageids[5]", &role), "<NA>");
    let s3 = json!({"eventName": "GetObject", "requestParameters": {"bucketName": "b", "key": "k"},
                    "additionalEventData": {"bytesTransferredIn": 0, "bytesTransferredOut": 33.0}});
    assert_eq!(ct("s3.uri", &s3), "s3://b/k");
    assert_eq!(ct("s3.bytes", &s3), "33");
    assert_eq!(ct("s3.cnt.get", &s3), "1");
    assert_eq!(ct("s3.cnt.put", &s3), "<NA>");
    assert_eq!(
        ct("ct.info", &role),
        "deployer via 198.51.100.4 → RunInstances"
    );
    // The plugin's String(): an absent user prints as `<NA>` right after the region.
    assert_eq!(
        ct("evt.plugininfo", &root),
        "us-east-1<NA> signin ConsoleLogin <invalid cloudtrail event: userIdentity field missing>"
    );
    assert_eq!(
        ct("evt.plugininfo", &role),
        "eu-west-3 deployer ec2 RunInstances deployer via 198.51.100.4 → RunInstances"
    );
    assert_eq!(ct("evt.pluginname", &root), "cloudtrail");
}

#[test]
fn okta_github_and_gcp_events_raise_their_plugins_alerts() {
    let okta = json!({
        "uuid": "u1", "published": "2026-12-01T02:00:00.000Z",
        "eventType": "user.lifecycle.create", "displayMessage": "Create okta user",
        "actor": {"id": "a1", "type": "User", "alternateId": "admin@example.com", "displayName": "Admin"},
        "client": {"ipAddress": "203.0.113.9", "geographicalContext": {"geolocation": {"lat": 48.85, "lon": 2.35}}},
        "target": [{"id": "t1", "type": "User", "displayName": "Bob"},
                   {"id": "t2", "type": "User", "displayName": "Carol"}]
    });
    // Every okta rule ships disabled; a user enables what they want, as here.
    let enable = "- rule: Creating a new OKTA user account\n  enabled: true\n  override:\n    enabled: replace\n";
    let okta_rules = RuleSet::load(
        &[
            RulesFile {
                name: "okta_rules.yaml".into(),
                content: std::fs::read_to_string(fixture("okta_rules.yaml")).unwrap(),
            },
            RulesFile {
                name: "local.yaml".into(),
                content: enable.into(),
            },
        ],
        &LoadOptions::default(),
    )
    .expect("okta rules with a local override");
    let got = alerts(&okta_rules, "okta", &okta);
    assert_eq!(names(&got), ["Creating a new OKTA user account"], "{got:?}");
    assert!(
        got[0].1.contains("(user=Admin, target user=Carol)"),
        "{}",
        got[0].1
    );
    assert_eq!(extract("okta", "okta.client.geo.lat", &okta), "48.85");
    // The plugin's struct reads the longitude from `lonDe`.
    assert_eq!(extract("okta", "okta.client.geo.lon", &okta), "0");
    assert_eq!(
        extract("okta", "okta.targets.displayName", &okta),
        "(Bob,Carol)"
    );
    assert_eq!(extract("okta", "okta.targets.displayName[0]", &okta), "Bob");
    assert_eq!(extract("okta", "okta.severity", &okta), "");

    let github = json!({
        "webhook_type": "repository", "action": "publicized",
        "repository": {"html_url": "https://github.com/acme/secret", "private": false,
                       "owner": {"login": "acme"}},
        "organization": {"login": "acme"}, "sender": {"login": "mallory"}
    });
    let got = alerts(&rules_of("github.yaml"), "github", &github);
    assert_eq!(
        names(&got),
        ["Private Repository Becoming Public"],
        "{got:?}"
    );
    assert!(
        got[0].1.contains("repository_name=acme/secret repository_url=https://github.com/acme/secret repo_owner=acme org=acme user=mallory"),
        "{}",
        got[0].1
    );
    assert_eq!(
        extract("github", "evt.plugininfo", &github),
        "github repository user:mallory repo:https://github.com/acme/secret action:publicized"
    );
    let push =
        json!({"webhook_type": "push", "commits": [{"added": ["a", "b"]}, {"added": ["c"]}]});
    assert_eq!(extract("github", "github.commit.added", &push), "a,bc");
    assert_eq!(extract("github", "github.webhook.id", &push), "0");

    let gcp = json!({
        "protoPayload": {"serviceName": "cloudsql.googleapis.com", "methodName": "cloudsql.users.delete",
                         "authenticationInfo": {"principalEmail": "eve@example.com"},
                         "requestMetadata": {"callerIp": "192.0.2.1", "callerSuppliedUserAgent": "gcloud"},
                         "authorizationInfo": [{"permission": "cloudsql.users.delete"}]},
        "resource": {"type": "cloudsql_database",
                     "labels": {"project_id": "p1", "database_id": "p1:db", "zone": "us-central1-a"}},
        "timestamp": "2026-12-01T02:00:00Z"
    });
    let got = alerts(&rules_of("gcp_auditlog_rules.yaml"), "gcp_auditlog", &gcp);
    assert_eq!(
        names(&got),
        ["GCP Cloud SQL database user modified or deleted"],
        "{got:?}"
    );
    assert!(
        got[0].1.contains("user=eve@example.com userIP=192.0.2.1"),
        "{}",
        got[0].1
    );
    // An object reads as "" (GetStringBytes), a missing key as nothing.
    assert_eq!(extract("gcp_auditlog", "gcp.authorizationInfo", &gcp), "");
    assert_eq!(extract("gcp_auditlog", "gcp.dns.zone", &gcp), "<NA>");
    assert_eq!(extract("gcp_auditlog", "gcp.location", &gcp), "us-central1");
}

#[test]
fn plugin_fields_validate_with_falcos_messages() {
    for (source, good) in [
        (
            "aws_cloudtrail",
            "ct.name = ConsoleLogin and ec2.imageids[0] intersects (ami-1) and s3.bytes > 10",
        ),
        (
            "aws_cloudtrail",
            "ec2.imageids intersects (ami-1) and evt.plugininfo contains x",
        ),
        (
            "okta",
            "okta.evt.type = x and okta.mfa.failure.countlast[60] > 3",
        ),
        (
            "github",
            "github.type = push and github.diff.has_secrets = true",
        ),
        (
            "gcp_auditlog",
            "gcp.methodName startswith compute. and gcp.location = x",
        ),
        (
            "syscall",
            "k8smeta.pod.label[app] = web and k8smeta.svc.name intersects (a)",
        ),
        (
            "syscall",
            "container.label[team] = x and proc.is_container_healthcheck = true",
        ),
    ] {
        condition(source, good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (source, bad, message) in [
        (
            "aws_cloudtrail",
            "ct.nope = x",
            "filter_check called with nonexistent field ct.nope",
        ),
        (
            "aws_cloudtrail",
            "okta.evt.type = x",
            "nonexistent field okta.evt.type",
        ),
        ("okta", "ct.name = x", "nonexistent field ct.name"),
        (
            "aws_cloudtrail",
            "ec2.imageids[x] exists",
            "takes a numeric index argument",
        ),
        (
            "okta",
            "okta.mfa.deny.countlast > 1",
            "takes a numeric index argument",
        ),
        ("syscall", "k8smeta.pod.label = x", "needs a key argument"),
        ("aws_cloudtrail", "ct.name[1] = x", "takes no argument"),
        (
            "aws_cloudtrail",
            "s3.bytes contains 1",
            "'contains' operator not supported",
        ),
        (
            "aws_cloudtrail",
            "ec2.imageids = ami-1",
            "not supported on list field",
        ),
        // An index keeps a list field a list, as in libsinsp.
        (
            "aws_cloudtrail",
            "ec2.imageids[0] = ami-1",
            "not supported on list field",
        ),
        ("github", "github.user glob oneof (a*)", ""),
    ] {
        match condition(source, bad) {
            Err(e) => assert!(e.contains(message), "{bad}: {e}"),
            Ok(_) if message.is_empty() => {}
            Ok(_) => panic!("{bad} should be refused"),
        }
    }
}

#[tokio::test]
async fn cloudtrail_events_sent_to_inputs_reach_a_legacy_sub_client() {
    let rules = std::fs::read_to_string(fixture("aws_cloudtrail_rules.yaml")).unwrap();
    let server = TestServer::start_with(1000, Settings::default(), &[&rules]).await;
    let mut client = server.outputs().await;
    // A legacy client: `sub` with an empty request, as falco-exporter and client-go send.
    let mut sub = Sub::open(&mut client, Default::default()).await;
    let log = json!({"Records": [root_console_login(), assumed_role_run_instances("eu-west-3")]});
    let acks = send_all(
        &server,
        vec![vec![Event {
            source: "aws_cloudtrail".into(),
            payload: log.to_string().into_bytes(),
            time: None,
            hostname: String::new(),
            seq: 1,
        }]],
    )
    .await;
    assert!(acks[0].rejected.is_empty(), "{:?}", acks[0].rejected);
    let first = sub.next().await.unwrap().expect("an alert");
    assert_eq!(first.rule, "Console Login Without MFA");
    assert_eq!(first.source, "aws_cloudtrail");
    assert_eq!(
        first.output_fields.get("ct.srcip").map(String::as_str),
        Some("203.0.113.7")
    );
    let time = first.time.expect("time");
    assert_eq!(
        time.seconds, 1_796_090_400,
        "timed by the record's eventTime"
    );
    let second = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap()
        .expect("the second record's alert");
    assert_eq!(second.rule, "Run Instances");
    server.stop().await;
}

#[test]
fn every_field_of_every_plugin_table_compiles_and_the_tables_are_data() {
    use falco_api::engine::fields::{self, Arg};
    let mut counted = 0;
    for (source, plugin) in fields::PLUGIN_SOURCES
        .iter()
        .copied()
        .chain([("syscall", "container"), ("syscall", "k8smeta")])
    {
        let prefix = fields::registry(source).iter().filter(|f| {
            !f.name.starts_with("evt.")
                && !f.name.starts_with("json")
                && !f.name.starts_with("jevt")
        });
        for f in prefix {
            let written = match f.arg {
                Arg::RequiredIndex => format!("{}[0]", f.name),
                Arg::RequiredKey => format!("{}[app]", f.name),
                _ => f.name.to_string(),
            };
            condition(source, &format!("{written} exists"))
                .unwrap_or_else(|e| panic!("{plugin} field {written}: {e}"));
            counted += 1;
        }
    }
    // cloudtrail 73 + okta 54 + github 25 + gcpaudit 25, and the syscall registry's own fields.
    assert!(counted > 177, "{counted}");
    for (plugin, version, table) in fields::PLUGIN_TABLES {
        assert!(
            table.contains(&format!("plugin's fields, v{version}")),
            "{plugin}'s table says which version it follows"
        );
    }
}

/// `falco --list --format json` as a Falco with a third-party plugin prints it (trimmed).
const CATALOG: &str = r#"{
  "fieldclasses": [
    {"name": "evt", "desc": "generic", "event_sources": ["syscall", "vault"], "fields": [
      {"name": "evt.num", "type": "UINT64", "desc": "n", "is_list": false, "argument": null}]},
    {"name": "vault", "desc": "HashiCorp Vault audit", "event_sources": ["vault"], "fields": [
      {"name": "vault.path", "type": "CHARBUF", "desc": "p", "is_list": false, "argument": null},
      {"name": "vault.policies", "type": "CHARBUF", "desc": "p", "is_list": true, "argument": null},
      {"name": "vault.header", "type": "CHARBUF", "desc": "h", "is_list": false,
       "argument": {"required": true, "type": ["KEY"]}},
      {"name": "vault.ttl", "type": "RELTIME", "desc": "t", "is_list": false, "argument": null}]}
  ]
}"#;

const VAULT_RULES: &str = r#"
- rule: Vault root token used
  desc: d
  condition: vault.policies intersects (root) and vault.header[X-Forwarded-For] exists and vault.ttl > 0
  output: "root token on %vault.path"
  priority: CRITICAL
  source: vault
"#;

fn with_catalog(rules: &str) -> Result<RuleSet, String> {
    let catalog = falco_api::engine::catalog::Catalog::parse(CATALOG).unwrap();
    let opts = LoadOptions {
        catalog: Some(std::sync::Arc::new(catalog)),
        ..LoadOptions::default()
    };
    RuleSet::load(
        &[RulesFile {
            name: "vault.yaml".into(),
            content: rules.into(),
        }],
        &opts,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_field_catalog_validates_third_party_fields_and_says_they_are_not_evaluated() {
    let Err(without) = RuleSet::load(
        &[RulesFile {
            name: "vault.yaml".into(),
            content: VAULT_RULES.into(),
        }],
        &LoadOptions::default(),
    ) else {
        panic!("vault fields are unknown without the catalog")
    };
    assert!(without
        .error
        .to_string()
        .contains("nonexistent field vault.policies"));
    let set = with_catalog(VAULT_RULES).expect("the catalog's fields validate");
    let warning = set
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("known only from the field catalog"))
        .expect("a warning names the catalog-only fields");
    assert!(
        warning.contains("vault.policies, vault.header, vault.ttl, vault.path")
            && warning.contains("never matches here"),
        "{warning}"
    );
    // Validated with Falco's answers: argument, list operators, numeric operators.
    for (cond, message) in [
        ("vault.header exists", "needs a key argument"),
        ("vault.policies = root", "not supported on list field"),
        ("vault.ttl contains 1", "'contains' operator not supported"),
        ("vault.nope = x", "nonexistent field vault.nope"),
    ] {
        let rules = VAULT_RULES.replace(
            "vault.policies intersects (root) and vault.header[X-Forwarded-For] exists and vault.ttl > 0",
            cond,
        );
        let err = with_catalog(&rules)
            .err()
            .unwrap_or_else(|| panic!("{cond} refused"));
        assert!(err.contains(message), "{cond}: {err}");
    }
    // Never evaluated: no event matches, and the warning said so.
    let got = alerts(&set, "vault", &json!({"vault.path": "secret/x"}));
    assert!(got.is_empty());
}

#[test]
fn eval_and_serve_read_the_field_catalog() {
    use crate::common::process::{cli_output, serve_args, spawn_serve, EXE};
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("fields.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let rules = dir.path().join("vault.yaml");
    std::fs::write(&rules, VAULT_RULES).unwrap();
    let out = std::process::Command::new(EXE)
        .args(["eval", "--validate", "--fields"])
        .arg(&catalog)
        .arg("-r")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("field catalog: vault: 5 fields, 1 evaluated by falco-api, 4 validated only"),
        "{stderr}"
    );
    assert!(
        stderr.contains("known only from the field catalog"),
        "{stderr}"
    );
    let out = std::process::Command::new(EXE)
        .args(["eval", "--validate", "-r"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "without the catalog the rules do not load"
    );

    let data = dir.path().join("data");
    let sock = dir.path().join("api.sock");
    let config = dir.path().join("falco-api.yaml");
    std::fs::write(
        &config,
        format!("falco:\n  fields_file: {}\n", catalog.display()),
    )
    .unwrap();
    let mut serve = spawn_serve(
        dir.path(),
        &serve_args(&data, &sock, &["--config", config.to_str().unwrap()]),
    );
    let out = cli_output(&sock, &["rules", "put", rules.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("known only from the field catalog"), "{text}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        VAULT_RULES.replace("vault.header[X-Forwarded-For]", "vault.header"),
    )
    .unwrap();
    let out = cli_output(&sock, &["rules", "put", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vault.header needs a key argument"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A CloudTrail log file through `send`: split into records client-side, alerts as Falco's.
    let ct_rules = fixture("aws_cloudtrail_rules.yaml");
    let out = cli_output(&sock, &["rules", "put", ct_rules.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("cloudtrail.json");
    let records =
        json!({"Records": [root_console_login(), assumed_role_run_instances("eu-west-3")]});
    std::fs::write(&log, serde_json::to_string_pretty(&records).unwrap()).unwrap();
    let out = cli_output(
        &sock,
        &[
            "send",
            "--quiet",
            "--source",
            "aws_cloudtrail",
            log.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli_output(&sock, &["tail", "--after", "0", "--once", "--json"]);
    let rules: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["source"] == "aws_cloudtrail")
        .map(|v| v["rule"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        rules,
        ["Console Login Without MFA", "Run Instances"],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    crate::common::process::sigterm(&serve.child);
    crate::common::process::wait_exit(&mut serve.child, Duration::from_secs(30));
}

#[test]
fn eval_reads_a_cloudtrail_log_file_and_reports_a_bad_record_by_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloudtrail.json");
    let records = json!({"Records": [root_console_login(), "not a record", assumed_role_run_instances("eu-west-3")]});
    std::fs::write(&log, serde_json::to_string_pretty(&records).unwrap()).unwrap();
    let out = std::process::Command::new(crate::common::process::EXE)
        .args([
            "eval",
            "--source",
            "aws_cloudtrail",
            "--matching",
            "all",
            "-r",
        ])
        .arg(fixture("aws_cloudtrail_rules.yaml"))
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a record was rejected: {stderr}"
    );
    assert!(
        stderr.contains("record 2: event rejected: a aws_cloudtrail event must be a JSON object"),
        "{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["events"], 2);
    assert_eq!(summary["alerts"], 4, "two rules for each record");
    assert_eq!(summary["by_rule"]["Run Instances"], 1);
    assert_eq!(lines[0]["source"], "aws_cloudtrail");
    assert_eq!(lines[0]["output_fields"]["ct.region"], "us-east-1");
}

#[test]
fn fields_a_server_cannot_evaluate_load_with_a_warning() {
    let set = condition(
        "okta",
        "okta.mfa.failure.countlast[60] > 3 and evt.reltime > 0",
    )
    .expect("they validate");
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w
            .contains("validates but never extracts (okta.mfa.failure.countlast, evt.reltime)")),
        "{warnings:?}"
    );
    // On syscall events evt.reltime is read from the payload like every field: no warning.
    let set = condition("syscall", "evt.reltime > 0").unwrap();
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}
