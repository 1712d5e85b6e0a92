# Sourced by the probe scripts (benches/p99-probe.sh, benches/wal-pages.sh): starts `nsd` on
# CPU 0 from the peer harness's templates as the servers' upstream, in "$ROOT/up" on a random
# port from $1 (the scripts use different ranges, so they can run side by side). Sets UP_PORT
# and PIDS (nsd first; callers append their servers) and kills them all on exit.
UP_PORT=$(($1 + RANDOM % 100))
mkdir -p "$ROOT/up"
sed -e "s|@WORK@|$ROOT/up|g" -e "s|@UP_ADDR@|127.0.0.1|g" -e "s|@UP_PORT@|$UP_PORT|g" \
  "$SHARED/bench/templates/nsd.conf" > "$ROOT/up/nsd.conf"
cp "$SHARED/bench/templates/root.zone" "$ROOT/up/"
taskset -c 0 nsd -d -c "$ROOT/up/nsd.conf" > "$ROOT/up/nsd.out" 2>&1 &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
