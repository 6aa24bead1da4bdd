#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: fuzz/run.sh [SECONDS per target, default 60] [TARGET...]
#
# Seeds come from fuzz/corpus/<target>/ (read only); what libFuzzer finds goes to a scratch
# corpus under $CARGO_TARGET_DIR, crashes to fuzz/artifacts/<target>/. Exits non-zero when a
# target crashed (panic, overflow, out-of-memory, or an input slower than 10 s). Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -u
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(sip_message pidf dialog_info pres_rules jsonrpc config xmpp winfo)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../target/fuzz}
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O || exit 2
failed=0
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/fuzz-work/$t"
    mkdir -p "$work" "artifacts/$t"
    log="$CARGO_TARGET_DIR/fuzz-work/$t.log"
    cargo +nightly fuzz run -O "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "$t: ok, ${runs:-?} executions in ${secs}s, $cov"
    else
        failed=1
        echo "$t: FAILED (rc $rc) after ${runs:-?} executions; see $log and fuzz/artifacts/$t/"
        grep -m5 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/    /'
    fi
done
exit $failed
