#!/usr/bin/env bash
# A presence server and a client, end to end, on free loopback ports, in a scratch directory:
#   1. starts configs/presence-server.toml (presence + presence_xml, embedded SQLite; ports and
#      paths moved to the scratch directory, force_active = 1 so no rules are needed);
#   2. starts a client from configs/pua-mi.toml (pua + pua_mi) whose PUBLISHes go to the server;
#   3. subscribes to sip:alice@127.0.0.1, publishes her presence, prints the NOTIFY the server
#      sent, and the server's view (presence.presentity_list, presence.watcher_list);
#   4. stops both by PID. Exits non-zero if the NOTIFY did not carry the published note.
#
#   examples/presence-demo.sh      (build first: cargo build --workspace --release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PUAHOST:-target/release/puahost}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 30 s until a host answers RPC (its listeners start last); on failure says why on
# stderr. (Its log is at warning level here, so the "ready" line cannot be waited for.)
ready() {
  for _ in $(seq 300); do "$bin" rpc --url "http://127.0.0.1:$2/RPC" core.version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "FAILED: $1 does not answer RPC on port $2:" >&2; cat "$1" >&2; exit 1
}

srv_sip=$(free_port); srv_http=$(free_port); srv_xcap=$(free_port); cli_sip=$(free_port); cli_http=$(free_port)
sed -e "s/127.0.0.1:5060/127.0.0.1:$srv_sip/g" -e "s/127.0.0.1:5080/127.0.0.1:$srv_http/" \
    -e "s/127.0.0.1:5081/127.0.0.1:$srv_xcap/" -e "s|/tmp/puahost_rpc.fifo|$dir/server.fifo|" -e "s/^force_active = 0 /force_active = 1 /" \
    -e 's/^log_level = "info"/log_level = "warn"/' \
    configs/presence-server.toml >"$dir/server.toml"
sed -e "s/127.0.0.1:5060/127.0.0.1:$cli_sip/g" -e "s/127.0.0.1:5080/127.0.0.1:$cli_http/" \
    -e "s|/tmp/puahost_rpc.fifo|$dir/client.fifo|" -e "s/127.0.0.1:5070/127.0.0.1:$srv_sip/" \
    -e 's/^log_level = "info"/log_level = "warn"/' \
    configs/pua-mi.toml >"$dir/client.toml"
echo "== presence server on 127.0.0.1:$srv_sip (RPC http://127.0.0.1:$srv_http/RPC), client on 127.0.0.1:$cli_sip"
"$bin" run -c "$dir/server.toml" >"$dir/server.log" 2>&1 & pids+=($!)
"$bin" run -c "$dir/client.toml" >"$dir/client.log" 2>&1 & pids+=($!)
ready "$dir/server.log" "$srv_http"
ready "$dir/client.log" "$cli_http"

client() { "$bin" rpc --url "http://127.0.0.1:$cli_http/RPC" "$@"; }
server() { "$bin" rpc --url "http://127.0.0.1:$srv_http/RPC" "$@"; }
cat >"$dir/alice.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@127.0.0.1"><tuple id="desk"><status><basic>open</basic></status><note>in the demo</note></tuple></presence>
XML

echo "== pua.subscribe: the client watches sip:alice@127.0.0.1"
client pua.subscribe --uri "sip:alice@127.0.0.1:$srv_sip" --watcher "sip:watcher@127.0.0.1:$cli_sip" --expires 600
echo "== pua.publish: alice's presence"
client pua.publish --uri sip:alice@127.0.0.1 --event presence --body-file "$dir/alice.xml" --expires 600
note=""
for _ in $(seq 50); do
  out=$(client pua.last_notify "sip:alice@127.0.0.1:$srv_sip" 2>/dev/null || true)
  if grep -q "in the demo" <<<"$out"; then note=$out; break; fi
  sleep 0.1
done
echo "== the last NOTIFY the client received (pua.last_notify)"
echo "${note:-$out}"
echo "== the server: presence.presentity_list and presence.watcher_list"
server presence.presentity_list
server presence.watcher_list basic sip:alice@127.0.0.1
[ -n "$note" ] || { echo "FAILED: no NOTIFY with alice's note" >&2; tail -20 "$dir/server.log" "$dir/client.log" >&2; exit 1; }
echo "== demo OK: published, notified, stopping"
