//! The web console in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (WebDriver, with the fantoccini crate). Each test saves screenshots in
//! `target/tmp/console-screenshots/`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use falco_api::config::HttpKind;
use falco_api::pipeline::Settings;
use falco_api::services::control::Change;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::events::{send_all, syscall_event, SYSCALL_RULES};
use crate::common::process::{printed_addr, serve_args, spawn_serve, wait_exit, EXE};
use crate::common::{free_port, packaged, spawn_http, TestServer};

/// A headless Chromium session; ChromeDriver (and the browser under it) end with it.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Browser {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let driver = Command::new(packaged(
            "CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        ))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser {
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns true.
    async fn until(&self, script: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not true within {within:?}: {script}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The seqs in the alerts table, top to bottom.
    async fn seqs(&self) -> Vec<u64> {
        let v = self
            .js("return [...document.querySelectorAll('#alerts tr')].map(r => Number(r.dataset.seq));")
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// Clicks the first element `css` finds.
    async fn click(&self, css: &str) {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Signs in on the console's form with `token`.
    async fn sign_in(&self, base: &str, token: &str) {
        self.c().goto(&format!("{base}/console/")).await.unwrap();
        let field = self
            .c()
            .wait()
            .for_element(Locator::Css("#token"))
            .await
            .unwrap();
        self.until(
            "return !document.querySelector('#login').hidden;",
            Duration::from_secs(5),
        )
        .await;
        field.send_keys(token).await.unwrap();
        self.click("#login-form button[type=submit]").await;
        self.until(
            "return document.querySelector('#who').textContent.startsWith('token:');",
            Duration::from_secs(5),
        )
        .await;
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and the Chromium it started.
        if let Some(group) = rustix::process::Pid::from_raw(self.driver.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.wait();
    }
}

async fn console(server: &TestServer) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    spawn_http(&server.app, l, HttpKind::Console, None);
    format!("http://{addr}")
}

fn token(server: &TestServer, name: &str, role: &str) -> String {
    server.app.tokens.create(name, role, 0, "test").unwrap().0
}

fn no_duplicates(seqs: &[u64]) {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "a row twice in {seqs:?}");
}

/// Sends `n` matching syscall events through falco.inputs on the real binary's socket.
fn send_cli(sock: &Path, dir: &Path, n: usize, tag: &str) {
    let file = dir.join(format!("events-{tag}.jsonl"));
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"evt.type\":\"open\",\"fd.name\":\"/etc/shadow\",\"proc.name\":\"{tag}{i}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = Command::new(EXE)
        .args(["send", "--source", "syscall", "--server"])
        .arg(sock)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_alerts_resume_after_reload_and_kill_9_and_filters_narrow_the_table() {
    let _heavy = crate::common::HEAVY.lock().await;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let sock = home.path().join("s.sock");
    let rules = home.path().join("rules.yaml");
    std::fs::write(&rules, SYSCALL_RULES).unwrap();
    let port = free_port();
    let console_addr = format!("127.0.0.1:{port}");
    let args = serve_args(
        &data,
        &sock,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--console",
            &console_addr,
        ],
    );
    let mut running = spawn_serve(home.path(), &args);
    let base = format!(
        "http://{}",
        printed_addr(&running.lines, "web console: http://")
    );
    let created = Command::new(EXE)
        .args([
            "token", "create", "--name", "alice", "--role", "admin", "--server",
        ])
        .arg(&sock)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let secret = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();

    let browser = Browser::start(1280, 800).await;
    browser.sign_in(&base, &secret).await;
    browser
        .until(
            "return document.querySelector('#status').textContent === 'live';",
            Duration::from_secs(5),
        )
        .await;
    // An alert sent through inputs shows within a second of its acknowledgement.
    send_cli(&sock, home.path(), 1, "first");
    let acknowledged = Instant::now();
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 1;",
            Duration::from_secs(5),
        )
        .await;
    let shown_after = acknowledged.elapsed();
    assert!(
        shown_after < Duration::from_secs(1),
        "the alert showed {shown_after:?} after it was acknowledged"
    );
    println!("console: alert shown {shown_after:?} after its acknowledgement");
    assert_eq!(browser.seqs().await, vec![1]);
    send_cli(&sock, home.path(), 4, "more");
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 5;",
            Duration::from_secs(5),
        )
        .await;
    // The URL carries the cursor; a reload resumes after it with no gap and no duplicate.
    browser
        .until(
            "return location.search.includes('cursor=5');",
            Duration::from_secs(5),
        )
        .await;
    browser.c().refresh().await.unwrap();
    browser
        .until(
            "return document.querySelector('#status').textContent === 'live';",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(browser.seqs().await, vec![5, 4, 3, 2, 1]);
    send_cli(&sock, home.path(), 2, "after-reload");
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 7;",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(browser.seqs().await, vec![7, 6, 5, 4, 3, 2, 1]);
    browser.screenshot("alerts-live").await;

    // kill -9: the page says it is reconnecting, then resumes (Last-Event-ID) on the restarted
    // server with the same session: every later alert once.
    running.child.kill().unwrap();
    let _ = running.child.wait();
    browser
        .until(
            "return document.querySelector('#status').textContent.startsWith('reconnecting');",
            Duration::from_secs(5),
        )
        .await;
    browser.screenshot("alerts-reconnecting").await;
    let mut running = spawn_serve(home.path(), &args);
    browser
        .until(
            "return document.querySelector('#status').textContent === 'live';",
            Duration::from_secs(10),
        )
        .await;
    send_cli(&sock, home.path(), 3, "after-restart");
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 10;",
            Duration::from_secs(5),
        )
        .await;
    let seqs = browser.seqs().await;
    assert_eq!(seqs, (1..=10).rev().collect::<Vec<u64>>());
    no_duplicates(&seqs);

    // A filter narrows the table and goes into the URL; the detail panel shows a row.
    let with_exec = home.path().join("exec.jsonl");
    std::fs::write(
        &with_exec,
        "{\"evt.type\":\"execve\",\"proc.name\":\"sh\"}\n",
    )
    .unwrap();
    let out = Command::new(EXE)
        .args(["send", "--source", "syscall", "--server"])
        .arg(&sock)
        .arg(&with_exec)
        .output()
        .unwrap();
    assert!(out.status.success());
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 11;",
            Duration::from_secs(5),
        )
        .await;
    browser
        .c()
        .find(Locator::Css("#filters select[name=priority]"))
        .await
        .unwrap()
        .select_by_value("warning")
        .await
        .unwrap();
    browser.click("#filters button[type=submit]").await;
    browser
        .until("return location.search.includes('priority=warning') && document.querySelectorAll('#alerts tr').length === 10;", Duration::from_secs(5))
        .await;
    let priorities = browser
        .js("return [...document.querySelectorAll('#alerts tr td.prio')].map(t => t.textContent);")
        .await;
    assert!(
        priorities
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p == "Warning"),
        "{priorities}"
    );
    browser.click("#alerts tr").await;
    browser
        .until(
            "return !document.querySelector('#detail').hidden;",
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#detail-cmd').value;")
            .await,
        "falco-api tail --after 9"
    );
    browser.screenshot("alerts-filtered-detail").await;

    // The time picker: the alerts stored from a time on, then live ones.
    browser.click("#clear-filters").await;
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 11;",
            Duration::from_secs(5),
        )
        .await;
    let earlier = browser.seqs().await.into_iter().max().unwrap();
    let from_ms = (chrono::Utc::now().timestamp_millis() / 1000 + 1) * 1000;
    while chrono::Utc::now().timestamp_millis() < from_ms + 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send_cli(&sock, home.path(), 3, "late");
    browser
        .js(&format!(
            "const d = new Date({from_ms}); const p = n => String(n).padStart(2, '0'); \
             document.querySelector('#filters input[name=since]').value = \
             `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}T${{p(d.getHours())}}:${{p(d.getMinutes())}}:${{p(d.getSeconds())}}`; \
             return true;"
        ))
        .await;
    browser.click("#filters button[type=submit]").await;
    browser
        .until(
            "return location.search.includes('since=') && document.querySelectorAll('#alerts tr').length === 3;",
            Duration::from_secs(5),
        )
        .await;
    send_cli(&sock, home.path(), 2, "later");
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 5;",
            Duration::from_secs(5),
        )
        .await;
    let from_then = browser.seqs().await;
    no_duplicates(&from_then);
    assert!(
        from_then.iter().all(|s| *s > earlier),
        "only alerts stored from the picked time: {from_then:?} (earlier ones end at {earlier})"
    );
    browser.close().await;
    crate::common::process::sigterm(&running.child);
    wait_exit(&mut running.child, Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_history_diff_rollback_toggles_and_the_editor_shows_errors_where_they_are() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(1000).await;
    let app = server.app.clone();
    let base = console(&server).await;
    let v1 = "- rule: Shadow\n  desc: d\n  condition: evt.type = open\n  output: \"open %proc.name\"\n  priority: WARNING\n  tags: [filesystem]\n";
    let v2 = v1.replace("WARNING", "ERROR");
    let put = |content: String, expected: u64| {
        let app = app.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                app.rules.put(
                    "a.yaml",
                    &content,
                    Change {
                        expected: Some(expected),
                        author: "cn:ops",
                        comment: "",
                    },
                )
            })
            .await
            .unwrap()
            .unwrap()
            .0
        }
    };
    let r1 = put(v1.to_string(), 0).await;
    let r2 = put(v2, r1).await;
    let secret = token(&server, "alice", "admin");
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base, &secret).await;
    browser
        .c()
        .goto(&format!("{base}/console/?page=rules&file=a.yaml"))
        .await
        .unwrap();
    // The history has both revisions, with their author; the diff shows the changed line.
    browser
        .until("return document.querySelectorAll('#file-history tbody tr').length === 2 && document.querySelector('#diff tr.changed') !== null;", Duration::from_secs(5))
        .await;
    let changed = browser.text("#diff tr.changed td.r").await;
    assert!(changed.contains("ERROR"), "{changed}");
    assert!(browser
        .text("#diff tr.changed td.l")
        .await
        .contains("WARNING"));
    assert!(browser.text("#file-history").await.contains("cn:ops"));
    browser
        .js("document.querySelector('#diff').scrollIntoView(); return true;")
        .await;
    browser.screenshot("rules-diff").await;

    // Roll back to r1 from the page: a new revision, with the old content.
    browser
        .click(&format!("button.rollback[data-revision='{r1}']"))
        .await;
    browser
        .until("return document.querySelector('#save-result').textContent.startsWith('Rolled back as revision');", Duration::from_secs(5))
        .await;
    let (files, revision) = server.app.rules.list(0).unwrap();
    assert!(revision > r2, "rollback made a revision");
    assert_eq!(files["a.yaml"].value, v1);
    assert_eq!(files["a.yaml"].revision, revision);
    let history = server.app.rules.history("a.yaml", 0, 10).unwrap();
    assert_eq!(
        history[0].author, "token:alice",
        "the token's identity is the author"
    );

    // Disable the rule from the table.
    browser
        .click("#rules-table input[data-rule='Shadow']")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .app
        .rules
        .effective()
        .0
        .iter()
        .any(|r| r.name == "Shadow" && r.enabled)
    {
        assert!(Instant::now() < deadline, "the rule was not disabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An invalid edit: the error is shown at its line as you type; saving is refused.
    browser
        .until(
            "return document.querySelector('#editor').value.includes('Shadow');",
            Duration::from_secs(5),
        )
        .await;
    // The toggle above reloads the page's rules, which may reopen the file under an edit made
    // meanwhile: the edit is made again until the check of it shows.
    let mut shown = false;
    for _ in 0..5 {
        browser
            .js("const e = document.querySelector('#editor'); e.value = '- rule: Broken\\n  desc: d\\n  condition: evt.type = open and and\\n  output: x\\n  priority: WARNING\\n'; e.dispatchEvent(new Event('input')); return true;")
            .await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if browser
                .js("return document.querySelector('#diagnostics li.err') !== null;")
                .await
                == Value::Bool(true)
            {
                shown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if shown {
            break;
        }
    }
    assert!(shown, "the editor never showed the error");
    let error = browser.text("#diagnostics li.err").await;
    assert!(error.contains("line 3"), "{error}");
    let bad_line = browser
        .js("return document.querySelector('#gutter .bad').dataset.line;")
        .await;
    assert_eq!(bad_line, "3");
    browser.screenshot("rules-editor-error").await;
    browser.click("#save").await;
    browser
        .until(
            "return document.querySelector('#save-result').textContent.startsWith('Not saved');",
            Duration::from_secs(5),
        )
        .await;
    let (files, _) = server.app.rules.list(0).unwrap();
    assert_eq!(files["a.yaml"].value, v1, "nothing stored");

    // A conflicting save names who changed the file meanwhile.
    let current = files["a.yaml"].revision;
    browser
        .js(&format!("const e = document.querySelector('#editor'); e.value = {}; e.dispatchEvent(new Event('input')); return true;", serde_json::to_string(&v1.replace("open %proc.name", "opened %proc.name")).unwrap()))
        .await;
    put(v1.replace("desc: d", "desc: changed elsewhere"), current).await;
    browser.click("#save").await;
    browser
        .until(
            "return document.querySelector('#save-result').textContent.includes('cn:ops');",
            Duration::from_secs(5),
        )
        .await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_session_changes_nothing_and_the_page_fits_a_narrow_window() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(1000).await;
    let base = console(&server).await;
    server.app.rules.put("a.yaml", "- rule: R\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n", Change { expected: Some(0), author: "cn:ops", comment: "" })
    .unwrap();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let recent: Vec<_> = (0..5)
        .map(|i| {
            falco_api::base::event::OutputEvent::new(
                now - i * 1_000_000_000,
                falco_api::base::event::Priority::Warning,
                "R",
                "recent",
                "syscall",
            )
            .with_hostname("node-1")
        })
        .collect();
    server.app.logs.outputs.append(recent).await.unwrap();
    server
        .app
        .logs
        .drops
        .append(vec![falco_api::base::event::DropRecord::now(
            "ingest_queue_full",
            "syscall",
            "uid:1000",
            7,
            10,
            "the ingest queue was full".into(),
        )])
        .await
        .unwrap();
    let secret = token(&server, "rita", "reader");
    let browser = Browser::start(420, 800).await;
    browser.sign_in(&base, &secret).await;
    assert!(browser.text("#who").await.contains("(reader)"));
    browser
        .c()
        .goto(&format!("{base}/console/?page=rules&file=a.yaml"))
        .await
        .unwrap();
    browser
        .until(
            "return document.querySelectorAll('#rules-table tbody tr').length === 1;",
            Duration::from_secs(5),
        )
        .await;
    // No controls that change anything are shown…
    let visible = browser
        .js("return [...document.querySelectorAll('.admin-only, button.rollback, #rules-table input, #save, #config-form')].filter(e => e.offsetParent !== null).length;")
        .await;
    assert_eq!(visible, 0);
    // …and the endpoints refuse a reader even with the session's CSRF value.
    let status = browser
        .c()
        .execute_async(
            "const done = arguments[0]; fetch('/console/api/session').then(r => r.json()).then(s => fetch('/console/api/rules/toggle', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf}, body: JSON.stringify({rules: ['R'], enabled: false})})).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(server.app.rules.effective().0.iter().all(|r| r.enabled));
    // Tuning from an alert is a change too, even as a preview.
    let status = browser
        .c()
        .execute_async(
            "const done = arguments[0]; fetch('/console/api/session').then(r => r.json()).then(s => fetch('/console/api/rules/tune', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf}, body: JSON.stringify({seq: 1, fields: ['proc.name'], dry_run: true})})).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    // At 420 px wide the page does not scroll sideways.
    browser
        .c()
        .goto(&format!("{base}/console/?page=alerts"))
        .await
        .unwrap();
    browser
        .until(
            "return document.querySelector('#status').textContent === 'live';",
            Duration::from_secs(5),
        )
        .await;
    let overflow = browser
        .js("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 1,
        "scrolls sideways by {overflow}"
    );
    // Keyboard: Tab reaches the navigation, every form control has a label.
    let unlabelled = browser
        .js("return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels || e.labels.length === 0).filter(e => !e.getAttribute('aria-label')).map(e => e.id || e.name);")
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
    browser.screenshot("reader-narrow").await;
    // The overview charts the log; configuration and drops are readable.
    browser.c().set_window_size(1280, 800).await.unwrap();
    browser
        .c()
        .goto(&format!("{base}/console/?page=overview"))
        .await
        .unwrap();
    browser
        .until("return document.querySelectorAll('#chart-hour rect').length > 0 && document.querySelectorAll('#top-rules tbody tr').length > 0;", Duration::from_secs(5))
        .await;
    assert!(browser
        .text("#overview-drops")
        .await
        .contains("ingest_queue_full"));
    browser.screenshot("overview").await;
    browser
        .c()
        .goto(&format!("{base}/console/?page=config"))
        .await
        .unwrap();
    browser
        .until(
            "return document.querySelectorAll('#config-table tbody tr').length > 5;",
            Duration::from_secs(5),
        )
        .await;
    browser
        .c()
        .goto(&format!(
            "{base}/console/?page=drops&stage=ingest_queue_full"
        ))
        .await
        .unwrap();
    browser
        .until(
            "return document.querySelectorAll('#drops-table tbody tr').length === 1;",
            Duration::from_secs(5),
        )
        .await;
    assert!(browser
        .text("#drop-rates")
        .await
        .contains("ingest_queue_full"));
    browser.close().await;
    server.stop().await;
}

/// An admin's change without the CSRF value, a forged cookie, and a revoked token's session.
#[tokio::test]
async fn changes_need_the_csrf_value_and_a_live_token() {
    let server = TestServer::start(1000).await;
    let base = console(&server).await;
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let secret = token(&server, "alice", "admin");
    let raw = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{}\r\n{body}",
            body.len(),
            headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect::<String>()
        );
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let login = raw(
        "POST",
        "/console/api/login",
        &[],
        &format!("{{\"token\":\"{secret}\"}}"),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie_line = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    let cookie = cookie_line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = serde_json::from_str::<Value>(login.split("\r\n\r\n").nth(1).unwrap()).unwrap()
        ["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let set = "{\"key\":\"outputs.rate\",\"value\":\"5\"}";
    let no_csrf = raw(
        "POST",
        "/console/api/config/set",
        &[("cookie", &cookie)],
        set,
    )
    .await;
    assert!(no_csrf.starts_with("HTTP/1.1 403"), "{no_csrf}");
    let forged = raw(
        "GET",
        "/console/api/session",
        &[("cookie", &format!("{cookie}x"))],
        "",
    )
    .await;
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    let bad_login = raw(
        "POST",
        "/console/api/login",
        &[],
        "{\"token\":\"fapi_nope\"}",
    )
    .await;
    assert!(bad_login.starts_with("HTTP/1.1 401"), "{bad_login}");
    let ok = raw(
        "POST",
        "/console/api/config/set",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        set,
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let (entries, _) = server.app.config.get(&["outputs.rate".into()], 0).unwrap();
    assert_eq!(entries[0].value, "5");
    assert_eq!(entries[0].origin, "api");
    server.app.tokens.revoke("alice").unwrap();
    let revoked = raw("GET", "/console/api/session", &[("cookie", &cookie)], "").await;
    assert!(revoked.starts_with("HTTP/1.1 401"), "{revoked}");
    let page = raw("GET", "/console/", &[], "").await;
    assert!(
        page.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    server.stop().await;
}

/// With alerts flowing at 2,000/s, the page's stream stays within a second of the log head.
/// FALCO_API_CONSOLE_BENCH_SECS sets how long (default 10 s; the note's figures are from 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_up_with_2000_alerts_a_second() {
    let _heavy = crate::common::HEAVY.lock().await;
    let secs: u64 = std::env::var("FALCO_API_CONSOLE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let server = TestServer::start_with(1_000_000, Settings::default(), &[SYSCALL_RULES]).await;
    let base = console(&server).await;
    let secret = token(&server, "alice", "reader");
    let browser = Browser::start(1280, 800).await;
    browser.sign_in(&base, &secret).await;
    browser
        .until(
            "return document.querySelector('#status').textContent === 'live';",
            Duration::from_secs(5),
        )
        .await;
    // 2,000 alerts/s through inputs, in batches of 100 every 50 ms.
    let sender = {
        let server_events = async {
            let mut ticker = tokio::time::interval(Duration::from_millis(50));
            let mut seq = 0u64;
            let batches = secs * 20;
            let mut all = Vec::new();
            for _ in 0..batches {
                ticker.tick().await;
                let batch: Vec<_> = (0..100)
                    .map(|_| {
                        seq += 1;
                        syscall_event(seq, "open", "/etc/shadow")
                    })
                    .collect();
                all.push(batch);
                let chunk = std::mem::take(&mut all);
                send_all(&server, chunk).await;
            }
        };
        server_events
    };
    let mut lags = Vec::new();
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let head = server.app.logs.outputs.head();
            let newest = browser
                .js("return window.consoleStats.newest;")
                .await
                .as_u64()
                .unwrap_or(0);
            lags.push(head.saturating_sub(newest));
        }
    };
    tokio::select! {
        _ = sender => {},
        _ = watch => {},
    }
    let total = server.app.logs.outputs.head();
    browser
        .until(
            &format!("return window.consoleStats.newest === {total};"),
            Duration::from_secs(10),
        )
        .await;
    let received = browser.js("return window.consoleStats.received;").await;
    assert_eq!(received.as_u64().unwrap(), total, "every alert once");
    lags.sort_unstable();
    let max = *lags.last().unwrap_or(&0);
    let p99 = lags[(lags.len() * 99 / 100).min(lags.len().saturating_sub(1))];
    println!(
        "console at 2,000 alerts/s for {secs} s: {total} alerts, lag behind the log head sampled every 250 ms: p99 {p99} alerts ({:.2} s), max {max} alerts ({:.2} s)",
        p99 as f64 / 2000.0,
        max as f64 / 2000.0
    );
    let rows = browser
        .js("return document.querySelectorAll('#alerts tr').length;")
        .await;
    assert!(
        rows.as_u64().unwrap() <= 3000,
        "the table stays bounded: {rows}"
    );
    browser.close().await;
    server.stop().await;
}

/// On TLS a client certificate signs in with its roles (the identity the HTTP listener took
/// from the handshake, as for the other endpoints); changes still need the CSRF value.
#[tokio::test]
async fn a_client_certificate_signs_in_with_its_roles() {
    use tower::ServiceExt;
    let server = TestServer::start(1000).await;
    let endpoint = falco_api::config::HttpEndpoint::new(
        HttpKind::Console,
        "127.0.0.1:0".parse().unwrap(),
        true,
        1 << 20,
    );
    let router = falco_api::http::router(server.app.clone(), &[&endpoint]);
    let call =
        |roles: &[falco_api::net::identity::Role], method: &str, path: &str, csrf: Option<&str>| {
            let mut request = http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json");
            if let Some(c) = csrf {
                request = request.header("x-csrf-token", c);
            }
            let body = if method == "POST" {
                "{\"key\":\"outputs.rate\",\"value\":\"9\"}"
            } else {
                ""
            };
            let mut request = request.body(axum::body::Body::from(body)).unwrap();
            request.extensions_mut().insert(falco_api::http::Caller {
                addr: "127.0.0.1:1".parse().unwrap(),
                identity: Some(falco_api::net::identity::Identity {
                    name: "cn:ops".into(),
                    names: vec!["cn:ops".into()],
                    roles: roles.iter().copied().collect(),
                }),
            });
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                )
            }
        };
    use falco_api::net::identity::Role;
    let (status, session) = call(&[Role::Admin], "GET", "/console/api/session", None).await;
    assert_eq!(status, 200);
    assert_eq!(session["identity"], "cn:ops");
    assert_eq!(session["admin"], true);
    let csrf = session["csrf"].as_str().unwrap().to_string();
    let (status, _) = call(&[Role::Admin], "POST", "/console/api/config/set", None).await;
    assert_eq!(status, 403, "no CSRF value");
    let (status, body) = call(
        &[Role::Admin],
        "POST",
        "/console/api/config/set",
        Some(&csrf),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &[Role::Reader],
        "POST",
        "/console/api/config/set",
        Some(&csrf),
    )
    .await;
    assert_eq!(status, 403, "a reader certificate changes nothing");
    let (status, _) = call(&[Role::Ingest], "GET", "/console/api/rules", None).await;
    assert_eq!(status, 403, "ingest alone does not read");
    let history = server.app.config.history("outputs.rate", 0, 5).unwrap();
    assert_eq!(history[0].author, "cn:ops");
    server.stop().await;
}

/// "Tune this rule…" in the alert detail panel: fields chosen, preview counted, saved as a
/// recorded change; the same event then no longer alerts while another value still does.
#[tokio::test]
async fn an_admin_tunes_a_rule_from_the_alert_detail_panel() {
    let _heavy = crate::common::HEAVY.lock().await;
    let server = TestServer::start(1000).await;
    let base = console(&server).await;
    let rules = "- rule: shadow read\n  desc: d\n  condition: evt.type = open and fd.name startswith /etc\n  output: \"%proc.name read %fd.name\"\n  priority: WARNING\n";
    let first = server
        .app
        .rules
        .put("files.yaml", rules, Change::by("cn:ops", ""))
        .unwrap()
        .0;
    let open = |seq: u64, proc: &str| {
        let payload = json!({"evt.type": "open", "proc.name": proc, "fd.name": "/etc/shadow"});
        falco_api::proto::inputs::Event {
            source: "syscall".into(),
            payload: payload.to_string().into_bytes(),
            seq,
            ..Default::default()
        }
    };
    let ack = send_all(
        &server,
        vec![vec![open(1, "backup"), open(2, "backup"), open(3, "vi")]],
    )
    .await;
    assert_eq!(ack[0].matched, 3);
    let admin = token(&server, "ada", "admin");
    let browser = Browser::start(1280, 1100).await;
    browser.sign_in(&base, &admin).await;
    browser
        .c()
        .goto(&format!("{base}/console/?page=alerts"))
        .await
        .unwrap();
    browser
        .until(
            "return document.querySelectorAll('#alerts tr').length === 3;",
            Duration::from_secs(5),
        )
        .await;
    browser.click("#alerts tr[data-seq='1']").await;
    browser.click("#tune-open").await;
    browser
        .until(
            "return document.querySelectorAll('#tune-fields input').length === 2;",
            Duration::from_secs(5),
        )
        .await;
    browser.click("#tune-fields input[value='proc.name']").await;
    browser.click("#tune-preview").await;
    browser
        .until("return (document.querySelector('#tune-counts') || {}).textContent?.includes('3 alerts: 2 suppressed, 1 still alerting');", Duration::from_secs(5))
        .await;
    assert!(browser
        .text("#tune-entry")
        .await
        .contains("exceptions: append"));
    assert!(browser
        .text("#tune-examples")
        .await
        .contains("still alerting #3"));
    browser
        .c()
        .find(Locator::Css("#tune-comment"))
        .await
        .unwrap()
        .send_keys("the nightly backup reads it")
        .await
        .unwrap();
    browser
        .js("document.querySelector('#tune-entry').scrollIntoView({block: 'end'}); return true;")
        .await;
    browser.screenshot("console-tune").await;
    browser.click("#tune-save").await;
    browser
        .until("return (document.querySelector('#tune-summary') || {}).textContent?.startsWith('Saved as revision');", Duration::from_secs(5))
        .await;
    let history = server.app.rules.history("", 0, 1).unwrap();
    assert_eq!(history[0].revision, first + 1);
    assert_eq!(history[0].action, "tune");
    assert_eq!(history[0].author, "token:ada");
    assert_eq!(history[0].comment, "the nightly backup reads it");
    let after = send_all(&server, vec![vec![open(4, "backup")], vec![open(5, "vi")]]).await;
    assert_eq!((after[0].matched, after[1].matched), (0, 1));
    browser.close().await;
    server.stop().await;
}
