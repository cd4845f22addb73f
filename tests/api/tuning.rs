//! Tuning from an alert (`falco.rules/tune`): Falco's own rules, real events through inputs, the
//! tuning file in the store, the preview against a re-evaluation, rollback and roles.

use std::sync::Arc;

use falco_api::base::event::{OutputEvent, Priority};
use falco_api::engine::loader::{ExceptionDef, Slot};
use falco_api::engine::tuning::AlertMatcher;
use falco_api::engine::yaml::{parse_documents, Node};
use falco_api::engine::{LoadOptions, RuleSet, RulesFile};
use falco_api::grpc::auth::{Policy, Role};
use falco_api::grpc::{self, ServerOptions};
use falco_api::net::Limits;
use falco_api::proto::inputs::Event;
use falco_api::proto::rules::{self as pb, service_client::ServiceClient as RulesClient};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::events::send_all;
use crate::common::TestServer;

const TUNING: &str = "zz-falco-api-tuning.yaml";
const SHELL: &str = "Terminal shell in container";

fn falco_rules() -> String {
    let path = crate::conformance::corpus().join("rules/main/rules/falco_rules.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// A shell started with a terminal in a container, as Falco's syscall fields show it.
fn shell(seq: u64, name: &str, days_ago: i64) -> Event {
    let payload = serde_json::json!({
        "evt.type": "execve", "evt.dir": "<", "container.id": "abc123def456",
        "proc.name": name, "proc.pname": "runc", "proc.tty": 34816,
        "proc.cmdline": name, "proc.exepath": format!("/bin/{name}"), "user.name": "root",
    });
    let now = chrono::Utc::now().timestamp();
    Event {
        source: "syscall".into(),
        payload: payload.to_string().into_bytes(),
        time: Some(prost_types::Timestamp {
            seconds: now - days_ago * 86_400,
            nanos: 0,
        }),
        hostname: "node-a".into(),
        seq,
    }
}

/// Sends the events in one batch; the outputs seqs of the alerts they raised.
async fn send(server: &TestServer, events: Vec<Event>) -> Vec<u64> {
    let ack = send_all(server, vec![events]).await.remove(0);
    if ack.matched == 0 {
        return Vec::new();
    }
    (ack.first_output_seq..=ack.last_output_seq).collect()
}

fn ask(seq: u64, fields: &[&str]) -> pb::TuneRequest {
    pb::TuneRequest {
        alert_seq: seq,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

async fn put(c: &mut RulesClient<Channel>, name: &str, content: &str) -> u64 {
    let req = pb::PutRequest {
        name: name.into(),
        content: content.into(),
        expected_revision: None,
        comment: "test".into(),
    };
    c.put(req).await.unwrap().into_inner().revision
}

/// Every stored alert, decoded.
fn stored(server: &TestServer) -> Vec<(u64, OutputEvent)> {
    let log = server.app.logs.outputs_log();
    log.read(0, log.bounds().newest, usize::MAX).unwrap()
}

/// The parts of Falco's rules schema (`userspace/engine/rule_json_schema.h`) a tuning file
/// uses: a sequence of items whose keys are known; an exception is a map with a string name
/// and only name/fields/comps/values; an override maps known keys to append or replace.
fn check_rules_schema(content: &str) {
    let docs = parse_documents(content).unwrap();
    let Node::Seq { items, .. } = &docs[0] else {
        panic!("a rules file is a sequence")
    };
    for item in items {
        for (k, v) in item.entries() {
            let key = k.as_str().unwrap();
            assert!(["rule", "exceptions", "override"].contains(&key), "{key}");
            if key == "exceptions" {
                let Node::Seq { items: exs, .. } = v else {
                    panic!("exceptions is a sequence")
                };
                for ex in exs {
                    assert!(ex.get("name").and_then(Node::as_str).is_some());
                    for (k, _) in ex.entries() {
                        let k = k.as_str().unwrap();
                        assert!(["name", "fields", "comps", "values"].contains(&k), "{k}");
                    }
                }
            }
            if key == "override" {
                for (k, v) in v.entries() {
                    assert!(["exceptions"].contains(&k.as_str().unwrap()));
                    assert!(["append", "replace"].contains(&v.as_str().unwrap()));
                }
            }
        }
    }
}

#[tokio::test]
async fn an_alert_becomes_an_exception_on_falcos_rule_and_rollback_restores_alerting() {
    let server = TestServer::start(10_000).await;
    let mut rules = RulesClient::new(server.channel().await);
    let before = put(&mut rules, "falco_rules.yaml", &falco_rules()).await;
    let bash = send(
        &server,
        vec![
            shell(1, "bash", 0),
            shell(2, "bash", 0),
            shell(3, "bash", 30),
        ],
    )
    .await;
    let sh = send(&server, vec![shell(4, "sh", 0), shell(5, "zsh", 0)]).await;
    assert_eq!(
        (bash.len(), sh.len()),
        (3, 2),
        "every shell alerts before tuning"
    );

    // With no fields, a dry run lists what the alert offers: its fields of the rule's source,
    // not those it holds no value for.
    let mut offer = ask(bash[0], &[]);
    offer.dry_run = true;
    let offered = rules.tune(offer).await.unwrap().into_inner();
    assert_eq!(
        (offered.rule.as_str(), offered.source.as_str()),
        (SHELL, "syscall")
    );
    assert!(offered.offered_fields.contains(&"proc.name".to_string()));
    assert!(offered.offered_fields.contains(&"proc.pname".to_string()));
    assert!(
        !offered.offered_fields.contains(&"user.uid".to_string()),
        "<NA> is no value"
    );

    // Bad asks: precise statuses, nothing saved.
    for (fields, code, words) in [
        (
            vec!["container.image.repository"],
            Code::InvalidArgument,
            "does not carry container.image.repository",
        ),
        (
            vec!["ka.user.name"],
            Code::InvalidArgument,
            "not a field of source syscall",
        ),
        (
            vec!["user.uid"],
            Code::InvalidArgument,
            "has no value for user.uid",
        ),
        (
            vec!["proc.name", "proc.name"],
            Code::InvalidArgument,
            "named twice",
        ),
    ] {
        let err = rules.tune(ask(bash[0], &fields)).await.unwrap_err();
        assert_eq!(err.code(), code, "{fields:?}: {}", err.message());
        assert!(err.message().contains(words), "{}", err.message());
    }
    let mut bad_comp = ask(bash[0], &["proc.name"]);
    bad_comp.comps = vec!["regex".into()];
    let err = rules.tune(bad_comp).await.unwrap_err();
    assert!(
        err.message().contains("not an operator a tuning can use"),
        "{}",
        err.message()
    );
    let err = rules.tune(ask(99_999, &["proc.name"])).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());

    // A dry run: the entry and the preview, nothing saved.
    let mut dry = ask(bash[0], &["proc.name", "proc.pname"]);
    dry.dry_run = true;
    dry.days = 7;
    let preview = rules.tune(dry).await.unwrap().into_inner();
    assert_eq!(preview.revision, 0);
    assert!(!preview.reused);
    assert_eq!(preview.exception, "falco_api_proc_name_proc_pname");
    let p = preview.preview.clone().unwrap();
    let all = p.all.unwrap();
    assert_eq!((all.examined, all.suppressed, all.uncounted), (5, 3, 0));
    let recent = p.recent.unwrap();
    assert_eq!(
        (recent.examined, recent.suppressed),
        (4, 2),
        "one bash alert is 30 days old"
    );
    assert_eq!(p.suppressed.len(), 3);
    assert!(p.suppressed.iter().all(|e| bash.contains(&e.seq)));
    assert_eq!(
        p.alerting.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![sh[1], sh[0]]
    );

    // The preview equals a re-evaluation of the stored alerts with the engine's matcher.
    let ex = ExceptionDef {
        name: "x".into(),
        fields: Some(Slot::List(vec!["proc.name".into(), "proc.pname".into()])),
        comps: None,
        values: vec![vec![
            Slot::Scalar("bash".into()),
            Slot::Scalar("runc".into()),
        ]],
        pos: Default::default(),
    };
    let matcher = AlertMatcher::new("syscall", &ex).unwrap();
    let of_rule: Vec<_> = stored(&server)
        .into_iter()
        .filter(|(_, a)| a.rule == SHELL)
        .collect();
    let suppressed = of_rule
        .iter()
        .filter(|(_, a)| matcher.matches(&a.output_fields) == Ok(true))
        .count() as u64;
    assert_eq!(
        (of_rule.len() as u64, suppressed),
        (all.examined, all.suppressed)
    );
    let listed = rules
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.revision, before, "a dry run changes nothing");

    // Saved: one recorded change, author and comment kept, the file schema-shaped and loading
    // after Falco's rules in falco-api's loader.
    let mut save = ask(bash[0], &["proc.name", "proc.pname"]);
    save.comment = "bash from runc is our debug shell".into();
    let saved = rules.tune(save).await.unwrap().into_inner();
    assert_eq!(saved.revision, before + 1);
    assert_eq!(saved.file, TUNING);
    let history = rules
        .history(pb::HistoryRequest {
            target: TUNING.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries[0].action, "tune");
    assert_eq!(
        history.entries[0].comment,
        "bash from runc is our debug shell"
    );
    assert!(!history.entries[0].author.is_empty());
    let file = rules
        .get(pb::GetRequest {
            name: TUNING.into(),
            revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(file.content.contains(&saved.entry));
    check_rules_schema(&file.content);
    let files = [
        RulesFile {
            name: "falco_rules.yaml".into(),
            content: falco_rules(),
        },
        RulesFile {
            name: TUNING.into(),
            content: file.content.clone(),
        },
    ];
    RuleSet::load(&files, &LoadOptions::default())
        .expect("the tuning file loads after Falco's rules");

    // The engine agrees with the preview: the same five events sent again raise exactly the
    // alerts the preview said would still be raised.
    let again = vec![
        shell(11, "bash", 0),
        shell(12, "bash", 0),
        shell(13, "bash", 30),
        shell(14, "sh", 0),
        shell(15, "zsh", 0),
    ];
    assert_eq!(
        send(&server, again).await.len() as u64,
        all.examined - all.suppressed - all.uncounted
    );

    // The same event no longer alerts; a neighbouring one (another shell) still does.
    assert!(send(&server, vec![shell(6, "bash", 0)]).await.is_empty());
    assert_eq!(send(&server, vec![shell(7, "sh", 0)]).await.len(), 1);
    let again = rules
        .tune(ask(bash[0], &["proc.name", "proc.pname"]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{}", again.message());

    // The next alert on the same fields adds its values to the exception the tuning made.
    let reuse = rules
        .tune(ask(sh[0], &["proc.pname", "proc.name"]))
        .await
        .unwrap()
        .into_inner();
    assert!(reuse.reused);
    assert_eq!(reuse.exception, "falco_api_proc_name_proc_pname");
    assert!(!reuse.entry.contains("fields:"), "{}", reuse.entry);
    assert_eq!(
        reuse
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect::<Vec<_>>(),
        ["proc.name", "proc.pname"],
        "values in the exception's field order"
    );
    assert!(send(&server, vec![shell(8, "sh", 0)]).await.is_empty());

    // The rule the tuning file appends to cannot disappear silently.
    let gone = rules
        .delete(pb::DeleteRequest {
            name: "falco_rules.yaml".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::InvalidArgument);
    assert!(
        gone.message().starts_with(&format!("{TUNING}:")),
        "{}",
        gone.message()
    );
    assert!(
        gone.message().contains("no rule by that name"),
        "{}",
        gone.message()
    );

    // Rollback restores alerting.
    let rollback = pb::RollbackRequest {
        revision: before,
        ..Default::default()
    };
    rules.rollback(rollback).await.unwrap();
    assert_eq!(
        send(&server, vec![shell(9, "bash", 0), shell(10, "sh", 0)])
            .await
            .len(),
        2
    );
    server.stop().await;
}

const READERS: &str = r#"
- rule: shadow read
  desc: d
  condition: evt.type = open and fd.name startswith /etc
  output: "%proc.name read %fd.name"
  priority: WARNING
  exceptions:
    - name: known_readers
      fields: [proc.name, fd.name]
      values:
        - [sshd, /etc/shadow]
"#;

fn open(seq: u64, proc: &str, fd: &str) -> Event {
    let payload = serde_json::json!({"evt.type": "open", "proc.name": proc, "fd.name": fd});
    Event {
        source: "syscall".into(),
        payload: payload.to_string().into_bytes(),
        seq,
        ..Default::default()
    }
}

#[tokio::test]
async fn values_join_the_rules_own_exception_unless_other_operators_are_asked_for() {
    let server = TestServer::start(1000).await;
    let mut rules = RulesClient::new(server.channel().await);
    put(&mut rules, "readers.yaml", READERS).await;
    let seqs = send(
        &server,
        vec![
            open(1, "sshd", "/etc/shadow"),
            open(2, "cat", "/etc/shadow"),
        ],
    )
    .await;
    assert_eq!(seqs.len(), 1, "sshd is excepted already");

    // Keyed on the same fields in another order: the rule's exception takes the values.
    let joined = rules
        .tune(ask(seqs[0], &["fd.name", "proc.name"]))
        .await
        .unwrap()
        .into_inner();
    assert!(joined.reused);
    assert_eq!(joined.exception, "known_readers");
    assert!(
        joined.entry.contains(r#"- ["cat", "/etc/shadow"]"#),
        "{}",
        joined.entry
    );
    assert!(send(&server, vec![open(3, "cat", "/etc/shadow")])
        .await
        .is_empty());
    let other = send(&server, vec![open(4, "cat", "/etc/passwd")]).await;
    assert_eq!(other.len(), 1, "another value still alerts");

    // Other operators make a new exception: every file under /etc read by cat.
    let mut prefix = ask(other[0], &["proc.name", "fd.name"]);
    prefix.comps = vec!["in".into(), "startswith".into()];
    let made = rules.tune(prefix).await.unwrap().into_inner();
    assert!(!made.reused);
    assert!(
        made.entry.contains(r#"comps: ["in", "startswith"]"#),
        "{}",
        made.entry
    );
    assert!(
        made.entry.contains(r#"- [["cat"], "/etc/passwd"]"#),
        "{}",
        made.entry
    );
    assert!(send(&server, vec![open(5, "cat", "/etc/passwd")])
        .await
        .is_empty());

    // An alert of the rule stored without fd.name (say, from an older output format) cannot be
    // counted either way: the preview says so and names the field.
    let older = OutputEvent::new(0, Priority::Warning, "shadow read", "cat read", "syscall")
        .with_fields([("proc.name", "cat")]);
    server.app.logs.outputs.append(vec![older]).await.unwrap();
    let mut dry = ask(other[0], &["proc.name", "fd.name"]);
    dry.dry_run = true;
    let p = rules.tune(dry).await.unwrap().into_inner().preview.unwrap();
    let all = p.all.unwrap();
    assert_eq!(all.uncounted, 1, "{all:?}");
    assert_eq!(p.missing_fields, ["fd.name"]);

    // A named exception keyed on other fields is refused, naming its fields.
    let mut named = ask(other[0], &["proc.name"]);
    named.exception = "known_readers".into();
    let err = rules.tune(named).await.unwrap_err();
    assert!(
        err.message().contains("keys on proc.name, fd.name"),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reader_cannot_tune_even_as_a_dry_run() {
    let server = TestServer::start(1000).await;
    let mut admin = RulesClient::new(server.channel().await);
    put(&mut admin, "readers.yaml", READERS).await;
    let seqs = send(&server, vec![open(1, "cat", "/etc/shadow")]).await;
    let socket = server.dir.join("reader.sock");
    let listener = grpc::bind_unix(&socket).unwrap();
    let uid = falco_api::net::own_uid();
    let policy = Policy {
        roles: [(format!("uid:{uid}"), vec![Role::Reader])].into(),
        socket_owner_is_admin: false,
        own_uid: uid,
    };
    let opts = ServerOptions {
        policy: Arc::new(policy),
        limits: Limits::default(),
    };
    tokio::spawn(grpc::serve_unix_with(server.app.clone(), listener, opts));
    let channel = falco_api::cli::client::connect_unix(&socket).await.unwrap();
    let mut reader = RulesClient::new(channel);
    for dry_run in [false, true] {
        let mut req = ask(seqs[0], &["proc.name"]);
        req.dry_run = dry_run;
        let denied = reader.tune(req).await.unwrap_err();
        assert_eq!(
            denied.code(),
            Code::PermissionDenied,
            "{}",
            denied.message()
        );
    }
    let listed = admin
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.files.iter().all(|f| f.name != TUNING));
    server.stop().await;
}

/// `falco-api rules tune` through the real binary: the offered fields, a dry run that saves
/// nothing, a save, and a refusal with the service's words and a failing exit status.
#[tokio::test]
async fn the_cli_lists_previews_and_saves() {
    use crate::common::process::cli_output;
    let server = TestServer::start(1000).await;
    let mut rules = RulesClient::new(server.channel().await);
    let first = put(&mut rules, "readers.yaml", READERS).await;
    let seqs = send(
        &server,
        vec![open(1, "cat", "/etc/shadow"), open(2, "vi", "/etc/shadow")],
    )
    .await;
    let alert = seqs[0].to_string();
    let sock = server.socket.clone();
    let run = move |args: Vec<String>| {
        let sock = sock.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli_output(&sock, &args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.code(), text)
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["rules", "tune", "--alert", alert.as_str()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let (code, text) = run(args(&[])).await.unwrap();
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("fd.name, proc.name") || text.contains("proc.name, fd.name"),
        "{text}"
    );

    let (code, text) = run(args(&["--field", "proc.name", "--dry-run"]))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("all: 2 alerts, 1 suppressed, 1 still alerting"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing saved"), "{text}");
    let listed = rules
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.revision, first);

    let (code, text) = run(args(&["--field", "proc.name", "-m", "cat is fine"]))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("saved: revision {}", first + 1)),
        "{text}"
    );
    let (code, text) = run(args(&["--field", "proc.pid"])).await.unwrap();
    assert_ne!(code, Some(0));
    assert!(text.contains("does not carry proc.pid"), "{text}");
    server.stop().await;
}
