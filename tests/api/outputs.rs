use std::collections::HashSet;
use std::time::Duration;

use falco_api::proto::outputs::Request;
use falco_api::proto::schema;
use tonic::Code;

use crate::common::{after, consumer, event, get_all, wait_until, Sub, TestServer};

#[tokio::test]
async fn legacy_get_drains_the_default_consumer_then_ends_ok() {
    let server = TestServer::start(1000).await;
    let mut client = server.outputs().await;
    assert!(get_all(&mut client, Request::default())
        .await
        .unwrap()
        .is_empty());
    server.append(5).await;
    let first = get_all(&mut client, Request::default()).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(
        get_all(&mut client, Request::default())
            .await
            .unwrap()
            .is_empty(),
        "drained"
    );
    server.append(2).await;
    let second = get_all(&mut client, Request::default()).await.unwrap();
    assert_eq!(second.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6, 7]);
    server.stop().await;
}

#[tokio::test]
#[allow(deprecated)]
async fn responses_carry_every_upstream_field() {
    let server = TestServer::start(1000).await;
    let mut client = server.outputs().await;
    server.append(3).await;
    let all = get_all(&mut client, after(0)).await.unwrap();
    let expected = event(1);
    let r = &all[1];
    assert_eq!(r.seq, 2);
    assert_eq!(r.rule, expected.rule);
    assert_eq!(r.output, expected.output);
    assert_eq!(r.priority, expected.priority as i32);
    assert_eq!(r.source, "syscall");
    assert_eq!(r.source_deprecated, schema::Source::Syscall as i32);
    assert_eq!(all[0].source_deprecated, schema::Source::K8sAudit as i32);
    assert_eq!(r.hostname, "test-host");
    assert_eq!(r.tags, vec!["all".to_string(), "tag1".to_string()]);
    assert_eq!(r.output_fields.get("i").map(String::as_str), Some("1"));
    let t = r.time.as_ref().expect("time");
    assert_eq!(
        t.seconds as i128 * 1_000_000_000 + t.nanos as i128,
        expected.time_ns as i128
    );
    assert_eq!(uuid::Uuid::parse_str(&r.id).unwrap().get_version_num(), 7);
    assert_ne!(all[0].id, all[1].id);
    server.stop().await;
}

#[tokio::test]
async fn sub_fans_out_every_event_to_three_subscribers() {
    let server = TestServer::start(10_000).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut client = server.outputs().await;
        subs.push(Sub::open(&mut client, Request::default()).await);
    }
    for _ in 0..10 {
        server.append(10).await;
    }
    for sub in &mut subs {
        assert_eq!(sub.seqs(100).await, (1..=100).collect::<Vec<_>>());
    }
    server.stop().await;
}

#[tokio::test]
async fn resume_after_disconnect_has_no_gap_and_no_duplicate_while_appends_go_on() {
    let server = TestServer::start(100_000).await;
    let feed = server.app.logs.outputs.clone();
    let writer = tokio::spawn(async move {
        for batch in 0..200u64 {
            feed.append((0..10).map(|i| event(batch * 10 + i)).collect())
                .await
                .unwrap();
            if batch % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut seen = Vec::new();
    let mut client = server.outputs().await;
    // Three connections, each cut off part-way, each resuming from the last seq it saw.
    for cut in [300usize, 700, 2000] {
        let mut sub = Sub::open(&mut client, after(seen.last().copied().unwrap_or(0))).await;
        let want = cut - seen.len();
        seen.extend(sub.seqs(want).await);
        drop(sub);
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=2000).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_the_log_and_consumer_positions_and_never_reuses_a_seq() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(temp.path(), 1000).await;
    server.append(50).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, consumer("c1")).await;
    assert_eq!(sub.seqs(20).await, (1..=20).collect::<Vec<_>>());
    sub.tx
        .send(Request {
            ack: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    // The ack is applied in order with the stream; wait until it is stored.
    wait_until("the ack stored", Duration::from_secs(5), || {
        server.app.store.consumers().get("outputs", "c1").unwrap() == Some(20)
    })
    .await;
    drop(sub);
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(temp.path(), 1000).await;
    let mut client = server.outputs().await;
    let from_cursor = get_all(&mut client, after(30)).await.unwrap();
    assert_eq!(
        from_cursor.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (31..=50).collect::<Vec<_>>()
    );
    let mut sub = Sub::open(&mut client, consumer("c1")).await;
    assert_eq!(sub.seqs(30).await, (21..=50).collect::<Vec<_>>());
    assert_eq!(
        server.append(1).await,
        51..52,
        "seq continues after a restart"
    );
    assert_eq!(sub.seqs(1).await, vec![51]);
    server.stop().await;
}

#[tokio::test]
async fn a_trimmed_cursor_is_out_of_range_or_reports_the_loss() {
    let server = TestServer::start(10).await;
    server.append(25).await;
    let mut client = server.outputs().await;
    let err = Sub::try_open(&mut client, after(3)).await;
    let status = match err {
        Err(status) => status,
        Ok(mut sub) => sub.next().await.expect_err("trimmed cursor must fail"),
    };
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("oldest retained seq is 16"),
        "{}",
        status.message()
    );
    let get_err = get_all(&mut client, after(3)).await.expect_err("get too");
    assert_eq!(get_err.code(), Code::OutOfRange);

    let from_oldest = Request {
        after_seq: Some(3),
        from_oldest: true,
        ..Default::default()
    };
    let mut sub = Sub::open(&mut client, from_oldest).await;
    let notice = sub.next().await.unwrap().unwrap();
    assert_eq!(notice.lost, 12, "events 4..=15 were lost");
    assert_eq!(notice.seq, 0);
    assert_eq!(notice.rule, falco_api::grpc::LOST_RULE);
    assert_eq!(notice.source, "internal");
    assert_eq!(
        notice.output_fields.get("next_seq").map(String::as_str),
        Some("16")
    );
    assert_eq!(sub.seqs(10).await, (16..=25).collect::<Vec<_>>());

    let ahead = get_all(&mut client, after(99))
        .await
        .expect_err("beyond the head");
    assert_eq!(ahead.code(), Code::OutOfRange);
    // The newest seq is 25, or one more when the lagged subscriber's drop record was mirrored
    // into the outputs log as an internal alert meanwhile.
    assert!(
        ahead.message().contains("beyond the newest seq 25")
            || ahead.message().contains("beyond the newest seq 26"),
        "{}",
        ahead.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_overtaken_by_trimming_is_told_how_many_it_lost() {
    let server = TestServer::start(100).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, after(0)).await;
    server.append(10).await;
    assert_eq!(sub.seqs(10).await, (1..=10).collect::<Vec<_>>());
    // The subscriber stops reading while 20,000 events of ~1 KB wrap the 100-event log many
    // times. Its stream buffers hold some (the HTTP/2 windows, a few MB); the rest must come back
    // as explicit loss notices.
    let big = "x".repeat(1000);
    for batch in 0..200u64 {
        let events = (0..100).map(|i| {
            let mut e = event(batch * 100 + i);
            e.output = big.clone();
            e
        });
        server
            .app
            .logs
            .outputs
            .append(events.collect())
            .await
            .unwrap();
    }
    let lost_total = read_through(&mut sub, 11, 20_010).await;
    assert!(lost_total > 0, "the log wrapped past the reader");
    server.stop().await;
}

/// Reads `sub` from seq `from` through `end`: every seq in order, or a loss notice covering it
/// (no silent skip, no repeat). Returns how many were reported lost.
async fn read_through(sub: &mut Sub, from: u64, end: u64) -> u64 {
    let (mut next_expected, mut lost_total) = (from, 0);
    while next_expected <= end {
        let r = sub.next().await.unwrap().unwrap();
        if r.lost > 0 {
            lost_total += r.lost;
            next_expected += r.lost;
        } else {
            assert_eq!(r.seq, next_expected, "no silent skip, no repeat");
            next_expected += 1;
        }
    }
    assert_eq!(next_expected, end + 1);
    lost_total
}

#[tokio::test]
async fn ten_thousand_poll_messages_change_nothing() {
    let server = TestServer::start(1000).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, Request::default()).await;
    for _ in 0..10_000 {
        sub.tx.send(Request::default()).await.unwrap();
    }
    server.append(10).await;
    assert_eq!(sub.seqs(10).await, (1..=10).collect::<Vec<_>>());
    for _ in 0..100 {
        sub.tx.send(Request::default()).await.unwrap();
    }
    server.append(1).await;
    assert_eq!(sub.seqs(1).await, vec![11]);
    server.stop().await;
}

#[tokio::test]
async fn filters_select_by_tag_rule_priority_and_source() {
    let server = TestServer::start(1000).await;
    server.append(40).await;
    let mut client = server.outputs().await;
    let seqs =
        |rs: Vec<falco_api::proto::outputs::Response>| rs.iter().map(|r| r.seq).collect::<Vec<_>>();
    let base = || Request {
        after_seq: Some(0),
        ..Default::default()
    };
    // Event i (seq i+1): tags {all, tag(i%4)}, rule "rule (i%3)", priority i%8, source by parity.
    let by_tag = get_all(
        &mut client,
        Request {
            tags: vec!["tag1".into()],
            ..base()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        seqs(by_tag),
        (0..40)
            .filter(|i| i % 4 == 1)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let by_rule = get_all(
        &mut client,
        Request {
            rules: vec!["rule 2".into()],
            ..base()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        seqs(by_rule),
        (0..40)
            .filter(|i| i % 3 == 2)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let by_priority = Request {
        min_priority: Some(schema::Priority::Critical as i32),
        ..base()
    };
    let severe = get_all(&mut client, by_priority).await.unwrap();
    assert_eq!(
        seqs(severe),
        (0..40)
            .filter(|i| i % 8 <= 2)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let combined = Request {
        sources: vec!["syscall".into()],
        tags: vec!["tag3".into()],
        ..base()
    };
    let both = get_all(&mut client, combined).await.unwrap();
    assert_eq!(
        seqs(both),
        (0..40)
            .filter(|i| i % 2 == 1 && i % 4 == 3)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let bad = Request {
        min_priority: Some(9),
        ..base()
    };
    assert_eq!(
        get_all(&mut client, bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    server.stop().await;
}

#[tokio::test]
async fn durable_consumers_resume_from_their_acknowledged_position() {
    let server = TestServer::start(1000).await;
    server.append(10).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, consumer("exporter")).await;
    assert_eq!(sub.seqs(10).await, (1..=10).collect::<Vec<_>>());
    sub.tx
        .send(Request {
            ack: 6,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_until("the ack stored", Duration::from_secs(5), || {
        server
            .app
            .store
            .consumers()
            .get("outputs", "exporter")
            .unwrap()
            == Some(6)
    })
    .await;
    drop(sub);
    let mut again = Sub::open(&mut client, consumer("exporter")).await;
    assert_eq!(
        again.seqs(4).await,
        vec![7, 8, 9, 10],
        "unacknowledged events come back"
    );
    // A lower ack never moves a consumer back.
    again
        .tx
        .send(Request {
            ack: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    again
        .tx
        .send(Request {
            ack: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_until("the ack stored", Duration::from_secs(5), || {
        server
            .app
            .store
            .consumers()
            .get("outputs", "exporter")
            .unwrap()
            == Some(10)
    })
    .await;
    // `get` with a consumer acknowledges what it sends.
    server.append(3).await;
    let drained = get_all(&mut client, consumer("exporter")).await.unwrap();
    assert_eq!(
        drained.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    assert!(get_all(&mut client, consumer("exporter"))
        .await
        .unwrap()
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_precise_statuses() {
    let server = TestServer::start(1000).await;
    server.append(3).await;
    let mut client = server.outputs().await;
    let bad_name = get_all(&mut client, consumer("no spaces allowed"))
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);
    assert!(
        bad_name.message().contains("consumer name"),
        "{}",
        bad_name.message()
    );
    let ack_without_consumer = Request {
        ack: 2,
        ..Default::default()
    };
    let status = get_all(&mut client, ack_without_consumer)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut sub = Sub::open(&mut client, consumer("c")).await;
    assert_eq!(sub.seqs(3).await, vec![1, 2, 3]);
    sub.tx
        .send(Request {
            ack: 99,
            ..Default::default()
        })
        .await
        .unwrap();
    let status = sub.next().await.expect_err("ack beyond the head");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("beyond the newest seq 3"),
        "{}",
        status.message()
    );
    assert_eq!(
        server.app.store.consumers().get("outputs", "c").unwrap(),
        None,
        "nothing stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_blocks_neither_appends_nor_other_subscribers() {
    let server = TestServer::start(1000).await;
    let mut slow_client = server.outputs().await;
    let _slow = Sub::open(&mut slow_client, after(0)).await; // never read
    let mut client = server.outputs().await;
    let mut fast = Sub::open(&mut client, after(0)).await;
    let appended = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..50 {
            server.append(100).await;
        }
    })
    .await;
    assert!(appended.is_ok(), "appends stalled behind a slow subscriber");
    let mut seen = HashSet::new();
    let mut last = 0;
    while last < 5000 {
        let r = fast.next().await.unwrap().unwrap();
        if r.lost > 0 {
            last += r.lost;
            continue;
        }
        assert!(seen.insert(r.seq));
        last = r.seq;
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_cleanly() {
    let server = TestServer::start(1000).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, Request::default()).await;
    server.append(1).await;
    assert_eq!(sub.seqs(1).await, vec![1]);
    server.app.shutdown.cancel();
    let end = sub.next().await;
    assert!(
        matches!(end, Ok(None)),
        "stream should end with OK, got {end:?}"
    );
    server.stop().await;
}

/// A replay reads its next chunk while it sends the current one. When trimming overtakes both,
/// what was read already still arrives in order and the rest comes back as a loss notice:
/// nothing is skipped silently and nothing repeats.
#[tokio::test]
async fn a_replay_overtaken_under_its_read_ahead_skips_nothing_silently() {
    let server = TestServer::start(3_000).await;
    // 4 KB lines: 3,000 of them are more than the stream's buffers and HTTP/2 windows hold.
    let big = |i: u64| {
        let mut e = event(i);
        e.output = "x".repeat(4_000);
        e
    };
    let append = |n: u64| {
        let outputs = server.app.logs.outputs.clone();
        async move { outputs.append((0..n).map(big).collect()).await.unwrap() }
    };
    append(3_000).await;
    let mut client = server.outputs().await;
    let mut sub = Sub::open(&mut client, after(0)).await;
    assert_eq!(sub.seqs(700).await, (1..=700).collect::<Vec<_>>());
    // Trims everything up to 6,000 while the stream holds its chunks.
    for _ in 0..6 {
        append(1_000).await;
    }
    let lost_total = read_through(&mut sub, 701, 9_000).await;
    assert!(lost_total > 0, "the log was trimmed past the reader");
    server.stop().await;
}
