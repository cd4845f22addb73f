//! A newcomer's first hour: the README's quick start as written, messages that say what to do,
//! and the small frictions found on the way.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::process::{cli_output, sigterm, wait_exit, EXE};
use crate::common::TestServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// PATH with the built binary's folder first, so `falco-api` in a line is this build.
fn path_with_binary() -> String {
    let bin = Path::new(EXE).parent().unwrap().display().to_string();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

/// The quick start's lines: the `sh` block between the README's quickstart markers.
fn quick_start_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- quickstart")
        .expect("the quickstart marker");
    let end = readme.find("<!-- /quickstart -->").expect("the end marker");
    readme[start..end]
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_string)
        .collect()
}

fn http(addr: std::net::SocketAddr, request: String) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The quick start, line by line as a shell runs it, on a fresh data directory (the one
/// substitution: the console on port 0 instead of 2802, so tests never fight for a port), ends
/// in both alerts on screen and in the console.
#[test]
fn the_readmes_quick_start_runs_as_written() {
    let lines = quick_start_lines();
    assert!(lines.len() >= 4, "{lines:?}");
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("quickstart");
    let mut env: Vec<(String, String)> = vec![("PATH".into(), path_with_binary())];
    env.push(("HOME".into(), home.path().display().to_string()));
    let mut server = None;
    let mut console = None;
    let mut outputs = Vec::new();
    for line in &lines {
        let code = line.split(" #").next().unwrap().trim();
        if let Some(assignment) = code.strip_prefix("export ") {
            let (name, _) = assignment.split_once('=').unwrap();
            assert_eq!(name, "FALCO_API_DATA_DIR", "{line}");
            env.push((name.into(), data.display().to_string()));
            continue;
        }
        if let Some(background) = code.strip_suffix('&') {
            let command = background
                .trim()
                .replace("--console", "--console 127.0.0.1:0");
            let mut child = Command::new("bash")
                .arg("-c")
                .arg(format!("exec {command}"))
                .current_dir(repo())
                .envs(env.iter().cloned())
                .env_remove("FALCO_API_SERVER")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut printed = Vec::new();
            for l in BufReader::new(child.stdout.take().unwrap()).lines() {
                let l = l.unwrap();
                let done = l.starts_with("listening on:");
                printed.push(l);
                if done {
                    break;
                }
            }
            assert!(
                printed.iter().any(|l| l == "rules: 2 rules from 1 file, imported from --rules as revision 1"),
                "{printed:?}"
            );
            let addr = crate::common::process::printed_addr(&printed, "web console: http://");
            console = Some(addr);
            server = Some(child);
            continue;
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(code)
            .current_dir(repo())
            .envs(env.iter().cloned())
            .env_remove("FALCO_API_SERVER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let all = outputs.join("\n");
    assert!(
        all.contains("4 events: 4 accepted, 0 rejected, 0 dropped, 2 matched a rule"),
        "{all}"
    );
    assert!(
        all.contains(
            "Error Sensitive file opened for reading (file=/etc/shadow process=cat user=root)"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "Warning Shell spawned by a web server (shell=bash parent=nginx cmdline=bash -i)"
        ),
        "{all}"
    );
    // The token `token create` printed signs in to the console, where both alerts are.
    let token = outputs
        .last()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("fapi_"))
        .expect("a token")
        .to_string();
    let console = console.expect("the quick start starts a console");
    let body = format!("{{\"token\":\"{token}\"}}");
    let login = http(
        console,
        format!(
            "POST /console/api/login HTTP/1.1\r\nHost: {console}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("signed in")
        .to_string();
    let alerts = http(
        console,
        format!("GET /console/api/alerts HTTP/1.1\r\nHost: {console}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
    );
    assert!(alerts.contains("Read sensitive file"), "{alerts}");
    assert!(alerts.contains("Shell spawned by a web server"), "{alerts}");
    // A bare visit to the console's address lands on the console.
    let root = http(
        console,
        format!("GET / HTTP/1.1\r\nHost: {console}\r\nConnection: close\r\n\r\n"),
    );
    assert!(root.starts_with("HTTP/1.1 303"), "{root}");
    assert!(root.contains("location: /console/"), "{root}");
    let mut server = server.expect("the quick start starts a server");
    sigterm(&server);
    assert!(wait_exit(&mut server, Duration::from_secs(20)).success());
}

/// A client that cannot connect says where it looked, why it failed, and how to point it
/// elsewhere; the server's data-directory flag and variable move the clients too.
#[test]
fn a_failed_connection_says_what_was_tried_and_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("elsewhere");
    let version = |args: &[&str], env: Option<&Path>| {
        let mut c = Command::new(EXE);
        c.arg("version")
            .args(args)
            .env("HOME", home.path())
            .env_remove("FALCO_API_SERVER")
            .env_remove("FALCO_API_DATA_DIR");
        if let Some(dir) = env {
            c.env("FALCO_API_DATA_DIR", dir);
        }
        c.output().unwrap()
    };
    let out = version(&[], Some(&data));
    let err = String::from_utf8_lossy(&out.stderr);
    let sock = data.join("falco-api.sock");
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot connect to falco-api at unix://{} (the socket in FALCO_API_DATA_DIR): no socket there: is `falco-api serve` running, with this data directory?",
            sock.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("--server unix:///path/to.sock (or FALCO_API_SERVER), or --data-dir DIR (or FALCO_API_DATA_DIR)"),
        "{err}"
    );
    assert!(!err.contains("Os {"), "no Debug forms: {err}");
    let out = version(&[], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(the default data directory's socket ("),
        "{err}"
    );

    // A socket file nobody answers on.
    std::fs::create_dir_all(&data).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = version(&["--server", sock.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(from --server): a socket file is there but no server answers"),
        "{err}"
    );
    std::fs::remove_file(&sock).unwrap();

    // The server moved with FALCO_API_DATA_DIR: clients follow the same variable, or the flag.
    let mut server = Command::new(EXE)
        .arg("serve")
        .env("FALCO_API_DATA_DIR", &data)
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for l in BufReader::new(server.stdout.take().unwrap()).lines() {
        if l.unwrap().starts_with("listening on:") {
            break;
        }
    }
    assert!(version(&[], Some(&data)).status.success());
    assert!(version(&["--data-dir", data.to_str().unwrap()], None)
        .status
        .success());
    sigterm(&server);
    assert!(wait_exit(&mut server, Duration::from_secs(20)).success());
}

/// `tail --once` says why it printed nothing; a live `tail` whose server stops says so and
/// exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_says_why_it_printed_nothing_and_when_the_server_stopped() {
    let server = TestServer::start(100).await;
    let sock = server.socket.clone();
    let run = move |args: &'static [&'static str]| {
        let sock = sock.clone();
        tokio::task::spawn_blocking(move || cli_output(&sock, args))
    };
    let out = run(&["tail", "--once"]).await.unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no new alerts: without --after or --consumer, --once drains the shared consumer 'default'"), "{err}");
    let out = run(&["tail", "--once", "--consumer", "c"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no alerts: consumer 'c' has already seen every retained one"),
        "{err}"
    );
    let out = run(&["drops", "--once", "--after", "0"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no drop records retained after seq 0"),
        "{err}"
    );

    let mut live = Command::new(EXE)
        .args(["tail", "--server"])
        .arg(&server.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The follower is connected once its stream counts as a subscriber.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.app.logs.outputs.subscribers() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "tail never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut live, Duration::from_secs(20));
        let mut err = String::new();
        live.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(3), "{}", status.1);
    assert!(status.1.contains("the server shut down"), "{}", status.1);
}

/// `rules history` sums up a new file in one line and caps a diff; `send` names the file's own
/// line numbers; `config get` says what each key accepts; a `set` that changes nothing records
/// nothing; `falco_api_config_revision` never goes back; every option has a help text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_frictions_are_gone() {
    let server = TestServer::start(100).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = server.socket.clone();
    let cli = move |args: Vec<String>| {
        let sock = sock.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli_output(&sock, &args)
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    // An 888-line file is one line in the history; a change of many lines is cut at 40.
    let big: String = (0..222)
        .map(|i| format!("- list: l{i}\n  items: [a]\n# {i}\n\n"))
        .collect();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, &big).unwrap();
    let out = cli(s(&["rules", "put", file.to_str().unwrap()])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(s(&["rules", "history"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(new file, 888 lines: falco-api rules get big.yaml --revision 1)"),
        "{text}"
    );
    assert!(text.lines().count() < 10, "{text}");
    std::fs::write(&file, big.replace("items: [a]", "items: [b]")).unwrap();
    cli(s(&["rules", "put", file.to_str().unwrap()])).await;
    let out = cli(s(&["rules", "history", "big.yaml"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("more diff lines (--diff-lines 0 for all"),
        "{text}"
    );
    assert!(text.lines().count() < 60, "{} lines", text.lines().count());

    // send: line 5 of the file is the bad one (blank lines count).
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"evt.type\":\"open\"}\n\n{\"evt.type\":\"open\"}\n\nnot json\n",
    )
    .unwrap();
    let out = cli(s(&[
        "send",
        "--quiet",
        "--source",
        "syscall",
        events.to_str().unwrap(),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("events.jsonl: line 5 rejected"), "{err}");
    assert_eq!(out.status.code(), Some(1));

    // config get says what a key accepts.
    let out = cli(s(&["config", "get", "priority", "outputs.max_bytes"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("a priority: emergency, alert"), "{text}");
    assert!(text.contains("as bytes or with a unit"), "{text}");

    // A set that changes nothing records nothing; the config revision never goes back.
    let revision = || {
        let text = falco_api::services::metrics::render(&server.app);
        text.lines()
            .find_map(|l| l.strip_prefix("falco_api_config_revision "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let set = cli(s(&["config", "set", "json_output=true"])).await;
    assert!(set.status.success());
    let after_set = revision();
    let again = cli(s(&["config", "set", "json_output=true"])).await;
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing changed"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let history = cli(s(&["config", "history"])).await;
    assert_eq!(
        String::from_utf8_lossy(&history.stdout)
            .matches("json_output")
            .count(),
        1,
        "{}",
        String::from_utf8_lossy(&history.stdout)
    );
    assert_eq!(revision(), after_set);
    cli(s(&["config", "unset", "json_output"])).await;
    assert!(revision() > after_set, "unset went back to {}", revision());

    // Every option and argument of these commands says what it is.
    for command in [
        &["rules", "rollback"][..],
        &["rules", "put"],
        &["rules", "get"],
        &["rules", "history"],
        &["config", "get"],
        &["config", "set"],
        &["token", "revoke"],
        &["token", "list"],
        &["falco", "status"],
        &["fleet", "status"],
        &["send"],
        &["tail"],
    ] {
        let out = Command::new(EXE)
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = help.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let item = l.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'));
            if !item || t.contains("  ") {
                continue;
            }
            // Clap's long layout puts the text on the next, further indented line.
            let indent = l.len() - t.len();
            let next = lines.get(i + 1).copied().unwrap_or("");
            let next_text = next.trim_start();
            let described = !next_text.is_empty()
                && next.len() - next_text.len() > indent
                && !next_text.starts_with('-');
            assert!(described, "{command:?}: no help for {t:?}\n{help}");
        }
    }
    server.stop().await;
}

/// Falco's rules directory and config file directory are created when missing, instead of a
/// confusing "is not a directory … behind by revision 0".
#[tokio::test]
async fn missing_directories_for_falco_are_created() {
    use falco_api::services::control::Change;
    let server = TestServer::start(100).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("etc/falco/rules.d");
    let config_file = outside.path().join("etc/falco/config.d/falco-api.yaml");
    falco_api::falco::sync::start(
        &server.app,
        falco_api::falco::sync::Targets {
            rules_dir: Some(dir.clone()),
            config_file: Some(config_file.clone()),
        },
    );
    let app = server.app.clone();
    tokio::task::spawn_blocking(move || {
        let rule = "- rule: R\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: WARNING\n";
        app.rules.put("a", rule, Change { expected: None, author: "test", comment: "" }).unwrap();
        app.config.set(&[("priority".into(), "warning".into())].into(), Change { expected: None, author: "test", comment: "" }).unwrap();
    })
    .await
    .unwrap();
    assert!(dir.join("falco-api-a+.yaml").is_file());
    assert!(config_file.is_file());
    for (_, state) in server.app.nodes.sync_states() {
        assert!(state.error.is_empty(), "{state:?}");
        assert_eq!(state.written, state.wanted);
    }
    // Something that is not a directory is named as such.
    let blocked = outside.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let server2 = TestServer::start(100).await;
    falco_api::falco::sync::start(
        &server2.app,
        falco_api::falco::sync::Targets {
            rules_dir: Some(blocked.clone()),
            config_file: None,
        },
    );
    let states = server2.app.nodes.sync_states();
    assert!(
        states
            .iter()
            .any(|(_, s)| s.error.contains("exists and is not a directory")),
        "{states:?}"
    );
    server.stop().await;
    server2.stop().await;
}

/// Every `falco-api …` command the README and the guides show (in `sh` blocks, `cargo run
/// --release --` ones included) names a real subcommand with real flags: each is parsed with
/// `--help` appended, which clap answers only once everything before it parsed.
#[test]
fn every_documented_command_parses() {
    let mut pages = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut checked = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut in_sh = false;
        let mut pending = String::new();
        for line in text.lines() {
            if line.starts_with("```") {
                in_sh = line.starts_with("```sh");
                continue;
            }
            if !in_sh {
                continue;
            }
            // Join continued lines, drop comments and pipes.
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            let full = std::mem::take(&mut pending) + line;
            let code = full.split(" #").next().unwrap().split(" |").next().unwrap();
            let code = code.trim().trim_end_matches('&').trim();
            let args = match (
                code.strip_prefix("falco-api "),
                code.strip_prefix("cargo run --release -- "),
            ) {
                (Some(a), _) | (_, Some(a)) => a,
                _ => continue,
            };
            let words = shell_words(args);
            let out = Command::new(EXE)
                .args(&words)
                .arg("--help")
                .env_remove("FALCO_API_SERVER")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: `{code}` does not parse:\n{}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} commands found");
}

/// Words as a shell splits them: on blanks outside quotes, with the quotes removed (variables
/// are left as they are written).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}
