#!/usr/bin/env bash
# pua_mi: `pua.publish` over HTTP with keep-alive, puahost (pua + pua_mi) side by side with
# Kamailio 5.6 (pua + pua_rpc, jsonrpcs over xhttp) in the same run, with the same client and
# the same presence server.
#   bench/pua_mi.sh [SECONDS] [CONNECTIONS] [SERVER]
#     defaults 10, 64 and "fast"; build first: cargo build --workspace --release
#     SERVER fast:     the repo's sipload in `serve` mode (200 with SIP-ETag at once)
#     SERVER kamailio: Kamailio's presence server (presence + presence_xml, SQLite, one SIP
#                      worker: its db_sqlite has no busy timeout), tests/kamailio/presence.cfg
# The client is wrk (2 threads) with a Lua script: each request publishes a new presentity
# (sip:<side><thread>.<n>@bench.test, PIDF body, expires "3600"), so every request is one
# PUBLISH and one stored record; replies without a SIP-ETag are counted. Both sides use pua's
# db_mode 0 (memory, SQLite write-back), hash_size 16, 4 SIP workers (Kamailio also 4 TCP
# workers for HTTP). CPU is user+sys of the whole process (Kamailio: all its processes).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
server=${3:-fast}
source bench/lib.sh
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
need_kamailio pua_rpc.so

# The presence server both sides publish to.
srv=$(free_port)
case "$server" in
  fast)
    "$load" serve "$srv" & pids+=($!)
    ;;
  kamailio)
    kamailio_db "$dir/presence.sqlite"
    sed -e "s|@PORT@|$srv|g" -e "s|@DB@|$dir/presence.sqlite|g" -e "s|@MODULES@|$modules|g" \
        -e "s|@EXTRA@||" -e 's|^children=2|children=1|' -e 's|^debug=2|debug=1|' \
        tests/kamailio/presence.cfg >"$dir/presence.cfg"
    "$kamailio" -f "$dir/presence.cfg" -DD -E -Y "$dir" -m 256 -M 16 >"$dir/presence.log" 2>&1 & pids+=($!)
    wait_port "$srv" || { cat "$dir/presence.log"; exit 1; }
    ;;
  *) echo "SERVER is fast or kamailio" >&2; exit 1 ;;
esac

# puahost: pua + pua_mi.
sip=$(free_port); http=$(free_port)
cat >"$dir/puahost.toml" <<CFG
loadmodule = ["pua", "pua_mi"]
[core]
listen = ["udp:127.0.0.1:$sip"]
children = 4
log_level = "warn"
modules_path = ["$PWD/target/release"]
[rpc]
http = "127.0.0.1:$http"
[modparam.pua]
db_url = "sqlite://$dir/puahost.sqlite"
db_mode = 0
hash_size = 16
outbound_proxy = "sip:127.0.0.1:$srv"
CFG

# Kamailio: pua + pua_rpc, JSON-RPC over xhttp on a TCP listen port.
ksip=$(free_port); khttp=$(free_port)
kamailio_db "$dir/kamailio.sqlite"
cat >"$dir/kamailio.cfg" <<CFG
#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=4
tcp_children=4
disable_sctp=yes
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
dns_try_naptr=no
tcp_accept_no_cl=yes
listen=udp:127.0.0.1:$ksip
listen=tcp:127.0.0.1:$khttp
mpath="$modules"
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
loadmodule "db_sqlite.so"
loadmodule "pua.so"
loadmodule "pua_rpc.so"
modparam("jsonrpcs", "transport", 1)
modparam("jsonrpcs", "pretty_format", 0)
modparam("pua", "db_url", "sqlite://$dir/kamailio.sqlite")
modparam("pua", "db_mode", 0)
modparam("pua", "hash_size", 16)
modparam("pua", "outbound_proxy", "sip:127.0.0.1:$srv")
request_route {
	sl_send_reply("404", "Not here");
}
event_route[xhttp:request] {
	jsonrpc_dispatch();
}
CFG

cat >"$dir/publish.lua" <<'LUA'
-- One pua.publish per request, each for a new presentity; replies without a SIP-ETag counted.
local threads = {}
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end
function init(args)
  side = args[1]
  n = 0
  bad = 0
end
local pidf = "<?xml version='1.0' encoding='UTF-8'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:bench@bench.test'><tuple id='t1'><status><basic>open</basic></status><note>bench</note></tuple></presence>"
function request()
  n = n + 1
  local body = string.format(
    '{"jsonrpc":"2.0","method":"pua.publish","params":["sip:%s%d.%d@bench.test","3600","presence",".",".",".",".",".","%s"],"id":%d}',
    side, tid, n, pidf, n)
  return wrk.format("POST", "/RPC", { ["Content-Type"] = "application/json" }, body)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "SIP-ETag", 1, true) then
    bad = bad + 1
    if bad == 1 then io.stderr:write("first bad reply: " .. status .. " " .. body .. "\n") end
  end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("replies without SIP-ETag: %d\n", b))
end
LUA

# run NAME PID PORT SIDE: wrk against one side; prints rate, latency and CPU per publish.
run() {
  local name=$1 pid=$2 port=$3 side=$4 c0 c1 out rate
  c0=$(cpu_tree "$pid")
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$dir/publish.lua" "http://127.0.0.1:$port/RPC" -- "$side" 2>&1)
  c1=$(cpu_tree "$pid")
  rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  echo "== $name: pua.publish over HTTP, $conns connections, ${secs} s"
  grep -E "requests in|Latency  |50%|99%|Non-2xx|Socket errors|without SIP-ETag|first bad" <<<"$out" | sed 's/^/   /'
  python3 -c "r=$rate; c=$c1-$c0; print(f'   {r:,.0f} publishes/s; CPU {c:.2f} s = {1e6*c/(r*$secs):.0f} us per publish')"
  echo "$rate" >"$dir/rate.$side"
}

"$bin" run -c "$dir/puahost.toml" >"$dir/puahost.log" 2>&1 & host=$!; pids+=($host)
wait_port "$http" || { cat "$dir/puahost.log"; exit 1; }
"$kamailio" -f "$dir/kamailio.cfg" -DD -E -Y "$dir" -m 512 -M 32 >"$dir/kamailio.log" 2>&1 & kam=$!; pids+=($kam)
wait_port "$khttp" || { cat "$dir/kamailio.log"; exit 1; }
sleep 1

echo "presence server: $server"
run "puahost (pua + pua_mi)" "$host" "$http" p
run "Kamailio $("$kamailio" -v | awk 'NR==1 {print $3}') (pua + pua_rpc)" "$kam" "$khttp" k
python3 -c "print(f'== puahost / Kamailio: {$(cat "$dir/rate.p")/$(cat "$dir/rate.k"):.2f}x')"
grep -E 'WARN|ERROR' "$dir/puahost.log" | head -3 || true
grep -E 'ERROR' "$dir/kamailio.log" | head -3 || true
