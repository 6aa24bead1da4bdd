# Shared by the bench scripts (sourced, from the repository root): binaries, a scratch
# directory, free ports, CPU of a process, and cleanup of what was started.
# The build's release dir: $CARGO_TARGET_DIR/release when set, else target/release.
release=$(realpath -m "${CARGO_TARGET_DIR:-target}/release")
bin=$release/puahost
load=$release/sipload
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
# utime+stime of a process in seconds, from /proc (clock ticks, 10 ms resolution).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# Kamailio (Debian's packages), for the side-by-side benchmarks.
kamailio=${KAMAILIO:-/usr/sbin/kamailio}
modules=/usr/lib/x86_64-linux-gnu/kamailio/modules
scripts=/usr/share/kamailio/db_sqlite
need_kamailio() {
  [ -x "$kamailio" ] && [ -f "$modules/$1" ] || {
    echo "Kamailio with $1 is missing: apt-get install kamailio kamailio-presence-modules kamailio-sqlite-modules" >&2
    exit 1
  }
}
# A SQLite database with Kamailio's standard and presence tables (its pua table included).
kamailio_db() {
  python3 - "$1" "$scripts/standard-create.sql" "$scripts/presence-create.sql" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
for f in sys.argv[2:]:
    c.executescript(open(f).read())
c.commit()
PY
}
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# CPU seconds of a process and its children (Kamailio forks its workers from the main process).
cpu_tree() {
  local sum=0 p
  for p in "$1" $(pgrep -P "$1" || true); do sum=$(python3 -c "print($sum + $(cpu "$p" 2>/dev/null || echo 0))"); done
  echo "$sum"
}
# sipp's last statistics line (-trace_stat -stf FILE) as "ok failed elapsed rate".
sipp_summary() {
  python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
get = lambda k: last[head.index(k)]
print(get('SuccessfulCall(C)'), get('FailedCall(C)'), get('ElapsedTime(C)'), get('CallRate(C)'))
PY
}
