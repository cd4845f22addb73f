//! Versioned rules and configs against the real server.

use std::collections::HashMap;
use std::time::Duration;

use falco_api::pipeline::Settings;
use falco_api::proto::configs::{self, service_client::ServiceClient as ConfigsClient};
use falco_api::proto::outputs::Request;
use falco_api::proto::rules::{self, service_client::ServiceClient as RulesClient};
use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::events::{send_all, syscall_event};
use crate::common::{after, get_all, Sub, TestServer};

fn rule(name: &str, output: &str) -> String {
    format!(
        "- rule: {name}\n  desc: d\n  condition: evt.type = open and fd.name startswith /etc\n  output: \"{output} %fd.name\"\n  priority: WARNING\n  tags: [files]\n"
    )
}

async fn rules_client(server: &TestServer) -> RulesClient<Channel> {
    RulesClient::new(server.channel().await)
}

async fn configs_client(server: &TestServer) -> ConfigsClient<Channel> {
    ConfigsClient::new(server.channel().await)
}

async fn put(
    client: &mut RulesClient<Channel>,
    name: &str,
    content: &str,
    expected: Option<u64>,
) -> Result<u64, tonic::Status> {
    let req = rules::PutRequest {
        name: name.into(),
        content: content.into(),
        expected_revision: expected,
        comment: "test".into(),
    };
    client.put(req).await.map(|r| r.into_inner().revision)
}

#[tokio::test]
async fn rules_files_round_trip_with_precise_statuses() {
    let server = TestServer::start(1000).await;
    let mut c = rules_client(&server).await;
    let r1 = put(&mut c, "a.yaml", &rule("A", "v1"), Some(0))
        .await
        .unwrap();
    assert_eq!(r1, 1);
    let got = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.content.as_str(), got.revision),
        (rule("A", "v1").as_str(), 1)
    );
    assert_eq!(got.digest.len(), 64);
    let list = c
        .list(rules::ListRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a.yaml"]
    );
    assert_eq!(list.revision, 1);

    // Compare-and-swap.
    let exists = put(&mut c, "a.yaml", &rule("A", "v2"), Some(0))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");
    let stale = put(&mut c, "a.yaml", &rule("A", "v2"), Some(7))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let missing = put(&mut c, "b.yaml", &rule("B", "v1"), Some(3))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let r2 = put(&mut c, "a.yaml", &rule("A", "v2"), Some(1))
        .await
        .unwrap();
    assert_eq!(r2, 2);

    let bad_name = put(&mut c, "../etc/passwd", "- list: x\n  items: []\n", None)
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);

    let del = c
        .delete(rules::DeleteRequest {
            name: "a.yaml".into(),
            expected_revision: Some(2),
            comment: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(del.into_inner().revision, 3);
    let gone = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = c
        .delete(rules::DeleteRequest {
            name: "a.yaml".into(),
            expected_revision: None,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    // As of revision 1, the first content.
    let old = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.content, rule("A", "v1"));
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_change_is_refused_with_its_position_and_the_old_rules_keep_matching() {
    let server = TestServer::start(1000).await;
    let mut c = rules_client(&server).await;
    put(&mut c, "a.yaml", &rule("A", "v1"), None).await.unwrap();
    let bad = "- rule: A\n  desc: d\n  condition: evt.type = open and fd.nmae = x\n  output: o\n  priority: WARNING\n";
    let err = put(&mut c, "a.yaml", bad, None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("a.yaml:3:14")
            && err.message().contains("nonexistent field fd.nmae"),
        "{}",
        err.message()
    );
    let details =
        rules::ValidateResponse::decode(err.details()).expect("details are a validate_response");
    assert_eq!(details.errors.len(), 1);
    assert_eq!(
        (
            details.errors[0].file.as_str(),
            details.errors[0].line,
            details.errors[0].column
        ),
        ("a.yaml", 3, 14)
    );
    // A change that breaks another file is refused too.
    let breaks = "- macro: unused\n  condition: nope_macro\n";
    assert_eq!(
        put(&mut c, "b.yaml", breaks, None)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    // Nothing changed: same content, same revision, old rule still matches.
    let got = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.content, got.revision), (rule("A", "v1"), 1));
    assert_eq!(
        c.list(rules::ListRequest { revision: 0 })
            .await
            .unwrap()
            .into_inner()
            .revision,
        1
    );
    send_all(&server, vec![vec![syscall_event(1, "open", "/etc/shadow")]]).await;
    let mut out = server.outputs().await;
    let alerts = get_all(&mut out, after(0)).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].output.ends_with("v1 /etc/shadow"),
        "{}",
        alerts[0].output
    );
    assert_eq!(alerts[0].rules_revision, 1);
    // validate is a dry run with the same diagnostics.
    let v = c
        .validate(rules::ValidateRequest {
            files: vec![rules::RulesFile {
                name: "a.yaml".into(),
                content: bad.into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.ok);
    assert_eq!(v.errors[0].line, 3);
    let ok = c
        .validate(rules::ValidateRequest {
            files: vec![rules::RulesFile {
                name: "c.yaml".into(),
                content: rule("C", "x"),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(
        c.list(rules::ListRequest { revision: 0 })
            .await
            .unwrap()
            .into_inner()
            .files
            .len(),
        1,
        "validate changed nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_hot_reload_switches_rules_between_events_with_nothing_lost_or_doubled() {
    let server = TestServer::start_with(100_000, Settings::default(), &[]).await;
    let mut c = rules_client(&server).await;
    put(&mut c, "a.yaml", &rule("A", "v1"), None).await.unwrap();
    let mut out = server.outputs().await;
    let mut sub = Sub::open(&mut out, Request::default()).await;
    let sender = {
        let socket = server.socket.clone();
        tokio::spawn(async move {
            let channel = falco_api::cli::client::connect_unix(&socket).await.unwrap();
            let mut client = falco_api::proto::inputs::service_client::ServiceClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let batches = tokio::spawn(async move {
                for b in 0..200u64 {
                    let events = (0..10)
                        .map(|i| syscall_event(b * 10 + i + 1, "open", "/etc/x"))
                        .collect();
                    if tx
                        .send(falco_api::proto::inputs::Request { events })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            let mut stream = client
                .send(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mut n = 0;
            while let Some(ack) = stream.message().await.unwrap() {
                n += ack.matched;
                if ack.accepted_up_to == 2000 {
                    break;
                }
            }
            batches.await.unwrap();
            n
        })
    };
    // Switch rules while events flow: once the first alerts have arrived.
    let mut early = Vec::new();
    for _ in 0..50 {
        early.push(sub.next().await.unwrap().unwrap());
    }
    let r2 = put(&mut c, "a.yaml", &rule("A", "v2"), None).await.unwrap();
    assert_eq!(
        sender.await.unwrap(),
        2000,
        "every event matched one version or the other"
    );
    let mut seen_v2 = false;
    let (mut v1, mut v2) = (0, 0);
    let mut early = early.into_iter();
    for expected_seq in 1..=2000u64 {
        let a = match early.next() {
            Some(a) => a,
            None => sub.next().await.unwrap().unwrap(),
        };
        assert_eq!(a.seq, expected_seq, "no gap, no duplicate");
        if a.output.contains(" v2 ") {
            seen_v2 = true;
            v2 += 1;
            assert_eq!(a.rules_revision, r2);
        } else {
            assert!(
                !seen_v2,
                "an old-rule alert after a new-rule one (seq {})",
                a.seq
            );
            assert!(a.output.contains(" v1 "));
            v1 += 1;
        }
    }
    assert!(
        v1 > 0 && v2 > 0,
        "the switch happened mid-stream ({v1} v1, {v2} v2)"
    );
    server.stop().await;
}

#[tokio::test]
async fn history_and_rollback() {
    let server = TestServer::start(1000).await;
    let mut c = rules_client(&server).await;
    for v in ["v1", "v2", "v3"] {
        put(&mut c, "a.yaml", &rule("A", v), None).await.unwrap();
    }
    let h = c
        .history(rules::HistoryRequest {
            target: "a.yaml".into(),
            before: 0,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.entries.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 2]
    );
    assert_eq!(h.next_before, 2);
    assert_eq!(h.entries[0].author, format!("uid:{}", current_uid()));
    assert_eq!(
        h.entries[0].changes[0].digest,
        falco_api::services::control::rules::digest(&rule("A", "v3"))
    );
    let page2 = c
        .history(rules::HistoryRequest {
            target: "a.yaml".into(),
            before: 2,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page2.entries.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1]
    );
    let rolled = c
        .rollback(rules::RollbackRequest {
            revision: 1,
            name: "a.yaml".into(),
            expected_revision: Some(3),
            comment: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(rolled.into_inner().revision, 4);
    let now = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.content, rule("A", "v1"));
    let latest = c
        .history(rules::HistoryRequest {
            target: String::new(),
            before: 0,
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.entries[0].action, "rollback");
    assert_eq!(latest.entries[0].comment, "rollback to revision 1");
    let stale = c
        .rollback(rules::RollbackRequest {
            revision: 2,
            name: String::new(),
            expected_revision: Some(3),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let future = c
        .get(rules::GetRequest {
            name: "a.yaml".into(),
            revision: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), Code::InvalidArgument);
    server.stop().await;
}

fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn rules_are_toggled_by_name_and_tag_and_listed_as_effective() {
    let server = TestServer::start(1000).await;
    let mut c = rules_client(&server).await;
    put(
        &mut c,
        "a.yaml",
        &(rule("A", "a") + &rule("B", "b").replace("tags: [files]", "tags: [other]")),
        None,
    )
    .await
    .unwrap();
    let eff = c
        .effective(rules::EffectiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eff.rules.len(), 2);
    assert!(eff
        .rules
        .iter()
        .all(|r| r.enabled && r.compiled && r.file == "a.yaml"));
    let off = rules::ToggleRequest {
        tags: vec!["files".into()],
        enabled: false,
        ..Default::default()
    };
    c.toggle(off).await.unwrap();
    let eff = c
        .effective(rules::EffectiveRequest {})
        .await
        .unwrap()
        .into_inner();
    let enabled: HashMap<_, _> = eff
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.enabled))
        .collect();
    assert_eq!((enabled["A"], enabled["B"]), (false, true));
    let acks = send_all(&server, vec![vec![syscall_event(1, "open", "/etc/a")]]).await;
    assert_eq!(acks[0].matched, 1, "B (first-match) still alerts");
    let mut out = server.outputs().await;
    assert!(get_all(&mut out, after(0)).await.unwrap()[0]
        .output
        .contains(" b /etc/a"));
    // A name toggle wins over the tag's.
    c.toggle(rules::ToggleRequest {
        rules: vec!["A".into()],
        enabled: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let eff = c
        .effective(rules::EffectiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(eff.rules.iter().all(|r| r.enabled));
    let unknown = c
        .toggle(rules::ToggleRequest {
            rules: vec!["Nope".into()],
            enabled: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let h = c
        .history(rules::HistoryRequest {
            target: "tag:files".into(),
            before: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.entries.len(), 1);
    assert_eq!(h.entries[0].action, "disable");
    server.stop().await;
}

async fn config_value(c: &mut ConfigsClient<Channel>, key: &str) -> configs::Entry {
    let r = c
        .get(configs::GetRequest {
            keys: vec![key.into()],
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    r.entries.into_iter().next().unwrap()
}

async fn set(c: &mut ConfigsClient<Channel>, key: &str, value: &str) -> Result<u64, tonic::Status> {
    let req = configs::SetRequest {
        values: [(key.to_string(), value.to_string())].into(),
        expected_revision: None,
        comment: String::new(),
    };
    c.set(req).await.map(|r| r.into_inner().revision)
}

#[tokio::test]
async fn config_changes_apply_live_and_bad_values_are_refused() {
    let server = TestServer::start(1000).await;
    let mut rc = rules_client(&server).await;
    put(&mut rc, "a.yaml", &rule("A", "v1"), None)
        .await
        .unwrap();
    let mut c = configs_client(&server).await;
    let all = c
        .get(configs::GetRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.entries.len() >= 20);
    assert!(all
        .entries
        .iter()
        .all(|e| e.origin == "default" && !e.accepts.is_empty()));

    // json_output changes the next alert's format.
    set(&mut c, "json_output", "true").await.unwrap();
    let e = config_value(&mut c, "json_output").await;
    assert_eq!((e.value.as_str(), e.origin.as_str()), ("true", "api"));
    send_all(&server, vec![vec![syscall_event(1, "open", "/etc/a")]]).await;
    let mut out = server.outputs().await;
    let alert = get_all(&mut out, after(0)).await.unwrap().pop().unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&alert.output).expect("the output is a JSON document");
    assert_eq!(doc["rule"], "A");
    assert_eq!(doc["output_fields"]["fd.name"], "/etc/a");

    // priority filters: WARNING rules stop at a minimum of error.
    set(&mut c, "priority", "error").await.unwrap();
    let acks = send_all(&server, vec![vec![syscall_event(2, "open", "/etc/b")]]).await;
    assert_eq!(acks[0].matched, 0);
    let rev = c
        .unset(configs::UnsetRequest {
            keys: vec!["priority".into(), "json_output".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rev.into_inner().revision > 0);
    assert_eq!(config_value(&mut c, "priority").await.origin, "default");
    let acks = send_all(&server, vec![vec![syscall_event(3, "open", "/etc/c")]]).await;
    assert_eq!(acks[0].matched, 1);

    // Capacities shrink the log at the next append.
    set(&mut c, "outputs.capacity", "2").await.unwrap();
    send_all(&server, vec![vec![syscall_event(4, "open", "/etc/d")]]).await;
    assert_eq!(server.app.store.outputs().bounds().len(), 2);

    // Bad values name the key and what it accepts; nothing changes.
    let before = c
        .get(configs::GetRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let bad = set(&mut c, "ingest.policy", "sometimes").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("ingest.policy") && bad.message().contains("block, drop"),
        "{}",
        bad.message()
    );
    let unknown = set(&mut c, "no.such.key", "1").await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown
        .message()
        .contains("unknown config key 'no.such.key'"));
    let two = configs::SetRequest {
        values: [
            ("json_output".to_string(), "true".to_string()),
            ("outputs.max_burst".to_string(), "0".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    assert_eq!(c.set(two).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(
        config_value(&mut c, "json_output").await.value,
        "false",
        "a refused set changes no key"
    );
    assert_eq!(
        c.get(configs::GetRequest::default())
            .await
            .unwrap()
            .into_inner()
            .revision,
        before
    );
    server.stop().await;
}

#[tokio::test]
async fn outputs_rate_throttles_alerts_and_counts_what_it_drops() {
    let server = TestServer::start(1000).await;
    let mut rc = rules_client(&server).await;
    put(&mut rc, "a.yaml", &rule("A", "v1"), None)
        .await
        .unwrap();
    let mut c = configs_client(&server).await;
    let req = configs::SetRequest {
        values: [
            ("outputs.rate".to_string(), "0.001".to_string()),
            ("outputs.max_burst".to_string(), "3".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    c.set(req).await.unwrap();
    let events = (1..=10)
        .map(|i| syscall_event(i, "open", "/etc/x"))
        .collect();
    let acks = send_all(&server, vec![events]).await;
    assert_eq!(acks[0].matched, 10);
    assert_eq!(
        acks[0].last_output_seq - acks[0].first_output_seq + 1,
        3,
        "three alerts stored"
    );
    let mut drops = server.drops().await;
    let records = crate::common::events::wait_for_drops(&mut drops, 1).await;
    let n: u64 = records
        .iter()
        .filter(|d| d.stage == "outputs_rate_limited")
        .map(|d| d.n_drops)
        .sum();
    assert_eq!(n, 7);
    server.stop().await;
}

#[tokio::test]
async fn config_history_and_rollback() {
    let server = TestServer::start(1000).await;
    let mut c = configs_client(&server).await;
    let r1 = set(&mut c, "hostname", "node-a").await.unwrap();
    set(&mut c, "hostname", "node-b").await.unwrap();
    set(&mut c, "json_output", "true").await.unwrap();
    let h = c
        .history(configs::HistoryRequest {
            key: "hostname".into(),
            before: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.entries.len(), 2);
    assert_eq!(h.entries[0].changes[0].value.as_deref(), Some("node-b"));
    let then = c
        .get(configs::GetRequest {
            keys: vec!["hostname".into()],
            revision: r1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.entries[0].value, "node-a");
    c.rollback(configs::RollbackRequest {
        revision: r1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(config_value(&mut c, "hostname").await.value, "node-a");
    assert_eq!(
        config_value(&mut c, "json_output").await.origin,
        "default",
        "keys set after r1 are unset"
    );
    assert_eq!(server.app.current_hostname(), "node-a", "applied live");
    server.stop().await;
}

#[tokio::test]
async fn eight_clients_doing_compare_and_swap_increments_lose_no_update() {
    let server = TestServer::start(1000).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let socket = server.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c =
                ConfigsClient::new(falco_api::cli::client::connect_unix(&socket).await.unwrap());
            let mut done = 0;
            let mut conflicts = 0;
            while done < 10 {
                let e = config_value(&mut c, "drops.capacity").await;
                let next = e.value.parse::<u64>().unwrap() + 1;
                let req = configs::SetRequest {
                    values: [("drops.capacity".to_string(), next.to_string())].into(),
                    expected_revision: Some(e.revision),
                    comment: String::new(),
                };
                match c.set(req).await {
                    Ok(_) => done += 1,
                    Err(s) if s.code() == Code::FailedPrecondition => conflicts += 1,
                    Err(s) => panic!("unexpected {s:?}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let mut c = configs_client(&server).await;
    assert_eq!(
        config_value(&mut c, "drops.capacity").await.value,
        (10_000 + 80).to_string()
    );
    let all = c
        .history(configs::HistoryRequest {
            key: "drops.capacity".into(),
            before: 0,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 80, "{conflicts} conflicts were retried");
    server.stop().await;
}

#[tokio::test]
async fn a_restart_restores_rules_config_and_revision() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(temp.path(), 1000).await;
    let mut rc = rules_client(&server).await;
    put(&mut rc, "a.yaml", &rule("A", "v1"), None)
        .await
        .unwrap();
    rc.toggle(rules::ToggleRequest {
        rules: vec!["A".into()],
        enabled: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut c = configs_client(&server).await;
    let rev = set(&mut c, "json_output", "true").await.unwrap();
    drop((rc, c));
    server.stop().await;

    let server = TestServer::start_in(temp.path(), 1000).await;
    server.app.config.apply().unwrap();
    server.app.rules.reload().unwrap();
    let mut rc = rules_client(&server).await;
    let eff = rc
        .effective(rules::EffectiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eff.revision, rev);
    assert_eq!(eff.rules.len(), 1);
    assert!(!eff.rules[0].enabled, "the toggle survived");
    let mut c = configs_client(&server).await;
    assert_eq!(config_value(&mut c, "json_output").await.value, "true");
    assert!(
        server.app.pipeline.settings().output.json_output,
        "and is applied"
    );
    assert_eq!(
        c.get(configs::GetRequest::default())
            .await
            .unwrap()
            .into_inner()
            .revision,
        rev
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revision_older_than_the_retained_history_is_out_of_range() {
    use falco_api::services::control::{Change, ControlError};
    let temp = tempfile::tempdir().unwrap();
    let opts = falco_api::store::StoreOptions {
        history_retention: 2,
        ..Default::default()
    };
    let app = falco_api::services::App::open(temp.path(), &opts).unwrap();
    for i in 0..5 {
        app.config
            .set(
                &[("hostname".to_string(), format!("h{i}"))].into(),
                Change {
                    expected: None,
                    author: "test",
                    comment: "",
                },
            )
            .unwrap();
    }
    match app.config.get(&[], 1) {
        Err(ControlError::Compacted(m)) => {
            assert!(m.contains("oldest revision retained is 3"), "{m}")
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let status: tonic::Status = app
        .config
        .rollback(
            1,
            Change {
                expected: None,
                author: "test",
                comment: "",
            },
        )
        .unwrap_err()
        .into();
    assert_eq!(status.code(), Code::OutOfRange);
    let (entries, _) = app.config.get(&["hostname".to_string()], 4).unwrap();
    assert_eq!(entries[0].value, "h3");
}
