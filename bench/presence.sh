#!/usr/bin/env bash
# The presence server side by side with Kamailio 5.6's (presence + presence_xml), in the same
# run, with the same sipp scenarios (bench/sipp/), at the same fixed rate:
#   bench/presence.sh [SECONDS] [RATE] [HIGH_RATE] [TOP_RATE]
#   (defaults 10, 4000, 12000 and 25000; build first)
# Runs, each against both servers, one after the other:
#   1. PUBLISH, memory mode (Kamailio publ_cache=2, subs_db_mode=0, 2 children; puahost with
#      no db_url), at RATE and then at HIGH_RATE; then at TOP_RATE against both and against
#      sipp answering itself (the generator's ceiling on this machine);
#   2. PUBLISH with SQLite (Kamailio publ_cache=1, 1 child: its db_sqlite has no busy timeout;
#      puahost publ_cache=1, write-through), at RATE;
#   3. SUBSCRIBE + NOTIFY with SQLite (subs_db_mode=1, write-through on both), at RATE / 4.
# Each PUBLISH is a new presentity, each SUBSCRIBE a new watcher. Reported: calls that got their
# 200 (and, for SUBSCRIBE, whose NOTIFY came), failures, and the server's CPU per request
# (Kamailio: all its processes). SQLite: both files are WAL with synchronous FULL (Kamailio's
# db_sqlite cannot change SQLite's default FULL; puahost is told so with ?synchronous=full), so
# every reply waits for an fsync'd commit on both. puahost runs 16 UDP receivers in the SQLite
# runs (threads are cheap; more writers waiting means bigger group commits).
# Both servers log at warning level or less.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rate=${2:-4000}
high=${3:-12000}
top=${4:-25000}
source bench/lib.sh
need_kamailio presence_xml.so
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }

# kamailio_server NAME CHILDREN EXTRA: a Kamailio presence server; prints "pid port".
kamailio_server() {
  local name=$1 children=$2 extra=$3 port
  port=$(free_port)
  kamailio_db "$dir/$name.sqlite"
  sed -e "s|@PORT@|$port|g" -e "s|@DB@|$dir/$name.sqlite|g" -e "s|@MODULES@|$modules|g" \
      -e "s|@EXTRA@|$extra|" -e "s|^children=2|children=$children|" -e 's|^debug=2|debug=1|' \
      tests/kamailio/presence.cfg >"$dir/$name.cfg"
  "$kamailio" -f "$dir/$name.cfg" -DD -E -Y "$dir" -m 1024 -M 32 >"$dir/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port" || { cat "$dir/$name.log" >&2; exit 1; }
  echo "$! $port"
}

# puahost_server NAME PRESENCE-MODPARAMS [UDP_WORKERS]: a puahost presence server; prints
# "pid port http".
puahost_server() {
  local name=$1 params=$2 workers=${3:-2} port http
  port=$(free_port); http=$(free_port)
  cat >"$dir/$name.toml" <<CFG
loadmodule = ["presence", "presence_xml"]
[core]
listen = ["udp:127.0.0.1:$port"]
children = 2
udp_workers = $workers
log_level = "warn"
modules_path = ["$PWD/target/release"]
[rpc]
http = "127.0.0.1:$http"
[modparam.presence]
$params
[modparam.presence_xml]
force_active = 1
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
[[route]]
method = "SUBSCRIBE"
do = ["handle_subscribe()"]
CFG
  "$bin" run -c "$dir/$name.toml" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q ' ready modules=' "$dir/$name.log" && break; sleep 0.1; done
  echo "$! $port $http"
}

# load LABEL PID PORT SCENARIO RATE: sipp at RATE for SECONDS; one result line. sipp's socket
# buffers are 4 MiB (its default 64 KiB drops datagrams above ~10,000/s, which would count as
# the server's failures); p99 is the response time of the first request of each call.
load() {
  local label=$1 pid=$2 port=$3 scenario=$4 r=$5 c0 c1 ok failed elapsed got p99
  rm -f "$dir/stat.csv" "$dir"/*_rtt.csv
  c0=$(cpu_tree "$pid")
  (cd "$dir" && sipp -sf "$OLDPWD/bench/sipp/$scenario.xml" -r "$r" -rp 1000 -m $((secs * r)) -l $((r * 2)) \
       -i 127.0.0.1 -p "$(free_port)" -nostdin -timeout "$((secs * 3))s" -recv_timeout 5000 -buff_size 4194304 \
       -trace_stat -stf "$dir/stat.csv" -trace_rtt -rtt_freq 10000 -fd 1 "127.0.0.1:$port" >/dev/null 2>&1) || true
  c1=$(cpu_tree "$pid")
  read -r ok failed elapsed got < <(sipp_summary "$dir/stat.csv")
  p99=$(python3 -c "
import glob
v = sorted(float(l.split(';')[1]) for f in glob.glob('$dir/*_rtt.csv') for l in open(f) if l[:1].isdigit())
print(v[int(len(v) * 0.99)] if v else 'n/a')")
  if [ "$pid" = 0 ]; then
    python3 -c "print(f'   {\"$label\":34} {$ok:>7} ok {$failed:>6} failed  {float(\"$got\"):>8.0f}/s  p99 $p99 ms')"
    return
  fi
  python3 -c "ok,f,c=$ok,$failed,$c1-$c0; print(f'   {\"$label\":34} {ok:>7} ok {f:>6} failed  {float(\"$got\"):>8.0f}/s  CPU {c:6.2f} s = {1e6*c/max(ok,1):6.1f} us per request  p99 $p99 ms')"
}

echo "== 1. PUBLISH, memory mode, $rate/s then $high/s, ${secs} s each"
# ctl gives kamcmd a socket to read Kamailio's shared memory (where its presentities live).
read -r kpid kport < <(kamailio_server mem 2 "modparam(\"presence\", \"publ_cache\", 2) modparam(\"presence\", \"subs_db_mode\", 0) loadmodule \"ctl.so\" modparam(\"ctl\", \"binrpc\", \"unix:$dir/kam.ctl\")")
read -r ppid pport _ < <(puahost_server mem "")
pids+=("$kpid" "$ppid")   # started in process substitutions: their own pids+=() was lost
shm_used() { kamcmd -s "unix:$dir/kam.ctl" core.shmmem 2>/dev/null | awk '$1=="used:" {print $2}'; }
kshm0=$(shm_used)
load "puahost    $rate/s" "$ppid" "$pport" presence_publish "$rate"
load "Kamailio   $rate/s" "$kpid" "$kport" presence_publish "$rate"
load "puahost    $high/s" "$ppid" "$pport" presence_publish "$high"
load "Kamailio   $high/s" "$kpid" "$kport" presence_publish "$high"
# Completed UDP transactions live 64*T1 = 32 s after their reply (RFC 3261 timer J): wait them
# out, so the heap holds the presentities and not the last 32 s of transactions.
sleep 35
heap=$(curl -s "http://127.0.0.1:$(awk -F'"' '/^http/ {print $2}' "$dir/mem.toml" | cut -d: -f2)/metrics" | awk '$1=="puahost_heap_allocated_bytes" {print $2}')
n=$(( secs * (rate + high) ))
python3 -c "print(f'   puahost heap after the runs: {$heap/2**20:.0f} MiB for about {$n} presentities ({$heap/$n:.0f} bytes each, whole process)')"
kshm1=$(shm_used)
[ -n "$kshm0" ] && [ -n "$kshm1" ] && python3 -c "d=$kshm1-$kshm0; print(f'   Kamailio shared memory used by the runs: {d/2**20:.0f} MiB for about {$n} presentities ({d/$n:.0f} bytes each)')"
echo "== 1b. PUBLISH, memory mode, offered $top/s: the highest rate each sustains, and the load generator's own ceiling (sipp answering itself)"
load "puahost    $top/s" "$ppid" "$pport" presence_publish "$top"
load "Kamailio   $top/s" "$kpid" "$kport" presence_publish "$top"
uport=$(free_port)
# -bg: sipp forks to the background, says "PID=[n]", and exits non-zero doing so.
upid=$( (cd "$dir" && sipp -sf "$OLDPWD/bench/sipp/publish_uas.xml" -i 127.0.0.1 -p "$uport" -buff_size 4194304 \
        -nostdin -bg 2>&1) | grep -o 'PID=\[[0-9]*' | grep -o '[0-9]*$' || true)
[ -n "$upid" ] && pids+=("$upid")
sleep 0.5
load "sipp UAS   $top/s" 0 "$uport" presence_publish "$top"
kill "$kpid" "$ppid" ${upid:+"$upid"}

echo "== 2. PUBLISH with SQLite, $rate/s, ${secs} s"
read -r kpid kport < <(kamailio_server sql 1 '')
read -r ppid pport _ < <(puahost_server sql "db_url = \"sqlite://$dir/puahost.sqlite?synchronous=full\"
publ_cache = 1
subs_db_mode = 1" 16)
pids+=("$kpid" "$ppid")
load "puahost    $rate/s" "$ppid" "$pport" presence_publish "$rate"
load "Kamailio   $rate/s" "$kpid" "$kport" presence_publish "$rate"

sub=$(( rate / 4 ))
echo "== 3. SUBSCRIBE + NOTIFY with SQLite, $sub/s, ${secs} s"
load "puahost    $sub/s" "$ppid" "$pport" presence_subscribe "$sub"
load "Kamailio   $sub/s" "$kpid" "$kport" presence_subscribe "$sub"
kill "$kpid" "$ppid"
