#!/usr/bin/env bash
# Busy lamp field through the proxy, side by side in the same run, same sipp scenarios
# (bench/sipp/blf_caller.xml, blf_callee.xml), same fixed call rate:
#   bench/blf.sh [SECONDS] [RATE] [HOLD_MS] [CALLEES]
#   (defaults 10 s, 100 calls/s, 1000 ms, 100 callees; build first; CARGO_TARGET_DIR honoured)
# Each call: INVITE / 100 / 180 / 200 / ACK / (hold) / BYE / 200 from a sipp UAC (a caller
# sip:caller<n>@sip.test per call) through the server to a sipp UAS registered (REGISTER before
# the run) as sip:callee0@sip.test ... sip:callee<CALLEES-1>@sip.test, called in turn; the UAS
# rings for 50 ms before it answers. Servers:
#   1. puahost, configs/blf.toml (usrloc, registrar, dialog, pua, pua_dialoginfo, presence,
#      presence_dialoginfo; presence in memory), 2 UDP workers;
#   2. the same with pua_dialoginfo not loaded (dialog tracking only, nothing published);
#   3. Kamailio 5.6 from Debian (bench/kamailio-blf.cfg): the same modules and routing, 2
#      children, presence publ_cache=2 (memory), pua db_mode 0;
#   4. the same Kamailio with pua_dialoginfo not loaded.
# With pua_dialoginfo on, every call makes 7 PUBLISHes (caller trying/early/confirmed/
# terminated, callee early/confirmed/terminated) that the server sends to itself and answers.
# Reported per server: calls completed and failed, calls/s, server CPU (Kamailio: all its
# processes) per call, p99 of the INVITE's time to its 200; last, the ratio of puahost's CPU per
# call with pua_dialoginfo to Kamailio's (the issue's target: at most 0.50). Both log at
# warning level or less.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rate=${2:-100}
hold=${3:-1000}
callees=${4:-100}
source bench/lib.sh
need_kamailio pua_dialoginfo.so
need_kamailio presence_dialoginfo.so
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }

# puahost_blf NAME MODULES_SED: configs/blf.toml on free ports (modules list edited by the sed
# expression); prints "pid port".
puahost_blf() {
  local name=$1 edit=$2 port http
  port=$(free_port); http=$(free_port)
  sed -e "s|127.0.0.1:5060|127.0.0.1:$port|g" -e "s|127.0.0.1:5080|127.0.0.1:$http|" \
      -e 's|^alias = .*|alias = ["sip.test"]|' -e 's|^log_level = .*|log_level = "warn"|' \
      -e "s|^\[core\]|[core]\nmodules_path = [\"$release\"]\nudp_workers = 2|" \
      -e '/^db_url = "sqlite:\/\/blf.sqlite"/d' -e "$edit" configs/blf.toml >"$dir/$name.toml"
  "$bin" run -c "$dir/$name.toml" >"$dir/$name.log" 2>&1 &
  local pid=$!
  wait_port "$http" || { cat "$dir/$name.log" >&2; exit 1; }
  echo "$pid $port"
}

# kamailio_blf NAME [SED]: bench/kamailio-blf.cfg on a free port (edited by SED); prints
# "pid port".
kamailio_blf() {
  local name=$1 edit=${2:-} port
  port=$(free_port)
  kamailio_db "$dir/$name.sqlite"
  sed -e "s|@PORT@|$port|g" -e "s|@DB@|$dir/$name.sqlite|g" -e "s|@MODULES@|$modules|g" -e "$edit" \
      bench/kamailio-blf.cfg >"$dir/$name.cfg"
  "$kamailio" -f "$dir/$name.cfg" -DD -E -Y "$dir" -m 1024 -M 32 >"$dir/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do pgrep -P "$pid" >/dev/null && sleep 0.5 && break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null || { cat "$dir/$name.log" >&2; exit 1; }
  echo "$pid $port"
}

# register PORT UAS_PORT: REGISTERs sip:callee<i>@sip.test (i < CALLEES) with Contact
# 127.0.0.1:UAS_PORT, sent from UAS_PORT (the registrar may keep the source address) before
# sipp takes that port; writes the callees' names for sipp's -inf.
register() {
  python3 - "$1" "$2" "$callees" "$dir/callees.csv" <<'PY'
import socket, sys
server, uas, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", uas)); s.settimeout(3)
for i in range(n):
    msg = (f"REGISTER sip:sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uas};branch=z9hG4bK-bench-{uas}-{i};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:callee{i}@sip.test>;tag=b{uas}\r\nTo: <sip:callee{i}@sip.test>\r\n"
           f"Call-ID: bench-reg-{uas}-{i}\r\nCSeq: 1 REGISTER\r\nContact: <sip:callee{i}@127.0.0.1:{uas}>\r\n"
           f"Expires: 3600\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), ("127.0.0.1", server))
    r = s.recv(65535).decode(errors="replace")
    if not r.startswith("SIP/2.0 200"):
        sys.exit("REGISTER failed: " + r.splitlines()[0])
open(sys.argv[4], "w").write("SEQUENTIAL\n" + "".join(f"callee{i};\n" for i in range(n)))
PY
}

# calls LABEL PID PORT: the UAS registered, then the UAC at RATE for SECONDS; one result line.
calls() {
  local label=$1 pid=$2 port=$3 uport c0 c1 ok failed elapsed got p99
  uport=$(free_port)
  register "$port" "$uport"
  (cd "$dir" && sipp -sf "$OLDPWD/bench/sipp/blf_callee.xml" -i 127.0.0.1 -p "$uport" -d 50 -buff_size 4194304 \
      -nostdin -bg >/dev/null 2>&1) || true
  sleep 0.3
  local upid
  upid=$(pgrep -f "blf_callee.xml -i 127.0.0.1 -p $uport" | head -1 || true)
  [ -n "$upid" ] && pids+=("$upid")
  rm -f "$dir/stat.csv" "$dir"/*_rtt.csv
  c0=$(cpu_tree "$pid")
  (cd "$dir" && sipp -sf "$OLDPWD/bench/sipp/blf_caller.xml" -r "$rate" -m $((secs * rate)) -l $((rate * 4)) \
       -d "$hold" -inf "$dir/callees.csv" -i 127.0.0.1 -p "$(free_port)" -nostdin -timeout "$((secs * 3 + hold / 1000 + 10))s" \
       -recv_timeout 10000 -buff_size 4194304 -trace_stat -stf "$dir/stat.csv" -trace_rtt -rtt_freq 100 \
       -fd 1 "127.0.0.1:$port" >/dev/null 2>&1) || true
  c1=$(cpu_tree "$pid")
  [ -n "$upid" ] && kill "$upid" 2>/dev/null || true
  read -r ok failed elapsed got < <(sipp_summary "$dir/stat.csv")
  p99=$(python3 -c "
import glob
v = sorted(float(l.split(';')[1]) for f in glob.glob('$dir/*_rtt.csv') for l in open(f) if l[:1].isdigit())
print(v[int(len(v) * 0.99)] if v else 'n/a')")
  python3 -c "ok,f,c=$ok,$failed,$c1-$c0; print(f'   {\"$label\":34} {ok:>6} ok {f:>5} failed  {float(\"$got\"):>6.0f} calls/s  CPU {c:6.2f} s = {1e6*c/max(ok,1):7.1f} us per call  p99 INVITE->200 $p99 ms')"
  python3 -c "print(1e6*($c1-$c0)/max($ok,1))" >"$dir/$2.us"
}

echo "== calls through the proxy, $rate calls/s for ${secs} s, held ${hold} ms"
read -r ppid pport < <(puahost_blf blf '')
pids+=("$ppid")
calls "puahost, pua_dialoginfo on" "$ppid" "$pport"
ppid_on=$ppid
published=$(curl -s "http://127.0.0.1:$(sed -n 's|^http = "127.0.0.1:\([0-9]*\)"|\1|p' "$dir/blf.toml")/RPC" \
  -d '{"jsonrpc":"2.0","method":"presence.presentity_list","id":1}' | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("result", [])))' || echo "?")
echo "   (puahost presence.presentity_list entries after the run: $published; terminated ones expire after 10 s)"
kill "$ppid"
read -r ppid pport < <(puahost_blf nopub 's|"pua_dialoginfo", ||; /^\[modparam.pua_dialoginfo\]/,/^$/d')
pids+=("$ppid")
calls "puahost, pua_dialoginfo off" "$ppid" "$pport"
kill "$ppid"
read -r kpid kport < <(kamailio_blf kam)
pids+=("$kpid")
calls "Kamailio 5.6, pua_dialoginfo on" "$kpid" "$kport"
grep "ERROR" "$dir/kam.log" | sort | uniq -c | sort -rn | head -5 | sed "s/^/   Kamailio: /" || true
kill "$kpid"
read -r k2pid k2port < <(kamailio_blf kamnopub '/pua_dialoginfo/d')
pids+=("$k2pid")
calls "Kamailio 5.6, pua_dialoginfo off" "$k2pid" "$k2port"
kill "$k2pid"
python3 -c "p=float(open('$dir/$ppid_on.us').read()); k=float(open('$dir/$kpid.us').read()); print(f'   puahost with pua_dialoginfo uses {p/k:.2f} of Kamailio\'s CPU per call (target: at most 0.50)')"
