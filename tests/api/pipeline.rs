//! The event pipeline end to end: inputs → engine → outputs, drops, the webhook.

use std::time::Duration;

use falco_api::pipeline::{QueuePolicy, Settings};
use falco_api::proto::inputs::{self, Event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::events::{send_all, syscall_event, wait_for_drops, SYSCALL_RULES};
use crate::common::{after, get_all, TestServer};

#[tokio::test]
async fn events_become_alerts_with_every_upstream_field() {
    let server = TestServer::start_with(1000, Settings::default(), &[SYSCALL_RULES]).await;
    let acks = send_all(
        &server,
        vec![vec![
            syscall_event(1, "openat", "/etc/shadow"),
            syscall_event(2, "openat", "/etc/hosts"),
            syscall_event(3, "execve", ""),
        ]],
    )
    .await;
    assert_eq!(acks[0].accepted_up_to, 3);
    assert_eq!(acks[0].matched, 2);
    assert!(acks[0].rejected.is_empty());
    assert_eq!((acks[0].first_output_seq, acks[0].last_output_seq), (1, 2));
    let mut client = server.outputs().await;
    let alerts = get_all(&mut client, after(0)).await.unwrap();
    assert_eq!(alerts.len(), 2);
    let a = &alerts[0];
    assert_eq!(a.rule, "shadow read");
    assert_eq!(
        a.priority,
        falco_api::proto::schema::Priority::Warning as i32
    );
    assert_eq!(a.source, "syscall");
    assert_eq!(a.tags, vec!["filesystem".to_string(), "mitre".to_string()]);
    assert!(
        a.output.ends_with(": Warning cat read /etc/shadow"),
        "{}",
        a.output
    );
    assert_eq!(
        a.output_fields.get("fd.name").map(String::as_str),
        Some("/etc/shadow")
    );
    assert_eq!(a.hostname, server.app.logs.machine_hostname());
    assert_eq!(alerts[1].rule, "any exec");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_event_is_rejected_alone_and_the_stream_goes_on() {
    let settings = Settings {
        max_payload_bytes: 200,
        ..Settings::default()
    };
    let server = TestServer::start_with(1000, settings, &[SYSCALL_RULES]).await;
    let big = Event {
        payload: format!("{{\"evt.type\":\"open\",\"x\":\"{}\"}}", "y".repeat(300)).into_bytes(),
        ..syscall_event(5, "open", "")
    };
    let batch = vec![
        syscall_event(1, "open", "/etc/shadow"),
        Event {
            payload: b"{not json".to_vec(),
            ..syscall_event(2, "", "")
        },
        syscall_event(3, "open", "/etc/shadow"),
        Event {
            source: "k8s_audit".into(),
            payload: br#"{"kind": 0}"#.to_vec(),
            ..syscall_event(4, "", "")
        },
        big,
        Event {
            source: "".into(),
            ..syscall_event(6, "open", "/etc/shadow")
        },
    ];
    let acks = send_all(
        &server,
        vec![batch, vec![syscall_event(7, "open", "/etc/shadow")]],
    )
    .await;
    let rejected: Vec<(u64, &str)> = acks[0]
        .rejected
        .iter()
        .map(|r| (r.seq, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2, 4, 5, 6],
        "{rejected:?}"
    );
    assert!(rejected[0].1.contains("invalid JSON"));
    assert!(rejected[1]
        .1
        .contains("data not recognized as a k8s audit event"));
    assert!(rejected[2].1.contains("exceeds the limit of 200 bytes"));
    assert!(rejected[3].1.contains("invalid source name"));
    assert_eq!(acks[0].accepted_up_to, 6);
    assert_eq!(acks[0].matched, 2);
    assert_eq!(acks[1].matched, 1, "the stream goes on after a bad batch");
    let mut client = server.outputs().await;
    let syscall_only = falco_api::proto::outputs::Request {
        after_seq: Some(0),
        sources: vec!["syscall".into()],
        ..Default::default()
    };
    assert_eq!(get_all(&mut client, syscall_only).await.unwrap().len(), 3);
    // The oversize payload is also a drop record.
    let mut drops = server.drops().await;
    let records = wait_for_drops(&mut drops, 1).await;
    assert_eq!(records[0].stage, "payload_too_large");
    assert_eq!(records[0].n_drops, 1);
    server.stop().await;
}

#[tokio::test]
async fn with_the_drop_policy_every_lost_event_has_a_drop_record() {
    let settings = Settings {
        queue_size: 1,
        workers: 1,
        policy: QueuePolicy::Drop,
        ..Settings::default()
    };
    let server = TestServer::start_with(100_000, settings, &[SYSCALL_RULES]).await;
    // Several streams at once against a one-event queue: some batches must be refused.
    let mut tasks = Vec::new();
    for s in 0..4u64 {
        let batches: Vec<Vec<Event>> = (0..50u64)
            .map(|b| {
                (0..5u64)
                    .map(|i| syscall_event(s * 10_000 + b * 5 + i + 1, "open", "/etc/shadow"))
                    .collect()
            })
            .collect();
        let server_socket = server.socket.clone();
        tasks.push(tokio::spawn(async move {
            let channel = falco_api::cli::client::connect_unix(&server_socket)
                .await
                .unwrap();
            let mut client = falco_api::proto::inputs::service_client::ServiceClient::new(channel);
            let (tx, rx) = mpsc::channel(64);
            for events in batches {
                tx.send(inputs::Request { events }).await.unwrap();
            }
            drop(tx);
            let mut stream = client
                .send(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let (mut evaluated, mut dropped) = (0u64, 0u64);
            while let Some(ack) = stream.message().await.unwrap() {
                evaluated += ack.evaluated;
                dropped += ack.dropped;
            }
            (evaluated, dropped)
        }));
    }
    let (mut evaluated, mut dropped) = (0, 0);
    for t in tasks {
        let (e, d) = t.await.unwrap();
        evaluated += e;
        dropped += d;
    }
    assert_eq!(
        evaluated + dropped,
        4 * 50 * 5,
        "every event was evaluated or dropped"
    );
    assert!(
        dropped > 0,
        "a one-event queue under four streams must drop something"
    );
    let mut drops = server.drops().await;
    let mut recorded = 0;
    for _ in 0..500 {
        let req = falco_api::proto::drops::Request {
            after_seq: Some(0),
            stages: vec!["ingest_queue_full".into()],
            ..Default::default()
        };
        let mut stream = drops.get(req).await.unwrap().into_inner();
        recorded = 0;
        while let Some(d) = stream.message().await.unwrap() {
            recorded += d.n_drops;
        }
        if recorded >= dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        recorded, dropped,
        "drop records add up to the dropped events"
    );
    // Evaluated events each produced exactly one alert.
    let mut client = server.outputs().await;
    let alerts = get_all(
        &mut client,
        falco_api::proto::outputs::Request {
            after_seq: Some(0),
            rules: vec!["shadow read".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(alerts.len() as u64, evaluated);
    server.stop().await;
}

#[tokio::test]
async fn with_the_block_policy_a_burst_of_100000_events_loses_nothing() {
    let settings = Settings {
        queue_size: 1000,
        policy: QueuePolicy::Block,
        ..Settings::default()
    };
    let server = TestServer::start_with(200_000, settings, &[SYSCALL_RULES]).await;
    let batches: Vec<Vec<Event>> = (0..200u64)
        .map(|b| {
            (0..500u64)
                .map(|i| {
                    let seq = b * 500 + i + 1;
                    let fd = if seq % 10 == 0 {
                        "/etc/shadow"
                    } else {
                        "/etc/hosts"
                    };
                    syscall_event(seq, "open", fd)
                })
                .collect()
        })
        .collect();
    let acks = send_all(&server, batches).await;
    let evaluated: u64 = acks.iter().map(|a| a.evaluated).sum();
    let dropped: u64 = acks.iter().map(|a| a.dropped).sum();
    let matched: u64 = acks.iter().map(|a| a.matched).sum();
    assert_eq!((evaluated, dropped, matched), (100_000, 0, 10_000));
    assert_eq!(acks.last().unwrap().accepted_up_to, 100_000);
    assert_eq!(server.app.logs.outputs.head(), 10_000);
    let mut drops = server.drops().await;
    let none = drops
        .get(falco_api::proto::drops::Request {
            after_seq: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap();
    assert!(none.is_none(), "no drop was recorded");
    server.stop().await;
}

#[tokio::test]
async fn drops_are_mirrored_into_outputs_as_internal_alerts() {
    let mut settings = Settings {
        max_payload_bytes: 10,
        ..Settings::default()
    };
    settings.drop_alerts.rate = 100.0;
    settings.drop_alerts.max_burst = 10.0;
    let server = TestServer::start_with(1000, settings, &[SYSCALL_RULES]).await;
    send_all(&server, vec![vec![syscall_event(1, "open", "/etc/shadow")]]).await;
    let mut client = server.outputs().await;
    let mut alert = None;
    for _ in 0..500 {
        let all = get_all(&mut client, after(0)).await.unwrap();
        if let Some(a) = all
            .into_iter()
            .find(|a| a.rule == "Falco internal: event drop")
        {
            alert = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alert = alert.expect("a drop alert");
    assert_eq!(alert.source, "internal");
    assert_eq!(
        alert.priority,
        falco_api::proto::schema::Priority::Debug as i32
    );
    assert_eq!(
        alert.output_fields.get("n_drops").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        alert.output_fields.get("stage").map(String::as_str),
        Some("payload_too_large")
    );
    server.stop().await;
}

#[tokio::test]
async fn the_webhook_accepts_an_event_list_and_refuses_garbage() {
    let server = TestServer::start_with(1000, Settings::default(), &[K8S_RULES]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    crate::common::spawn_http(
        &server.app,
        listener,
        falco_api::config::HttpKind::Webhook,
        None,
    );
    let list = serde_json::json!({
        "kind": "EventList",
        "items": [audit_event("create"), audit_event("delete"), audit_event("create")]
    });
    let (status, body) = http_post(addr, "/k8s-audit", &list.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alerts\":2"), "{body}");
    let mut client = server.outputs().await;
    let alerts = get_all(&mut client, after(0)).await.unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].source, "k8s_audit");
    let (status, body) = http_post(addr, "/k8s-audit", "this is not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid JSON"), "{body}");
    let (status, _) = http_post(addr, "/k8s-audit", r#"{"kind":"Pod"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = http_post(addr, "/elsewhere", "{}").await;
    assert_eq!(status, 404);
    server.stop().await;
}

const K8S_RULES: &str = r#"
- rule: create
  desc: d
  condition: ka.verb = create
  output: "%ka.user.name created %ka.target.name"
  priority: NOTICE
  source: k8s_audit
"#;

fn audit_event(verb: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "x", "stage": "ResponseComplete",
        "verb": verb, "user": {"username": "alice"}, "objectRef": {"resource": "pods", "name": "p"},
        "stageTimestamp": "2024-01-01T00:00:00.000000Z"
    })
}

/// A minimal HTTP/1.1 POST over a fresh connection: (status, body).
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test]
async fn the_webhook_serves_https_when_asked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start_with(1000, Settings::default(), &[K8S_RULES]).await;
    let certs = crate::common::localhost_certs();
    let read = |f: &str| std::fs::read(certs.path().join(f)).unwrap();
    let acceptor =
        falco_api::http::tls_acceptor(&read("server.crt"), &read("server.key"), None, false)
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    crate::common::spawn_http(
        &server.app,
        listener,
        falco_api::config::HttpKind::Webhook,
        Some(acceptor),
    );

    let connector = crate::common::tls_client(&read("ca.crt"));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let body = audit_event("create").to_string();
    let request = format!(
        "POST /k8s-audit HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"alerts\":1"), "{response}");
    // Plain HTTP on the TLS port gets nowhere.
    let (status, _) = tokio::time::timeout(Duration::from_secs(15), async {
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"POST /k8s-audit HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        (buf.starts_with(b"HTTP/1.1 200"), ())
    })
    .await
    .unwrap();
    assert!(!status);
    server.stop().await;
}
