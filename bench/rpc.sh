#!/usr/bin/env bash
# RPC throughput over HTTP with wrk on loopback, and config-check time.
#   bench/rpc.sh [seconds]      (default 10; the workspace must be built with --release)
# Measures: core.version (answered on the I/O threads) and testmod.echo (a module command, run
# on a worker and answered through its token), each with 2 wrk threads and 64 connections.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=target/release/puahost
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/bench.toml" <<CFG
loadmodule = ["testmod"]
[core]
children = 2
log_level = "warn"
modules_path = ["$PWD/target/release"]
[rpc]
http = "127.0.0.1:$port"
CFG
"$bin" run -c "$dir/bench.toml" >"$dir/host.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done

for method in core.version testmod.echo; do
  cat > "$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"jsonrpc":"2.0","method":"$method","params":["a",1],"id":1}'
LUA
  echo "== $method"
  wrk -t2 -c64 -d"${secs}s" --latency -s "$dir/post.lua" "http://127.0.0.1:$port/RPC" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx|Socket errors" || true
done
echo "== host CPU (user+sys seconds over both runs): $(ps -o times= -p $pid)"

start=$(date +%s%N)
for _ in $(seq 20); do "$bin" check -c "$dir/bench.toml" >/dev/null; done
echo "== config check (load + validate, testmod): $(( ($(date +%s%N) - start) / 20000000 )) ms per run (process start included)"
