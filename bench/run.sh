#!/usr/bin/env bash
# bench/run.sh: mcp-vpce-proxy beside nginx and HAProxy doing the same job, and the
# upstream reached directly as the ceiling. See docs/performance.md.
#
# It installs what it needs (nginx, haproxy, wrk, curl from apt), builds the proxy and the
# bench examples in release mode, starts a TLS upstream on loopback (examples/bench_upstream.rs)
# and the three forwarders, then runs every load against every forwarder, alternating
# them and repeating rounds so that drift cancels. It prints a table and writes
# bench/results/<date>-<host>.json. Everything runs on 127.0.0.1, is bounded in time,
# and every process it starts is stopped on exit.
#
# Settings (environment):
#   BENCH_DURATION=10        seconds per cell (one load against one forwarder)
#   BENCH_ROUNDS=3           rounds; the figures are the median over rounds
#   BENCH_WORKERS=min(CPUs,4)  proxy --workers, nginx worker_processes, HAProxy nbthread
#   BENCH_STREAMS=256        long SSE streams at once (one event per 100 ms)
#   BENCH_IDLE_STREAMS=10000 idle SSE streams held open once per forwarder (0: skip)
#   BENCH_IDLE_HOLD=5        seconds the idle streams are held
#   BENCH_IDLE_PARALLEL=64   idle streams being opened at once (below every listen backlog:
#                            this check is about memory; `streams` connects 256 at once)
#   BENCH_STARTUP_RUNS=10    starts timed per forwarder (0: skip)
#   BENCH_BURST=100          concurrent requests of the cold burst sent to each forwarder
#                            before anything else (0: skip)
#   BENCH_LOADS="c1 c32 sse_first streams"
#   BENCH_FORWARDERS="proxy nginx haproxy direct"
#   BENCH_UPSTREAM_ALPN=h2,http/1.1   what the upstream offers (http/1.1: h1 for all)
#   BENCH_UPSTREAM_WORKERS=CPUs       upstream runtime threads
#   BENCH_UPSTREAM_CPUS=     CPUs the upstream runs on (a taskset list), e.g. 1 with the
#                            rest of the run on 0 (taskset -c 0 bash bench/run.sh): the
#                            gateway on a core of its own, as it is on another host
#   BENCH_WRK_THREADS=1      wrk threads for the 32-connection load
#   BENCH_PORT_BASE=18400    ports BASE..BASE+31 on 127.0.0.1 are used
#   BENCH_PAUSE=1            seconds between cells
#   BENCH_INSTALL=1          apt-get install missing tools (0: only check)
#   BENCH_KEEP=0             1: keep the run directory (configs, logs, raw records)
#   BENCH_TOKEN_BYTES=       length of the gateway token (default ~22 bytes; a Cognito
#                            access token is ~1 000)
#   BENCH_PROXY_BIN=         a proxy binary to measure instead of building one (the default:
#                            build/release.sh, the profile-guided, BOLT-optimised build the image ships)
#   BENCH_CANDIDATE_BIN=     a second proxy build measured in the same run as forwarder
#                            "candidate" (A/B of an optimisation; add it to BENCH_FORWARDERS)
#
# A short check of the harness: BENCH_DURATION=3 BENCH_ROUNDS=1 BENCH_IDLE_STREAMS=1000 bash bench/run.sh

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CPUS=$(nproc)
WORKERS=${BENCH_WORKERS:-$((CPUS < 4 ? CPUS : 4))}
STREAMS=${BENCH_STREAMS:-256}
IDLE_STREAMS=${BENCH_IDLE_STREAMS:-10000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-5}
IDLE_PARALLEL=${BENCH_IDLE_PARALLEL:-64}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-10}
BURST=${BENCH_BURST:-100}
LOADS=${BENCH_LOADS:-"c1 c32 sse_first streams"}
FORWARDERS=${BENCH_FORWARDERS:-"proxy nginx haproxy direct"}
UPSTREAM_ALPN=${BENCH_UPSTREAM_ALPN:-h2,http/1.1}
UPSTREAM_WORKERS=${BENCH_UPSTREAM_WORKERS:-$CPUS}
UPSTREAM_CPUS=${BENCH_UPSTREAM_CPUS:-}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
PORT_BASE=${BENCH_PORT_BASE:-18400}
PAUSE=${BENCH_PAUSE:-1}
INSTALL=${BENCH_INSTALL:-1}
KEEP=${BENCH_KEEP:-0}

UPSTREAM_PORT=$PORT_BASE
STATS_PORT=$((PORT_BASE + 1))
PROXY_PORT=$((PORT_BASE + 10))
PROXY_ADMIN_PORT=$((PORT_BASE + 11))
CANDIDATE_PORT=$((PORT_BASE + 12))
CANDIDATE_ADMIN_PORT=$((PORT_BASE + 13))
NGINX_PORT=$((PORT_BASE + 20))
HAPROXY_PORT=$((PORT_BASE + 30))
LOG_PREFIX=bench
# shellcheck source=bench/common.sh
. bench/common.sh

# ---------------------------------------------------------------- tools and build
need_packages=()
for tool in nginx haproxy wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need_packages+=("$tool")
done
install_packages ${need_packages[@]+"${need_packages[@]}"}
export PATH=$PATH:/usr/sbin:/sbin
command -v cargo >/dev/null || die "cargo not found: install Rust >= 1.88 with rustup (https://rustup.rs)"

log "building (release)"
if [ -z "${BENCH_PROXY_BIN:-}" ]; then
    # The binary as shipped: profile-guided and laid out by BOLT (build/release.sh).
    install_release_tools
    bash "$ROOT/build/release.sh" >&2
fi
cargo build --release --quiet --example bench_upstream --example bench_client
PROXY_BIN=${BENCH_PROXY_BIN:-$ROOT/target/pgo/mcp-vpce-proxy}
CANDIDATE_BIN=${BENCH_CANDIDATE_BIN:-}
if [ -n "$CANDIDATE_BIN" ]; then
    case " $FORWARDERS " in *" candidate "*) ;; *) FORWARDERS="$FORWARDERS candidate" ;; esac
fi
UPSTREAM_BIN=$ROOT/target/release/examples/bench_upstream
CLIENT_BIN=$ROOT/target/release/examples/bench_client

# ---------------------------------------------------------------- run directory, cleanup
make_run_dir bench
RECORDS=$RUN_DIR/records.jsonl
: >"$RECORDS"
declare -A PID=()

cleanup() {
    local status=$?
    for name in "${!PID[@]}"; do
        stop_pid "${PID[$name]}"
    done
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ] || [ $status -ne 0 ]; then
        log "run directory kept: $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Idle streams need one descriptor each on the agent side and one per upstream connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# HAProxy's maxconn counts agent connections, each with an upstream one: two descriptors.
MAX_CONNECTIONS=$(((NOFILE - 1024) / 2))
# nginx's worker_connections and the proxy's max_connections count descriptors per process.
WORKER_CONNECTIONS=$((NOFILE - 1024))
PROXY_MAX_CONNECTIONS=$WORKER_CONNECTIONS

ports_free $UPSTREAM_PORT $STATS_PORT $PROXY_PORT $PROXY_ADMIN_PORT $CANDIDATE_PORT $CANDIDATE_ADMIN_PORT $NGINX_PORT $HAPROXY_PORT

# ---------------------------------------------------------------- upstream and configs
log "starting the upstream (ALPN $UPSTREAM_ALPN, $UPSTREAM_WORKERS threads${UPSTREAM_CPUS:+, CPUs $UPSTREAM_CPUS})"
UPSTREAM_RUN=()
[ -z "$UPSTREAM_CPUS" ] || UPSTREAM_RUN=(taskset -c "$UPSTREAM_CPUS")
${UPSTREAM_RUN[@]+"${UPSTREAM_RUN[@]}"} "$UPSTREAM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" --stats-listen "127.0.0.1:$STATS_PORT" \
    --gateway "$GATEWAY" --ca-out "$RUN_DIR/ca.pem" --token "$TOKEN" \
    --alpn "$UPSTREAM_ALPN" --workers "$UPSTREAM_WORKERS" \
    >"$RUN_DIR/upstream.out" 2>"$RUN_DIR/upstream.log" &
PID[upstream]=$!
wait_http "$STATS_PORT" upstream

render bench/proxy.toml.in "$RUN_DIR/proxy.toml"
render bench/nginx.conf.in "$RUN_DIR/nginx.conf"
render bench/haproxy.cfg.in "$RUN_DIR/haproxy.cfg"
"$PROXY_BIN" check --config "$RUN_DIR/proxy.toml" >/dev/null || die "the proxy rejected its bench configuration"
nginx -t -q -e "$RUN_DIR/nginx-error.log" -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" || die "nginx rejected its bench configuration"
haproxy -c -q -f "$RUN_DIR/haproxy.cfg" || die "HAProxy rejected its bench configuration"

# The command line of each forwarder (one word per line, for mapfile), and where agents
# reach it.
forwarder_cmd() {
    case $1 in
    proxy) printf '%s\n' "$PROXY_BIN" run --config "$RUN_DIR/proxy.toml" --workers "$WORKERS" --log-level warn ;;
    candidate) printf '%s\n' "$CANDIDATE_BIN" run --config "$RUN_DIR/proxy.toml" --workers "$WORKERS" --log-level warn \
        --listen "127.0.0.1:$CANDIDATE_PORT" --admin "127.0.0.1:$CANDIDATE_ADMIN_PORT" ;;
    nginx) printf '%s\n' nginx -e "$RUN_DIR/nginx-error.log" -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" ;;
    haproxy) printf '%s\n' haproxy -db -f "$RUN_DIR/haproxy.cfg" ;;
    esac
}
forwarder_port() {
    case $1 in
    proxy) echo "$PROXY_PORT" ;;
    candidate) echo "$CANDIDATE_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;;
    direct) echo "$UPSTREAM_PORT" ;;
    esac
}

# ---------------------------------------------------------------- meta
# A JSON string of the text, with quotes and backslashes dropped (versions, errors).
# shellcheck disable=SC1003
json_str() { printf '"%s"' "$(printf '%s' "$*" | tr -d '"\\' | tr '\n\t' '  ')"; }
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
HOST=$(hostname -s 2>/dev/null || hostname)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
BINARY_BYTES=$(stat -c %s "$PROXY_BIN")
{
    printf '{"kind":"meta","date":%s,"host":%s,"cpus":%d,"cpu_model":%s,"kernel":%s,' \
        "$(json_str "$DATE")" "$(json_str "$HOST")" "$CPUS" "$(json_str "$CPU_MODEL")" "$(json_str "$(uname -r)")"
    printf '"proxy_version":%s,"rustc":%s,"nginx":%s,"haproxy":%s,"wrk":%s,' \
        "$(json_str "$("$PROXY_BIN" --version)")" "$(json_str "$(rustc --version)")" \
        "$(json_str "$(nginx -v 2>&1)")" "$(json_str "$(haproxy -v | head -1)")" \
        "$(json_str "$(wrk -v 2>&1 | head -1)")"
    printf '"duration_s":%d,"rounds":%d,"workers":%d,"upstream_alpn":%s,"upstream_workers":%d,' \
        "$DURATION" "$ROUNDS" "$WORKERS" "$(json_str "$UPSTREAM_ALPN")" "$UPSTREAM_WORKERS"
    printf '"cpus_allowed":%s,"upstream_cpus":%s,' \
        "$(json_str "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)")" \
        "$(json_str "${UPSTREAM_CPUS:-all}")"
    printf '"streams":%d,"idle_streams":%d,"nofile":%d,"binary_bytes":%d,"git":%s}\n' \
        "$STREAMS" "$IDLE_STREAMS" "$NOFILE" "$BINARY_BYTES" \
        "$(json_str "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")"
} >>"$RECORDS"

# ---------------------------------------------------------------- startup to ready
if [ "$STARTUP_RUNS" -gt 0 ]; then
    for f in proxy candidate nginx haproxy; do
        case " $FORWARDERS " in *" $f "*) ;; *) continue ;; esac
        log "startup to ready: $f x$STARTUP_RUNS"
        mapfile -t cmd < <(forwarder_cmd $f)
        result=$("$CLIENT_BIN" startup --port "$(forwarder_port $f)" --runs "$STARTUP_RUNS" -- "${cmd[@]}")
        printf '{"kind":"startup","forwarder":"%s","result":%s}\n' "$f" "$result" >>"$RECORDS"
    done
fi

# ---------------------------------------------------------------- forwarders
start_forwarders() {
    for f in proxy candidate nginx haproxy; do
        case " $FORWARDERS " in *" $f "*) ;; *) continue ;; esac
        mapfile -t cmd < <(forwarder_cmd $f)
        "${cmd[@]}" >>"$RUN_DIR/$f.out" 2>>"$RUN_DIR/$f.log" &
        PID[$f]=$!
        wait_http "$(forwarder_port $f)" "$f"
    done
}
start_forwarders

# ---------------------------------------------------------------- cold burst
# Before any other request: a forwarder with no upstream connection gets BURST requests at
# once, one per agent connection. How many upstream connections it opens for them is what
# a fleet restarting together costs the gateway.
if [ "$BURST" -gt 0 ]; then
    for f in proxy candidate nginx haproxy; do
        [ -n "${PID[$f]:-}" ] || continue
        admin=()
        case $f in
        proxy) admin=(--admin "127.0.0.1:$PROXY_ADMIN_PORT") ;;
        candidate) admin=(--admin "127.0.0.1:$CANDIDATE_ADMIN_PORT") ;;
        esac
        log "cold burst: $f x$BURST"
        result=$("$CLIENT_BIN" burst --url "http://127.0.0.1:$(forwarder_port $f)/mcp" --count "$BURST" \
            --stats "127.0.0.1:$STATS_PORT" "${admin[@]}") || die "the cold burst to $f failed"
        printf '{"kind":"burst","forwarder":"%s","result":%s}\n' "$f" "$result" >>"$RECORDS"
    done
    # Started again, so that the burst's hundred agent connections leave nothing behind in
    # the idle memory measured next (a forwarder keeps the heap it grew).
    for f in proxy candidate nginx haproxy; do
        [ -n "${PID[$f]:-}" ] || continue
        stop_pid "${PID[$f]}"
        unset "PID[$f]"
    done
    sleep 0.5
    start_forwarders
fi

REQUEST='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DemoTarget___get_weather","arguments":{"city":"Seattle"}}}'
# Direct requests carry what the forwarders add.
DIRECT_HEADERS=(-H "Authorization: Bearer $TOKEN" -H "Host: $GATEWAY:$UPSTREAM_PORT")
DIRECT_TLS=(--ca "$RUN_DIR/ca.pem" --sni "$GATEWAY")

for f in $FORWARDERS; do
    if [ "$f" = direct ]; then
        status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$RUN_DIR/ca.pem" \
            --resolve "$GATEWAY:$UPSTREAM_PORT:127.0.0.1" -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' -d "$REQUEST" "https://$GATEWAY:$UPSTREAM_PORT/mcp")
    else
        status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            -d "$REQUEST" "http://127.0.0.1:$(forwarder_port "$f")/mcp")
    fi
    [ "$status" = 200 ] || die "$f does not forward: HTTP $status (logs in $RUN_DIR)"
done
log "all forwarders answer through the upstream; settling"
sleep 1
for f in proxy candidate nginx haproxy; do
    [ -n "${PID[$f]:-}" ] || continue
    printf '{"kind":"idle","forwarder":"%s","result":%s}\n' "$f" "$("$CLIENT_BIN" memory --pid "${PID[$f]}")" >>"$RECORDS"
done

# ---------------------------------------------------------------- cells
# The load command of one cell, one word per line (for mapfile).
load_cmd() {
    local f=$1 load=$2 port url
    port=$(forwarder_port "$f")
    local -a direct_headers=() direct_tls=()
    if [ "$f" = direct ]; then
        url=https://127.0.0.1:$port/mcp
        direct_headers=("${DIRECT_HEADERS[@]}")
        direct_tls=("${DIRECT_TLS[@]}")
    else
        url=http://127.0.0.1:$port/mcp
    fi
    case $load in
    c1) printf '%s\n' wrk -t1 -c1 "-d${DURATION}s" --timeout 10s -s bench/wrk/post_mcp.lua "${direct_headers[@]}" "$url" ;;
    c32) printf '%s\n' wrk "-t$WRK_THREADS" -c32 "-d${DURATION}s" --timeout 10s -s bench/wrk/post_mcp.lua "${direct_headers[@]}" "$url" ;;
    sse_first) printf '%s\n' "$CLIENT_BIN" sse-first --url "$url" --seconds "$DURATION" "${direct_tls[@]}" "${direct_headers[@]}" ;;
    streams) printf '%s\n' "$CLIENT_BIN" streams --url "$url" --count "$STREAMS" --seconds "$DURATION" --interval-ms 100 "${direct_tls[@]}" "${direct_headers[@]}" ;;
    idle_streams) printf '%s\n' "$CLIENT_BIN" idle-streams --url "$url" --count "$(idle_count "$f")" --hold-seconds "$IDLE_HOLD" --parallel-opens "$IDLE_PARALLEL" "${direct_tls[@]}" "${direct_headers[@]}" ;;
    *) die "unknown load $load" ;;
    esac
}

# Streams the forwarder can hold within the descriptor limit: one descriptor per agent
# connection plus one per upstream connection (none when it multiplexes over h2).
idle_count() {
    local limit=$MAX_CONNECTIONS
    if [[ $1 == proxy || $1 == candidate ]] && [[ $UPSTREAM_ALPN == h2* ]]; then
        limit=$PROXY_MAX_CONNECTIONS
    fi
    echo $((IDLE_STREAMS < limit ? IDLE_STREAMS : limit))
}

run_cell() {
    local f=$1 load=$2 round=$3 result
    local -a cmd measure_pid=()
    mapfile -t cmd < <(load_cmd "$f" "$load")
    [ "$f" = direct ] || measure_pid=(--pid "${PID[$f]}")
    log "round $round/$ROUNDS  $load  $f"
    if result=$("$CLIENT_BIN" measure "${measure_pid[@]}" --upstream-pid "${PID[upstream]}" \
        --stats "127.0.0.1:$STATS_PORT" --clk-tck "$(getconf CLK_TCK)" \
        --timeout-seconds $((DURATION + IDLE_HOLD + 180)) -- "${cmd[@]}" 2>"$RUN_DIR/cell.err"); then
        printf '{"kind":"cell","forwarder":"%s","load":"%s","round":%d,"result":%s}\n' "$f" "$load" "$round" "$result" >>"$RECORDS"
        grep '^  ' "$RUN_DIR/cell.err" >&2 || true
    else
        log "  failed: $(tail -3 "$RUN_DIR/cell.err" | tr '\n' ' ')"
        printf '{"kind":"cell","forwarder":"%s","load":"%s","round":%d,"error":%s}\n' \
            "$f" "$load" "$round" "$(json_str "$(tail -3 "$RUN_DIR/cell.err")")" >>"$RECORDS"
    fi
    sleep "$PAUSE"
}

for load in $LOADS; do
    case $load in c1 | c32 | sse_first | streams) ;; *) die "BENCH_LOADS: unknown load $load" ;; esac
done
read -r -a forwarders <<<"$FORWARDERS"
n=${#forwarders[@]}
for ((round = 1; round <= ROUNDS; round++)); do
    for load in $LOADS; do
        # Each round starts with the next forwarder, so no one always runs first.
        for ((i = 0; i < n; i++)); do
            run_cell "${forwarders[$(((i + round - 1) % n))]}" "$load" "$round"
        done
    done
done

# A bounded check, once per forwarder: many quiet streams held open.
if [ "$IDLE_STREAMS" -gt 0 ]; then
    for f in proxy candidate nginx haproxy; do
        [ -n "${PID[$f]:-}" ] || continue
        run_cell "$f" idle_streams 1
    done
fi

# ---------------------------------------------------------------- report
mkdir -p bench/results
OUT=bench/results/$(date -u +%Y%m%d-%H%M%S)-$HOST.json
"$CLIENT_BIN" report --records "$RECORDS" --out "$OUT" >/dev/null
log "results written to $OUT"
