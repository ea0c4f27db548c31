# bench/common.sh: what bench/run.sh, bench/instructions.sh and bench/latency_split.sh share. Sourced, not run.
# Before sourcing, set LOG_PREFIX (the name on log lines) and INSTALL (1: install missing
# tools from apt). The caller sets RUN_DIR before calling wait_http.

# The names the bench upstream serves and the proxy's bench configuration uses, and a
# gateway token fresh for each run.
GATEWAY=bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com
ENDPOINT=vpce-0123456789abcdef0-bench123.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com
TOKEN=bench-token-$RANDOM$RANDOM
# BENCH_TOKEN_BYTES: a token of that length instead (letters and digits), as long as a
# real gateway's (a Cognito access token is ~1 000 bytes).
if [ -n "${BENCH_TOKEN_BYTES:-}" ]; then
    TOKEN=$(head -c $((BENCH_TOKEN_BYTES * 2 + 64)) /dev/urandom | base64 -w0 | tr -d '+/=' | head -c "$BENCH_TOKEN_BYTES")
fi
export BENCH_GATEWAY_TOKEN=$TOKEN

log() { printf '%s\n' "$LOG_PREFIX: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# Installs the given Debian packages with apt-get, or fails when INSTALL is not 1.
install_packages() {
    [ $# -gt 0 ] || return 0
    [ "$INSTALL" = 1 ] || die "missing: $* (BENCH_INSTALL=0)"
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    log "installing $* from apt"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# What build/release.sh needs: llvm-profdata, and llvm-bolt on x86_64 (where it runs BOLT).
install_release_tools() {
    local missing=()
    command -v llvm-profdata-19 >/dev/null || missing+=(llvm-19)
    [ "$(uname -m)" != x86_64 ] || command -v llvm-bolt-19 >/dev/null || missing+=(bolt-19)
    install_packages ${missing[@]+"${missing[@]}"}
}

# Fills the @NAME@ placeholders of a bench configuration (bench/*.in) from the variables
# of the same names (CA_FILE is $RUN_DIR/ca.pem); a placeholder whose variable the caller
# did not set becomes empty (instructions.sh runs no HAProxy, for one).
render() { # TEMPLATE OUTPUT
    sed -e "s|@WORKERS@|${WORKERS-}|g" \
        -e "s|@NOFILE@|${NOFILE-}|g" \
        -e "s|@MAX_CONNECTIONS@|${MAX_CONNECTIONS-}|g" \
        -e "s|@PROXY_MAX_CONNECTIONS@|${PROXY_MAX_CONNECTIONS-}|g" \
        -e "s|@WORKER_CONNECTIONS@|${WORKER_CONNECTIONS-}|g" \
        -e "s|@RUN_DIR@|$RUN_DIR|g" \
        -e "s|@UPSTREAM_PORT@|${UPSTREAM_PORT-}|g" \
        -e "s|@PROXY_PORT@|${PROXY_PORT-}|g" \
        -e "s|@PROXY_ADMIN_PORT@|${PROXY_ADMIN_PORT-}|g" \
        -e "s|@NGINX_PORT@|${NGINX_PORT-}|g" \
        -e "s|@HAPROXY_PORT@|${HAPROXY_PORT-}|g" \
        -e "s|@GATEWAY@|$GATEWAY|g" \
        -e "s|@ENDPOINT@|$ENDPOINT|g" \
        -e "s|@TOKEN@|$TOKEN|g" \
        -e "s|@CA_FILE@|$RUN_DIR/ca.pem|g" \
        "$1" >"$2"
}

# The ports and limits of instructions.sh and latency_split.sh, which run one forwarder
# at a time: the upstream at PORT_BASE (its stats at +1), the proxy at +10 (its admin
# listener at +11), nginx at +12; small connection limits for the configurations.
single_forwarder_layout() {
    UPSTREAM_PORT=$PORT_BASE
    STATS_PORT=$((PORT_BASE + 1))
    PROXY_PORT=$((PORT_BASE + 10))
    PROXY_ADMIN_PORT=$((PORT_BASE + 11))
    NGINX_PORT=$((PORT_BASE + 12))
    PROXY_MAX_CONNECTIONS=1024 NOFILE=4096 WORKER_CONNECTIONS=1024
}

# Makes RUN_DIR, the run's directory (configurations, logs), with room for nginx: started
# as root, nginx runs its workers as nobody, which must read it and write its temp dir.
make_run_dir() { # NAME
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mcp-vpce-$1.XXXXXX")
    chmod 755 "$RUN_DIR"
    mkdir -p "$RUN_DIR/nginx-tmp" && chmod 1777 "$RUN_DIR/nginx-tmp"
}

# The EXIT trap of instructions.sh and latency_split.sh: stops the forwarder and the
# upstream they run one at a time (FORWARDER_PID, UPSTREAM_PID), removes RUN_DIR.
stop_and_clean() {
    stop_pid "${FORWARDER_PID:-}" 100
    stop_pid "${UPSTREAM_PID:-}" 100
    wait 2>/dev/null || true
    rm -rf "$RUN_DIR"
}

# Starts one forwarder for instructions.sh and latency_split.sh: `nginx` (its
# bench/nginx.conf.in) or a proxy binary (bench/proxy.toml.in), that one prefixed by the
# command words after it (valgrind's, say); sets PORT and FORWARDER_PID, and waits until
# it answers (up to TRIES × 50 ms).
start_forwarder() { # BINARY TRIES [PREFIX...]
    local binary=$1 tries=$2
    shift 2
    if [ "$binary" = nginx ]; then
        render bench/nginx.conf.in "$RUN_DIR/nginx.conf"
        nginx -e "$RUN_DIR/nginx-error.log" -p "$RUN_DIR/" -c "$RUN_DIR/nginx.conf" \
            >"$RUN_DIR/forwarder.log" 2>&1 &
        PORT=$NGINX_PORT
    else
        render bench/proxy.toml.in "$RUN_DIR/proxy.toml"
        "$@" "$binary" run --config "$RUN_DIR/proxy.toml" --workers "$WORKERS" \
            --log-level warn >"$RUN_DIR/forwarder.out" 2>"$RUN_DIR/forwarder.log" &
        PORT=$PROXY_PORT
    fi
    FORWARDER_PID=$!
    wait_http "$PORT" "$binary" "$tries"
}

# Fails when something already listens on one of the given ports of 127.0.0.1.
ports_free() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is in use; set BENCH_PORT_BASE"
        fi
    done
}

# Stops a process: TERM, then KILL after 5 s (or TRIES tenths of a second).
stop_pid() {
    local pid=$1 tries=${2:-50}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Waits until something answers HTTP on the port (any status), up to TRIES × 50 ms.
wait_http() {
    local port=$1 name=$2 tries=${3:-200}
    for _ in $(seq "$tries"); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/bench-ready"; then
            return 0
        fi
        sleep 0.05
    done
    die "$name did not come up on 127.0.0.1:$port (logs in $RUN_DIR)"
}
