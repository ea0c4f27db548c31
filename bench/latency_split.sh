#!/usr/bin/env bash
# bench/latency_split.sh: where the time of one request at one connection goes, hop by
# hop, for the proxy and for nginx doing the same job. See docs/performance.md.
#
# bench/run.sh measures the latency a forwarder adds as a whole (its p50 less the
# upstream's own). This splits it: `perf record` on the raw_syscalls tracepoints of the
# agent (wrk), the forwarder and the bench upstream, filtered to their reads and writes,
# gives for each request the forwarder's own time on the way in (agent's request read to
# the gateway write) and on the way out (gateway's answer read to the agent write), the
# upstream's time to serve it, and the four kernel transits between them (loopback TCP
# and the wake-up of the reader). bench/latency_split.py does the arithmetic.
#
# Each round of each forwarder is a JSON line in bench/results/<date>-<host>-latency-split.jsonl;
# the table at the end is their medians.
#
# Tracing costs each traced system call ~1 µs and changes where the scheduler places
# the processes, so the round trip here is not bench/run.sh's: compare the hops of two
# forwarders in one run, not these figures with run.sh's.
#
# Usage: bash bench/latency_split.sh [FORWARDER...]
#   FORWARDER: a proxy binary, or `nginx` (bench/nginx.conf.in, as in bench/run.sh);
#   default: build/release.sh's target/pgo/mcp-vpce-proxy, then nginx.
# Settings (environment):
#   BENCH_SPLIT_SECONDS=3    seconds traced per forwarder and round
#   BENCH_ROUNDS=3           rounds; the forwarders alternate within each
#   BENCH_UPSTREAM_ALPN=h2,http/1.1   what the upstream offers (http/1.1: h1 for all)
#   BENCH_WORKERS=2          proxy --workers (nginx worker_processes)
#   BENCH_PORT_BASE=18680    ports BASE..BASE+12 on 127.0.0.1 (apart from run.sh's
#                            18400-18431, build/release.sh's 18610-18613 and
#                            instructions.sh's 18640-18652)
#   BENCH_INSTALL=1          apt-get install linux-perf, wrk (and nginx) when missing
# Needs root (or perf_event_paranoid ≤ -1) to trace other processes' system calls.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_TRACED=${BENCH_SPLIT_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
UPSTREAM_ALPN=${BENCH_UPSTREAM_ALPN:-h2,http/1.1}
WORKERS=${BENCH_WORKERS:-2}
PORT_BASE=${BENCH_PORT_BASE:-18680}
INSTALL=${BENCH_INSTALL:-1}
LOG_PREFIX=latency-split
export PATH=$PATH:/usr/sbin:/sbin # nginx, perf
# shellcheck source=bench/common.sh
. bench/common.sh
single_forwarder_layout

ARCH=$(uname -m)
case $ARCH in
x86_64) READS="0 45 47 19" WRITES="1 20 44 46" ;;
aarch64) READS="63 207 212 65" WRITES="64 66 206 211" ;;
*) die "no system call numbers for $ARCH" ;;
esac

FORWARDERS=("$@")
need_packages=()
command -v perf >/dev/null 2>&1 || need_packages+=(linux-perf)
for tool in wrk curl python3 $(printf '%s\n' ${FORWARDERS[@]+"${FORWARDERS[@]}"} nginx | grep -x nginx | head -n 1); do
    command -v "$tool" >/dev/null 2>&1 || need_packages+=("$tool")
done
install_packages ${need_packages[@]+"${need_packages[@]}"}
perf record -q -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null ||
    die "perf cannot record raw_syscalls tracepoints here (run as root, or lower kernel.perf_event_paranoid)"

log "building (release)"
if [ ${#FORWARDERS[@]} -eq 0 ]; then
    install_release_tools
    bash "$ROOT/build/release.sh" >&2
    FORWARDERS=("$ROOT/target/pgo/mcp-vpce-proxy" nginx)
fi
cargo build --release --quiet --example bench_upstream
UPSTREAM_BIN=$ROOT/target/release/examples/bench_upstream

make_run_dir latency-split
UPSTREAM_PID=
FORWARDER_PID=
trap stop_and_clean EXIT
trap 'exit 130' INT TERM

ports_free $UPSTREAM_PORT $STATS_PORT $PROXY_PORT $PROXY_ADMIN_PORT $NGINX_PORT

# The filter of a raw_syscalls event: the reads and writes only (not epoll, futex or
# perf's own), which keeps the tracing light.
syscall_filter() {
    local expr= nr
    for nr in $READS $WRITES; do
        expr="${expr:+$expr || }id == $nr"
    done
    printf '%s' "$expr"
}
FILTER=$(syscall_filter)

"$UPSTREAM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" --stats-listen "127.0.0.1:$STATS_PORT" \
    --gateway "$GATEWAY" --ca-out "$RUN_DIR/ca.pem" --token "$TOKEN" --alpn "$UPSTREAM_ALPN" \
    --workers 2 >"$RUN_DIR/upstream.out" 2>"$RUN_DIR/upstream.log" &
UPSTREAM_PID=$!
wait_http "$STATS_PORT" upstream

# Starts a forwarder; sets PORT, FORWARDER_PID and TRACED (its processes, comma-separated).
start_traced_forwarder() {
    start_forwarder "$1" 200
    # nginx's workers are processes of their own; the proxy's are threads of one.
    TRACED=$FORWARDER_PID
    local child
    for child in $(pgrep -P "$FORWARDER_PID" || true); do TRACED="$TRACED,$child"; done
}

# One traced run of one forwarder: prints latency_split.py's JSON line.
trace_one() {
    local forwarder=$1 round=$2 name wrk_pid out
    name=$(basename "$forwarder")
    start_traced_forwarder "$forwarder"
    wrk -t1 -c1 -d2s -s bench/wrk/post_mcp.lua "http://127.0.0.1:$PORT/mcp" >/dev/null
    wrk -t1 -c1 -d"$((SECONDS_TRACED + 2))s" -s bench/wrk/post_mcp.lua \
        "http://127.0.0.1:$PORT/mcp" >"$RUN_DIR/wrk.out" &
    wrk_pid=$!
    sleep 0.5
    perf record -q -o "$RUN_DIR/perf.data" -p "$wrk_pid,$TRACED,$UPSTREAM_PID" \
        -e raw_syscalls:sys_enter --filter "$FILTER" \
        -e raw_syscalls:sys_exit --filter "$FILTER" -- sleep "$SECONDS_TRACED" 2>"$RUN_DIR/perf.log" ||
        die "perf record failed: $(cat "$RUN_DIR/perf.log")"
    wait "$wrk_pid"
    stop_pid "$FORWARDER_PID" 100
    FORWARDER_PID=
    perf script --ns -F comm,pid,tid,cpu,time,event,trace -i "$RUN_DIR/perf.data" \
        >"$RUN_DIR/perf.txt" 2>/dev/null
    out=$(python3 bench/latency_split.py split "$RUN_DIR/perf.txt" --agent "$wrk_pid" \
        --forwarder "$TRACED" --upstream "$UPSTREAM_PID" --name "$name" --arch "$ARCH")
    printf '{"round":%d,%s\n' "$round" "${out#\{}"
}

log "upstream offers $UPSTREAM_ALPN; $ROUNDS rounds of ${SECONDS_TRACED} s traced per forwarder"
RESULTS=$RUN_DIR/results.jsonl
for round in $(seq "$ROUNDS"); do
    for forwarder in "${FORWARDERS[@]}"; do
        trace_one "$forwarder" "$round" | tee -a "$RESULTS"
    done
done

OUT=bench/results/$(date -u +%Y%m%d-%H%M%S)-$(hostname -s 2>/dev/null || hostname)-latency-split.jsonl
cp "$RESULTS" "$OUT"
log "per-round figures in $OUT"
python3 bench/latency_split.py summary "$OUT"
