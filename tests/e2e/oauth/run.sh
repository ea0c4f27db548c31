#!/usr/bin/env bash
# End-to-end for passthrough routes: the official MCP SDK clients (TypeScript and Python) run
# the MCP OAuth flow themselves through the sidecar and call a tool; the same clients through
# a naive forwarder that rewrites nothing must fail on the protected resource's `resource`.
#
#   bash tests/e2e/oauth/run.sh
#
# Starts gateway.py (a loopback authorization server, an OAuth-protected MCP "gateway" over
# TLS for gw-oauth-e2e.gateway.bedrock-agentcore.us-east-1.amazonaws.com, and the naive
# forwarder) and "$PROXY_BIN" with one passthrough route to that gateway, then runs:
#   fixture_checks.py                the fixture's own checks (PKCE, RFC 8707 resource binding,
#                                    the gateway refusing tokens for another resource)
#   python_client.py / client.mjs    through the sidecar: must succeed
#   python_client.py / client.mjs    through the naive forwarder: must fail on `resource`
#
# Environment (all optional):
#   PROXY_BIN   proxy binary [target/debug/mcp-vpce-proxy]
#   PYTHON      interpreter for the venv [python3]
#   NODE, NPM   [node, npm] (Node >= 20)
# Installs tests/e2e/oauth/.venv (requirements.txt, from PyPI) and tests/e2e/oauth/node/
# node_modules (`npm ci`, from npm) on first use; both are reused while their pins are
# unchanged. Only 127.0.0.1 is dialed otherwise. Everything is bounded in time; everything
# started is stopped on exit. Ends with "oauth-e2e: N passed, M failed"; exits 1 on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
cd "$ROOT"

PROXY_BIN="${PROXY_BIN:-target/debug/mcp-vpce-proxy}"
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"
NPM="${NPM:-npm}"
VENV="$HERE/.venv"
NODE_DIR="$HERE/node"
PIP_TIMEOUT=900   # seconds for the venv install
NPM_TIMEOUT=600   # seconds for npm ci
READY_TIMEOUT=30  # seconds for the fixture and the proxy to listen
CLIENT_TIMEOUT=90 # seconds for one client run (the clients' own deadline is 20 s shorter)

PASSED=0
FAILED=0
FIXTURE_PID=""
PROXY_PID=""
WORK="$(mktemp -d "${TMPDIR:-/tmp}/oauth-e2e.XXXXXX")"

pass() {
    PASSED=$((PASSED + 1))
    printf 'PASS %s\n' "$*"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL %s\n' "$*"
}
section() { printf '\n== %s\n' "$*"; }

# Stops the process $1 (TERM, then KILL after 5 s).
stop() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

print_logs() {
    local log
    for log in "$WORK/fixture.log" "$WORK/proxy.log"; do
        [[ -f "$log" ]] || continue
        echo "---- $(basename "$log") ----"
        cat "$log"
        echo "---- end of $(basename "$log") ----"
    done
}

finish() {
    local rc=$?
    trap - EXIT
    stop "$PROXY_PID"
    stop "$FIXTURE_PID"
    if ((rc != 0 && FAILED == 0)); then
        fail "run.sh stopped on an unexpected error (exit $rc)"
    fi
    if ((FAILED > 0)); then print_logs; fi
    rm -rf "$WORK"
    printf '\noauth-e2e: %d passed, %d failed\n' "$PASSED" "$FAILED"
    if ((FAILED > 0)); then exit 1; fi
    exit 0
}
trap finish EXIT
trap 'exit 130' INT TERM

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Creates (or reuses) the venv; true when it is ready. (Called in an `if`, where set -e does
# not apply: every command that matters has its own `|| return 1`.)
ensure_venv() {
    local req="$HERE/requirements.txt" stamp started
    stamp="$(sha256sum "$req" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version)' | head -n1)"
    if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.oauth-e2e-stamp" 2>/dev/null)" == "$stamp" ]] &&
        "$VENV/bin/python" -c 'import mcp, cryptography, uvicorn' 2>/dev/null; then
        echo "reusing $VENV"
        return 0
    fi
    started=$SECONDS
    echo "creating $VENV from $req"
    rm -rf "$VENV" || return 1
    "$PYTHON" -m venv "$VENV" || return 1
    if ! timeout "$PIP_TIMEOUT" "$VENV/bin/python" -m pip install --no-input --quiet \
        --progress-bar off --disable-pip-version-check -r "$req" </dev/null; then
        echo "pip install -r $req failed or timed out" >&2
        rm -rf "$VENV"
        return 1
    fi
    "$VENV/bin/python" -c 'import mcp, cryptography, uvicorn' || return 1
    echo "$stamp" >"$VENV/.oauth-e2e-stamp" || return 1
    echo "installed in $((SECONDS - started)) s"
}

# Installs (or reuses) node_modules from package-lock.json; true when it is ready.
ensure_node_modules() {
    local lock="$NODE_DIR/package-lock.json" stamp started
    if ! command -v "$NODE" >/dev/null || ! command -v "$NPM" >/dev/null; then
        echo "$NODE or $NPM not found (Node >= 20 is needed)" >&2
        return 1
    fi
    stamp="$(sha256sum "$lock" | cut -d' ' -f1) $("$NODE" --version)"
    if [[ "$(cat "$NODE_DIR/node_modules/.oauth-e2e-stamp" 2>/dev/null)" == "$stamp" &&
        -f "$NODE_DIR/node_modules/@modelcontextprotocol/sdk/package.json" ]]; then
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
    echo "$stamp" >"$NODE_DIR/node_modules/.oauth-e2e-stamp" || return 1
    echo "installed in $((SECONDS - started)) s"
}

# Waits until $2 exists (a file) or accepts connections (a port), while process $1 lives.
wait_ready() {
    local pid="$1" what="$2" deadline=$((SECONDS + READY_TIMEOUT))
    until { [[ "$what" == /* ]] && [[ -f "$what" ]]; } ||
        { [[ "$what" != /* ]] && port_open "$what"; }; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited before it was ready" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "not ready within ${READY_TIMEOUT} s: $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Runs one client (the rest of the arguments), counting its PASS/FAIL lines as steps.
run_client() {
    local name="$1" out="$WORK/out.txt" rc=0
    shift
    timeout --kill-after=5 "$CLIENT_TIMEOUT" "$@" </dev/null >"$out" 2>"$WORK/err.txt" || rc=$?
    cat "$out"
    PASSED=$((PASSED + $(grep -c '^PASS ' "$out" || true)))
    FAILED=$((FAILED + $(grep -c '^FAIL ' "$out" || true)))
    if ((rc == 124 || rc == 137)); then
        fail "$name: killed by timeout after ${CLIENT_TIMEOUT} s"
    elif ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
        fail "$name: exited with status $rc"
    fi
    if ((rc != 0)); then
        echo "---- $name stderr ----"
        cat "$WORK/err.txt"
    fi
}

section "dependencies"
if ensure_venv; then pass "venv $VENV"; else
    fail "venv $VENV: install failed"
    exit 1
fi
if ensure_node_modules; then pass "node_modules ($NODE_DIR, npm ci)"; else
    fail "node_modules ($NODE_DIR): install failed"
    exit 1
fi
if [[ ! -x "$PROXY_BIN" ]]; then
    fail "PROXY_BIN=$PROXY_BIN is not an executable file (cargo build first)"
    exit 1
fi

section "fixture: authorization server, OAuth-protected gateway (TLS), naive forwarder"
PROXY_PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SIDECAR_URL="http://127.0.0.1:$PROXY_PORT/mcp"
FIXTURE="$WORK/fixture.json"
(cd "$HERE" && exec "$VENV/bin/python" gateway.py --workdir "$WORK" \
    --accept-resource "$SIDECAR_URL") </dev/null >"$WORK/fixture.log" 2>&1 &
FIXTURE_PID=$!
if wait_ready "$FIXTURE_PID" "$FIXTURE"; then
    pass "fixture up (pid $FIXTURE_PID)"
    cat "$FIXTURE"
    echo
else
    fail "fixture did not come up"
    exit 1
fi
fixture_field() { "$VENV/bin/python" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$FIXTURE" "$1"; }
GATEWAY_URL="$(fixture_field gateway_url)"
GATEWAY_PORT="$(fixture_field gateway_port)"
NAIVE_URL="$(fixture_field naive_url)"
CA_FILE="$(fixture_field ca_file)"

section "proxy: $SIDECAR_URL -> $GATEWAY_URL (passthrough)"
cat >"$WORK/proxy.toml" <<EOF
listen = "127.0.0.1:$PROXY_PORT"
admin = "off"

[dns]
private_ranges = ["127.0.0.0/8"]

[[route]]
path = "/mcp"
gateway = "$GATEWAY_URL"
addresses = ["127.0.0.1:$GATEWAY_PORT"]
ca_file = "$CA_FILE"
credential = { type = "passthrough" }
EOF
"$PROXY_BIN" --config "$WORK/proxy.toml" </dev/null >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
if wait_ready "$PROXY_PID" "$PROXY_PORT"; then
    pass "proxy listening on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
else
    fail "proxy did not come up on 127.0.0.1:$PROXY_PORT"
    exit 1
fi

DEADLINE=$((CLIENT_TIMEOUT - 20))
section "the fixture's own checks (no SDK)"
run_client "fixture_checks.py" \
    "$VENV/bin/python" "$HERE/fixture_checks.py" "$SIDECAR_URL" --fixture "$FIXTURE"

section "through the sidecar: the flow must succeed"
run_client "python_client.py (sidecar)" "$VENV/bin/python" "$HERE/python_client.py" \
    "$SIDECAR_URL" --fixture "$FIXTURE" --expect ok --deadline "$DEADLINE"
run_client "client.mjs (sidecar)" "$NODE" "$NODE_DIR/client.mjs" \
    "$SIDECAR_URL" --fixture "$FIXTURE" --expect ok --deadline "$DEADLINE"

section "through the naive forwarder (no rewrite): the flow must fail on \`resource\`"
run_client "python_client.py (naive)" "$VENV/bin/python" "$HERE/python_client.py" \
    "$NAIVE_URL" --fixture "$FIXTURE" --expect resource-mismatch --deadline "$DEADLINE"
# This client fetches the gateway's metadata itself (its name resolves to 127.0.0.1).
run_client "client.mjs (naive)" env NODE_EXTRA_CA_CERTS="$CA_FILE" "$NODE" \
    "$NODE_DIR/client.mjs" "$NAIVE_URL" --fixture "$FIXTURE" --expect resource-mismatch \
    --deadline "$DEADLINE"

section "proxy still up after the clients"
if kill -0 "$PROXY_PID" 2>/dev/null && port_open "$PROXY_PORT"; then
    pass "proxy still serving"
else
    fail "proxy died during the clients"
fi
