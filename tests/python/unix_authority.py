"""Python gRPC (grpcio, a plain channel with no options) against falco-api over the Unix socket.

grpcio >= 1.57 sends the percent-encoded socket path as the HTTP/2 :authority; the server serves
such requests as if the authority were localhost. This script checks that, with no generated
stubs (messages are encoded and decoded by hand): the version call, a legacy `get` that drains
and ends with OK, and a legacy `sub` that streams live alerts while the client polls it 100 times
with empty messages, as client-py does.

usage: python3 unix_authority.py SOCKET EXPECTED_VERSION FALCO_API_BINARY
(the server must have a rule matching syscall events with evt.type=open)
"""
import queue
import subprocess
import sys
import tempfile
import threading
import time

import grpc


def fields(raw):
    """Top-level protobuf fields as (number, value) pairs (varints and length-delimited only)."""
    out, i = [], 0
    while i < len(raw):
        key, i = varint(raw, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(raw, i)
        elif wire == 2:
            length, i = varint(raw, i)
            value, i = raw[i : i + length], i + length
        elif wire == 1:
            value, i = raw[i : i + 8], i + 8
        elif wire == 5:
            value, i = raw[i : i + 4], i + 4
        else:
            raise ValueError("unexpected wire type %d" % wire)
        out.append((number, value))
    return out


def varint(raw, i):
    shift = value = 0
    while True:
        b = raw[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def identity(x):
    return x


def version(channel):
    call = channel.unary_unary("/falco.version.service/version", identity, identity)
    return dict(fields(call(b"", timeout=10)))[1].decode()


def legacy_get(channel):
    call = channel.unary_stream("/falco.outputs.service/get", identity, identity)
    return [dict(fields(m)) for m in call(b"", timeout=10)]


def send_events(binary, socket, n):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(n):
            f.write('{"evt.type": "open", "proc.name": "py%d"}\n' % i)
    subprocess.run(
        [binary, "send", "--source", "syscall", "--server", "unix://" + socket, f.name],
        check=True,
        capture_output=True,
    )


def legacy_sub(channel, binary, socket):
    polls = queue.Queue()

    def requests():
        # The first message opens the stream; then empty polls, as client-py sends them.
        for _ in range(101):
            yield b""
            polls.put(1)
            time.sleep(0.02)

    call = channel.stream_stream("/falco.outputs.service/sub", identity, identity)
    responses = call(requests(), timeout=30)
    sender = threading.Thread(target=lambda: (time.sleep(0.5), send_events(binary, socket, 3)))
    sender.start()
    got = []
    for raw in responses:
        got.append(dict(fields(raw)))
        if len(got) == 3:
            break
    sender.join()
    deadline = time.time() + 10
    while polls.qsize() < 100 and time.time() < deadline:
        time.sleep(0.05)
    responses.cancel()
    return got, polls.qsize()


def main():
    socket, expected, binary = sys.argv[1], sys.argv[2], sys.argv[3]
    with grpc.insecure_channel("unix://" + socket) as ch:
        got = version(ch)
        assert got == expected, (got, expected)
        print("plain channel: version", got)
        drained = legacy_get(ch)
        print("plain channel: legacy get ended OK after", len(drained), "alerts")
        alerts, polls = legacy_sub(ch, binary, socket)
        rules = {a.get(4, b"").decode() for a in alerts}
        assert len(alerts) == 3 and rules == {"Open"}, alerts
        assert polls >= 100, polls
        print("plain channel: legacy sub streamed", len(alerts), "live alerts across", polls, "polls")


if __name__ == "__main__":
    main()
