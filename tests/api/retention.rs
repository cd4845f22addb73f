//! The log as a retention store: time as an address (the gRPC start/end times, `tail` and
//! `drops --since/--until` over a restart) and retention by age on the real server.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use falco_api::base::event::DropRecord;
use falco_api::proto::convert::timestamp;
use falco_api::proto::{drops, outputs};
use falco_api::store::{Clock, Store, StoreOptions};
use tonic::Code;

use crate::common::process::{cli_output, serve_args, sigterm, spawn_serve, wait_exit};
use crate::common::{event, get_all, Sub, TestServer};

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

fn seqs(responses: &[outputs::Response]) -> Vec<u64> {
    responses.iter().map(|r| r.seq).collect()
}

fn between(start: Option<i64>, end: Option<i64>) -> outputs::Request {
    outputs::Request {
        start_time: start.map(timestamp),
        end_time: end.map(timestamp),
        ..Default::default()
    }
}

/// `start_time` and `end_time` select by when the log stored each record, on `get` and `sub`,
/// for outputs and drops; bad combinations are refused with INVALID_ARGUMENT.
#[tokio::test]
async fn start_and_end_times_address_the_logs() {
    let server = TestServer::start(1000).await;
    assert_eq!(server.append(5).await, 1..6);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = now_ns();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(server.append(5).await, 6..11);
    let hour = 3_600_000_000_000i64;
    let mut client = server.outputs().await;
    let get = |req| {
        let mut client = client.clone();
        async move { get_all(&mut client, req).await }
    };
    assert_eq!(
        seqs(&get(between(Some(t), None)).await.unwrap()),
        (6..11).collect::<Vec<_>>()
    );
    // No start: `get` drains the shared consumer "default" as usual, up to the end time.
    assert_eq!(
        seqs(&get(between(None, Some(t))).await.unwrap()),
        (1..6).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&get(between(Some(t - hour), Some(t))).await.unwrap()),
        (1..6).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&get(between(Some(t - hour), None)).await.unwrap()).len(),
        10
    );
    assert!(get(between(Some(t + hour), None)).await.unwrap().is_empty());
    // Filters still apply inside the range.
    let mut filtered = between(Some(t - hour), Some(t));
    filtered.sources = vec!["syscall".into()];
    assert!(get(filtered)
        .await
        .unwrap()
        .iter()
        .all(|r| r.source == "syscall"));

    let refused = [
        (
            outputs::Request {
                after_seq: Some(3),
                start_time: Some(timestamp(t)),
                ..Default::default()
            },
            "after_seq and start_time",
        ),
        (
            between(Some(t), Some(t - 1)),
            "end_time is before start_time",
        ),
        (between(Some(-5), None), "start_time is not a time"),
    ];
    for (req, says) in refused {
        let status = get(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }

    // `sub` bounded by an end time ends with OK; unbounded, it goes on live.
    let mut bounded = Sub::open(&mut client, between(Some(t - hour), Some(t))).await;
    assert_eq!(bounded.seqs(5).await, vec![1, 2, 3, 4, 5]);
    assert!(
        bounded.next().await.unwrap().is_none(),
        "the stream ends at end_time"
    );
    let mut live = Sub::open(&mut client, between(Some(t), None)).await;
    assert_eq!(live.seqs(5).await, vec![6, 7, 8, 9, 10]);
    server.append(1).await;
    assert_eq!(live.seqs(1).await, vec![11]);

    // The drops log takes the same fields.
    let d = |i: u64| DropRecord::now("rate_limited", "syscall", "c", i, i, format!("drop {i}"));
    server
        .app
        .logs
        .drops
        .append(vec![d(1), d(2)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let td = now_ns();
    server.app.logs.drops.append(vec![d(3)]).await.unwrap();
    let mut drops_client = server.drops().await;
    let mut stream = drops_client
        .get(drops::Request {
            start_time: Some(timestamp(td)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        got.push(r.n_drops);
    }
    assert_eq!(got, vec![3]);
    server.stop().await;
}

const HOUR: u64 = 3_600_000_000_000;
/// 2026-12-01T00:00:00Z.
const DEC_1: u64 = 1_796_083_200 * 1_000_000_000;

fn cli(sock: &Path, args: &[&str]) -> String {
    let out = cli_output(sock, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_seqs(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Writes 6 hours of alerts (10 per hour, stored at 00:00, 01:00 … 05:00 on 2026-12-01) and one
/// drop record per hour, as a server would have stored them.
fn write_history(data: &Path) {
    let clock = Arc::new(AtomicU64::new(DEC_1));
    let store = Store::open(
        data,
        &StoreOptions {
            clock: Clock::manual(clock.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    for hour in 0..6u64 {
        clock.store(DEC_1 + hour * HOUR, std::sync::atomic::Ordering::Relaxed);
        let batch: Vec<_> = (hour * 10..hour * 10 + 10).map(event).collect();
        store.outputs().append(&batch).unwrap();
        let drop = DropRecord::now(
            "rate_limited",
            "syscall",
            "",
            hour,
            hour,
            format!("hour {hour}"),
        );
        store.drops().append(&[drop]).unwrap();
    }
}

/// `tail` and `drops` with `--since/--until` find an hour of a stored history, the same before
/// and after a restart; `outputs.max_age` set at runtime trims what is older, and a cursor
/// behind the trim is told so.
#[test]
fn since_and_until_over_a_restart_and_age_retention() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_history(&data);
    let sock = home.path().join("s.sock");
    let args = serve_args(&data, &sock, &[]);
    let check = |sock: &Path| {
        let hour_2 = [
            "--since",
            "2026-12-01T02:00:00Z",
            "--until",
            "2026-12-01T02:59:59Z",
        ];
        let out = cli(sock, &[&["tail", "--once", "--json"][..], &hour_2].concat());
        assert_eq!(json_seqs(&out), (21..=30).collect::<Vec<_>>());
        // Without --once the stream ends at --until too, with status 0.
        let out = cli(sock, &[&["tail", "--json"][..], &hour_2].concat());
        assert_eq!(json_seqs(&out), (21..=30).collect::<Vec<_>>());
        let out = cli(
            sock,
            &[&["drops", "--once", "--json"][..], &hour_2].concat(),
        );
        assert_eq!(json_seqs(&out), vec![3]);
        let out = cli(
            sock,
            &[
                "tail",
                "--once",
                "--json",
                "--since",
                "2026-12-01T04:30:00+00:00",
            ],
        );
        assert_eq!(json_seqs(&out), (51..=60).collect::<Vec<_>>());
        let out = cli_output(sock, &["tail", "--once", "--since", "1h", "--after", "3"]);
        assert!(!out.status.success());
        let out = cli_output(sock, &["tail", "--once", "--since", "last tuesday"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    };
    let mut running = spawn_serve(home.path(), &args);
    check(&sock);
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
    let mut running = spawn_serve(home.path(), &args);
    check(&sock);

    // The history is days old: a 1-day age limit trims all of it (within the expiry tick).
    let said = cli(&sock, &["config", "set", "outputs.max_age=1d"]);
    assert!(said.starts_with("revision"), "{said}");
    assert!(cli(&sock, &["config", "get", "outputs.max_age"]).contains("86400"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = cli_output(&sock, &["tail", "--after", "0", "--once"]);
        if String::from_utf8_lossy(&out.stderr).contains("oldest retained seq is 61") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not expired: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let drops = cli(&sock, &["drops", "--after", "0", "--once", "--json"]);
    assert_eq!(
        json_seqs(&drops).len(),
        6,
        "the drops log has its own limit"
    );
    let metrics = cli(&sock, &["tail", "--stats", "--once"]);
    assert!(!metrics.is_empty());
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
}

/// A backup taken while alerts flood in is a consistent point: it holds every alert acknowledged
/// before the backup began, nothing after its own last seq, and the same records; with the
/// rules/config revision and consumer positions. Restore makes a data directory a server starts
/// on, and refuses one that is not empty.
#[tokio::test]
async fn a_backup_during_a_flood_restores_exactly_what_was_acknowledged_before_it() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(1_000_000).await;
    let sock = server.socket.clone();
    let set = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || cli(&sock, &["config", "set", "outputs.max_age=30d"])
    });
    assert!(set.await.unwrap().starts_with("revision"));
    server
        .app
        .store
        .consumers()
        .advance("outputs", "keeper", 0)
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = tokio::spawn({
        let app = server.app.clone();
        let stop = stop.clone();
        async move {
            let mut acked = 0;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<_> = (i..i + 50).map(event).collect();
                acked = app.logs.outputs.append(batch).await.unwrap().end - 1;
                i += 50;
            }
            acked
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("falco-api.backup");
    let acked_before = server.app.logs.outputs.head();
    let out = tokio::task::spawn_blocking({
        let (sock, file) = (sock.clone(), file.clone());
        move || cli(&sock, &["backup", file.to_str().unwrap()])
    })
    .await
    .unwrap();
    let acked_after = server.app.logs.outputs.head();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last_acked = flood.await.unwrap();
    let point: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("outputs log:  seq 1.."))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no outputs line in {out}"));
    assert!(
        acked_before <= point && point <= acked_after && point < last_acked,
        "{acked_before} <= {point} <= {acked_after} < {last_acked}: {out}"
    );
    assert!(out.contains("revision:     1 "), "{out}");
    assert!(out.contains("consumers:    1"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The same records, up to the point and no further.
    let live = server
        .app
        .store
        .outputs()
        .read(0, point, point as usize)
        .unwrap();
    // A second backup to an existing file is refused; a busy directory is refused by restore.
    let again = cli_output(&sock, &["backup", file.to_str().unwrap()]);
    assert!(!again.status.success());
    server.stop().await;

    let busy = home.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("something"), "x").unwrap();
    let restore = |dir: &Path| {
        std::process::Command::new(crate::common::process::EXE)
            .args([
                "restore",
                file.to_str().unwrap(),
                "--data-dir",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let refused = restore(&busy);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not empty"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_dir(&busy).unwrap().count(),
        1,
        "nothing was changed"
    );

    let restored = home.path().join("restored");
    let done = restore(&restored);
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).contains(&format!("seq 1..{point}")));
    let server = TestServer::start_in(&restored, 1_000_000).await;
    let back = server
        .app
        .store
        .outputs()
        .read(0, point + 10, point as usize + 10)
        .unwrap();
    assert_eq!(back.len(), live.len());
    assert!(back == live, "the restored log holds the same records");
    assert_eq!(server.app.logs.outputs.head(), point);
    assert_eq!(
        server
            .app
            .store
            .consumers()
            .get("outputs", "keeper")
            .unwrap(),
        Some(0)
    );
    let sock = server.socket.clone();
    let age =
        tokio::task::spawn_blocking(move || cli(&sock, &["config", "get", "outputs.max_age"]))
            .await
            .unwrap();
    assert!(age.contains("2592000"), "{age}");
    // Appends go on from the point: no seq is reused.
    assert_eq!(server.append(1).await, point + 1..point + 2);
    server.stop().await;
}

/// A server killed while it wrote a backup leaves the temporary copy in its data directory; the
/// next open removes that copy and nothing else.
#[test]
fn a_backup_copy_left_by_a_killed_server_is_removed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let record = DropRecord::now("rate_limited", "syscall", "c", 1, 1, "one drop".to_string());
    store.drops().append(&[record]).unwrap();
    let left = falco_api::store::backup_scratch_path(dir.path());
    store.backup(&left).unwrap();
    drop(store);
    let keep = dir.path().join("backup-notes.txt");
    std::fs::write(&keep, "an operator's file").unwrap();
    assert!(left.exists());
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    assert!(!left.exists(), "the temporary copy is gone");
    assert!(keep.exists(), "a file that is not one is kept");
    assert_eq!(store.drops().bounds().newest, 1);
}
