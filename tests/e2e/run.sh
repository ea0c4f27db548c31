#!/usr/bin/env bash
# End-to-end: real Python MCP clients (the mcp SDK and strands-agents' MCPClient) and the
# MCP TypeScript SDK v2 client (MCP 2026-07-28) through the proxy's `demo` command (an
# in-process AgentCore-like gateway behind the proxy).
#
#   bash tests/e2e/run.sh                        # against "$PROXY_BIN" demo (the default)
#   E2E_TARGET=standin bash tests/e2e/run.sh     # against standin_server.py, no proxy
#
# Environment (all optional):
#   PROXY_BIN        proxy binary [target/release/mcp-vpce-proxy]
#   E2E_TARGET       proxy | standin [proxy]
#   E2E_PORT         port the agents' URL uses [18080, or a free one if that is taken]
#   E2E_ADMIN_PORT   the proxy's admin port [19901, or a free one if that is taken]
#   E2E_MCP_LINES    which client sets to run: "1" (requirements.txt, .venv, mcp 1.x),
#                    "2" (requirements-mcp2.txt, .venv-mcp2, mcp 2.x) ["1 2"]
#   E2E_SNIPPETS     1: also run every agent-side code block of README.md and docs/
#                    (snippets.py), each in the venv of the `pip install` it is marked
#                    with: requirements-snippets.txt (.venv-snippets) for `pip install
#                    mcp`, requirements-mcp2.txt for `pip install strands-agents` [1]
#   PYTHON           interpreter for the venvs [python3]
#   E2E_TYPESCRIPT   1: also run node/client.mjs (the TypeScript SDK v2, installed with
#                    `npm ci` from node/package-lock.json) against the proxy; 0: skip [1]
#   NODE, NPM        [node, npm] (Node >= 20)
# Only 127.0.0.1 is dialed; pip and npm use whatever registry the environment configures.
# Ends with "e2e: N passed, M failed"; exits 1 if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

PROXY_BIN="${PROXY_BIN:-target/release/mcp-vpce-proxy}"
E2E_TARGET="${E2E_TARGET:-proxy}"
E2E_MCP_LINES="${E2E_MCP_LINES:-1 2}"
E2E_SNIPPETS="${E2E_SNIPPETS:-1}"
PYTHON="${PYTHON:-python3}"
E2E_TYPESCRIPT="${E2E_TYPESCRIPT:-1}"
NODE="${NODE:-node}"
NPM="${NPM:-npm}"
NODE_DIR="$HERE/node"
READY_TIMEOUT=30   # seconds for the server to accept TCP connections
CLIENT_TIMEOUT=120 # seconds for one clients.py run
PIP_TIMEOUT=900    # seconds for one venv install
NPM_TIMEOUT=600    # seconds for npm ci

PASSED=0
FAILED=0
SERVER_PID=""
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-e2e.XXXXXX")"
SERVER_LOG="$WORK/server.log"

pass() {
    PASSED=$((PASSED + 1))
    printf 'PASS %s\n' "$*"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL %s\n' "$*"
}
section() { printf '\n== %s\n' "$*"; }

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

finish() {
    local rc=$?
    trap - EXIT
    stop_server
    if ((rc != 0 && FAILED == 0)); then
        fail "run.sh stopped on an unexpected error (exit $rc)"
    fi
    rm -rf "$WORK"
    printf '\ne2e: %d passed, %d failed\n' "$PASSED" "$FAILED"
    if ((FAILED > 0)); then exit 1; fi
    exit 0
}
trap finish EXIT
trap 'exit 130' INT TERM

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# The port to use: $1 if set explicitly (it must be free), else $2 if free, else any free one.
pick_port() {
    local explicit="$1" preferred="$2"
    if [[ -n "$explicit" ]]; then
        if port_open "$explicit"; then
            echo "port $explicit is already in use" >&2
            return 1
        fi
        echo "$explicit"
    elif ! port_open "$preferred"; then
        echo "$preferred"
    else
        "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    fi
}

LOG_PRINTED=0
print_server_log() {
    ((LOG_PRINTED == 0)) || return 0
    LOG_PRINTED=1
    echo "---- server log ($SERVER_LOG) ----"
    cat "$SERVER_LOG" 2>/dev/null || true
    echo "---- end of server log ----"
}

# venv_dir and requirements file of client set $1 ("snippets": the `pip install mcp` venv).
venv_dir() {
    case "$1" in
    1) echo "$HERE/.venv" ;;
    snippets) echo "$HERE/.venv-snippets" ;;
    *) echo "$HERE/.venv-mcp$1" ;;
    esac
}
requirements() {
    case "$1" in
    1) echo "$HERE/requirements.txt" ;;
    snippets) echo "$HERE/requirements-snippets.txt" ;;
    *) echo "$HERE/requirements-mcp$1.txt" ;;
    esac
}
# What a venv of set $1 must import to count as intact.
venv_imports() { if [[ "$1" == snippets ]]; then echo 'import mcp'; else echo 'import mcp, strands, uvicorn'; fi; }

# Creates (or reuses) the venv of client set $1; true when it is ready. (Called in an `if`,
# where set -e does not apply: every command that matters has its own `|| return 1`.)
ensure_venv() {
    local line="$1" venv req stamp started
    venv="$(venv_dir "$line")"
    req="$(requirements "$line")"
    [[ -f "$req" ]] || {
        echo "no requirements file $req" >&2
        return 1
    }
    # Reused only if built from the same requirements by the same interpreter and intact.
    stamp="$(sha256sum "$req" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version)' | head -n1)"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.e2e-stamp" 2>/dev/null)" == "$stamp" ]] &&
        "$venv/bin/python" -c "$(venv_imports "$line")" 2>/dev/null; then
        echo "reusing $venv"
        return 0
    fi
    started=$SECONDS
    echo "creating $venv from $req"
    rm -rf "$venv" || return 1
    "$PYTHON" -m venv "$venv" || return 1
    if ! timeout "$PIP_TIMEOUT" "$venv/bin/python" -m pip install --no-input --quiet \
        --progress-bar off --disable-pip-version-check -r "$req" </dev/null; then
        echo "pip install -r $req failed or timed out" >&2
        rm -rf "$venv"
        return 1
    fi
    "$venv/bin/python" -c "$(venv_imports "$line")" || return 1
    echo "$stamp" >"$venv/.e2e-stamp" || return 1
    echo "installed in $((SECONDS - started)) s"
}

# Installs (or reuses) node/node_modules from package-lock.json; true when it is ready.
ensure_node_modules() {
    local lock="$NODE_DIR/package-lock.json" stamp started
    if ! command -v "$NODE" >/dev/null || ! command -v "$NPM" >/dev/null; then
        echo "$NODE or $NPM not found (Node >= 20 is needed)" >&2
        return 1
    fi
    stamp="$(sha256sum "$lock" | cut -d' ' -f1) $("$NODE" --version)"
    if [[ "$(cat "$NODE_DIR/node_modules/.e2e-stamp" 2>/dev/null)" == "$stamp" &&
        -f "$NODE_DIR/node_modules/@modelcontextprotocol/client/package.json" ]]; then
        echo "reusing $NODE_DIR/node_modules"
        return 0
    fi
    started=$SECONDS
    echo "npm ci in $NODE_DIR"
    if ! (cd "$NODE_DIR" && timeout "$NPM_TIMEOUT" "$NPM" ci --no-audit --no-fund \
        --loglevel=error </dev/null); then
        echo "npm ci failed or timed out" >&2
        return 1
    fi
    echo "$stamp" >"$NODE_DIR/node_modules/.e2e-stamp" || return 1
    echo "installed in $((SECONDS - started)) s"
}

# Starts the server under test in the background on $PORT; true when it accepts connections.
start_server() {
    local venv="$1" deadline
    case "$E2E_TARGET" in
    proxy)
        if [[ ! -x "$PROXY_BIN" ]]; then
            echo "PROXY_BIN=$PROXY_BIN is not an executable file (build it first)" >&2
            return 1
        fi
        echo "starting $PROXY_BIN demo --listen 127.0.0.1:$PORT --admin 127.0.0.1:$ADMIN_PORT"
        "$PROXY_BIN" demo --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN_PORT" \
            </dev/null >"$SERVER_LOG" 2>&1 &
        SERVER_PID=$!
        ;;
    standin)
        echo "starting standin_server.py --port $PORT ($venv)"
        "$venv/bin/python" "$HERE/standin_server.py" --host 127.0.0.1 --port "$PORT" \
            </dev/null >"$SERVER_LOG" 2>&1 &
        SERVER_PID=$!
        ;;
    *)
        echo "E2E_TARGET must be proxy or standin, not '$E2E_TARGET'" >&2
        return 1
        ;;
    esac
    deadline=$((SECONDS + READY_TIMEOUT))
    until port_open "$PORT"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the server exited before accepting connections" >&2
            print_server_log
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "nothing accepted connections on 127.0.0.1:$PORT within ${READY_TIMEOUT} s" >&2
            print_server_log
            return 1
        fi
        sleep 0.2
    done
    echo "127.0.0.1:$PORT accepts connections (pid $SERVER_PID)"
}

section "e2e: target $E2E_TARGET, client sets: $E2E_MCP_LINES"
PORT="$(pick_port "${E2E_PORT:-}" 18080)"
ADMIN_PORT="$(pick_port "${E2E_ADMIN_PORT:-}" 19901)"
if [[ "$ADMIN_PORT" == "$PORT" ]]; then
    echo "E2E_PORT and E2E_ADMIN_PORT must differ" >&2
    exit 1
fi

LINES=()
for line in $E2E_MCP_LINES; do
    section "venv for client set $line ($(requirements "$line"))"
    if ensure_venv "$line"; then
        pass "venv for client set $line ($(venv_dir "$line"))"
        LINES+=("$line")
    else
        fail "venv for client set $line: install failed"
    fi
done
if ((${#LINES[@]} == 0)); then
    fail "no client set could be installed"
    exit 1
fi

section "server under test: $E2E_TARGET on 127.0.0.1:$PORT"
if start_server "$(venv_dir "${LINES[0]}")"; then
    pass "server ($E2E_TARGET) accepts connections on 127.0.0.1:$PORT"
else
    fail "server ($E2E_TARGET) did not come up on 127.0.0.1:$PORT"
    exit 1
fi

URL="http://127.0.0.1:$PORT/mcp"
for line in "${LINES[@]}"; do
    section "clients, set $line: $(venv_dir "$line")/bin/python clients.py $URL"
    results="$WORK/results-$line.txt"
    : >"$results"
    rc=0
    timeout --kill-after=5 "$CLIENT_TIMEOUT" "$(venv_dir "$line")/bin/python" \
        "$HERE/clients.py" "$URL" --results "$results" --deadline $((CLIENT_TIMEOUT - 10)) \
        </dev/null || rc=$?
    # Each PASS/FAIL line of clients.py is one step here.
    while IFS= read -r result; do
        case "$result" in
        PASS\ *) PASSED=$((PASSED + 1)) ;;
        FAIL\ *) FAILED=$((FAILED + 1)) ;;
        esac
    done <"$results"
    if ((rc == 124 || rc == 137)); then
        fail "clients.py (set $line) killed by timeout after ${CLIENT_TIMEOUT} s (exit $rc)"
    elif ((rc != 0)) && ! grep -q '^FAIL ' "$results"; then
        fail "clients.py (set $line) exited with status $rc"
    elif ((rc != 0)); then
        echo "clients.py (set $line) exited with status $rc: the FAIL lines above say which steps"
    fi
done

# The README's and docs' agent-side code blocks, as a user copies them, each in the venv of
# the `pip install` it is marked with.
run_snippets() {
    local listing index install where line rc out
    section "agent-side code blocks of README.md and docs/ (snippets.py)"
    if ! listing="$("$PYTHON" "$HERE/snippets.py" list)"; then
        fail "snippets.py list: a python block in README.md or docs/ is not marked"
        return
    fi
    if [[ -z "$listing" ]]; then
        fail "snippets.py list found no agent-side code block"
        return
    fi
    while IFS=$'\t' read -r index install where; do
        case "$install" in
        "pip install mcp") line=snippets ;;
        "pip install strands-agents") line=2 ;;
        *)
            fail "$where: no venv for '$install'"
            continue
            ;;
        esac
        if ! ensure_venv "$line"; then
            fail "$where: venv for '$install' ($(requirements "$line")) could not be installed"
            continue
        fi
        rc=0
        out="$(timeout --kill-after=5 "$CLIENT_TIMEOUT" "$(venv_dir "$line")/bin/python" \
            "$HERE/snippets.py" run "$index" "$URL" </dev/null 2>&1)" || rc=$?
        printf '%s\n' "$out"
        if ((rc == 0)) && grep -q '^PASS ' <<<"$out"; then
            pass "snippet $where ($install)"
        else
            fail "snippet $where ($install) exited with status $rc"
        fi
    done <<<"$listing"
}
if [[ "$E2E_SNIPPETS" == 1 && "$E2E_TARGET" == proxy ]]; then
    run_snippets
fi

# The TypeScript SDK v2 client speaks MCP 2026-07-28, which the demo gateway does and the
# stand-in does not.
if [[ "$E2E_TYPESCRIPT" == 1 && "$E2E_TARGET" == proxy ]]; then
    section "TypeScript SDK v2 client (MCP 2026-07-28): node $NODE_DIR/client.mjs $URL"
    if ensure_node_modules; then
        pass "node_modules ($NODE_DIR, npm ci)"
        results="$WORK/results-typescript.txt"
        rc=0
        (cd "$NODE_DIR" && timeout --kill-after=5 "$CLIENT_TIMEOUT" "$NODE" client.mjs "$URL" \
            --deadline $((CLIENT_TIMEOUT - 10)) </dev/null) >"$results" 2>&1 || rc=$?
        cat "$results"
        while IFS= read -r result; do
            case "$result" in
            PASS\ *) PASSED=$((PASSED + 1)) ;;
            FAIL\ *) FAILED=$((FAILED + 1)) ;;
            esac
        done <"$results"
        if ((rc == 124 || rc == 137)); then
            fail "client.mjs killed by timeout after ${CLIENT_TIMEOUT} s (exit $rc)"
        elif ((rc != 0)) && ! grep -q '^FAIL ' "$results"; then
            fail "client.mjs exited with status $rc"
        fi
    else
        fail "node_modules ($NODE_DIR): install failed"
    fi
fi

section "server still up after the clients"
if kill -0 "$SERVER_PID" 2>/dev/null && port_open "$PORT"; then
    pass "server ($E2E_TARGET) still serving after the clients"
else
    fail "server ($E2E_TARGET) died during the clients"
fi

# The demo's walkthrough and access log are worth seeing in CI; the stand-in's only on failure.
if [[ "$E2E_TARGET" == proxy ]] || ((FAILED > 0)); then print_server_log; fi
