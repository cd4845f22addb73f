//! The real binary, as an operator runs it: spawning `serve`, reading what it printed, client
//! commands, signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_falco-api");

/// `falco-api ARGS --server SOCK`, as an operator runs a client command.
pub fn cli_output(sock: &Path, args: &[&str]) -> std::process::Output {
    Command::new(EXE)
        .args(args)
        .arg("--server")
        .arg(sock)
        .output()
        .unwrap()
}

/// `serve`'s arguments for a data directory and a socket, then `extra`.
pub fn serve_args<'a>(data: &'a Path, sock: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        sock.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

pub struct Running {
    pub child: Child,
    pub lines: Vec<String>,
}

/// Starts `falco-api serve ARGS` with HOME at `home` and reads stdout up to the listening line.
pub fn spawn_serve(home: &Path, args: &[&str]) -> Running {
    spawn_serve_until(home, args, "listening on:")
}

/// As [`spawn_serve`], reading stdout up to a line starting with `marker`.
pub fn spawn_serve_until(home: &Path, args: &[&str], marker: &str) -> Running {
    let mut child = Command::new(EXE)
        .arg("serve")
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("FALCO_API_DATA_DIR")
        .env_remove("FALCO_API_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        let done = line.starts_with(marker);
        lines.push(line);
        if done {
            break;
        }
    }
    Running { child, lines }
}

/// The address in the line `serve` printed that starts with `prefix` (`… http://ADDR/…`).
pub fn printed_addr(lines: &[String], prefix: &str) -> std::net::SocketAddr {
    let line = lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {lines:?}"));
    line[prefix.len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The receiver's address, from what `serve` printed.
pub fn receiver_addr(lines: &[String]) -> std::net::SocketAddr {
    printed_addr(lines, "falco http_output receiver: http://")
}

/// Copies a directory tree (a data directory, for upgrade tests).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
