#!/usr/bin/env bash
# Soak: bench/soak.sh [SECONDS] (default 3600). Mixed PUBLISH / SUBSCRIBE / REGISTER load from
# sipp at a fixed rate (SOAK_RATE new calls per second per scenario, default 5; each call
# refreshes its record 5 times, 4 s apart, with Expires 12) against one host running
# presence, presence_xml, usrloc (write-through) and registrar on SQLite. Checks, exiting
# non-zero when one fails:
#   - RSS grows less than 5% after the warm-up (the first third, at least 45 s): the highest
#     sample of the last third of the rest against the highest of its first third;
#   - open files flat after the warm-up (within 8);
#   - table sizes (presentity, active_watchers, location rows) flat: the mean of the last third
#     of the samples within 25% (+10 rows) of the mean of the first post-warm-up third;
#   - no refreshed record expired on the server: no sipp call failed (a 412 on a PUBLISH
#     refresh or a 481 on a re-SUBSCRIBE fails the call);
#   - every expired record is gone at the end: 30 s after the load stops, the three tables
#     and the RPC counts are empty.
# From the repository root, after `cargo build --release --workspace`.
set -euo pipefail
secs=${1:-3600}
rate=${SOAK_RATE:-5}
. bench/lib.sh
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3" >&2; exit 1; }
[ "$secs" -ge 60 ] || { echo "soak: at least 60 seconds" >&2; exit 2; }

port=$(free_port)
http=$(free_port)
cat >"$dir/soak.toml" <<EOF
loadmodule = ["usrloc", "registrar", "presence", "presence_xml"]
[core]
listen = ["udp:127.0.0.1:$port"]
children = 2
modules_path = ["$release"]
log_level = "warn"
[rpc]
http = "127.0.0.1:$http"
[modparam.usrloc]
db_mode = 1
db_url = "sqlite://soak.sqlite"
timer_interval = 5
[modparam.registrar]
default_expires = 12
min_expires = 5
max_expires = 60
[modparam.presence]
db_url = "sqlite://soak.sqlite"
subs_db_mode = 1
clean_period = 5
[modparam.presence_xml]
db_url = "sqlite://soak.sqlite"
force_active = 1
[[route]]
method = "REGISTER"
do = ["save(\"location\")"]
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
[[route]]
method = "SUBSCRIBE"
do = ["handle_subscribe()"]
EOF
"$bin" run -c "$dir/soak.toml" >"$dir/host.log" 2>&1 &
host=$!
pids+=("$host")
wait_port "$http" || { echo "soak: the host did not start" >&2; cat "$dir/host.log" >&2; exit 1; }

rows() { sqlite3 "$dir/soak.sqlite" "select count(*) from $1" 2>/dev/null || echo 0; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$host/status"; }
fds() { ls "/proc/$host/fd" | wc -l; }
rpc_count() {
  curl -s -X POST "http://127.0.0.1:$http/RPC" -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":$2,\"id\":1}" |
    python3 -c 'import json,sys; r=json.load(sys.stdin).get("result"); print(len(r) if isinstance(r, list) else len(r.get("AoRs", r)) if isinstance(r, dict) else 0)'
}

# Each call lives ~20 s; sipp stops starting calls at the end and lets the running ones finish.
calls=$((secs * rate))
for s in publish register subscribe; do
  (cd "$dir" && sipp -sf "$OLDPWD/bench/sipp/soak_$s.xml" -r "$rate" -m "$calls" -l $((rate * 40)) \
     -i 127.0.0.1 -p "$(free_port)" -nostdin -timeout "$((secs + 120))s" -recv_timeout 10000 \
     -buff_size 4194304 -trace_stat -stf "$dir/$s.csv" -fd 5 -trace_err -error_file "$dir/$s.err" \
     "127.0.0.1:$port" >/dev/null 2>&1) &
  pids+=($!)
  sipps+=($!)
done

# The load reaches its steady state once the first calls have ended and their records expired
# (20 s of refreshes, Expires 12, an expiry pass every 5 s): 45 s at least.
warm=$((secs / 3 > 45 ? secs / 3 : 45))
start=$(date +%s)
: >"$dir/samples"
while true; do
  now=$(($(date +%s) - start))
  alive=0
  for p in "${sipps[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 1 ] || break
  kill -0 "$host" 2>/dev/null || { echo "soak: FAILED: the host died" >&2; tail -20 "$dir/host.log" >&2; exit 1; }
  # Sampled until the last calls start (the load stops ramping down after that).
  if [ "$now" -le "$secs" ]; then
    echo "$now $(rss) $(fds) $(rows presentity) $(rows active_watchers) $(rows location)" >>"$dir/samples"
  fi
  sleep 5
done
for p in "${sipps[@]}"; do wait "$p" || true; done
end_load=$(($(date +%s) - start))

failed=0
check() { if [ "$1" = ok ]; then echo "  ok   $2"; else echo "  FAIL $2"; failed=1; fi; }

echo "soak: ${secs}s at $rate new calls/s per scenario (publish, subscribe, register), load ended at ${end_load}s"
for s in publish subscribe register; do
  read -r ok bad _ _ < <(sipp_summary "$dir/$s.csv")
  check "$([ "$bad" = 0 ] && [ "$ok" -gt 0 ] && echo ok)" "$s: $ok calls ok, $bad failed (a failed call: a refreshed record was gone, or no answer)"
  [ "$bad" = 0 ] || head -5 "$dir/$s.err" 2>/dev/null | sed 's/^/       /'
done
python3 - "$dir/samples" "$warm" >"$dir/verdict" <<'PY' || true
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
warm = int(sys.argv[2])
post = [r for r in rows if r[0] >= warm]
if len(post) < 3:
    print("FAIL too few samples after the warm-up"); sys.exit()
third = max(1, len(post) // 3)
# Highest RSS of the first third after the warm-up against the highest of the last third:
# single samples move with the allocator's arenas.
rss0, rss1 = max(r[1] for r in post[:third]), max(r[1] for r in post[-third:])
growth = (rss1 - rss0) * 100.0 / rss0
print(("ok" if growth < 5 else "FAIL"), f"RSS {rss0} kB after the warm-up ({post[0][0]}s on), {rss1} kB at the end (to {post[-1][0]}s): {growth:+.1f}% (limit +5%)")
f = [r[2] for r in post]
print(("ok" if max(f) - min(f) <= 8 else "FAIL"), f"open files {min(f)}..{max(f)} after the warm-up")
for i, name in [(3, "presentity"), (4, "active_watchers"), (5, "location")]:
    a = sum(r[i] for r in post[:third]) / third
    b = sum(r[i] for r in post[-third:]) / third
    ok = b <= a * 1.25 + 10 and b >= a * 0.75 - 10 and a > 0
    print(("ok" if ok else "FAIL"), f"{name} rows: mean {a:.0f} early, {b:.0f} late (max {max(r[i] for r in post)})")
PY
while read -r verdict text; do check "$([ "$verdict" = ok ] && echo ok)" "$text"; done <"$dir/verdict"

# Everything expires: Expires 12, clean_period / timer_interval 5.
sleep 30
p=$(rows presentity) w=$(rows active_watchers) l=$(rows location)
rp=$(rpc_count presence.presentity_list '[]')
check "$([ "$p$w$l$rp" = 0000 ] && echo ok)" "30 s after the load: presentity $p, active_watchers $w, location $l rows; presence.presentity_list $rp"
kill -0 "$host" 2>/dev/null || { echo "  FAIL the host died" ; failed=1; }
echo "  host CPU $(cpu "$host") s, final RSS $(rss) kB"
exit $failed
