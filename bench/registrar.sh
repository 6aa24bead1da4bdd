#!/usr/bin/env bash
# REGISTER with pua_usrloc on one host (usrloc in memory, pua on SQLite, presence in memory):
#   bench/registrar.sh [COUNT] [RATE] [HOLD]    (defaults 100000, 4000 and 150; build first)
# 1. sipp registers COUNT new users at RATE (tests/sipp/register_load.xml, Expires 3600); each
#    REGISTER makes pua_usrloc PUBLISH `open` to this same host. Reported: REGISTERs answered,
#    failures, host CPU per REGISTER (its PUBLISH, the PUBLISH's processing and the replies
#    included).
# 2. The presence server grants 60 s (max_expires), so pua must refresh every publication each
#    minute (update_period 20 s); after HOLD seconds: refreshes sent, late, failed, expired,
#    publications held, and the heap per registered contact.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
rate=${2:-4000}
hold=${3:-150}
source bench/lib.sh
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }

port=$(free_port); http=$(free_port)
cat >"$dir/reg.toml" <<CFG
loadmodule = ["usrloc", "registrar", "pua", "pua_usrloc", "presence", "presence_xml"]
[core]
listen = ["udp:127.0.0.1:$port"]
children = 2
log_level = "warn"
modules_path = ["$PWD/target/release"]
[rpc]
http = "127.0.0.1:$http"
[modparam.usrloc]
db_mode = 0
[modparam.pua]
db_url = "sqlite://pua.sqlite"
outbound_proxy = "sip:127.0.0.1:$port"
update_period = 20
[modparam.pua_usrloc]
default_domain = "sip.test"
[modparam.presence]
max_expires = 60
[modparam.presence_xml]
force_active = 1
[[route]]
method = "REGISTER"
do = ["pua_set_publish()", "save(\"location\")"]
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
CFG
"$bin" run -c "$dir/reg.toml" >"$dir/reg.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do grep -q ' ready modules=' "$dir/reg.log" && break; sleep 0.1; done
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="puahost_$1" '$1==m {print $2}'; }

c0=$(cpu "$pid")
sipp -sf tests/sipp/register_load.xml -buff_size 4194304 -r "$rate" -rp 1000 -m "$count" -l $((rate * 5)) \
     -i 127.0.0.1 -p "$(free_port)" -nostdin -timeout "$((count / rate * 3 + 30))s" -recv_timeout 5000 \
     -trace_stat -stf "$dir/stat.csv" -fd 1 "127.0.0.1:$port" >/dev/null 2>&1 || true
c1=$(cpu "$pid")
read -r ok failed _ got < <(sipp_summary "$dir/stat.csv")
python3 -c "ok,f,c=$ok,$failed,$c1-$c0; print(f'== REGISTER at $rate/s: {ok} ok, {f} failed, {float(\"$got\"):.0f}/s, host CPU {c:.2f} s = {1e6*c/max(ok,1):.0f} us per REGISTER')"

echo "== holding for ${hold} s (publications granted 60 s, pua refreshes them)"
sleep "$hold"
heap=$(metric heap_allocated_bytes)
echo "   pua refreshes $(metric pua_refreshes_total), late $(metric pua_refreshes_late_total), failed replies $(metric pua_replies_failed_total), expired $(metric pua_expired_total), publications held $(metric pua_publications)"
python3 -c "print(f'   heap {$heap/2**20:.0f} MiB = {$heap/max($ok,1):.0f} bytes per registered contact (location, pua record, presentity, live transactions)')"
kill "$pid"
