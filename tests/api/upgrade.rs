//! Upgrading a data directory written by the sled-based falco-api (schema 5): the committed
//! fixture `fixtures/db-v5` was written by that binary, together with what it printed for the
//! directory. Today's binary converts it on first start and must print the same.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::process::copy_dir;
use crate::common::process::{cli_output, sigterm, spawn_serve, wait_exit, EXE};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/db-v5")
}

fn cli(sock: &Path, args: &[&str]) -> String {
    let out = cli_output(sock, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixture().join(name)).unwrap()
}

/// JSON lines compared as values (key order and number formatting aside).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_sled_data_directory_is_converted_on_first_start_without_loss() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    copy_dir(&fixture().join("db"), &data.join("db"));
    let sock = home.path().join("s.sock");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        sock.to_str().unwrap(),
        "--outputs-capacity",
        "200",
    ];
    let mut running = spawn_serve(home.path(), &args);
    let said = running.lines.join("\n");
    assert!(
        said.contains("converted the sled database") && said.contains("db.sled-old"),
        "the server says what it did: {said}"
    );
    assert!(data.join("falco-api.redb").is_file());
    assert!(
        data.join("db.sled-old").is_dir(),
        "the old database is kept"
    );
    assert!(!data.join("db").exists());

    let check = |sock: &Path| {
        let outputs = cli(sock, &["tail", "--after", "201", "--once", "--json"]);
        let want = json_lines(&expected("outputs.jsonl"));
        assert_eq!(want.len(), 200);
        // Schema 7 added `origin`: the engine's alerts, and falco-api's own drop notices.
        let mut got = json_lines(&outputs);
        for alert in &mut got {
            let origin = alert.as_object_mut().unwrap().remove("origin").unwrap();
            let own = alert["rule"] == "Falco internal: event drop";
            assert_eq!(origin, if own { "falco-api" } else { "engine" }, "{alert}");
        }
        assert_eq!(got, want, "every retained alert, seq and id");
        // Schema 8 stamped the converted blocks with their alerts' times: time queries find them.
        let day = [
            "--since",
            "2026-11-30T00:00:00Z",
            "--until",
            "2026-11-30T23:59:59Z",
        ];
        let that_day = cli(sock, &[&["tail", "--once", "--json"][..], &day].concat());
        assert_eq!(json_lines(&that_day).len(), 200);
        let later = cli(sock, &["tail", "--once", "--since", "2026-12-01T00:00:00Z"]);
        assert_eq!(later, "");
        let drops = cli(sock, &["drops", "--after", "0", "--once", "--json"]);
        assert_eq!(json_lines(&drops), json_lines(&expected("drops.jsonl")));
        for (args, file) in [
            (&["rules", "history"][..], "rules-history.txt"),
            (&["config", "history"][..], "config-history.txt"),
            (&["config", "get"][..], "config-get.txt"),
            (&["rules", "effective"][..], "rules-effective.txt"),
            (&["rules", "list"][..], "rules-list.txt"),
            (
                &["rules", "get", "shell.yaml", "--revision", "1"][..],
                "shell-rev1.yaml",
            ),
        ] {
            assert_eq!(cli(sock, args), expected(file), "{args:?}");
        }
        // A trimmed position is still refused, naming the same oldest seq.
        let out = Command::new(EXE)
            .args(["tail", "--after", "10", "--once", "--server"])
            .arg(sock)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("oldest retained seq is 202"));
    };
    check(&sock);
    // The consumer acknowledged seq 400 before the upgrade: only 401 is left for it.
    let rest = cli(
        &sock,
        &["tail", "--consumer", "fixture-reader", "--once", "--json"],
    );
    let rest = json_lines(&rest);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["seq"], 401);
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());

    // Started again: no second conversion, the same state, and the consumer's new position.
    let mut running = spawn_serve(home.path(), &args);
    assert!(!running.lines.join("\n").contains("converted"));
    check(&sock);
    let rest = cli(&sock, &["tail", "--consumer", "fixture-reader", "--once"]);
    assert_eq!(rest, "", "the consumer's position survived the restart");
    sigterm(&running.child);
    assert!(wait_exit(&mut running.child, Duration::from_secs(15)).success());
}

/// A conversion interrupted after the new file was complete (before the old directory was moved
/// aside) finishes at the next start without converting twice.
#[test]
fn an_interrupted_conversion_finishes_at_the_next_start() {
    use falco_api::store::{Store, StoreOptions, LEGACY_DIR};
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    copy_dir(&fixture().join("db"), &data.join(LEGACY_DIR));
    let opts = StoreOptions {
        outputs_capacity: 200,
        ..Default::default()
    };
    let newest = {
        let store = Store::open(data, &opts).unwrap();
        store.outputs().bounds().newest
    };
    assert_eq!(newest, 401);
    // Put the old directory back, as if the rename had not happened.
    std::fs::rename(data.join("db.sled-old"), data.join(LEGACY_DIR)).unwrap();
    let store = Store::open(data, &opts).unwrap();
    assert_eq!(store.outputs().bounds().newest, 401);
    assert_eq!(
        store.consumers().get("outputs", "fixture-reader").unwrap(),
        Some(400)
    );
    assert!(data.join("db.sled-old").is_dir());
    assert!(!data.join(LEGACY_DIR).exists());
}

/// The conversion and every migration after it (schema 9 recompresses each block in place,
/// schema 10 re-encodes every alert as protobuf) survive a kill at any moment: the next open
/// finishes the upgrade with every record intact, and the blocks come out compressed.
#[test]
fn an_upgrade_killed_at_any_moment_finishes_at_the_next_open_without_loss() {
    use falco_api::store::{Store, StoreOptions, LEGACY_DIR};
    let opts = StoreOptions {
        outputs_capacity: 200,
        ..Default::default()
    };
    let mut killed_during = 0;
    for delay_ms in (0..=90).step_by(6) {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        copy_dir(&fixture().join("db"), &data.join(LEGACY_DIR));
        let mut child = Command::new(EXE)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--listen"])
            .arg(temp.path().join("s.sock"))
            .args(["--outputs-capacity", "200"])
            .env("HOME", temp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if data.join(LEGACY_DIR).exists() {
            killed_during += 1;
        }
        let store = Store::open(&data, &opts).unwrap();
        let log = store.outputs();
        let b = log.bounds();
        assert_eq!((b.oldest, b.newest), (202, 401), "killed at {delay_ms} ms");
        let all = log.read(0, u64::MAX, 1000).unwrap();
        assert_eq!(all.len(), 200, "killed at {delay_ms} ms");
        assert_eq!(all[0].0, 202);
        assert!(
            log.encoded_bytes().unwrap() * 2 < log.raw_bytes().unwrap(),
            "compressed after the upgrade (killed at {delay_ms} ms)"
        );
        assert_eq!(
            store.drops().bounds().newest,
            store
                .drops()
                .read(0, u64::MAX, 1000)
                .unwrap()
                .last()
                .map_or(0, |r| r.0)
        );
        assert_eq!(
            store.consumers().get("outputs", "fixture-reader").unwrap(),
            Some(400)
        );
    }
    assert!(
        killed_during > 0,
        "no kill landed before the upgrade finished"
    );
}
