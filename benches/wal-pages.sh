#!/usr/bin/env bash
# Pages the query log writes per stored query, and which tables they belong to: a steadier
# measure of the store's disk work than a p99, which on this VM moves as much from run to run.
#
#   benches/wal-pages.sh BIN[:EXTRA_FILE] ...
#
# For each build in turn: the harness's 1M list and workload (DATA, default /tmp/scale-lists,
# from ../shared/bench/gen_lists.py), `nsd` from the harness's templates as upstream, server on
# CPU 1, one pass of the workload at 10k qps as warm-up, then 10 s at 10k qps with `strace`
# counting the writer's 4 KiB writes to the WAL and to the database file (checkpoints) and its
# fsyncs. EXTRA_FILE is appended to the configuration as in benches/p99-probe.sh (e.g.
# `[store]` / `log_allowed = false`). Then the WAL left at the end is read frame by frame and
# each frame's page is named by SQLite's `dbstat` (the table or index it belongs to now).
# strace slows the writer, so batches are somewhat larger than without it; compare builds
# within one run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="${SHARED:-$HERE/../../shared}"
DATA="${DATA:-/tmp/scale-lists}"
ROOT="$(mktemp -d /tmp/wal-pages.XXXXXX)"

. "$HERE/nsd-upstream.sh" 5500

i=0
for spec in "$@"; do
  IFS=: read -r bin extra <<< "$spec"
  i=$((i + 1))
  work="$ROOT/$i"
  mkdir -p "$work"
  port=$((17500 + 10 * i + RANDOM % 10))
  HEDGEROW_BIN="$bin" HEDGEROW_EXTRA_FILE="${extra:-}" taskset -c 1 \
    "$HERE/peer-serve.sh" 127.0.0.1 "$port" "$DATA/list-1M.txt" "127.0.0.1:$UP_PORT" "$work" 1 100000 \
    > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 example.com > /dev/null 2>&1 && break
    sleep 0.5
  done
  pid=$(pgrep -f "serve --config $work/hedgerow.toml")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/workload-1M.txt" -n 1 -c 8 -Q 10000 -t 5 > /dev/null 2>&1
  sleep 3
  db="$work/data/hedgerow.sqlite"
  rows0=$(sqlite3 "file:$db?mode=ro" "SELECT COUNT(*) FROM queries")
  strace -f -e trace=pwrite64,fsync,fdatasync -e signal=none -p "$pid" -o "$work/strace.txt" &
  tracer=$!
  sleep 0.5
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/workload-1M.txt" -c 8 -Q 10000 -l 10 > /dev/null 2>&1
  sleep 1.5
  kill "$tracer"
  wait "$tracer" 2> /dev/null || true
  rows1=$(sqlite3 "file:$db?mode=ro" "SELECT COUNT(*) FROM queries")
  walfd=$(ls -l "/proc/$pid/fd" | awk '/sqlite-wal$/ {print $9}' | head -1)
  dbfd=$(ls -l "/proc/$pid/fd" | awk '/hedgerow.sqlite$/ {print $9}' | paste -sd, -)
  mkdir -p "$work/copy"
  cp "$db" "$db-wal" "$work/copy/"
  kill "$server"
  wait "$server" 2> /dev/null || true
  python3 - "$spec" "$work" "$walfd" "$dbfd" $((rows1 - rows0)) <<'PY'
import collections, re, sqlite3, struct, sys
spec, work, walfd, dbfds, rows = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4].split(",")), int(sys.argv[5])
wal = db = syncs = 0
for line in open(work + "/strace.txt"):
    m = re.search(r"pwrite64\((\d+), .*, \d+, \d+\) = (\d+)", line)
    if m and m.group(2) == "4096":
        wal += m.group(1) == walfd
        db += m.group(1) in dbfds
    elif "fsync(" in line or "fdatasync(" in line:
        syncs += 1
print("%s: %d rows stored in the window; WAL pages %d (%.3f a row); database pages %d; fsyncs %d"
      % (spec, rows, wal, wal / max(rows, 1), db, syncs))
# The WAL's frames (24-byte header, then the page), by generation: the file starts with the
# newest (the salt of the file's header); older generations' frames follow where the newest
# has not yet overwritten them (the older, the likelier to hold the warm-up's interning).
data = open(work + "/copy/hedgerow.sqlite-wal", "rb").read()
size = struct.unpack(">I", data[8:12])[0]
gens, off = {}, 32
while off + 24 + size <= len(data):
    g = gens.setdefault(data[off + 8:off + 16], [[], 0])
    g[0].append(struct.unpack(">I", data[off:off + 4])[0])
    g[1] += struct.unpack(">I", data[off + 4:off + 8])[0] != 0
    off += 24 + size
owner = dict(sqlite3.connect(work + "/copy/hedgerow.sqlite").execute("SELECT pageno, name FROM dbstat"))
for n, (frames, commits) in enumerate(list(gens.values())[:3]):
    split = collections.Counter(owner.get(p, "(new)") for p in frames)
    print("  WAL generation %d: %d frames, %d commits; %s" % (n, len(frames), commits, ", ".join(
        "%s %.0f%%" % (name, 100 * c / len(frames)) for name, c in split.most_common(8))))
PY
done
