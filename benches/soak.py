#!/usr/bin/env python3
"""Helpers for benches/soak.sh (a benchmark script, not a test): the workload, the in-group
probe, the slow attacker, the sampler and the summary.

  soak.py workload DATA OUT [--lines N] [--churn PCT] [--listed PCT] [--seed S]
      dnsperf datafile: PCT % fresh names under the fake upstream's wildcard (each one unique
      in the file, so with far more of them than the cache holds, every pass misses and the
      cache keeps inserting and evicting), PCT % listed names (blocked: exact and subdomains
      of names in DATA/list-1M.txt), the rest repeats of a small allowed set (cache hits).
  soak.py probe ADDR PORT SOURCE LISTED OUT_TSV STOP_FILE
      one uncached UDP and one uncached TCP query a second from SOURCE (an in-group address),
      and every 5 s one listed name over UDP that must stay blocked; one line per failure
      and a running total in OUT_TSV.counts.
  soak.py attacker SOURCE DNS_ADDR DNS_PORT HTTP_ADDR HTTP_PORT N OUT STOP_FILE
      N slow connections to each of the DNS (TCP) and HTTP ports from SOURCE (outside every
      group), each trickling one byte every 2 s and reconnecting when closed.
  soak.py sample PID DB_DIR METRICS_URL OUT_TSV INTERVAL STOP_FILE [NAME=PID...]
      every INTERVAL s: RSS, HWM, fds, threads of PID, the database files' size, the
      /metrics counters the soak cares about, and datagrams dropped on PID's UDP sockets
      (and each NAME=PID's) because a receive buffer was full.
  soak.py summary OUT_DIR
      the summary table (markdown) from OUT_DIR's files.
"""
import asyncio
import os
import random
import socket
import statistics
import struct
import sys
import time
import urllib.request

# ---------------------------------------------------------------------------------------------
# workload


def workload(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="soak.py workload")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--lines", type=int, default=3_000_000)
    ap.add_argument("--churn", type=float, default=30.0)
    ap.add_argument("--listed", type=float, default=20.0)
    ap.add_argument("--allowed-distinct", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=20261129)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    with open(os.path.join(a.data, "allowed.txt")) as f:
        allowed = [line.strip() for line in f if line.strip()][: a.allowed_distinct]
    listed = []
    with open(os.path.join(a.data, "list-1M.txt")) as f:
        for i, line in enumerate(f):
            if i % 50 == 0 and line.strip():
                listed.append(line.strip())
    prefixes = ["www", "ads", "cdn", "m", "img", "x.y"]
    churn = 0
    with open(a.out, "w") as out:
        for _ in range(a.lines):
            x = rng.random() * 100
            qtype = "AAAA" if rng.random() < 0.25 else "A"
            if x < a.churn:
                # unique in the whole file: a counter, with a random-looking label in front
                out.write(f"c{churn:x}-{rng.getrandbits(32):08x}.churn.soak.test {qtype}\n")
                churn += 1
            elif x < a.churn + a.listed:
                name = rng.choice(listed)
                if rng.random() < 0.5:
                    name = rng.choice(prefixes) + "." + name
                out.write(f"{name} {qtype}\n")
            else:
                out.write(f"{rng.choice(allowed)} {qtype}\n")
    print(f"workload: {a.lines} lines, {churn} unique fresh names, {len(allowed)} allowed, "
          f"{len(listed)} listed names drawn from", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# DNS client bits (dnspython)


def probe(argv):
    addr, port, source, listed_file, out_tsv, stop_file = argv
    port = int(port)
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    with open(listed_file) as f:
        listed = [line.strip() for i, line in enumerate(f) if i % 97 == 0 and line.strip()]
    rng = random.Random()
    counts = {"udp_ok": 0, "udp_fail": 0, "tcp_ok": 0, "tcp_fail": 0,
              "blocked_ok": 0, "blocked_fail": 0}
    lat = {"udp": [], "tcp": []}
    log = open(out_tsv, "a", buffering=1)
    log.write("time\tkind\tname\tproblem\n")
    run = f"{os.getpid():x}{int(time.time()):x}"
    n = 0

    def ask(kind, name, expect_blocked):
        q = dns.message.make_query(name, "A")
        t0 = time.monotonic()
        try:
            if kind == "tcp":
                r = dns.query.tcp(q, addr, port=port, timeout=3, source=source)
            else:
                r = dns.query.udp(q, addr, port=port, timeout=3, source=source,
                                  ignore_unexpected=True)
        except Exception as e:  # timeout, reset, bad reply: all failures
            return f"{type(e).__name__}: {e}"[:200], None
        dt = time.monotonic() - t0
        rc = r.rcode()
        if expect_blocked:
            if rc != dns.rcode.NXDOMAIN:
                return f"rcode {dns.rcode.to_text(rc)} (want NXDOMAIN)", dt
            return None, dt
        if rc != dns.rcode.NOERROR:
            return f"rcode {dns.rcode.to_text(rc)}", dt
        addrs = [rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]
        if addrs != ["192.0.2.1"]:
            return f"answer {addrs}", dt
        return None, dt

    next_t = time.monotonic()
    while not os.path.exists(stop_file):
        n += 1
        for kind in ("udp", "tcp"):
            name = f"p{run}-{n}-{kind}.probe.soak.test"
            problem, dt = ask(kind, name, False)
            if problem:
                counts[f"{kind}_fail"] += 1
                log.write(f"{time.time():.3f}\t{kind}\t{name}\t{problem}\n")
            else:
                counts[f"{kind}_ok"] += 1
                lat[kind].append(dt)
        if n % 5 == 0:
            name = rng.choice(listed)
            problem, _ = ask("udp", name, True)
            if problem:
                counts["blocked_fail"] += 1
                log.write(f"{time.time():.3f}\tblocked\t(listed name)\t{problem}\n")
            else:
                counts["blocked_ok"] += 1
        if n % 10 == 0:
            _write_counts(out_tsv, counts, lat)
        next_t += 1.0
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()
    _write_counts(out_tsv, counts, lat)


def _pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def _write_counts(out_tsv, counts, lat):
    with open(out_tsv + ".counts.tmp", "w") as f:
        for k, v in counts.items():
            f.write(f"{k}\t{v}\n")
        for kind, xs in lat.items():
            f.write(f"{kind}_p50_ms\t{_pct(xs, 0.5) * 1000:.2f}\n")
            f.write(f"{kind}_p99_ms\t{_pct(xs, 0.99) * 1000:.2f}\n")
            f.write(f"{kind}_max_ms\t{(max(xs) if xs else 0) * 1000:.2f}\n")
    os.replace(out_tsv + ".counts.tmp", out_tsv + ".counts")


# ---------------------------------------------------------------------------------------------
# slow attacker


def attacker(argv):
    source, dns_addr, dns_port, http_addr, http_port, n, out, stop_file = argv
    asyncio.run(_attack(source, dns_addr, int(dns_port), http_addr, int(http_port), int(n),
                        out, stop_file))


async def _attack(source, dns_addr, dns_port, http_addr, http_port, n, out, stop_file):
    stats = {}
    for target in ("dns", "http"):
        for k in ("connects", "connect_errors", "closed_at_once", "closed_later",
                  "held_s_total", "open"):
            stats[f"{target}_{k}"] = 0
    # one query frame, never completed in time: its length says 40 bytes, one byte every 2 s
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04slow\x04soak\x04test\x00\x00\x01\x00\x01"
    dns_bytes = struct.pack("!H", 40) + query
    http_bytes = (b"GET /metrics HTTP/1.1\r\nHost: soak\r\n" +
                  b"".join(b"X-Slow-%d: %d\r\n" % (i, i) for i in range(200)))
    stop = asyncio.Event()

    async def one(target, addr, port, payload):
        await asyncio.sleep(random.random() * 2)
        while not stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.bind((source, 0))
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (addr, port)), 5)
                reader, writer = await asyncio.open_connection(sock=sock)
            except Exception:
                stats[f"{target}_connect_errors"] += 1
                sock.close()
                await asyncio.sleep(2)
                continue
            stats[f"{target}_connects"] += 1
            stats[f"{target}_open"] += 1
            t0 = time.monotonic()
            i = 0
            try:
                while not stop.is_set():
                    writer.write(payload[i % len(payload):i % len(payload) + 1])
                    i += 1
                    await writer.drain()
                    # wait 2 s for the server to close (EOF) or anything it sends
                    try:
                        data = await asyncio.wait_for(reader.read(4096), 2)
                        if not data:
                            break
                    except asyncio.TimeoutError:
                        pass
            except (ConnectionError, OSError):
                pass
            held = time.monotonic() - t0
            stats[f"{target}_open"] -= 1
            if held < 0.5:
                stats[f"{target}_closed_at_once"] += 1
            else:
                stats[f"{target}_closed_later"] += 1
                stats[f"{target}_held_s_total"] += held
            writer.close()
            # reconnect, not in a tight loop: a rejected connection is closed at once
            await asyncio.sleep(1 + random.random())

    async def report():
        while True:
            if os.path.exists(stop_file):
                stop.set()
            with open(out + ".tmp", "w") as f:
                for k, v in stats.items():
                    f.write(f"{k}\t{round(v, 1)}\n")
            os.replace(out + ".tmp", out)
            if stop.is_set():
                return
            await asyncio.sleep(5)

    tasks = [asyncio.create_task(one("dns", dns_addr, dns_port, dns_bytes)) for _ in range(n)]
    tasks += [asyncio.create_task(one("http", http_addr, http_port, http_bytes)) for _ in range(n)]
    await report()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# sampler

# (column, metric name, label filter) summed over matching series
METRICS = [
    ("queries", "hedgerow_queries_total", None),
    ("q_blocked", "hedgerow_queries_total", 'disposition="blocked"'),
    ("q_forwarded", "hedgerow_queries_total", 'disposition="forwarded"'),
    ("q_cached", "hedgerow_queries_total", 'disposition="cached"'),
    ("q_servfail", "hedgerow_queries_total", 'disposition="servfail"'),
    ("q_refused", "hedgerow_queries_total", 'disposition="refused"'),
    ("cache_entries", "hedgerow_cache_entries", None),
    ("cache_bytes", "hedgerow_cache_bytes", None),
    ("config_reloads_ok", "hedgerow_config_reloads_total", 'outcome="ok"'),
    ("config_reloads_err", "hedgerow_config_reloads_total", 'outcome="error"'),
    ("list_reloads_ok", "hedgerow_list_reloads_total", 'outcome="ok"'),
    ("list_reloads_bad", "hedgerow_list_reloads_total", 'outcome="error"'),
    ("tcp_rejected", "hedgerow_connections_rejected_total", 'listener="tcp"'),
    ("http_rejected", "hedgerow_connections_rejected_total", 'listener="http"'),
    ("tcp_open", "hedgerow_connections_open", 'listener="tcp"'),
    ("http_open", "hedgerow_connections_open", 'listener="http"'),
    ("store_rows", "hedgerow_store_rows_written_total", None),
    ("store_depth", "hedgerow_store_channel_depth", None),
    ("store_shed", "hedgerow_store_shed_events_total", None),
    ("store_journalled", "hedgerow_store_journalled_events_total", None),
    ("store_journal_bytes", "hedgerow_store_journal_bytes", None),
    ("store_replayed", "hedgerow_store_replayed_events_total", None),
    ("store_db_bytes", "hedgerow_store_database_bytes", None),
    ("sqlite_mem", "hedgerow_store_sqlite_memory_bytes", None),
    ("panics", "hedgerow_panics_total", None),
]


def parse_metrics(text):
    vals = {}
    for col, name, flt in METRICS:
        total = None
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            key, _, value = line.rpartition(" ")
            base = key.split("{", 1)[0]
            if base != name:
                continue
            if flt and flt not in key:
                continue
            try:
                total = (total or 0) + float(value)
            except ValueError:
                pass
        vals[col] = "" if total is None else f"{total:.0f}"
    return vals


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_split_kb(pid):
    """(anonymous, file-backed) resident kB."""
    anon = fileb = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssFile:"):
                    fileb = int(line.split()[1])
    except OSError:
        pass
    return anon, fileb


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def udp_drops(pid):
    """Datagrams the kernel dropped on PID's UDP sockets (receive buffer full), summed."""
    inodes = socket_inodes(pid)
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13 and parts[9] in inodes:
                        total += int(parts[12])
        except OSError:
            pass
    return total


def rcvbuf_errors():
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def sample(argv):
    pid, db_dir, url, out_tsv, interval, stop_file = argv[:6]
    # other processes whose UDP drops are worth watching (NAME=PID), e.g. the upstream
    watch = [w.split("=", 1) for w in argv[6:]]
    interval = float(interval)
    cols = (["t_s", "unix", "rss_kb", "rss_anon_kb", "rss_file_kb", "hwm_kb", "fds", "threads",
             "db_files_bytes", "scrape_ms", "scrape_tries"] + [c for c, _, _ in METRICS] +
            ["udp_drops", "udp_rcvbuf_errors_all"] + [f"udp_drops_{n}" for n, _ in watch] +
            ["load1"])
    fresh = not os.path.exists(out_tsv)
    out = open(out_tsv, "a", buffering=1)
    if fresh:
        out.write("\t".join(cols) + "\n")
    t_start = time.monotonic()
    next_t = t_start
    while True:
        stopping = os.path.exists(stop_file)
        if not os.path.exists(f"/proc/{pid}"):
            out.write(f"# {time.time():.0f} hedgerow (pid {pid}) is gone\n")
            return
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = 0
        db = 0
        try:
            for name in os.listdir(db_dir):
                if name.startswith("hedgerow.sqlite") or name.startswith("journal"):
                    db += os.path.getsize(os.path.join(db_dir, name))
        except OSError:
            pass
        # /metrics may be out of reach while the slow attacker fills the HTTP cap: retry for
        # up to 5 s and record how many tries it took (0 = none got through)
        text, tries, ms = None, 0, 0.0
        deadline = time.monotonic() + 5
        while text is None and time.monotonic() < deadline:
            tries += 1
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    text = r.read().decode()
                ms = (time.monotonic() - t0) * 1000
            except Exception:
                time.sleep(0.2)
        vals = parse_metrics(text) if text is not None else {c: "" for c, _, _ in METRICS}
        anon, fileb = rss_split_kb(pid)
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[0]
        row = [f"{time.monotonic() - t_start:.0f}", f"{time.time():.0f}",
               str(status_kb(pid, "VmRSS")), str(anon), str(fileb), str(status_kb(pid, "VmHWM")),
               str(fds), str(status_kb(pid, "Threads")), str(db),
               f"{ms:.1f}" if text is not None else "", str(tries if text is not None else 0)]
        row += [vals[c] for c, _, _ in METRICS]
        row += [str(udp_drops(pid)), str(rcvbuf_errors())]
        row += [str(udp_drops(p)) for _, p in watch] + [load1]
        out.write("\t".join(row) + "\n")
        if stopping:
            return
        next_t += interval
        delay = next_t - time.monotonic()
        while delay > 0 and not os.path.exists(stop_file):
            time.sleep(min(delay, 0.5))
            delay = next_t - time.monotonic()


# ---------------------------------------------------------------------------------------------
# summary


def read_tsv(path):
    with open(path) as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def read_kv(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    k, v = line.rstrip("\n").split("\t", 1)
                    out[k] = v
    except OSError:
        pass
    return out


def num(v, default=0.0):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def mib(kb):
    return f"{num(kb) / 1024:.1f}"


def summary(argv):
    d = argv[0]
    meta = read_kv(os.path.join(d, "meta.tsv"))
    rows = read_tsv(os.path.join(d, "samples.tsv"))
    if not rows:
        print("no samples")
        return
    warm_s = num(meta.get("warmup_s"), 300)
    first = rows[0]
    warm = next((r for r in rows if num(r["t_s"]) >= warm_s), rows[-1])
    last = rows[-1]
    after = [r for r in rows if num(r["t_s"]) >= warm_s]
    scraped = [r for r in rows if r["queries"] != ""]

    def col(r, c):
        return r.get(c, "")

    def last_scraped(c):
        for r in reversed(scraped):
            if r[c] != "":
                return r[c]
        return ""

    def first_scraped_after(t, c):
        for r in scraped:
            if num(r["t_s"]) >= t and r[c] != "":
                return r[c]
        return ""

    # RSS trend after the warm-up: least-squares slope in MiB per hour
    def slope_of(points):
        if len(points) < 3:
            return ""
        xs, ys = [x for x, _ in points], [y for _, y in points]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx <= 0:
            return ""
        return f"{sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600:+.1f}"

    slope = slope_of([(num(r["t_s"]), num(r["rss_kb"]) / 1024) for r in after])
    # The same without what SQLite holds: its page caches fill towards their configured size
    # as the database grows, a bound rather than a leak, and can take the whole soak to fill.
    with_sqlite = [r for r in after if r.get("sqlite_mem", "") != ""]
    slope_rest = slope_of([(num(r["t_s"]), (num(r["rss_kb"]) * 1024 - num(r["sqlite_mem"])) / 1048576)
                           for r in with_sqlite])
    sqlite_at = lambda r: f"{num(r.get('sqlite_mem')) / 1048576:.1f}" if r.get("sqlite_mem", "") != "" else "?"
    perf = read_kv(os.path.join(d, "dnsperf.kv"))
    probe = read_kv(os.path.join(d, "probe.tsv.counts"))
    att = read_kv(os.path.join(d, "attacker.tsv"))
    rel = read_kv(os.path.join(d, "reloads.kv"))
    q0 = num(first_scraped_after(warm_s, "queries"))
    q1 = num(last_scraped("queries"))
    t_q0 = next((num(r["t_s"]) for r in scraped if num(r["t_s"]) >= warm_s), 0)
    t_q1 = num(scraped[-1]["t_s"]) if scraped else 0
    served = f"{(q1 - q0) / (t_q1 - t_q0):,.0f}" if t_q1 > t_q0 else ""
    maxrow = max(rows, key=lambda r: num(r["rss_kb"]))
    out = []
    p = out.append
    p(f"Soak of {meta.get('duration_s', '?')} s at {meta.get('qps', '?')} qps offered "
      f"(peak measured {meta.get('peak_qps', 'not measured')}); "
      f"load average {meta.get('load_start', '?')} at start, {meta.get('load_end', '?')} at end.")
    p("")
    p("| measure | value |")
    p("|---|---|")
    p(f"| RSS after start-up, lists loaded, before any load (MiB) | {mib(meta.get('rss_boot_kb'))} |")
    p(f"| RSS start of the soak (MiB) | {mib(first['rss_kb'])} (anon {mib(first['rss_anon_kb'])}, file {mib(first['rss_file_kb'])}) |")
    p(f"| RSS after warm-up, t={warm['t_s']} s (MiB) | {mib(warm['rss_kb'])} (anon {mib(warm['rss_anon_kb'])}, file {mib(warm['rss_file_kb'])}) |")
    p(f"| RSS end, t={last['t_s']} s (MiB) | {mib(last['rss_kb'])} (anon {mib(last['rss_anon_kb'])}, file {mib(last['rss_file_kb'])}) |")
    p(f"| RSS max (MiB), VmHWM at end | {mib(maxrow['rss_kb'])} at t={maxrow['t_s']} s; {mib(last['hwm_kb'])} |")
    p(f"| RSS slope after warm-up (MiB/hour, least squares) | {slope} |")
    if with_sqlite:
        p(f"| of which SQLite's heap (page caches), after warm-up / end (MiB) | {sqlite_at(with_sqlite[0])} / {sqlite_at(with_sqlite[-1])} |")
        p(f"| RSS less SQLite's heap: slope after warm-up (MiB/hour) | {slope_rest} |")
    p(f"| open fds start / after warm-up / end / max | {first['fds']} / {warm['fds']} / {last['fds']} / {max(int(num(r['fds'])) for r in rows)} |")
    p(f"| threads start / end | {first['threads']} / {last['threads']} |")
    p(f"| cache entries / bytes after warm-up | {col(warm, 'cache_entries')} / {mib(num(col(warm, 'cache_bytes')) / 1024)} MiB |")
    p(f"| cache entries / bytes end | {last_scraped('cache_entries')} / {mib(num(last_scraped('cache_bytes')) / 1024)} MiB |")
    p(f"| database files start / end (MiB) | {mib(num(first['db_files_bytes']) / 1024)} / {mib(num(last['db_files_bytes']) / 1024)} |")
    p(f"| dnsperf: sent / completed / lost | {perf.get('sent', '')} / {perf.get('completed', '')} / {perf.get('lost', '')} ({perf.get('lost_pct', '')} %) |")
    p(f"| dnsperf: achieved qps, avg latency | {perf.get('qps', '')}, {perf.get('avg_ms', '')} ms |")
    p(f"| dnsperf response codes | {perf.get('rcodes', '')} |")
    p(f"| queries answered per second after warm-up (`/metrics`) | {served} |")
    p(f"| SERVFAIL answers (all clients) | {last_scraped('q_servfail')} |")
    def delta(c):
        vals = [num(r.get(c)) for r in rows if r.get(c, "") != ""]
        return f"{max(vals) - vals[0]:.0f}" if vals else ""
    p(f"| UDP datagrams dropped, receive buffer full: hedgerow's sockets / nsd / dnsperf / whole machine | {delta('udp_drops')} / {delta('udp_drops_nsd')} / {delta('udp_drops_dnsperf')} / {delta('udp_rcvbuf_errors_all')} |")
    p(f"| probe UDP ok / failed | {probe.get('udp_ok', '')} / {probe.get('udp_fail', '')} |")
    p(f"| probe TCP ok / failed | {probe.get('tcp_ok', '')} / {probe.get('tcp_fail', '')} |")
    p(f"| probe listed name blocked / not | {probe.get('blocked_ok', '')} / {probe.get('blocked_fail', '')} |")
    p(f"| probe latency UDP p50 / p99 / max (ms) | {probe.get('udp_p50_ms', '')} / {probe.get('udp_p99_ms', '')} / {probe.get('udp_max_ms', '')} |")
    p(f"| probe latency TCP p50 / p99 / max (ms) | {probe.get('tcp_p50_ms', '')} / {probe.get('tcp_p99_ms', '')} / {probe.get('tcp_max_ms', '')} |")
    p(f"| reloads sent: SIGHUP / lists touched / lists recompiled | {rel.get('hup', 0)} / {rel.get('touch', 0)} / {rel.get('compile', 0)} |")
    p(f"| config reloads ok / error (`/metrics`) | {last_scraped('config_reloads_ok')} / {last_scraped('config_reloads_err')} |")
    p(f"| list reloads ok / error (`/metrics`) | {last_scraped('list_reloads_ok')} / {last_scraped('list_reloads_bad')} |")
    p(f"| attacker DNS: connections, closed at once, closed later (mean held s) | {_att(att, 'dns')} |")
    p(f"| attacker HTTP: connections, closed at once, closed later (mean held s) | {_att(att, 'http')} |")
    p(f"| connections rejected: TCP / HTTP (`/metrics`) | {last_scraped('tcp_rejected')} / {last_scraped('http_rejected')} |")
    first_try = sum(1 for r in scraped if r["scrape_tries"] == "1")
    p(f"| `/metrics` scrapes: through at the first try / within 5 s of retries / of | {first_try} / {len(scraped)} / {len(rows)} |")
    p(f"| store rows written, shed, journalled, replayed | {last_scraped('store_rows')}, {last_scraped('store_shed')}, {last_scraped('store_journalled')}, {last_scraped('store_replayed')} |")
    p(f"| panics | {last_scraped('panics')} |")
    p(f"| exit on SIGTERM at the end | {meta.get('exit_code', '')} |")
    print("\n".join(out))


def _att(att, t):
    later = num(att.get(f"{t}_closed_later"))
    held = num(att.get(f"{t}_held_s_total"))
    mean = f"{held / later:.1f}" if later else "-"
    return (f"{att.get(f'{t}_connects', '')}, {att.get(f'{t}_closed_at_once', '')}, "
            f"{att.get(f'{t}_closed_later', '')} ({mean})")


def main():
    cmds = {"workload": workload, "probe": probe, "attacker": attacker, "sample": sample,
            "summary": summary}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
