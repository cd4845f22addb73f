#!/usr/bin/env bash
# Counts the syncs behind N sequential acknowledged `config set` calls on a running server:
# every acknowledged change must be fsynced (fdatasync) before its reply.
# Usage: scripts/strace-acks.sh [N] (needs strace and a release build).
set -euo pipefail
n="${1:-20}"
bin="$(dirname "$0")/../target/release/falco-api"
dir="$(mktemp -d)"
trap 'kill -TERM "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" serve --data-dir "$dir" --listen "$dir/s.sock" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -S "$dir/s.sock" ] && break; sleep 0.1; done
# Warm up: a fresh database also syncs its file's growth during the first commits.
for i in $(seq 1 20); do "$bin" config set --server "unix://$dir/s.sock" "hostname=warm-$i" >/dev/null; done
strace -f -e trace=fsync,fdatasync,sync_file_range -o "$dir/strace" -p "$pid" 2>/dev/null &
tracer=$!
sleep 1
for i in $(seq 1 "$n"); do "$bin" config set --server "unix://$dir/s.sock" "hostname=h-$i" >/dev/null; done
sleep 0.3
kill "$tracer"; wait "$tracer" 2>/dev/null || true
echo "$n acknowledged config changes: $(grep -c 'fdatasync(' "$dir/strace" || true) fdatasync," \
  "$(grep -c 'fsync(' "$dir/strace" || true) fsync, $(grep -c sync_file_range "$dir/strace" || true) sync_file_range"
