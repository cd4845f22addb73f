//! The store on a real database on disk: the ring log against a model, and migrations.

use std::collections::VecDeque;

use falco_api::base::event::OutputEvent;
use std::sync::atomic::{AtomicU64, Ordering};

use falco_api::store::{
    testing, Chunk, Clock, Compression, Store, StoreError, StoreOptions, SCHEMA_VERSION,
};
use proptest::prelude::*;

use crate::common::event;
use crate::common::process::copy_dir;

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    SetCapacity(u64),
    Read { after_back: u64, max: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..40).prop_map(Op::Append),
        1 => (1u64..60).prop_map(Op::SetCapacity),
        3 => (0u64..80, 1usize..50).prop_map(|(after_back, max)| Op::Read { after_back, max }),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &std::path::Path, capacity: u64) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            outputs_capacity: capacity,
            cache_bytes: 4 << 20,
            ..Default::default()
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The ring log behaves like a VecDeque of (seq, record) trimmed to capacity, across reopens.
    #[test]
    fn ring_log_matches_a_vecdeque_model(ops in proptest::collection::vec(op(), 1..40)) {
        let temp = tempfile::tempdir().unwrap();
        let mut capacity = 20u64;
        let mut store = open(temp.path(), capacity);
        let mut model: VecDeque<(u64, OutputEvent)> = VecDeque::new();
        let mut next_seq = 1u64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let records: Vec<_> = (0..n as u64).map(|i| event(next_seq + i)).collect();
                    let range = store.outputs().append(&records).unwrap();
                    prop_assert_eq!(range.clone(), next_seq..next_seq + n as u64);
                    for r in records {
                        model.push_back((next_seq, r));
                        next_seq += 1;
                    }
                    while model.len() as u64 > capacity {
                        model.pop_front();
                    }
                }
                Op::SetCapacity(c) => {
                    capacity = c;
                    store.outputs().set_capacity(c);
                }
                Op::Read { after_back, max } => {
                    let newest = next_seq - 1;
                    let after = newest.saturating_sub(after_back);
                    let got = store.outputs().read(after, newest, max).unwrap();
                    // At least `max` (when there are), then the rest of that block.
                    let want: Vec<_> = model.iter().filter(|(s, _)| *s > after).cloned().collect();
                    prop_assert!(got.len() >= want.len().min(max));
                    let bounded = if max == 0 { got.is_empty() } else { got.len() < max + 4096 };
                    prop_assert!(bounded, "{} records for max {}", got.len(), max);
                    prop_assert_eq!(&got[..], &want[..got.len()]);
                }
                Op::Reopen => {
                    store.flush().unwrap();
                    drop(store);
                    store = open(temp.path(), capacity);
                    // Opening trims to the configured capacity at once.
                    while model.len() as u64 > capacity {
                        model.pop_front();
                    }
                }
            }
            let b = store.outputs().bounds();
            prop_assert_eq!(b.newest, next_seq - 1);
            prop_assert_eq!(b.len(), model.len() as u64);
            if let Some((first, _)) = model.front() {
                prop_assert_eq!(b.oldest, *first);
            }
        }
    }
}

#[test]
fn a_schema_1_database_migrates_forward() {
    let temp = tempfile::tempdir().unwrap();
    testing::write_v1_database(temp.path(), 30, ("exporter", 12)).unwrap();
    let store = open(temp.path(), 1000);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let b = store.outputs().bounds();
    assert_eq!((b.oldest, b.newest), (1, 30));
    let all = store.outputs().read(0, 30, 100).unwrap();
    assert_eq!(all.len(), 30);
    let (seq, ev) = &all[6];
    assert_eq!(*seq, 7);
    assert_eq!(ev.rule, "rule 7");
    assert_eq!(ev.output, "output 7");
    assert_eq!(ev.priority as u8, 7);
    assert_eq!(ev.source, "k8s_audit");
    assert_eq!(ev.tags, vec!["k8s".to_string()]);
    assert_eq!(ev.rules_revision, 0);
    assert_ne!(all[0].1.id, all[1].1.id, "migrated events get distinct ids");
    assert_eq!(
        store.consumers().get("outputs", "exporter").unwrap(),
        Some(12)
    );
    // New appends continue the old sequence.
    assert_eq!(store.outputs().append(&[event(1)]).unwrap(), 31..32);
}

#[test]
fn the_committed_schema_1_fixture_migrates() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/db-v1");
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixture, temp.path());
    let store = open(temp.path(), 1000);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.outputs().bounds().newest, 5);
    assert_eq!(
        store.outputs().read(0, 5, 10).unwrap()[4].1.output,
        "output 5"
    );
    assert_eq!(
        store
            .consumers()
            .get("outputs", "fixture-consumer")
            .unwrap(),
        Some(3)
    );
}

#[test]
fn a_database_from_a_newer_schema_is_refused_and_left_untouched() {
    let temp = tempfile::tempdir().unwrap();
    {
        let store = open(temp.path(), 100);
        store.outputs().append(&[event(1), event(2)]).unwrap();
        store.flush().unwrap();
    }
    testing::force_schema_version(temp.path(), SCHEMA_VERSION + 7).unwrap();
    let err = Store::open(temp.path(), &StoreOptions::default())
        .err()
        .expect("refused");
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 7, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other}"),
    }
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    // Untouched: marking it current again shows the same data.
    testing::force_schema_version(temp.path(), SCHEMA_VERSION).unwrap();
    let store = open(temp.path(), 100);
    assert_eq!(store.outputs().read(0, 2, 10).unwrap().len(), 2);
}

#[test]
fn a_second_process_on_the_same_data_directory_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let _first = open(temp.path(), 100);
    let exe = env!("CARGO_BIN_EXE_falco-api");
    let sock = temp.path().join("second.sock");
    let out = std::process::Command::new(exe)
        .args(["serve", "--data-dir"])
        .arg(temp.path())
        .arg("--listen")
        .arg(&sock)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another falco-api process"),
        "{stderr}"
    );
}

#[test]
fn history_retention_keeps_recent_revisions_and_every_targets_latest_value() {
    use falco_api::store::Change;
    let temp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        history_retention: 3,
        cache_bytes: 4 << 20,
        ..Default::default()
    };
    let store = Store::open(temp.path(), &opts).unwrap();
    let v = store.versioned();
    let change = |t: &str, val: &str| {
        vec![Change {
            target: t.into(),
            value: Some(val.into()),
        }]
    };
    {
        let guard = v.lock();
        v.commit(&guard, "set", "test", "", change("config:a", "once"))
            .unwrap();
        for i in 0..9 {
            v.commit(
                &guard,
                "set",
                "test",
                "",
                change("config:b", &i.to_string()),
            )
            .unwrap();
        }
    }
    assert_eq!(v.revision().unwrap(), 10);
    assert_eq!(v.oldest_revision().unwrap(), 7);
    // Recent revisions are all there; older superseded ones are gone; `a`'s only entry stays.
    let b: Vec<u64> = v
        .history("config:b", 0, 100)
        .unwrap()
        .iter()
        .map(|r| r.revision)
        .collect();
    assert_eq!(b, vec![10, 9, 8, 7]);
    let a = v.history("config:a", 0, 100).unwrap();
    assert_eq!(a.len(), 1, "the latest entry of every target is kept");
    let now = v.at("config:", 10).unwrap();
    assert_eq!(now["config:a"].value, "once");
    assert_eq!(now["config:b"].value, "8");
    assert_eq!(v.at("config:", 8).unwrap()["config:b"].value, "6");
    drop(store);
    // Reopened: the same.
    let store = Store::open(temp.path(), &opts).unwrap();
    assert_eq!(store.versioned().oldest_revision().unwrap(), 7);
    assert_eq!(
        store.versioned().current("config:").unwrap()["config:b"].value,
        "8"
    );
}

/// The ring wraps hundreds of times; the database file stops growing once it holds one
/// retention's worth of records (redb reuses the pages a trim frees).
#[test]
fn the_file_stays_bounded_however_often_the_ring_wraps() {
    let temp = tempfile::tempdir().unwrap();
    let capacity = 400u64;
    let store = open(temp.path(), capacity);
    let padded = |i: u64| {
        let mut e = event(i);
        e.output = format!("{i:>1000}");
        e
    };
    let mut next = 1u64;
    let mut wrap = |store: &Store, times: u64| {
        for _ in 0..times * (capacity / 100) {
            let batch: Vec<_> = (next..next + 100).map(padded).collect();
            store.outputs().append(&batch).unwrap();
            next += 100;
        }
    };
    wrap(&store, 20);
    let early = store.space().unwrap();
    wrap(&store, 280);
    let late = store.space().unwrap();
    let encoded = store.outputs().encoded_bytes().unwrap();
    assert_eq!(store.outputs().bounds().len(), capacity);
    assert!(
        late.file_bytes <= early.file_bytes,
        "grew from {early:?} to {late:?} between the 20th and the 300th wrap"
    );
    assert!(
        late.allocated_bytes <= encoded * 3 / 2 + (256 << 10),
        "pages in use {late:?} for {encoded} encoded bytes"
    );
    assert!(
        late.file_bytes <= encoded * 2 + (2 << 20),
        "file {late:?} for {encoded} encoded bytes"
    );
}

/// A log held at its byte budget keeps the pages it holds, and the blocks the file takes on the
/// device, within the budget: the budget counts each block's run of pages, not only its length.
/// (Counting lengths, this log held 1.10x its budget in pages and 1.13x on the device.)
#[test]
fn a_log_at_its_byte_budget_stays_within_it_on_the_device() {
    let temp = tempfile::tempdir().unwrap();
    let budget = 4u64 << 20;
    let store = open_with_budget(temp.path(), budget, Compression::Zstd);
    for i in 0..400u64 {
        let batch: Vec<_> = (i * 500..(i + 1) * 500)
            .map(|k| {
                let mut e = alert_like(k);
                e.output.push_str(&crate::common::noise(80, k));
                e
            })
            .collect();
        store.outputs().append(&batch).unwrap();
    }
    let log = store.outputs();
    let stored = log.encoded_bytes().unwrap();
    assert!(log.bounds().oldest > 1, "the budget never trimmed");
    assert_eq!(log.retained_bytes(), log.footprint_bytes().unwrap());
    assert!(log.retained_bytes() <= budget, "{}", log.retained_bytes());
    let space = store.space().unwrap();
    assert!(
        space.allocated_bytes <= budget + budget / 50 + (64 << 10),
        "pages in use {space:?} for a budget of {budget} ({stored} stored)"
    );
    assert!(
        space.disk_bytes <= budget + budget / 10,
        "{space:?} on the device for a budget of {budget}"
    );
}

/// Alerts appended one per commit to a plain log make blocks smaller than a page, which share
/// leaves: the budget counts each at its share of a leaf, so a log of such blocks stays within
/// it too. (Counting their lengths, 2.1 KB blocks, one per leaf, held 2x the budget in pages.)
/// A compressed log grows its newest block by each append instead, rewriting it every commit;
/// the budget holds there too.
#[test]
fn a_log_of_small_blocks_at_its_byte_budget_stays_within_it() {
    for (line, appends, compression) in [
        (2_000usize, 2_000u64, Compression::None),
        (450, 5_000, Compression::None),
        (2_000, 5_000, Compression::Zstd),
    ] {
        let temp = tempfile::tempdir().unwrap();
        let budget = 2u64 << 20;
        let store = open_with_budget(temp.path(), budget, compression);
        for k in 0..appends {
            let mut e = event(k);
            e.output = crate::common::noise(line, k);
            store.outputs().append(&[e]).unwrap();
        }
        let log = store.outputs();
        assert!(
            log.bounds().oldest > 1,
            "{line} B: the budget never trimmed"
        );
        assert_eq!(log.retained_bytes(), log.footprint_bytes().unwrap());
        assert!(log.retained_bytes() <= budget);
        let space = store.space().unwrap();
        assert!(
            space.allocated_bytes <= budget + budget / 5 + (64 << 10),
            "{line} B lines: pages in use {space:?} for a budget of {budget}"
        );
        assert!(
            space.disk_bytes <= budget + budget / 5 + (256 << 10),
            "{line} B lines: {space:?} on the device for a budget of {budget}"
        );
    }
}

/// A store whose outputs log is bounded only by `budget` bytes.
fn open_with_budget(dir: &std::path::Path, budget: u64, compression: Compression) -> Store {
    let options = StoreOptions {
        outputs_capacity: 10_000_000,
        outputs_max_bytes: budget,
        compression,
        ..Default::default()
    };
    Store::open(dir, &options).unwrap()
}

/// A smaller capacity at open trims at once, and the file shrinks back to what is retained.
#[test]
fn reopening_with_a_smaller_capacity_trims_and_compacts() {
    let temp = tempfile::tempdir().unwrap();
    let big = {
        let store = open(temp.path(), 40_000);
        for i in 0..400u64 {
            let batch: Vec<_> = (0..100u64)
                .map(|k| {
                    let mut e = event(i * 100 + k);
                    e.output = crate::common::noise(1000, i * 100 + k);
                    e
                })
                .collect();
            store.outputs().append(&batch).unwrap();
        }
        store.space().unwrap().file_bytes
    };
    let store = open(temp.path(), 100);
    let b = store.outputs().bounds();
    assert_eq!((b.oldest, b.newest), (39_901, 40_000));
    let small = store.space().unwrap().file_bytes;
    assert!(
        small * 4 < big,
        "compacted at open: {big} bytes before, {small} after"
    );
    assert_eq!(
        store.outputs().read(39_950, 40_000, 10).unwrap()[0].0,
        39_951
    );
}

const HOUR: u64 = 3_600 * 1_000_000_000;

fn open_at(dir: &std::path::Path, clock: &std::sync::Arc<AtomicU64>, max_age_ns: u64) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            outputs_max_age_ns: max_age_ns,
            clock: Clock::manual(clock.clone()),
            cache_bytes: 4 << 20,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Age retention on a clock the test moves: what outlived `max_age` goes at the next append or
/// expiry, oldest first, at block granularity; a log that wholly expired keeps its newest seq
/// across a reopen, so no seq is reused.
#[test]
fn records_older_than_max_age_are_trimmed_and_seqs_are_never_reused() {
    let temp = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(AtomicU64::new(1_000 * HOUR));
    let store = open_at(temp.path(), &clock, 24 * HOUR);
    let log = store.outputs();
    let batch = |from: u64| (from..from + 10).map(event).collect::<Vec<_>>();
    assert_eq!(log.append(&batch(1)).unwrap(), 1..11);
    clock.fetch_add(12 * HOUR, Ordering::Relaxed);
    assert_eq!(log.append(&batch(11)).unwrap(), 11..21);
    clock.fetch_add(13 * HOUR, Ordering::Relaxed); // the first batch is now 25 h old
    assert_eq!(
        log.bounds().oldest,
        1,
        "nothing goes before an append or an expiry"
    );
    assert_eq!(log.expire().unwrap(), 10);
    assert_eq!((log.bounds().oldest, log.bounds().newest), (11, 20));
    assert_eq!(log.oldest_time(), Some(1_012 * HOUR));
    assert_eq!(log.read(0, 20, 100).unwrap()[0].0, 11);
    // A shorter limit, then a reopen with none: the limit is read at each trim.
    log.set_max_age_ns(HOUR);
    assert_eq!(log.append(&batch(21)).unwrap(), 21..31);
    assert_eq!(log.bounds().oldest, 21);
    clock.fetch_add(2 * HOUR, Ordering::Relaxed);
    assert_eq!(log.expire().unwrap(), 10);
    assert!(log.bounds().is_empty());
    assert_eq!(log.bounds().newest, 30);
    assert_eq!(log.oldest_time(), None);
    drop(store);
    let store = open_at(temp.path(), &clock, HOUR);
    assert!(store.outputs().bounds().is_empty());
    assert_eq!(store.outputs().append(&batch(31)).unwrap(), 31..41);
    assert_eq!(
        store.outputs().blocks().unwrap(),
        1,
        "expired blocks are removed"
    );
    drop(store);
    // No age limit: nothing expires however old.
    clock.fetch_add(10_000 * HOUR, Ordering::Relaxed);
    let store = open_at(temp.path(), &clock, 0);
    assert_eq!(store.outputs().expire().unwrap(), 0);
    assert_eq!(store.outputs().bounds().len(), 10);
}

/// A time turns into a seq through the appends' stamps, which survive a reopen, also inside a
/// block that grew by many appends; a clock that steps back never makes the stamps decrease.
#[test]
fn a_time_finds_its_seq_across_a_reopen() {
    let temp = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(AtomicU64::new(100 * HOUR));
    let store = open_at(temp.path(), &clock, 0);
    for hour in 0..48u64 {
        let from = hour * 5 + 1;
        let batch: Vec<_> = (from..from + 5).map(event).collect();
        store.outputs().append(&batch).unwrap();
        clock.fetch_add(HOUR, Ordering::Relaxed);
    }
    assert_eq!(
        store.outputs().blocks().unwrap(),
        1,
        "the 48 appends share the newest block"
    );
    assert_eq!(
        store.outputs().table_stamps().unwrap(),
        1,
        "the block carries the stamps of the appends that grew it"
    );
    let check = |store: &Store, newest: u64| {
        let log = store.outputs();
        // Hour h (appended at 100 + h) holds seqs 5h+1 ..= 5h+5.
        assert_eq!(log.first_seq_since(0), 1);
        assert_eq!(log.first_seq_since(110 * HOUR), 51);
        assert_eq!(log.first_seq_since(110 * HOUR + 1), 56);
        assert_eq!(
            log.first_seq_since(200 * HOUR),
            newest + 1,
            "after the newest: newest + 1"
        );
        assert_eq!(log.last_seq_until(110 * HOUR), 55);
        assert_eq!(log.last_seq_until(110 * HOUR - 1), 50);
        assert_eq!(
            log.last_seq_until(99 * HOUR),
            0,
            "before the oldest: oldest - 1"
        );
        assert_eq!(log.last_seq_until(u64::MAX), newest);
    };
    check(&store, 240);
    drop(store);
    let store = open_at(temp.path(), &clock, 0);
    check(&store, 240);
    // An append too large for the newest block starts new ones: the stamps the old block
    // carried move to the table, in the same transaction.
    clock.store(150 * HOUR, Ordering::Relaxed);
    let big: Vec<_> = (241..241 + 5_000).map(event).collect();
    assert_eq!(store.outputs().append(&big).unwrap(), 241..5_241);
    assert!(store.outputs().blocks().unwrap() > 1);
    assert_eq!(store.outputs().table_stamps().unwrap(), 49);
    let grown = |store: &Store| {
        check(store, 5_240);
        assert_eq!(store.outputs().first_seq_since(149 * HOUR), 241);
        assert_eq!(store.outputs().last_seq_until(150 * HOUR - 1), 240);
        // The block that grew (an open frame until then, closed when the next one started
        // after a reopen) and the new ones read back whole.
        let all = store.outputs().read(0, u64::MAX, 10_000).unwrap();
        assert_eq!(all.len(), 5_240);
        for (seq, record) in all {
            assert_eq!(
                (record.time_ns, record.output.as_str()),
                (event(seq).time_ns, format!("output {seq}").as_str())
            );
        }
    };
    grown(&store);
    drop(store);
    let store = open_at(temp.path(), &clock, 0);
    grown(&store);
    clock.store(HOUR, Ordering::Relaxed); // the clock steps back
    store.outputs().append(&[event(5_241)]).unwrap();
    assert_eq!(store.outputs().first_seq_since(147 * HOUR), 236);
    assert_eq!(store.outputs().last_seq_until(147 * HOUR), 240);
    assert_eq!(store.outputs().last_seq_until(150 * HOUR), 5_241);
}

/// Alerts appended one per commit grow the newest block rather than each making a block of its
/// own, so they compress together; a reader following the log sees each record once while the
/// block it reads grows; a block holding trimmed records does not grow, so a small log does not
/// keep a block of dead records.
#[test]
fn alerts_appended_one_at_a_time_share_compressed_blocks() {
    let temp = tempfile::tempdir().unwrap();
    let store = open(temp.path(), 100_000);
    let log = store.outputs();
    let mut seen = 0;
    for i in 0..2_000 {
        assert_eq!(log.append(&[alert_like(i)]).unwrap(), i + 1..i + 2);
        for (seq, record) in log.read(seen, u64::MAX, 1_000).unwrap() {
            assert_eq!(seq, seen + 1, "no gap, no repeat");
            assert_eq!(record, alert_like(seq - 1));
            seen = seq;
        }
    }
    assert_eq!(seen, 2_000);
    let (raw, stored) = (log.raw_bytes().unwrap(), log.encoded_bytes().unwrap());
    assert!(
        stored * 3 < raw,
        "{stored} stored for {raw} bytes of records"
    );
    assert!(
        log.blocks().unwrap() < 40,
        "{} blocks",
        log.blocks().unwrap()
    );
    assert_eq!(log.retained_bytes(), log.footprint_bytes().unwrap());
    drop(store);

    let temp = tempfile::tempdir().unwrap();
    let store = open(temp.path(), 10);
    let log = store.outputs();
    for i in 0..500 {
        log.append(&[alert_like(i)]).unwrap();
    }
    let b = log.bounds();
    assert_eq!((b.oldest, b.newest), (491, 500));
    let on_disk = log.read(0, u64::MAX, 1_000).unwrap();
    assert_eq!(on_disk.len(), 10);
    // At most the retained records' block and one partly trimmed block before it.
    let per_record = raw / 2_000;
    assert!(
        log.raw_bytes().unwrap() <= 20 * per_record + per_record / 2,
        "{} raw bytes kept for 10 records of about {per_record}",
        log.raw_bytes().unwrap()
    );
}

/// An alert like Falco's: the same rule and template, values from a small pool.
fn alert_like(i: u64) -> OutputEvent {
    let mut e = event(i);
    let host = format!("node-{:02}.prod.example.internal", i % 40);
    e.output = format!(
        "12:00:{:02}.{i:09}: Warning Shell spawned in a container (user=root shell=bash \
         parent=runc cmdline=bash -c id pid={} container_id={:012x} image=ghcr.io/acme/api:1.{})",
        i % 60,
        4000 + i % 997,
        i % 23,
        i % 7
    );
    e.hostname = host;
    e.id = u128::from(i).to_be_bytes();
    e
}

/// Blocks are compressed, a log written plain reads back beside compressed blocks after a
/// reopen (the codec is per block), and trimming and the byte budget count stored bytes.
#[test]
fn blocks_are_compressed_and_both_codecs_read_back_in_one_log() {
    let temp = tempfile::tempdir().unwrap();
    let opts = |compression| StoreOptions {
        outputs_capacity: 100_000,
        cache_bytes: 4 << 20,
        compression,
        ..Default::default()
    };
    let plain_ratio = {
        let store = Store::open(temp.path(), &opts(Compression::None)).unwrap();
        for i in 0..20 {
            let batch: Vec<_> = (i * 500..(i + 1) * 500).map(alert_like).collect();
            store.outputs().append(&batch).unwrap();
        }
        let log = store.outputs();
        log.raw_bytes().unwrap() as f64 / log.encoded_bytes().unwrap() as f64
    };
    assert!(
        plain_ratio <= 1.0,
        "plain blocks are not smaller: {plain_ratio}"
    );
    let store = Store::open(temp.path(), &opts(Compression::Zstd)).unwrap();
    let (raw_before, stored_before) = (
        store.outputs().raw_bytes().unwrap(),
        store.outputs().encoded_bytes().unwrap(),
    );
    for i in 20..40 {
        let batch: Vec<_> = (i * 500..(i + 1) * 500).map(alert_like).collect();
        store.outputs().append(&batch).unwrap();
    }
    let log = store.outputs();
    let raw_added = log.raw_bytes().unwrap() - raw_before;
    let stored_added = log.encoded_bytes().unwrap() - stored_before;
    assert!(
        stored_added * 4 < raw_added,
        "compressed blocks: {stored_added} stored for {raw_added} bytes of records"
    );
    assert_eq!(log.retained_bytes(), log.footprint_bytes().unwrap());
    assert!(log.retained_bytes() >= log.encoded_bytes().unwrap());
    let all = log.read(0, u64::MAX, 100_000).unwrap();
    assert_eq!(all.len(), 20_000);
    for (seq, record) in &all {
        assert_eq!(record, &alert_like(seq - 1), "seq {seq}");
    }
    drop(store);

    // A byte budget smaller than the plain half trims it and keeps compressed blocks.
    let budget = StoreOptions {
        outputs_max_bytes: stored_added,
        ..opts(Compression::Zstd)
    };
    let store = Store::open(temp.path(), &budget).unwrap();
    store.outputs().append(&[alert_like(20_000)]).unwrap();
    let b = store.outputs().bounds();
    assert!(b.oldest > 10_000, "the plain blocks went first: {b:?}");
    assert!(store.outputs().retained_bytes() <= stored_added);
    let read = store
        .outputs()
        .read(b.oldest - 1, b.newest, 100_000)
        .unwrap();
    assert_eq!(read.len() as u64, b.len());
}

/// A read bounded in bytes stops at the end of the block where the bound is reached, whatever
/// its record count allows, and the next read goes on from there with no gap; a read bounded
/// only in records is not cut short by size.
#[test]
fn a_chunk_read_stops_at_its_byte_bound_and_resumes_without_a_gap() {
    let temp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        outputs_capacity: 10_000,
        compression: Compression::None,
        ..Default::default()
    };
    let store = Store::open(temp.path(), &options).unwrap();
    let big = |i: u64| {
        let mut e = event(i);
        e.output = format!("{i:08}{}", "x".repeat(8_000));
        e
    };
    // One append per record to a plain log: blocks of one record each, so a chunk's size is its
    // records'.
    for i in 0..300 {
        store.outputs().append(&[big(i)]).unwrap();
    }
    let log = store.outputs();
    let bound = Chunk {
        records: 10_000,
        bytes: 64 << 10,
    };
    let mut after = 0;
    let mut chunks = 0;
    while after < 300 {
        let got = log.read_chunk(after, 300, bound).unwrap();
        // Each record stores at least its 8 KB line: 64 KiB is reached within 9 records.
        assert!(
            (8..=9).contains(&got.len()) || got.last().map(|(s, _)| *s) == Some(300),
            "{} records in a 64 KiB chunk",
            got.len()
        );
        for (k, (seq, record)) in got.iter().enumerate() {
            assert_eq!(*seq, after + 1 + k as u64, "no gap, no repeat");
            assert_eq!(record.output, big(seq - 1).output);
        }
        after = got.last().unwrap().0;
        chunks += 1;
    }
    assert!(chunks >= 300 / 9, "{chunks} chunks");
    let all = log.read_chunk(0, 300, Chunk::records(10_000)).unwrap();
    assert_eq!(all.len(), 300);
}
