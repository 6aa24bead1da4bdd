#!/usr/bin/env bash
# Stateless SIP throughput over UDP on loopback: a route that answers 200 OK to OPTIONS (through
# the server transaction, so retransmissions would be absorbed), driven by the repo's load
# generator (tests/src/bin/sipload.rs) and, for comparison, by sipp.
#   bench/sip.sh [seconds]      (default 10; build first: cargo build --workspace --release)
# It first measures the generator against a null responder (its own ceiling), so a host figure
# close to that ceiling is limited by the generator, not the host.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
source bench/lib.sh

null=$(free_port)
"$load" serve "$null" & pids+=($!)
sleep 0.3
echo "== generator ceiling (sipload against a null responder)"
"$load" send "127.0.0.1:$null" --seconds "$secs" --sockets 4 --window 64

sip=$(free_port)
cat > "$dir/bench.toml" <<CFG
[core]
listen = ["udp:127.0.0.1:$sip"]
children = 2
log_level = "warn"
[[route]]
method = "OPTIONS"
reply = "200 OK"
CFG
"$bin" run -c "$dir/bench.toml" >"$dir/host.log" 2>&1 & host=$!; pids+=($host)
sleep 0.5
echo "== puahost, stateless 200 to OPTIONS (sipload, closed loop)"
"$load" send "127.0.0.1:$sip" --seconds "$secs" --sockets 4 --window 64
echo "== puahost at a fixed 20000 requests/s (CPU per request is the figure no generator flatters)"
before=$(cpu $host)
out=$("$load" send "127.0.0.1:$sip" --seconds "$secs" --sockets 2 --window 64 --rate 20000)
after=$(cpu $host)
echo "$out"
ok=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
python3 -c "b,a,n=$before,$after,$ok; print(f'   host CPU {a-b:.2f} s for {n} requests: {1e6*(a-b)/max(n,1):.1f} us of CPU per request')"
if command -v sipp >/dev/null; then
  echo "== puahost with sipp (OPTIONS, -r 50000; sipp is single-threaded)"
  sed 's/\[method\]/OPTIONS/' tests/sipp/uac_request.xml > "$dir/uac.xml"
  sipp -sf "$dir/uac.xml" -buff_size 4194304 -key event presence -s load -r 50000 -rp 1000 -m $((secs * 50000)) -l 5000 \
       -i 127.0.0.1 -p "$(free_port)" -nostdin -timeout "$((secs * 3))s" -trace_stat -stf "$dir/stat.csv" -fd 1 \
       "127.0.0.1:$sip" >/dev/null 2>&1 || true
  if [ -f "$dir/stat.csv" ]; then
    read -r ok failed elapsed rate < <(sipp_summary "$dir/stat.csv")
    echo "   sipp: $ok ok, $failed failed, elapsed $elapsed, rate $rate calls/s"
  fi
fi
