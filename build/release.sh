#!/usr/bin/env bash
# The release binary, built with profile-guided optimisation (PGO) and laid out again by
# BOLT from a profile of its own run: what the container image ships and what
# bench/run.sh measures.
#
#   bash build/release.sh            # -> target/pgo/mcp-vpce-proxy (2 cores: ~12 min cold, ~5 warm)
#
# 1. builds the bench upstream and the training client (examples/bench_upstream.rs,
#    examples/bench_client/train.rs; plain release build) and the proxy instrumented
#    (-Cprofile-generate);
# 2. trains it: the proxy forwards an agent fleet's MCP traffic (tool calls, session
#    set-up, lists, batches, a refused call, SSE answers, event streams; 32 agents, then
#    one, then streams beside calls; a quarter of the agents through a route signing
#    with SigV4) to the bench upstream on loopback for
#    PGO_TRAIN_SECONDS (20), then stops on SIGTERM and writes its profile;
# 3. merges the profile (llvm-profdata) and builds the release binary with it
#    (-Cprofile-use): the compiler lays out and inlines the request path as it ran;
# 4. (x86_64) instruments that binary with llvm-bolt and trains it again the same way;
# 5. (x86_64) rewrites it with that profile: the hot code of every crate packed together,
#    cold blocks split off; then strips it.
#
# On the bench's machine PGO cut the CPU per forwarded request by 13% at 32 connections
# and 32% at one, and BOLT 5-8% more at both (docs/performance.md). `cargo build --release`
# still builds a correct binary, without that gain.
#
# Needs llvm-profdata from an LLVM at least as new as the raw profile format rustc's LLVM
# writes: rustup's `llvm-tools` component (the exact match), or Debian 12's `llvm-19`
# (apt-get install llvm-19), which reads what Rust 1.95's LLVM 22 writes. Set
# LLVM_PROFDATA to choose one. On x86_64 it needs llvm-bolt too (Debian 12: apt-get
# install bolt-19; LLVM_BOLT to choose one); RELEASE_BOLT=0 skips stages 4 and 5, and
# other architectures skip them (BOLT's instrumentation is not checked on them here).
# Dials loopback only; the ports are PGO_PORT_BASE (18610) and the next three. RUSTFLAGS
# of the caller are kept, and added to both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '[release] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

seconds=${PGO_TRAIN_SECONDS:-20}
base=${PGO_PORT_BASE:-18610}
upstream_port=$base proxy_port=$((base + 1)) admin_port=$((base + 2))
host=$(rustc -vV | sed -n 's/^host: //p')
out=$root/target/pgo
generate_dir=$out/generate use_dir=$out/use profiles=$out/profiles bolt_dir=$out/bolt

# Newest first: the first candidate that works is used (Debian installs tool-NN).
versioned() { # TOOL
    compgen -c "$1-" | grep -E "^$1-[0-9]+\$" | sort -u -t- -k3 -n -r || true
    command -v "$1" || true
}

# llvm-profdata candidates, the likeliest to read rustc's profile first: LLVM_PROFDATA
# alone when set; else rustup's llvm-tools (the same LLVM as rustc), then versioned ones.
profdata_candidates() {
    if [ -n "${LLVM_PROFDATA:-}" ]; then echo "$LLVM_PROFDATA"; return; fi
    local rustup_tool
    rustup_tool="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
    [ -x "$rustup_tool" ] && echo "$rustup_tool"
    versioned llvm-profdata
}
mapfile -t candidates < <(profdata_candidates)
[ ${#candidates[@]} -gt 0 ] || die "no llvm-profdata: rustup component add llvm-tools, or apt-get install llvm-19 (or set LLVM_PROFDATA)"
log "llvm-profdata candidates: ${candidates[*]}"

bolt=
if [ "${RELEASE_BOLT:-1}" = 0 ]; then
    log "BOLT skipped (RELEASE_BOLT=0)"
elif [[ "$host" != x86_64-* ]]; then
    log "BOLT skipped on $host (x86_64 only here)"
else
    bolt=${LLVM_BOLT:-$(versioned llvm-bolt | head -n1)}
    [ -n "$bolt" ] && command -v "$bolt" >/dev/null \
        || die "no llvm-bolt: apt-get install bolt-19 (or set LLVM_BOLT; RELEASE_BOLT=0 builds without it)"
    # llvm-bolt finds its instrumentation runtime in ../lib from the path it was started
    # by, so it is started by its real path (Debian's llvm-bolt-19 is a link to
    # /usr/lib/llvm-19/bin/llvm-bolt).
    bolt=$(readlink -f "$(command -v "$bolt")")
    [ -f "$(dirname "$bolt")/../lib/libbolt_rt_instr.a" ] \
        || die "$bolt has no instrumentation runtime (libbolt_rt_instr.a) in its lib directory"
    command -v strip >/dev/null || die "no strip (binutils) to strip the rewritten binary"
    log "llvm-bolt: $bolt"
fi

# The target is named so that RUSTFLAGS reach only the binary's code, not build scripts
# and proc macros (which would write profiles of their own while compiling).
build() { # TARGET_DIR RUSTFLAGS CARGO_ARGS...
    local dir=$1 flags=$2; shift 2
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags" cargo build --release --locked --target "$host" --target-dir "$dir" "$@"
}

log "1/5 instrumented build (PGO)"
# The helpers apart: building examples turns on dev-dependency features of shared crates
# (tokio, hyper, serde_json...), which changes their code, and a profile of that code
# would not match the binary's.
cargo build --release --locked --example bench_upstream --example bench_client
helpers=$root/target/release/examples
rm -rf "$profiles"; mkdir -p "$profiles"
build "$generate_dir" "-Cprofile-generate=$profiles" --bin mcp-vpce-proxy

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
token="train-token-$RANDOM$RANDOM"
gateway=train-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com
"$helpers/bench_upstream" \
    --listen "127.0.0.1:$upstream_port" --stats-listen "127.0.0.1:$((base + 3))" \
    --gateway "$gateway" --ca-out "$work/ca.pem" --token "$token" --accept-sigv4 --workers 1 \
    >"$work/upstream.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/ca.pem" ] && break; sleep 0.1; done
[ -s "$work/ca.pem" ] || { cat "$work/upstream.log" >&2; die "the bench upstream did not start"; }
sed -e "s|@PROXY_PORT@|$proxy_port|; s|@ADMIN_PORT@|$admin_port|; s|@UPSTREAM_PORT@|$upstream_port|g; s|@CA_FILE@|$work/ca.pem|" \
    build/training.toml.in >"$work/proxy.toml"

# Runs the training load through BINARY (an instrumented build) and stops it with SIGTERM,
# which drains and exits normally: both kinds of instrumentation write their profile at
# exit. Sets trained_pid, the serving process's pid (BOLT's profile file is named by it).
train() { # BINARY
    local binary=$1 pid ready=0
    # The SigV4 route signs with made-up keys from the environment, and nothing else of
    # the machine's AWS set-up is read.
    env -u AWS_SESSION_TOKEN -u AWS_PROFILE TRAIN_GATEWAY_TOKEN="$token" \
        LLVM_PROFILE_FILE="$profiles/proxy-%p.profraw" \
        AWS_ACCESS_KEY_ID=AKIDTRAININGEXAMPLE0 AWS_SECRET_ACCESS_KEY=trainingSecretKeyNotARealOne0000000000000 \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_EC2_METADATA_DISABLED=true \
        "$binary" run --config "$work/proxy.toml" --log-level warn \
        >"$work/proxy.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        # (its own profile, set apart: only the serving proxy's is used)
        if LLVM_PROFILE_FILE="$work/healthcheck-%p.profraw" "$binary" healthcheck \
            --admin "127.0.0.1:$admin_port" >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.1
    done
    [ "$ready" = 1 ] || { cat "$work/proxy.log" >&2; die "the instrumented proxy did not become ready"; }
    "$helpers/bench_client" train \
        --url "http://127.0.0.1:$proxy_port/mcp" --sigv4-url "http://127.0.0.1:$proxy_port/sigv4/mcp" \
        --seconds "$seconds" \
        || { cat "$work/proxy.log" >&2; die "the training load failed"; }
    kill -TERM "$pid"
    wait "$pid" || { cat "$work/proxy.log" >&2; die "the instrumented proxy did not exit cleanly"; }
    trained_pid=$pid
}

log "2/5 training the PGO build for ${seconds}s"
train "$generate_dir/$host/release/mcp-vpce-proxy"
compgen -G "$profiles/proxy-*.profraw" >/dev/null || die "the proxy wrote no profile"

log "3/5 optimised build"
# An older LLVM refuses a newer raw profile format ("unsupported version"): the next
# candidate is tried.
profdata=
for tool in "${candidates[@]}"; do
    if "$tool" merge -o "$out/proxy.profdata" "$profiles"/proxy-*.profraw 2>"$work/merge.err"; then
        profdata=$tool
        break
    fi
    log "$tool: $(head -c 300 "$work/merge.err")"
done
[ -n "$profdata" ] || die "no llvm-profdata here reads the profile rustc's LLVM wrote: rustup component add llvm-tools, or install a newer LLVM (Debian 12: apt-get install llvm-19)"
log "merged with $profdata ($("$profdata" --version 2>&1 | grep -m1 -o 'LLVM version [0-9.]*' || echo '?'))"
# A profile that saw the traffic counts far more than this many calls of its hottest function.
max_count=$("$profdata" show "$out/proxy.profdata" | sed -n 's/^Maximum function count: //p')
[ "${max_count:-0}" -ge 10000 ] || die "the profile is too thin (maximum function count ${max_count:-0})"
# For BOLT the linker keeps the relocations and the symbols stay until BOLT has run.
# Through RUSTFLAGS, not the profile's `strip`: a profile setting changes the crates'
# symbol names, and the PGO profile would then match none of them.
use_flags="-Cprofile-use=$out/proxy.profdata"
[ -n "$bolt" ] && use_flags="$use_flags -Clink-arg=-Wl,--emit-relocs -Cstrip=none"
build "$use_dir" "$use_flags" --bin mcp-vpce-proxy
optimised=$use_dir/$host/release/mcp-vpce-proxy

if [ -n "$bolt" ]; then
    log "4/5 BOLT: instrumenting the optimised build, training it for ${seconds}s"
    rm -rf "$bolt_dir"; mkdir -p "$bolt_dir"
    "$bolt" "$optimised" -o "$bolt_dir/instrumented" -instrument \
        --runtime-instrumentation-lib=libbolt_rt_instr.a \
        --instrumentation-file="$bolt_dir/profile" --instrumentation-file-append-pid \
        >"$work/bolt-instrument.log" 2>&1 || { cat "$work/bolt-instrument.log" >&2; die "llvm-bolt could not instrument the binary"; }
    train "$bolt_dir/instrumented"
    fdata=$bolt_dir/profile.$trained_pid.fdata
    [ -s "$fdata" ] || die "the BOLT-instrumented proxy wrote no profile ($fdata)"

    log "5/5 BOLT: rewriting the optimised build with its profile"
    # The layout options of the Rust compiler's own BOLT build (rust-lang/rust,
    # src/tools/opt-dist), whose binary unwinds through split functions on every
    # caught panic.
    "$bolt" "$optimised" -o "$bolt_dir/mcp-vpce-proxy" -data="$fdata" \
        -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
        -split-eh -icf=1 -use-gnu-stack \
        >"$work/bolt-optimise.log" 2>&1 || { cat "$work/bolt-optimise.log" >&2; die "llvm-bolt could not rewrite the binary"; }
    # BOLT says how many of the binary's functions the profile reached (~2 500 of ~18 000
    # on the training load); a profile that matched next to nothing would leave the
    # layout unchanged without failing.
    reached=$(grep -m1 "have non-empty execution profile" "$work/bolt-optimise.log" || true)
    log "bolt: ${reached#BOLT-INFO: }"
    [ "$(awk '{ print $2 }' <<<"$reached")" -ge 500 ] 2>/dev/null \
        || { cat "$work/bolt-optimise.log" >&2; die "the BOLT profile reached too few functions"; }
    strip "$bolt_dir/mcp-vpce-proxy"
    cp "$bolt_dir/mcp-vpce-proxy" "$out/mcp-vpce-proxy"
else
    cp "$optimised" "$out/mcp-vpce-proxy"
fi
# The shipped binary answers at all (a rewrite that broke it would fail here first).
"$out/mcp-vpce-proxy" --version >/dev/null || die "the built binary does not run"
log "built $out/mcp-vpce-proxy"
