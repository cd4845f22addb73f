//! Events and rules the tests send: syscall events as Falco's would look, and one way to send
//! them over `falco.inputs`.

use std::time::Duration;

use falco_api::proto::inputs::{self, Event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::TestServer;

pub const SYSCALL_RULES: &str = r#"
- rule: shadow read
  desc: d
  condition: evt.type in (open, openat) and fd.name = /etc/shadow
  output: "%proc.name read %fd.name"
  priority: WARNING
  tags: [filesystem, mitre]
- rule: any exec
  desc: d
  condition: evt.type = execve
  output: "exec %proc.name"
  priority: DEBUG
"#;

pub fn syscall_event(seq: u64, evt_type: &str, fd: &str) -> Event {
    let payload = serde_json::json!({"evt.type": evt_type, "proc.name": "cat", "fd.name": fd});
    Event {
        source: "syscall".into(),
        payload: payload.to_string().into_bytes(),
        time: None,
        hostname: String::new(),
        seq,
    }
}

/// Sends `batches` on one stream and returns every acknowledgement.
pub async fn send_all(server: &TestServer, batches: Vec<Vec<Event>>) -> Vec<inputs::Response> {
    let mut client = server.inputs().await;
    let n = batches.len();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for events in batches {
            if tx.send(inputs::Request { events }).await.is_err() {
                break;
            }
        }
    });
    let mut stream = client
        .send(ReceiverStream::new(rx))
        .await
        .expect("send")
        .into_inner();
    let mut acks = Vec::new();
    while acks.len() < n {
        let ack = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("ack within 30 s")
            .expect("ack stream")
            .expect("an ack per batch");
        acks.push(ack);
    }
    acks
}

/// Reads the drops log until it holds `at_least` records (5 s at most).
pub async fn wait_for_drops(
    client: &mut falco_api::proto::drops::service_client::ServiceClient<tonic::transport::Channel>,
    at_least: usize,
) -> Vec<falco_api::proto::drops::Response> {
    for _ in 0..500 {
        let req = falco_api::proto::drops::Request {
            after_seq: Some(0),
            ..Default::default()
        };
        let mut stream = client.get(req).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(d) = stream.message().await.unwrap() {
            out.push(d);
        }
        if out.len() >= at_least {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {at_least} drop records after 5 s");
}
