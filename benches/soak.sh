#!/usr/bin/env bash
# soak.sh -- a long run of the release `hedgerow serve` under steady load, reloads and a slow
# attacker, sampling memory, descriptors and counters. A benchmark script, not a CI test.
#
#   cargo build --release
#   benches/soak.sh                                   # 30 minutes at half of the measured peak
#   SOAK_SECONDS=120 SOAK_RELOAD_EVERY=20 benches/soak.sh   # a short shake-out
#
# What runs, all on loopback, every process started here and stopped by PID at the end:
#   - nsd as a fake authoritative upstream (../shared/bench/templates: a root zone with
#     wildcards, so every name resolves: A 192.0.2.1);
#   - hedgerow serve: groups `pupils` 127.0.1.0/24 and `staff` 127.0.2.0/24 blocking a compiled
#     1M-name list (../shared/bench/gen_lists.py), the store on with blocked queries logged
#     (`log_allowed = false`), HTTP (/metrics) on loopback;
#   - dnsperf from 127.0.1.10 at SOAK_QPS (default: half of the peak measured first by a 20 s
#     closed-loop run), with up to 5,000 queries in flight so it does not slow down with the
#     server: 30 % fresh names under the upstream's wildcard (cache misses: the cache keeps
#     inserting and evicting), 20 % listed names (blocked), 50 % repeats (cache hits);
#   - every SOAK_RELOAD_EVERY s: the configuration rewritten (a deny entry toggled) and SIGHUP;
#     half a period later, alternately the compiled lists' meta.toml touched (the server's
#     2-second poll reloads them) and the lists recompiled (`hedgerow lists compile`);
#   - a slow attacker from 127.0.0.99 (in no group): SOAK_ATTACK connections to each of the DNS
#     (TCP) and HTTP ports, trickling a byte every 2 s, reconnecting when closed;
#   - an in-group probe from 127.0.2.20: one fresh name over UDP and one over TCP each second
#     (must be NOERROR with 192.0.2.1), and a listed name every 5 s (must be NXDOMAIN);
#   - a sampler every 10 s: RSS (anonymous / file-backed), VmHWM, fds, threads, database
#     size, and /metrics counters.
# Results in SOAK_OUT: samples.tsv, probe.tsv (+ .counts), attacker.tsv, dnsperf.txt,
# reloads.log, serve.log, summary.md (printed at the end).
#
# Knobs (env): SOAK_SECONDS=1800 SOAK_QPS=(measured) SOAK_OUT=/tmp/hedgerow-soak/<timestamp>
#   SOAK_WARMUP=300 (capped at a quarter of the run) SOAK_RELOAD_EVERY=60 (0: no reloads)
#   SOAK_ATTACK=300 (slow connections to each port; 0: no attacker)
#   SOAK_CACHE=100000 (answer cache entries) SOAK_INTERVAL=10 (sampling)
#   DATA=/tmp/dnsbench/data (gen_lists.py output; generated when missing) HEDGEROW_BIN
#   SOAK_NET=127.0.3 (server 127.0.3.1, upstream 127.0.3.53) SOAK_DNS_PORT=5353
#   SOAK_HTTP_PORT=8053 SOAK_UP_PORT=5300
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
BIN="${HEDGEROW_BIN:-$ROOT/target/release/hedgerow}"
DATA="${DATA:-/tmp/dnsbench/data}"
SECONDS_TOTAL="${SOAK_SECONDS:-1800}"
QPS="${SOAK_QPS:-}"
OUT="${SOAK_OUT:-/tmp/hedgerow-soak/$(date +%Y%m%d-%H%M%S)}"
WARMUP="${SOAK_WARMUP:-300}"
(( WARMUP > SECONDS_TOTAL / 4 )) && WARMUP=$(( SECONDS_TOTAL / 4 ))
RELOAD_EVERY="${SOAK_RELOAD_EVERY:-60}"
ATTACK="${SOAK_ATTACK:-300}"
CACHE="${SOAK_CACHE:-100000}"
INTERVAL="${SOAK_INTERVAL:-10}"
NET="${SOAK_NET:-127.0.3}"
ADDR="$NET.1"
UP_ADDR="$NET.53"
PORT="${SOAK_DNS_PORT:-5353}"
HTTP_PORT="${SOAK_HTTP_PORT:-8053}"
UP_PORT="${SOAK_UP_PORT:-5300}"
LOAD_SRC=127.0.1.10      # group pupils
PROBE_SRC=127.0.2.20     # group staff
ATTACK_SRC=127.0.0.99    # no group

W="$OUT/work"
mkdir -p "$OUT" "$W"
LOG="$OUT/soak.log"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
meta() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/meta.tsv"; }

STARTED_PIDS=()
stop_pid() { # stop one process we started, by PID: TERM, then KILL after 10 s
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  touch "$W/stop" 2>/dev/null || true
  for p in "${STARTED_PIDS[@]:-}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in nsd dnsperf dig python3; do
  command -v "$tool" > /dev/null || { log "missing $tool (sudo ../shared/bench/install.sh)"; exit 1; }
done
python3 -c 'import dns.query' 2> /dev/null || { log "missing Python's dnspython"; exit 1; }
[[ -x "$BIN" ]] || { log "no $BIN: cargo build --release first"; exit 1; }
for hp in "$ADDR:$PORT" "$ADDR:$HTTP_PORT" "$UP_ADDR:$UP_PORT"; do
  if ss -Hltnu | awk '{print $5}' | grep -qx "$hp"; then log "$hp is in use (SOAK_NET=127.0.x picks other addresses)"; exit 1; fi
done

# ---- data: the 1M-name list and the soak workload -----------------------------------------------
if [[ ! -s "$DATA/list-1M.txt" || ! -s "$DATA/allowed.txt" ]]; then
  log "generating lists into $DATA"
  python3 "$SHARED/gen_lists.py" --out "$DATA" --sizes 1M
fi
WL="$DATA/soak-workload-v1.txt"   # bump the version when soak.py's workload changes
if [[ ! -s "$WL" ]]; then
  log "writing the soak workload $WL"
  python3 "$HERE/soak.py" workload "$DATA" "$WL.tmp" && mv "$WL.tmp" "$WL"
fi

# ---- upstream: nsd with the harness's wildcard root ---------------------------------------------
mkdir -p "$W/upstream"
sed -e "s|@WORK@|$W/upstream|g" -e "s|@UP_ADDR@|$UP_ADDR|g" -e "s|@UP_PORT@|$UP_PORT|g" \
  "$SHARED/templates/nsd.conf" > "$W/upstream/nsd.conf"
cp "$SHARED/templates/root.zone" "$W/upstream/root.zone"
nsd -d -c "$W/upstream/nsd.conf" > "$W/upstream/nsd.out" 2>&1 &
UP_PID=$!; STARTED_PIDS+=("$UP_PID")
for _ in $(seq 1 100); do
  dig @"$UP_ADDR" -p "$UP_PORT" +short +tries=1 +time=1 upstream-check.test A 2>/dev/null | grep -q 192.0.2.1 && break
  sleep 0.2
done
dig @"$UP_ADDR" -p "$UP_PORT" +short +tries=1 +time=1 upstream-check.test A | grep -q 192.0.2.1 \
  || { log "nsd did not start"; cat "$W/upstream/nsd.out" >&2; exit 1; }
log "upstream nsd on $UP_ADDR:$UP_PORT (pid $UP_PID)"

# ---- hedgerow: configuration, lists, start ------------------------------------------------------
cat > "$W/lists.toml" <<EOF
[[category]]
id = "bench"
title = "Benchmark list"
uk_definition = "synthetic names from the peer harness"
severity = "low"
[[category.source]]
path = "$DATA/list-1M.txt"
format = "domains"
EOF
write_config() { # write_config N: the configuration, with deny entry N (toggled at each reload)
  cat > "$W/hedgerow.toml.tmp" <<EOF
[server]
listen = ["$ADDR:$PORT"]
http = "$ADDR:$HTTP_PORT"
data_dir = "$W/data"
[upstream]
servers = ["$UP_ADDR:$UP_PORT"]
[cache]
size = $CACHE
[rate_limit]
# on, so its buckets are in the run, but far above the load generator's rate
qps = 1000000
burst = 1000000
[lists]
manifest = "$W/lists.toml"
[store]
log_allowed = false
[[group]]
name = "pupils"
networks = ["127.0.1.0/24"]
block_categories = ["bench"]
deny = ["soak-deny-$1.test"]
[[group]]
name = "staff"
networks = ["127.0.2.0/24"]
block_categories = ["bench"]
EOF
  mv "$W/hedgerow.toml.tmp" "$W/hedgerow.toml"
}
write_config 0
"$BIN" check-config "$W/hedgerow.toml" > "$W/check-config.txt" 2>&1 || { log "check-config failed"; cat "$W/check-config.txt" >&2; exit 1; }
t0=$(date +%s.%N)
"$BIN" lists compile --config "$W/hedgerow.toml" > "$W/compile-0.log" 2>&1 || { log "compile failed"; tail "$W/compile-0.log" >&2; exit 1; }
log "lists compiled in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
ART="$W/data/lists"

"$BIN" serve --config "$W/hedgerow.toml" > "$OUT/serve.log" 2>&1 &
HR_PID=$!; STARTED_PIDS+=("$HR_PID")
LISTED="$(head -1 "$DATA/list-1M.txt")"
up=""
for _ in $(seq 1 300); do
  kill -0 "$HR_PID" 2>/dev/null || { log "hedgerow exited"; tail -20 "$OUT/serve.log" >&2; exit 1; }
  if dig @"$ADDR" -p "$PORT" -b "$PROBE_SRC" +tries=1 +time=1 "$LISTED" A 2>/dev/null | grep -q 'status: NXDOMAIN'; then up=1; break; fi
  sleep 0.2
done
[[ -n "$up" ]] || { log "hedgerow did not answer"; tail -20 "$OUT/serve.log" >&2; exit 1; }
sleep 1
RSS_BOOT=$(awk '/^VmRSS/{print $2}' "/proc/$HR_PID/status")
log "hedgerow up on $ADDR:$PORT, http $ADDR:$HTTP_PORT (pid $HR_PID), RSS $((RSS_BOOT / 1024)) MiB"
# outside every group: REFUSED (else the attacker would not be an outsider)
dig @"$ADDR" -p "$PORT" -b "$ATTACK_SRC" +tries=1 +time=1 x.test A | grep -q 'status: REFUSED' \
  || { log "$ATTACK_SRC is not refused: fix the groups"; exit 1; }

{
  echo "date: $(date -Is)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)')"
  echo "host: $(uname -srm), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "dnsperf: $(dnsperf -H 2>&1 | awk '/^Version/{print $2}')"
  echo "nsd: $(nsd -v 2>&1 | head -1)"
} > "$OUT/versions.txt"
meta rss_boot_kb "$RSS_BOOT"
meta duration_s "$SECONDS_TOTAL"
meta warmup_s "$WARMUP"

# ---- peak (closed loop), unless given -----------------------------------------------------------
if [[ -z "$QPS" ]]; then
  dnsperf -s "$ADDR" -p "$PORT" -a "$LOAD_SRC" -d "$WL" -c 8 -q 200 -l 20 -t 2 > "$OUT/peak.txt" 2>&1 || true
  PEAK="$(grep -E 'Queries per second' "$OUT/peak.txt" | sed -E 's/.*: *([0-9.]+).*/\1/')"
  [[ -n "$PEAK" ]] || { log "peak run failed"; cat "$OUT/peak.txt" >&2; exit 1; }
  QPS=$(awk -v p="$PEAK" 'BEGIN{printf "%d", p/2}')
  log "peak ${PEAK} qps (closed loop, 20 s, $(grep -E 'Queries lost' "$OUT/peak.txt" | xargs)); soak at $QPS qps"
  meta peak_qps "$(printf '%.0f' "$PEAK")"
fi
meta qps "$QPS"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
meta load_start "$LOAD_START"
log "load average at start: $LOAD_START"

# ---- the soak -----------------------------------------------------------------------------------
rm -f "$W/stop"
python3 "$HERE/soak.py" probe "$ADDR" "$PORT" "$PROBE_SRC" "$DATA/list-1M.txt" "$OUT/probe.tsv" "$W/stop" 2> "$OUT/probe.err" &
PROBE_PID=$!; STARTED_PIDS+=("$PROBE_PID")
ATT_PID=""
if (( ATTACK > 0 )); then
  python3 "$HERE/soak.py" attacker "$ATTACK_SRC" "$ADDR" "$PORT" "$ADDR" "$HTTP_PORT" "$ATTACK" "$OUT/attacker.tsv" "$W/stop" 2> "$OUT/attacker.err" &
  ATT_PID=$!; STARTED_PIDS+=("$ATT_PID")
fi
dnsperf -s "$ADDR" -p "$PORT" -a "$LOAD_SRC" -d "$WL" -c 16 -q 5000 -Q "$QPS" -l "$SECONDS_TOTAL" -t 5 -S 10 > "$OUT/dnsperf.txt" 2>&1 &
PERF_PID=$!; STARTED_PIDS+=("$PERF_PID")
python3 "$HERE/soak.py" sample "$HR_PID" "$W/data" "http://$ADDR:$HTTP_PORT/metrics" "$OUT/samples.tsv" "$INTERVAL" "$W/stop" \
  "nsd=$UP_PID" "dnsperf=$PERF_PID" &
SAMPLER_PID=$!; STARTED_PIDS+=("$SAMPLER_PID")
log "soak: ${SECONDS_TOTAL} s at $QPS qps; sampler $SAMPLER_PID, probe $PROBE_PID, attacker $ATT_PID, dnsperf $PERF_PID"

START=$(date +%s)
hup=0; touched=0; compiled=0; k=0
at() { # sleep until START + $1 s, or return 1 when dnsperf has ended or the soak is over
  local until=$((START + $1))
  (( $1 < SECONDS_TOTAL )) || return 1
  while (( $(date +%s) < until )); do
    kill -0 "$PERF_PID" 2>/dev/null || return 1
    kill -0 "$HR_PID" 2>/dev/null || return 1
    sleep 1
  done
}
while (( RELOAD_EVERY > 0 )); do
  k=$((k + 1))
  at $((k * RELOAD_EVERY)) || break
  write_config $((k % 2))
  kill -HUP "$HR_PID"; hup=$((hup + 1))
  echo "$(date +%s) hup $k" >> "$OUT/reloads.log"
  at $((k * RELOAD_EVERY + RELOAD_EVERY / 2)) || break
  if (( k % 2 == 1 )); then
    touch "$ART/meta.toml"; touched=$((touched + 1))
    echo "$(date +%s) touch $k" >> "$OUT/reloads.log"
  else
    if nice -n 5 "$BIN" lists compile --config "$W/hedgerow.toml" > "$W/compile-$k.log" 2>&1; then
      compiled=$((compiled + 1)); echo "$(date +%s) compile $k" >> "$OUT/reloads.log"
    else
      echo "$(date +%s) compile $k FAILED" >> "$OUT/reloads.log"; log "lists compile failed: $(tail -1 "$W/compile-$k.log")"
    fi
  fi
done
printf 'hup\t%s\ntouch\t%s\ncompile\t%s\n' "$hup" "$touched" "$compiled" > "$OUT/reloads.kv"
while kill -0 "$PERF_PID" 2>/dev/null && kill -0 "$HR_PID" 2>/dev/null; do sleep 1; done
wait "$PERF_PID" 2>/dev/null || true
alive=1; kill -0 "$HR_PID" 2>/dev/null || alive=0
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
meta load_end "$LOAD_END"
log "soak done (hedgerow alive: $alive); load average at end: $LOAD_END"

# last sample, then the helpers stop on their own (stop file)
touch "$W/stop"
for p in "$SAMPLER_PID" "$PROBE_PID" $ATT_PID; do
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$p"
done

# dnsperf's totals
{
  f="$OUT/dnsperf.txt"
  printf 'sent\t%s\n' "$(grep -E '^ *Queries sent' "$f" | awk '{print $3}')"
  printf 'completed\t%s\n' "$(grep -E '^ *Queries completed' "$f" | awk '{print $3}')"
  printf 'lost\t%s\n' "$(grep -E '^ *Queries lost' "$f" | awk '{print $3}')"
  printf 'lost_pct\t%s\n' "$(grep -E '^ *Queries lost' "$f" | sed -E 's/.*\(([0-9.]+)%\).*/\1/')"
  printf 'qps\t%s\n' "$(grep -E 'Queries per second' "$f" | sed -E 's/.*: *([0-9.]+).*/\1/')"
  printf 'avg_ms\t%s\n' "$(grep -E 'Average Latency' "$f" | awk '{printf "%.3f", $4 * 1000}')"
  printf 'rcodes\t%s\n' "$(grep -E 'Response codes' "$f" | sed -E 's/.*codes: *//')"
} > "$OUT/dnsperf.kv"

# a clean shutdown is part of the result
if (( alive )); then
  kill -TERM "$HR_PID"
  rc=0; wait "$HR_PID" || rc=$?
  meta exit_code "$rc"
  log "hedgerow stopped on SIGTERM, exit code $rc"
else
  rc=0; wait "$HR_PID" || rc=$?
  meta exit_code "died: $rc"
  log "hedgerow DIED during the soak (exit $rc): see $OUT/serve.log"
fi
stop_pid "$UP_PID"
du -sb "$W/data" | awk '{print "data_dir_bytes\t" $1}' >> "$OUT/meta.tsv"

python3 "$HERE/soak.py" summary "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
