# Shared by the bench scripts (sourced, from the repository root): binaries, a scratch
# directory, free ports, CPU of a process, and cleanup of what was started.
bin=target/release/puahost
load=target/release/sipload
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
# utime+stime of a process in seconds, from /proc (clock ticks, 10 ms resolution).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
