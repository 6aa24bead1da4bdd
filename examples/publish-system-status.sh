#!/usr/bin/env bash
# Publishes this machine's CPU load and memory use as the presence of sip:system@DOMAIN (the
# PIDF <note>, basic "open"), every INTERVAL seconds, through puahost's pua_mi, using nothing
# but `puahost rpc` (as pua_mi's documentation suggests for non-SIP state). Ctrl-C removes
# the publication (expires 0) before exiting.
#
#   examples/publish-system-status.sh [-d DOMAIN] [-i INTERVAL] [-n COUNT] [-- RPC-OPTIONS...]
#
#   -d DOMAIN     the presentity's domain (default: this host's name)
#   -i INTERVAL   seconds between publishes (default 30); each publication lives 3 intervals
#   -n COUNT      stop after COUNT publishes (default: run until interrupted); the last one
#                 stays until it expires
#   RPC-OPTIONS   how to reach puahost, passed to `puahost rpc`: --url URL, --fifo PATH or
#                 -c CONFIG (default: http://127.0.0.1:5080/RPC)
#
# The puahost binary: $PUAHOST, else `puahost` on PATH, else target/release/puahost.
set -euo pipefail
domain=$(hostname)
interval=30
count=0
while [ $# -gt 0 ]; do
  case "$1" in
    -d) domain=$2; shift 2 ;;
    -i) interval=$2; shift 2 ;;
    -n) count=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
rpc_opts=("$@")
puahost=${PUAHOST:-$(command -v puahost || echo "$(dirname "$0")/../target/release/puahost")}
uri="sip:system@$domain"

status_note() {
  local load mem_total mem_avail
  read -r load _ < /proc/loadavg
  mem_total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  mem_avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  echo "load $load, memory $(( (mem_total - mem_avail) * 100 / mem_total ))% used"
}

publish() { # expires [body]
  local args=(pua.publish --uri "$uri" --id system-status --expires "$1")
  [ $# -gt 1 ] && args+=(--body "$2")
  "$puahost" rpc "${rpc_opts[@]}" "${args[@]}"
}

remove() { publish 0 >/dev/null || true; }
trap 'remove; exit 0' INT TERM

n=0
while :; do
  note=$(status_note)
  body="<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"$uri\"><tuple id=\"status\"><status><basic>open</basic></status><note>$note</note></tuple></presence>"
  if out=$(publish $((interval * 3)) "$body"); then
    echo "$(date '+%H:%M:%S') $uri: $note ($out)"
  else
    echo "$(date '+%H:%M:%S') publish failed: $out" >&2
  fi
  n=$((n + 1))
  if [ "$count" -gt 0 ] && [ "$n" -ge "$count" ]; then
    exit 0
  fi
  sleep "$interval"
done
