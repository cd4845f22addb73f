#!/usr/bin/env python3
"""Runs the attacks of the shared-host review against a falco-api binary and prints what they
cost: idle connections vs a real alert and a gRPC call, hostile metrics snapshots vs a scrape,
a stalled live-alerts reader, 1 MiB alerts in the console, and 1 MiB alerts vs the disk.

Usage: scripts/shared-host-attacks.py [PATH-TO-falco-api [--new]]   (default target/debug/falco-api)
--new sets the keys older binaries do not know (console.stall_timeout_secs 5, outputs.max_bytes
64MiB) so their effect shows.

Everything runs on loopback against a server in a temporary directory; each attack is bounded
in count and time. Figures are for comparing two binaries on the same machine, not absolutes.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

EXE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/falco-api")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def http(port, method, path, body=b"", headers=None, timeout=30):
    """One request on a new connection; (status, body bytes, seconds) or (None, error, seconds)."""
    started = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        out = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            out += chunk
        s.close()
        status = int(out.split(b" ", 2)[1]) if out else None
        return status, out.split(b"\r\n\r\n", 1)[-1], time.monotonic() - started
    except Exception as e:  # a timeout is an answer here
        return None, str(e).encode(), time.monotonic() - started


def alert(n, size=10, rule="Attack", hostname="node-a", fields=None):
    return json.dumps({
        "hostname": hostname,
        "output": f"alert {n} " + "x" * size,
        "output_fields": fields if fields is not None else {"proc.name": "cat", "n": n},
        "priority": "Warning",
        "rule": rule,
        "source": "syscall",
        "tags": ["filesystem"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
    }).encode()


class Server:
    def __init__(self, extra_config="", console_config=""):
        self.dir = tempfile.mkdtemp()
        self.sock = os.path.join(self.dir, "s.sock")
        self.falco, self.console, self.metrics = free_port(), free_port(), free_port()
        config = os.path.join(self.dir, "c.yaml")
        with open(config, "w") as f:
            f.write(f"falco:\n  listen: 127.0.0.1:{self.falco}\n"
                    f"console:\n  listen: 127.0.0.1:{self.console}\n{console_config}"
                    f"metrics:\n  listen: 127.0.0.1:{self.metrics}\n" + extra_config)
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [EXE, "serve", "--data-dir", os.path.join(self.dir, "data"), "--listen", self.sock,
             "--config", config], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"server did not start: {open(self.log.name).read()}")
            time.sleep(0.05)
        time.sleep(0.5)

    def cli(self, *args, timeout=60):
        return subprocess.run([EXE, *args, "--server", self.sock], capture_output=True,
                              timeout=timeout, text=True)

    def rss(self):
        return rss_mb(self.proc.pid)

    def db_mb(self):
        return os.path.getsize(os.path.join(self.dir, "data", "falco-api.redb")) / 1e6

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def idle_connections():
    s = Server()
    idle = []
    for _ in range(1100):
        try:
            idle.append(socket.create_connection(("127.0.0.1", s.falco), timeout=5))
        except OSError:
            break
    status, _, took = http(s.falco, "POST", "/", alert(1), timeout=10)
    print(f"2. HTTP: {len(idle)} idle connections, then a real alert: status {status} after {took:.2f} s")
    unix = []
    for _ in range(1100):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(5)
        try:
            c.connect(s.sock)
            unix.append(c)
        except OSError:
            break
    started = time.monotonic()
    try:
        out = s.cli("version", timeout=30)
        result = "ok" if out.returncode == 0 else f"exit {out.returncode}"
    except subprocess.TimeoutExpired:
        result = "no answer"
    print(f"2. gRPC: {len(unix)} connections without a preface, then `version`: {result} "
          f"after {time.monotonic() - started:.2f} s")
    time.sleep(7)
    closed = 0
    for c in idle:
        c.settimeout(0.05)
        try:
            closed += c.recv(1) == b""
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            closed += 1
    print(f"2. after 7 s, {closed} of {len(idle)} idle HTTP connections closed by the server")
    for c in idle + unix:
        c.close()
    s.stop()


def hostile_metrics():
    s = Server()
    before = s.rss()
    for node in range(50):
        fields = {f"falco.made_up_{node}_{i}": i for i in range(4000)}
        http(s.falco, "POST", "/", alert(node, rule="Falco internal: metrics snapshot",
                                         hostname=f"node-{node}", fields=fields))
    for n in range(20):
        http(s.falco, "POST", "/", alert(n, rule=f"{n}-" + "r" * (900 * 1024)))
    status, body, took = http(s.metrics, "GET", "/metrics")
    print(f"3. 50 snapshots of 4,000 fields and 20 rules of 900 KiB: scrape {status}, "
          f"{len(body) / 1e6:.1f} MB in {took * 1000:.0f} ms; RSS {before:.0f} -> {s.rss():.0f} MB")
    s.stop()


def login_cookie(s):
    token = s.cli("token", "create", "--name", f"t{time.monotonic_ns()}", "--role", "reader").stdout.strip()
    c = socket.create_connection(("127.0.0.1", s.console))
    body = json.dumps({"token": token}).encode()
    c.sendall(f"POST /console/api/login HTTP/1.1\r\nHost: 127.0.0.1:{s.console}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    out = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        out += chunk
    for line in out.decode(errors="replace").split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            return line.split(":", 1)[1].strip().split(";")[0]
    raise SystemExit(f"no cookie: {out[:300]}")


def stalled_reader(with_reader=True):
    s = Server(console_config="  stall_timeout_secs: 5\n" if "--new" in sys.argv else "")
    r = None
    if with_reader:
        cookie = login_cookie(s)
        r = socket.socket()
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        r.connect(("127.0.0.1", s.console))
        r.sendall(f"GET /console/api/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1:{s.console}\r\nCookie: {cookie}\r\n\r\n".encode())
        r.recv(512)
    before = s.rss()
    path = os.path.join(s.dir, "alerts.jsonl")
    with open(path, "wb") as f:
        for n in range(3000):
            f.write(alert(n, size=20 * 1024) + b"\n")
    s.cli("send", "--alerts", "--quiet", path, timeout=300)
    time.sleep(8)
    what = "a stalled live-alerts reader" if with_reader else "no reader (baseline)"
    print(f"4. {what} and 3,000 alerts of 20 KiB: RSS {before:.0f} -> {s.rss():.0f} MB")
    if r:
        r.close()
    s.stop()


def big_alerts_in_console():
    s = Server()
    for n in range(50):
        http(s.falco, "POST", "/", alert(n, size=(1 << 20) - 1000))
    cookie = login_cookie(s)
    before = s.rss()
    status, body, took = http(s.console, "GET", "/console/api/alerts?limit=2000",
                              headers={"Cookie": cookie}, timeout=120)
    print(f"5. /console/api/alerts over 50 alerts of 1 MiB: {status}, {len(body) / 1e6:.2f} MB "
          f"in {took:.2f} s; RSS {before:.0f} -> {s.rss():.0f} MB")
    s.stop()


def disk_growth():
    s = Server("outputs:\n  max_bytes: 64MiB\n" if "--new" in sys.argv else "")
    body = alert(0, size=(1 << 20) - 400)
    started = time.monotonic()
    codes = {}
    while time.monotonic() - started < 15:
        status, _, _ = http(s.falco, "POST", "/", body)
        codes[status] = codes.get(status, 0) + 1
    took = time.monotonic() - started
    print(f"7. one poster of 1 MiB alerts for {took:.0f} s: answers {codes}; database "
          f"{s.db_mb():.0f} MB ({s.db_mb() / took:.1f} MB/s)")
    s.stop()


if __name__ == "__main__":
    print(f"binary: {EXE}")
    idle_connections()
    hostile_metrics()
    stalled_reader(with_reader=False)
    stalled_reader()
    big_alerts_in_console()
    disk_growth()
