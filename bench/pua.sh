#!/usr/bin/env bash
# pua: PUBLISH and SUBSCRIBE origination through the API, and holding N publications plus N
# subscriptions in db_mode 0 (SQLite write-back), refreshed by the timer.
#   bench/pua.sh [N] [HOLD_SECONDS]     (defaults 100000 and 150; build first:
#                                        cargo build --workspace --release)
# The presence server is the repo's sipload in `serve` mode (a fast UAS: 200 with SIP-ETag,
# To-tag, Contact), granting 60 s so that every record is refreshed during the hold (pua asks
# for "forever": default_expires). `testpua.load` calls send_publish N times in one go; the rate
# is N over the time until all N 200s have reached the callbacks.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
hold=${2:-150}
source bench/lib.sh
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

srv=$(free_port)
"$load" serve "$srv" --expires 60 & pids+=($!)
sip=$(free_port)
http=$(free_port)
cat > "$dir/bench.toml" <<CFG
loadmodule = ["pua", "testpua"]
[core]
listen = ["udp:127.0.0.1:$sip"]
children = 2
log_level = "warn"
modules_path = ["$PWD/target/release"]
[rpc]
http = "127.0.0.1:$http"
[modparam.pua]
db_url = "sqlite://$dir/pua.sqlite"
db_mode = 0
update_period = 30
outbound_proxy = "sip:127.0.0.1:$srv"
CFG
"$bin" run -c "$dir/bench.toml" >"$dir/host.log" 2>&1 & host=$!; pids+=($host)
for _ in $(seq 100); do grep -q ' ready modules=' "$dir/host.log" && break; sleep 0.1; done
rpc() { curl -s "http://127.0.0.1:$http/RPC" -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"; }
loaded() { rpc testpua.loaded '[]' | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["ok"], r["failed"])'; }
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="puahost_pua_$1" '$1==m {print $2}'; }
# Heap in use (glibc's count of bytes handed out): what the records cost, without the
# allocator's retained free memory that RSS also shows.
heap() { curl -s "http://127.0.0.1:$http/metrics" | awk '$1=="puahost_heap_allocated_bytes" {print $2}'; }
# Waits until ok+failed reaches $1; prints the seconds it took since $2 (epoch, fractional).
wait_loaded() {
  while true; do
    read -r ok failed < <(loaded)
    [ $((ok + failed)) -ge "$1" ] && break
    sleep 0.05
  done
  python3 -c "import time; print(f'{time.time()-$2:.3f}')"
}
now() { python3 -c 'import time; print(time.time())'; }

sleep 1
rss0=$(rss_kb $host); heap0=$(heap)
# originate WHAT RPC PARAMS TOTAL: calls RPC (which queues $n requests), waits until TOTAL callbacks
# have come (ok + failed, counted since the start), prints the rate and the host CPU per request.
originate() {
  local what=$1 method=$2 params=$3 total=$4 t0 c0 c1 secs ok failed
  echo "== $n $what through the API ($method), each answered 200"
  t0=$(now); c0=$(cpu $host)
  rpc "$method" "$params" >/dev/null
  secs=$(wait_loaded "$total" "$t0"); c1=$(cpu $host)
  read -r ok failed < <(loaded)
  python3 -c "print(f'   {$ok-$total+$n} ok, {$failed} failed in {$secs} s: {$n/$secs:,.0f} $what/s; host CPU {($c1-$c0):.2f} s ({1e6*($c1-$c0)/$n:.1f} us per $what)')"
  sleep 6   # client transactions end (Timer K)
}

originate PUBLISH testpua.load "[$n, \"pub\", \"127.0.0.1\"]" "$n"
rss1=$(rss_kb $host); heap1=$(heap)
body=$(rpc pua.list '["sip:pub0@"]' | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0]["body_bytes"])')
python3 -c "d=($heap1-$heap0)/$n; print(f'   heap +{($heap1-$heap0)/2**20:.1f} MiB: {d:.0f} bytes per publication, {d-$body:.0f} without its {$body}-byte body (RSS +{($rss1-$rss0)/1024:.1f} MiB)')"

originate SUBSCRIBE testpua.load_subscribe "[$n, \"sub\", \"127.0.0.1\", \"sip:w@127.0.0.1:$sip\", \"sip:127.0.0.1:$srv\"]" "$((2 * n))"
rss2=$(rss_kb $host); heap2=$(heap)
python3 -c "print(f'   heap +{($heap2-$heap1)/2**20:.1f} MiB: {($heap2-$heap1)/$n:.0f} bytes per subscription (dialog, route set, contacts) (RSS +{($rss2-$rss1)/1024:.1f} MiB)')"

echo "== holding them for $hold s (server grants 60 s; refresh pass every 25 s; write-back every 30 s)"
c0=$(cpu $host)
sleep "$hold"
c1=$(cpu $host)
echo "   publications $(metric publications), subscriptions $(metric subscriptions)"
echo "   refreshes $(metric refreshes_total), late $(metric refreshes_late_total), expired $(metric expired_total), failed replies $(metric replies_failed_total)"
python3 -c "print(f'   host CPU {($c1-$c0):.2f} s over {$hold} s ({100*($c1-$c0)/$hold:.1f}% of one core); heap {$(heap)/2**20:.0f} MiB, RSS {$(rss_kb $host)/1024:.0f} MiB')"
rows=$(python3 -c "import sqlite3; print(sqlite3.connect('$dir/pua.sqlite').execute('select count(*) from pua').fetchone()[0])")
echo "   rows in the pua table (write-back): $rows"
t0=$(now)
kill -TERM $host; wait $host 2>/dev/null || true
python3 -c "import time; print(f'   SIGTERM to exit (final write-back): {time.time()-$t0:.2f} s')"
grep -E 'WARN|ERROR' "$dir/host.log" | head -5 || true
