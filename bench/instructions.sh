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
#
# With BENCH_IR_COUNT=upstream the bench upstream is counted instead, while each BINARY
# forwards to it; a BINARY may then be `nginx` (bench/nginx.conf.in, as in bench/run.sh).
# That shows what the forwarder's side of the connection costs the gateway: the proxy
# speaks h2 to it, nginx HTTP/1.1.
# Settings (environment):
#   BENCH_IR_LOADS="32 1"    wrk connections, one count per value
#   BENCH_IR_SECONDS=5       seconds counted per count
#   BENCH_IR_COUNT=proxy     what is counted: proxy (the BINARY) or upstream
#   BENCH_IR_PROFILE_DIR=    keep each count's callgrind profile there, as
#                            <binary>-c<connections>.callgrind (for callgrind_annotate;
#                            a `cargo build --profile profiling` binary has the symbols)
#   BENCH_TOKEN_BYTES=       length of the gateway token (default ~22 bytes; a Cognito
#                            access token is ~1 000)
#   BENCH_WORKERS=2          proxy --workers (nginx worker_processes)
#   BENCH_PORT_BASE=18640    ports BASE..BASE+12 on 127.0.0.1 are used (apart from
#                            build/release.sh's 18610-18613 and run.sh's 18400-18431)
#   BENCH_INSTALL=1          apt-get install valgrind, wrk (and nginx when named) when
#                            missing (0: only check)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LOADS=${BENCH_IR_LOADS:-32 1}
SECONDS_COUNTED=${BENCH_IR_SECONDS:-5}
WORKERS=${BENCH_WORKERS:-2}
PORT_BASE=${BENCH_PORT_BASE:-18640}
INSTALL=${BENCH_INSTALL:-1}
COUNTED=${BENCH_IR_COUNT:-proxy}
case $COUNTED in proxy | upstream) ;; *) echo "BENCH_IR_COUNT: proxy or upstream, not $COUNTED" >&2; exit 2 ;; esac
LOG_PREFIX=instructions
export PATH=$PATH:/usr/sbin:/sbin # nginx
# shellcheck source=bench/common.sh
. bench/common.sh
single_forwarder_layout

need_packages=()
for tool in valgrind wrk curl $(printf '%s\n' "$@" | grep -x nginx || true); do
    command -v "$tool" >/dev/null 2>&1 || need_packages+=("$tool")
done
install_packages ${need_packages[@]+"${need_packages[@]}"}

BINARIES=("$@")
for binary in ${BINARIES[@]+"${BINARIES[@]}"}; do
    [ "$binary" != nginx ] || [ "$COUNTED" = upstream ] ||
        die "nginx is counted only as the upstream's client (BENCH_IR_COUNT=upstream)"
done
log "building (release)"
if [ ${#BINARIES[@]} -eq 0 ]; then
    install_release_tools
    bash "$ROOT/build/release.sh" >&2
    BINARIES=("$ROOT/target/pgo/mcp-vpce-proxy")
fi
cargo build --release --quiet --example bench_upstream
UPSTREAM_BIN=$ROOT/target/release/examples/bench_upstream

make_run_dir instructions
UPSTREAM_PID=
FORWARDER_PID=
trap stop_and_clean EXIT
trap 'exit 130' INT TERM

ports_free $UPSTREAM_PORT $STATS_PORT $PROXY_PORT $PROXY_ADMIN_PORT $NGINX_PORT

# A command, not a function: a function run with & is a subshell, and $! would not be
# the process that is stopped.
CALLGRIND=(valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$RUN_DIR/callgrind.out.%p")

# Starts the bench upstream (under callgrind when it is the one counted).
start_upstream() {
    local run=()
    [ "$COUNTED" = upstream ] && run=("${CALLGRIND[@]}")
    ${run[@]+"${run[@]}"} "$UPSTREAM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --stats-listen "127.0.0.1:$STATS_PORT" --gateway "$GATEWAY" --ca-out "$RUN_DIR/ca.pem" \
        --token "$TOKEN" --workers 2 >"$RUN_DIR/upstream.out" 2>"$RUN_DIR/upstream.log" &
    UPSTREAM_PID=$!
    wait_http "$STATS_PORT" upstream 1200 # valgrind starts slowly
}


# Starts a forwarder (under callgrind when it is the one counted); sets PORT.
start_counted_forwarder() {
    local run=()
    [ "$COUNTED" = proxy ] && run=("${CALLGRIND[@]}")
    start_forwarder "$1" 1200 ${run[@]+"${run[@]}"} # valgrind starts slowly
}

# One count: sets PER_REQUEST and REQUESTS, or fails.
count() {
    local binary=$1 connections=$2 counted_pid out summary errors
    rm -f "$RUN_DIR"/callgrind.out.*
    [ "$COUNTED" = upstream ] && start_upstream
    start_counted_forwarder "$binary"
    if [ "$COUNTED" = upstream ]; then counted_pid=$UPSTREAM_PID; else counted_pid=$FORWARDER_PID; fi
    wrk -t1 -c"$connections" -d2s -s bench/wrk/post_mcp.lua "http://127.0.0.1:$PORT/mcp" >/dev/null
    callgrind_control -z "$counted_pid" >/dev/null 2>&1
    out=$(wrk -t1 -c"$connections" -d"${SECONDS_COUNTED}s" -s bench/wrk/post_mcp.lua \
        "http://127.0.0.1:$PORT/mcp" | tail -n 1)
    callgrind_control -d "$counted_pid" >/dev/null 2>&1
    # The dump is written by the counted process itself: wait for it before stopping it.
    for _ in $(seq 100); do
        compgen -G "$RUN_DIR/callgrind.out.*.1" >/dev/null && break
        sleep 0.1
    done
    sleep 0.2
    stop_pid "$FORWARDER_PID" 100
    FORWARDER_PID=
    if [ "$COUNTED" = upstream ]; then
        stop_pid "$UPSTREAM_PID" 100
        UPSTREAM_PID=
    fi
    # The dump made after zeroing is part 1 of the profile.
    summary=$(sed -n 's/^summary: //p' "$RUN_DIR"/callgrind.out.*.1 2>/dev/null | head -n 1 || true)
    [ -n "$summary" ] || die "no callgrind dump (logs in $RUN_DIR)"
    if [ -n "${BENCH_IR_PROFILE_DIR:-}" ]; then
        mkdir -p "$BENCH_IR_PROFILE_DIR"
        cp "$(compgen -G "$RUN_DIR/callgrind.out.*.1" | head -n 1)" \
            "$BENCH_IR_PROFILE_DIR/$(basename "$binary")-c$connections.callgrind"
    fi
    REQUESTS=$(printf '%s' "$out" | sed -n 's/.*"units":\([0-9]*\).*/\1/p')
    errors=$(printf '%s' "$out" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p')
    [ "${REQUESTS:-0}" -gt 0 ] || die "wrk made no request: $out"
    [ "${errors:-1}" = 0 ] || die "wrk saw errors: $out"
    PER_REQUEST=$((summary / REQUESTS))
}

[ "$COUNTED" = upstream ] || start_upstream

log "counting the $COUNTED's instructions; token of ${#TOKEN} bytes"
printf '%-12s %-40s %22s %10s\n' connections forwarder "$COUNTED instructions/request" requests
for connections in $LOADS; do
    for binary in "${BINARIES[@]}"; do
        count "$binary" "$connections"
        printf '%-12s %-40s %22s %10s\n' "$connections" "$(basename "$binary")" "$PER_REQUEST" "$REQUESTS"
    done
done
