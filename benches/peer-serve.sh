#!/usr/bin/env bash
# Runs Hedgerow as one peer of ../shared/bench/peers.sh, filtering with the harness's list.
#   OURS_NAME=hedgerow OURS_CMD='benches/peer-serve.sh {ADDR} {PORT} {LIST} {UPSTREAM} {WORK} {THREADS} {CACHE}' \
#     PEERS="limit unbound dnsmasq" SIZES=1M ../shared/bench/peers.sh
# The list is compiled at start-up (counted in the harness's load time), like the peers parse theirs.
set -euo pipefail
BIN="${HEDGEROW_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hedgerow}"
addr=$1 port=$2 list=$3 upstream=$4 work=$5 threads=$6 cache=$7
cat > "$work/lists.toml" <<EOF
[[category]]
id = "bench"
title = "Benchmark list"
uk_definition = "synthetic names from the peer harness"
severity = "low"
[[category.source]]
path = "$list"
format = "domains"
EOF
cat > "$work/hedgerow.toml" <<EOF
[server]
listen = ["$addr:$port"]
data_dir = "$work/data"
${HEDGEROW_SERVER_EXTRA:-}
[upstream]
servers = ["$upstream"]
[cache]
size = $cache
[rate_limit]
qps = 0
[lists]
manifest = "$work/lists.toml"
compile_if_missing = true
[[group]]
name = "bench"
networks = ["127.0.0.0/8"]
block_categories = ["bench"]
EOF
# HEDGEROW_SERVER_EXTRA: more `[server]` lines, e.g. `udp_sockets = "per-worker"`.
# Extra configuration appended from a file, e.g. one holding `[store]` and
# `log_allowed = false` (the query log keeps blocked queries only).
if [[ -n "${HEDGEROW_EXTRA_FILE:-}" ]]; then cat "$HEDGEROW_EXTRA_FILE" >> "$work/hedgerow.toml"; fi
exec "$BIN" serve --config "$work/hedgerow.toml" --threads "$threads"
