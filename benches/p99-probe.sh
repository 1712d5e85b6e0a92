#!/usr/bin/env bash
# Open-loop tail latency of several servers side by side, round after round, on the harness's
# split of this 2-core box: each server pinned to CPU 1, dnsperf on CPU 0. Quicker than a
# whole harness run when only the p99 at 10k qps is in question, and able to put two builds
# (or one build with two configurations) next to the trivial responder in one run.
#
#   benches/p99-probe.sh REPS NAME=BIN[:EXTRA_FILE[:VAR=VALUE]] ...
#
# BIN is a hedgerow binary, or `responder` for ../shared/bench/limit/responder.c (compiled
# here if missing). EXTRA_FILE is appended to the configuration, as HEDGEROW_EXTRA_FILE in
# benches/peer-serve.sh (e.g. `[store]` / `log_allowed = false`); VAR=VALUE is set in the
# server's environment (e.g. GLIBC_TUNABLES=...). A NAME starting with `shm` keeps its data
# folder on tmpfs (/dev/shm).
#
# Needs the list and workload of ../shared/bench/gen_lists.py (DATA, default
# /tmp/scale-lists; LIST and WORKLOAD override the 1M files) and starts nsd from the
# harness's templates as the upstream. CACHE (default 100000, Hedgerow's default) sets
# `[cache] size`. Per rep and server it prints p50/p99/p99.9; at the end the median p99 and,
# when a `responder` is in the run, the median of each rep's ratio to it. The servers take
# turns in the order given, reversed every other round.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="${SHARED:-$HERE/../../shared}"
DATA="${DATA:-/tmp/scale-lists}"
LIST="${LIST:-$DATA/list-1M.txt}"
WORKLOAD="${WORKLOAD:-$DATA/workload-1M.txt}"
CACHE="${CACHE:-100000}"
QPS="${QPS:-10000}"
SECONDS_PER_REP="${SECONDS_PER_REP:-8}"
ROOT="$(mktemp -d /tmp/p99-probe.XXXXXX)"
REPS=$1
shift

RESPONDER="$ROOT/limit-responder"
cc -O2 -pthread -o "$RESPONDER" "$SHARED/bench/limit/responder.c"

. "$HERE/nsd-upstream.sh" 5400

names=()
declare -A PORT
i=0
for spec in "$@"; do
  name="${spec%%=*}"
  IFS=: read -r bin extra env <<< "${spec#*=}"
  names+=("$name")
  port=$((17000 + 10 * i + RANDOM % 10))
  i=$((i + 1))
  PORT[$name]=$port
  work="$ROOT/$name"
  [[ $name == shm* ]] && work="/dev/shm/p99-probe-$$-$name"
  mkdir -p "$work"
  if [[ $bin == responder ]]; then
    taskset -c 1 "$RESPONDER" 127.0.0.1 "$port" 1 > /dev/null 2>&1 &
  else
    env ${env:+"$env"} HEDGEROW_BIN="$bin" HEDGEROW_EXTRA_FILE="${extra:-}" taskset -c 1 \
      "$HERE/peer-serve.sh" 127.0.0.1 "$port" "$LIST" "127.0.0.1:$UP_PORT" "$work" 1 "$CACHE" \
      > "$work/server.log" 2>&1 &
  fi
  PIDS+=($!)
done

for name in "${names[@]}"; do
  port=${PORT[$name]}
  for _ in $(seq 1 600); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 example.com > /dev/null 2>&1 && break
    sleep 0.5
  done
  # One pass of the workload fills the cache, as the harness's warm-up does.
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORKLOAD" -n 1 -c 8 -Q 20000 -t 5 > /dev/null 2>&1
done

for r in $(seq 1 "$REPS"); do
  # Every other round in reverse: a server's p99 depends on its place in the round (what the
  # others left running: their writers' last batches, the kernel's writeback), so each one
  # takes each place as often.
  order=("${names[@]}")
  if ((r % 2 == 0)); then
    order=()
    for ((j = ${#names[@]} - 1; j >= 0; j--)); do order+=("${names[j]}"); done
  fi
  for name in "${order[@]}"; do
    taskset -c 0 dnsperf -s 127.0.0.1 -p "${PORT[$name]}" -d "$WORKLOAD" -c 8 -Q "$QPS" \
      -l "$SECONDS_PER_REP" -t 2 -v > "$ROOT/lat.txt" 2>&1 || true
    python3 - "$ROOT/lat.txt" "$name" "$r" <<'PY' | tee -a "$ROOT/results.txt"
import sys
l = sorted(float(x.split()[-1]) for x in open(sys.argv[1]) if x.startswith("> "))
n = len(l)
p = lambda q: l[min(n - 1, int(q * n))] * 1000
print("%s rep %s n=%d p50=%.3f p99=%.3f p999=%.3f" % (sys.argv[2], sys.argv[3], n, p(.5), p(.99), p(.999)))
PY
  done
done

python3 - "$ROOT/results.txt" "$@" <<'PY'
import statistics, sys
p99 = {}
for line in open(sys.argv[1]):
    f = line.split()
    p99.setdefault(f[0], []).append(float(f[5].split("=")[1]))
base = next((s.split("=")[0] for s in sys.argv[2:] if s.split("=")[1].split(":")[0] == "responder"), None)
for name, v in p99.items():
    line = "%-12s p99 median %.3f  reps %s" % (name, statistics.median(v), " ".join("%.3f" % x for x in v))
    if base and name != base:
        r = [a / b for a, b in zip(v, p99[base])]
        line += "  ÷ %s paired median %.2f (%.2f–%.2f)" % (base, statistics.median(r), min(r), max(r))
    print(line)
PY
rm -rf /dev/shm/p99-probe-$$-*
