#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per forwarded request, counted with
# valgrind's callgrind, for one or more proxy builds. See docs/performance.md.
#
# Wall-clock CPU per request on a shared 2-core machine moves by ±10–15% from round to
# round, so a change worth 1–5% cannot be shown with it. The instructions the proxy
# executes per request (its own code, hyper, h2, rustls, glibc's malloc and memcpy; not
# the kernel) repeat to within ~0.1% between runs: this compares builds on that count.
# It is a proxy for user-space CPU, not a time: a saved memcpy or cache miss can be
# worth more than its instruction count, and the kernel's half of the work is not in it.
#
# For each binary: the bench upstream (examples/bench_upstream.rs) and the proxy under
# callgrind, 2 s of wrk to warm up, the counters zeroed, then BENCH_IR_SECONDS of wrk with
# the same tools/call as bench/run.sh; the count is divided by the requests wrk made.
# The proxy runs ~50 times slower under valgrind, so requests batch more than they would
# at full speed: compare builds with each other, not with bench/run.sh's figures.
#
# Usage: bash bench/instructions.sh [BINARY...]   (default: build/release.sh's target/pgo/mcp-vpce-proxy)
# Settings (environment):
#   BENCH_IR_LOADS="32 1"    wrk connections, one count per value
#   BENCH_IR_SECONDS=5       seconds counted per count
#   BENCH_WORKERS=2          proxy --workers
#   BENCH_PORT_BASE=18600    ports BASE..BASE+11 on 127.0.0.1 are used
#   BENCH_INSTALL=1          apt-get install valgrind and wrk when missing (0: only check)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LOADS=${BENCH_IR_LOADS:-32 1}
SECONDS_COUNTED=${BENCH_IR_SECONDS:-5}
WORKERS=${BENCH_WORKERS:-2}
PORT_BASE=${BENCH_PORT_BASE:-18600}
INSTALL=${BENCH_INSTALL:-1}
UPSTREAM_PORT=$PORT_BASE
STATS_PORT=$((PORT_BASE + 1))
PROXY_PORT=$((PORT_BASE + 10))
PROXY_ADMIN_PORT=$((PORT_BASE + 11))
LOG_PREFIX=instructions
# shellcheck source=bench/common.sh
. bench/common.sh

need_packages=()
for tool in valgrind wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || need_packages+=("$tool")
done
install_packages ${need_packages[@]+"${need_packages[@]}"}

BINARIES=("$@")
log "building (release)"
if [ ${#BINARIES[@]} -eq 0 ]; then
    command -v llvm-profdata-19 >/dev/null || install_packages llvm-19
    bash "$ROOT/build/release.sh" >&2
    BINARIES=("$ROOT/target/pgo/mcp-vpce-proxy")
fi
cargo build --release --quiet --example bench_upstream
UPSTREAM_BIN=$ROOT/target/release/examples/bench_upstream

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mcp-vpce-instructions.XXXXXX")
UPSTREAM_PID=
PROXY_PID=
cleanup() {
    stop_pid "$PROXY_PID" 100
    stop_pid "$UPSTREAM_PID"
    wait 2>/dev/null || true
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ports_free $UPSTREAM_PORT $STATS_PORT $PROXY_PORT $PROXY_ADMIN_PORT

"$UPSTREAM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" --stats-listen "127.0.0.1:$STATS_PORT" \
    --gateway "$GATEWAY" --ca-out "$RUN_DIR/ca.pem" --token "$TOKEN" --workers 2 \
    >"$RUN_DIR/upstream.out" 2>"$RUN_DIR/upstream.log" &
UPSTREAM_PID=$!
wait_http "$STATS_PORT" upstream
sed -e "s|@PROXY_PORT@|$PROXY_PORT|; s|@PROXY_ADMIN_PORT@|$PROXY_ADMIN_PORT|" \
    -e "s|@PROXY_MAX_CONNECTIONS@|1024|; s|@GATEWAY@|$GATEWAY|; s|@ENDPOINT@|$ENDPOINT|" \
    -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g; s|@CA_FILE@|$RUN_DIR/ca.pem|" \
    bench/proxy.toml.in >"$RUN_DIR/proxy.toml"

# One count: sets PER_REQUEST and REQUESTS, or fails.
count() {
    local binary=$1 connections=$2 out summary errors
    rm -f "$RUN_DIR"/callgrind.out.*
    valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$RUN_DIR/callgrind.out.%p" \
        "$binary" run --config "$RUN_DIR/proxy.toml" --workers "$WORKERS" --log-level warn \
        >"$RUN_DIR/proxy.out" 2>"$RUN_DIR/proxy.log" &
    PROXY_PID=$!
    wait_http "$PROXY_PORT" "the proxy under valgrind" 1200 # valgrind starts slowly
    wrk -t1 -c"$connections" -d2s -s bench/wrk/post_mcp.lua "http://127.0.0.1:$PROXY_PORT/mcp" >/dev/null
    callgrind_control -z "$PROXY_PID" >/dev/null 2>&1
    out=$(wrk -t1 -c"$connections" -d"${SECONDS_COUNTED}s" -s bench/wrk/post_mcp.lua \
        "http://127.0.0.1:$PROXY_PORT/mcp" | tail -n 1)
    callgrind_control -d "$PROXY_PID" >/dev/null 2>&1
    stop_pid "$PROXY_PID" 100
    PROXY_PID=
    # The dump made after zeroing is part 1 of the profile.
    summary=$(sed -n 's/^summary: //p' "$RUN_DIR"/callgrind.out.*.1 2>/dev/null | head -n 1)
    [ -n "$summary" ] || die "no callgrind dump (logs in $RUN_DIR)"
    REQUESTS=$(printf '%s' "$out" | sed -n 's/.*"units":\([0-9]*\).*/\1/p')
    errors=$(printf '%s' "$out" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p')
    [ "${REQUESTS:-0}" -gt 0 ] || die "wrk made no request: $out"
    [ "${errors:-1}" = 0 ] || die "wrk saw errors: $out"
    PER_REQUEST=$((summary / REQUESTS))
}

printf '%-12s %-40s %22s %10s\n' connections binary instructions/request requests
for connections in $LOADS; do
    for binary in "${BINARIES[@]}"; do
        count "$binary" "$connections"
        printf '%-12s %-40s %22s %10s\n' "$connections" "$(basename "$binary")" "$PER_REQUEST" "$REQUESTS"
    done
done
