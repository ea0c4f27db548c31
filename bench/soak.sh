#!/usr/bin/env bash
# bench/soak.sh: the memory soak. Mixed MCP traffic (rmcp SSE sessions and JSON POSTs,
# new agent connections all the time) through the proxy binary on loopback, sampling its
# resident set; prints the curve and fails if the resident set grew more than 10% after
# the warm-up, or if any call failed. See tests/soak/main.rs.
#
#   bash bench/soak.sh                              # 5 minutes, release build
#   SOAK_SECONDS=60 SOAK_RELEASE=0 bash bench/soak.sh   # what .ci/run does
#
# Settings (environment): SOAK_SECONDS=300, SOAK_AGENTS=8 (of each kind),
# SOAK_SAMPLE_SECONDS=5, SOAK_RELEASE=1 (0: the debug build `cargo test` made).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export SOAK_SECONDS=${SOAK_SECONDS:-300}
profile=(--release)
[ "${SOAK_RELEASE:-1}" = 1 ] || profile=()
exec cargo test "${profile[@]}" --locked --test soak -- --nocapture --test-threads 1
