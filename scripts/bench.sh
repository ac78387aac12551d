#!/usr/bin/env bash
# workshop-cli next to the reference tools: same machine, same run, same work.
# Prints a table of ratios and writes it, with the machine, versions, commands and raw
# figures, to BENCHMARKS.md. A report, not a gate: a missed target still exits 0;
# only a tool that fails to run (or a run that did not do the work asked) exits 1.
#
#   cache hit, 1 client   workshop-cli cache-aside (every timed read a hit)  vs  redis-benchmark -c 1 GET
#   point select          workshop-cli cache-aside --no-cache                vs  pgbench -S -M prepared (PostgreSQL)
#                                                                            and sysbench oltp_point_select (MariaDB)
#   floor (context)       scripts/get_loop.rs, a bare GET loop (tokio, and blocking read), in workshop-cli's place;
#                         sysbench running workshop-cli's own MariaDB query (scripts/airport_point_select.lua)
#   placement             each single-client pair runs with the server pinned to the last CPU and the client pinned to
#                         CPU 0, then to the server's CPU (see pin_server below)
#   throughput, 50 tasks  workshop-cli cache-aside --concurrency 50 (one shared connection)
#                                                                            vs  redis-benchmark -c 1 -P 50 GET
#                         ... --concurrency 50 --connections 50              vs  redis-benchmark -c 50 GET
#   peak memory           workshop-cli cache-aside --runs 200000 --concurrency 50, and stats with its defaults:
#                         peak RSS (getrusage of the child) against a fixed limit, no reference tool
#   the same two on the Valkey Cluster (just up-cluster, 127.0.0.1:7001-7006): workshop-cli through its cluster client
#                         vs  redis-benchmark -c 1 / -c 50 GET on the primary that holds the key (redis-benchmark
#                         --cluster runs no custom command, and one key lives on one primary)
#   serve (exercise 7)    see its block below: wrk, redis-benchmark, workshop-cli load, peak RSS
#
# Usage: scripts/bench.sh            (or `just bench`, which starts the services and seeds first)
# Environment (all optional):
#   WORKSHOP_BIN            binary to measure [./target/release/workshop-cli, built with cargo first]
#   BENCH_ROUNDS            times each pair runs, alternating; the report shows medians [3]
#   BENCH_RUNS              timed reads per latency phase [20000]
#   BENCH_WARMUP            untimed reads before them [1000]
#   BENCH_THROUGHPUT_RUNS   reads in the throughput phase [200000]
#   BENCH_CONCURRENCY       tasks / clients in the throughput phase [50]
#   BENCH_ID                airport_id read by workshop-cli [3797]
#   BENCH_MYSQL_URL         database workshop-cli reads on MariaDB [mysql://workshop:workshop@127.0.0.1:3306/workshop]
#   BENCH_POSTGRES_URL      database workshop-cli reads on PostgreSQL [postgres://workshop:workshop@127.0.0.1:5432/workshop]
#   BENCH_REPORT            where the Markdown report goes [BENCHMARKS.md at the repository top]
#   BENCH_PHASE_TIMEOUT     seconds any one tool run may take before it counts as failed [90]
#   BENCH_CLUSTER           0 leaves out the Valkey Cluster rows (and does not need `just up-cluster`) [1]
#   BENCH_CLUSTER_PORT      a node of another cluster to use instead of `just up-cluster`'s [7001]
#   BENCH_KEY_PREFIX        Valkey key prefix of workshop-cli's entries [bench:<pid of the bench>:]
#
# The reference tools get their own database, workshop_bench, on both servers (pgbench -i and
# sysbench prepare create their tables there, once); the workshop database is only read.
# workshop-cli writes Valkey keys under the prefix bench: only; they are deleted on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HOST=127.0.0.1
MYSQL_PORT=3306
PG_PORT=5432
VALKEY_PORT=6379
DB_USER=workshop
DB_PASS=workshop
REF_DB=workshop_bench      # the reference tools' own database, on both servers
REF_ROWS=100000            # rows in their table: pgbench -s 1 makes 100,000 accounts; sysbench gets as many
# bench:<pid>: so two benches at once (another worktree's) never delete each other's entries.
KEY_PREFIX="${BENCH_KEY_PREFIX:-bench:$$:}"
VALKEY_URL="redis://$HOST:$VALKEY_PORT"
CLUSTER_PORT="${BENCH_CLUSTER_PORT:-7001}" # a node of the cluster `just up-cluster` starts
BENCH_CLUSTER="${BENCH_CLUSTER:-1}"           # 0: leave the cluster rows out (no cluster on this machine)
CLUSTER_URL="redis://$HOST:$CLUSTER_PORT"

ROUNDS="${BENCH_ROUNDS:-3}"
RUNS="${BENCH_RUNS:-20000}"
WARMUP="${BENCH_WARMUP:-1000}"
TPUT_RUNS="${BENCH_THROUGHPUT_RUNS:-200000}"
TASKS="${BENCH_CONCURRENCY:-50}"
ID="${BENCH_ID:-3797}"
MYSQL_URL="${BENCH_MYSQL_URL:-mysql://$DB_USER:$DB_PASS@$HOST:$MYSQL_PORT/workshop}"
POSTGRES_URL="${BENCH_POSTGRES_URL:-postgres://$DB_USER:$DB_PASS@$HOST:$PG_PORT/workshop}"
REPORT="${BENCH_REPORT:-$ROOT/BENCHMARKS.md}"
PHASE_TIMEOUT="${BENCH_PHASE_TIMEOUT:-90}"

export PGPASSWORD="$DB_PASS" # for psql and pgbench

# ---------------------------------------------------------------- helpers
say() { printf '%s\n' "$*" >&2; }
die() {
    printf '✗ %s\n' "$*" >&2
    exit 1
}

# exe NAME...: the first NAME found on PATH.
exe() {
    local n
    for n in "$@"; do
        if type -P "$n" >/dev/null 2>&1; then
            type -P "$n"
            return 0
        fi
    done
    return 1
}

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/workshop-bench.XXXXXX")"
RESULTS="$TMP/results"   # "name value" lines, read by the report
COMMANDS="$TMP/commands" # "label<TAB>command" lines, as run
META="$TMP/meta"         # "name<TAB>value" lines: machine and versions
: >"$RESULTS"
: >"$COMMANDS"
: >"$META"

VCLI="" # valkey-cli or redis-cli, once found
delete_bench_keys() {
    [[ -n "$VCLI" ]] || return 0
    "$VCLI" -h "$HOST" -p "$VALKEY_PORT" --scan --pattern "${KEY_PREFIX}*" 2>/dev/null |
        xargs -r -n 100 "$VCLI" -h "$HOST" -p "$VALKEY_PORT" DEL >/dev/null 2>&1 || true
}
# The cluster's keys: each primary deletes its own (a replica refuses, which is fine).
delete_cluster_bench_keys() {
    [[ -n "$VCLI" ]] || return 0
    local port ports
    # The nodes the cluster at CLUSTER_PORT names (7001-7006 when it does not answer).
    ports="$("$VCLI" -h "$HOST" -p "$CLUSTER_PORT" CLUSTER NODES 2>/dev/null | tr -d '\r' |
        awk '{split($2, a, "[:@]"); if (a[2] != "") print a[2]}')" || true
    [[ -n "$ports" ]] || ports="7001 7002 7003 7004 7005 7006"
    for port in $ports; do
        "$VCLI" -h "$HOST" -p "$port" --scan --pattern "${KEY_PREFIX}*" 2>/dev/null |
            xargs -r -n 100 "$VCLI" -h "$HOST" -p "$port" DEL >/dev/null 2>&1 || true
    done
}
on_exit() {
    unpin_server
    delete_bench_keys
    [[ "$BENCH_CLUSTER" == 0 ]] || delete_cluster_bench_keys
    rm -rf "$TMP"
}
trap on_exit EXIT

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# Where the single-client runs happen. One request at a time to a server on the same machine takes very
# different times depending on whether the kernel runs the client on the server's CPU (a context switch
# hands the request over) or on another one (each side wakes the other from idle): on this project's
# 2-vCPU machine about 8 µs and 80 µs for a GET. Left to the scheduler, a run gets a mix of the two and
# its p50 falls on either side of it, run by run, for any client. So each single-client phase pins its
# server (every thread of the process listening on its port; PostgreSQL's new backends inherit the
# postmaster's set) to the last CPU and runs every client twice, pinned to CPU 0 and then to the
# server's CPU, the reference tool and workshop-cli alike. The server's own CPU set is given back as
# soon as the phase ends (and on exit).
PINNED_PID=""
PINNED_MASK="" # the pinned server's own CPU set, to give back
SERVER_CPU=$(($(nproc) - 1))
PLACEMENTS=(any)
# pin_server PORT: pins the process listening on 127.0.0.1:PORT; sets PLACEMENTS (other same, or any).
pin_server() {
    PLACEMENTS=(any)
    local pid mask
    ((SERVER_CPU >= 1)) && exe taskset >/dev/null && exe ss >/dev/null || return 0
    pid="$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)"
    [[ -n "$pid" ]] && mask="$(taskset -p "$pid" 2>/dev/null | awk '{print $NF}')" && [[ -n "$mask" ]] || {
        say "  (the server on port $1 could not be pinned to a CPU: its clients run where the scheduler puts them)"
        return 0
    }
    taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null 2>&1 || {
        say "  (the server on port $1 could not be pinned to a CPU: its clients run where the scheduler puts them)"
        return 0
    }
    PINNED_PID="$pid"
    PINNED_MASK="$mask"
    PLACEMENTS=(other same)
}
unpin_server() {
    [[ -n "$PINNED_MASK" ]] || return 0
    taskset -a -p "$PINNED_MASK" "$PINNED_PID" >/dev/null 2>&1 ||
        say "✗ could not give pid $PINNED_PID back its CPU set $PINNED_MASK (taskset -a -p $PINNED_MASK $PINNED_PID)"
    PINNED_MASK=""
    PIN=()
}
# place PLACE: the taskset prefix of a client command for this placement.
place() {
    case "$1" in
        other) PIN=(taskset -c 0) ;;
        same) PIN=(taskset -c "$SERVER_CPU") ;;
        *) PIN=() ;;
    esac
}
PIN=() # the taskset prefix of the client commands in a single-client phase

# run LABEL OUT CMD...: run CMD (bounded by PHASE_TIMEOUT) with stdout in OUT and stderr in
# OUT.err, record the command line for the report (in the first round only, the others repeat
# it); a failure ends the bench.
ROUND=0 # 0 while setting up, then 1..ROUNDS
run() {
    local label="$1" out="$2"
    shift 2
    if ((ROUND <= 1)); then
        local shown
        shown="$(printf '%q ' "$@")"
        printf '%s\t%s\n' "$label" "${shown//"$ROOT"\//./}" >>"$COMMANDS" # paths in the repository as ./...
    fi
    local rc=0
    timeout "$PHASE_TIMEOUT" "$@" >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        ((rc == 124)) && say "✗ $label: still running after ${PHASE_TIMEOUT}s (BENCH_PHASE_TIMEOUT)"
        say "✗ $label failed (exit $rc): $(printf '%q ' "$@")"
        tail -n 5 "$out.err" >&2 || true
        exit 1
    fi
}

# parse WHAT ARGS...: the Python half below; its "name value" lines go to RESULTS.
parse() { python3 "$TMP/bench.py" "$@" >>"$RESULTS"; }

# phase NAME: announce a phase and time it.
PHASE_STARTED=$SECONDS
phase() {
    PHASE_STARTED=$SECONDS
    say "… $1"
}
phase_done() { say "  done in $((SECONDS - PHASE_STARTED)) s"; }

# ---------------------------------------------------------------- the Python half
# Parsing tool output and rendering the report; one subcommand per tool.
cat >"$TMP/bench.py" <<'PY'
import csv, glob, json, math, os, re, statistics, sys

def fail(message):
    print(f"✗ {message}", file=sys.stderr)
    sys.exit(1)

def emit(prefix, **values):
    for name, value in values.items():
        print(f"{prefix}_{name} {value}")

def percentile(sorted_values, q):
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]

def workshop(path, prefix, section, source, runs):
    """workshop-cli cache-aside --json: one latency summary and the throughput."""
    with open(path) as f:
        out = json.load(f)
    if out.get("empty_result"):
        fail(f"{prefix}: the query returned no row (database {out.get('database')}); load the data: just seed")
    served = out.get("sources", {}).get(source, 0)
    if served != int(runs):
        fail(f"{prefix}: {served} of {runs} timed reads came from '{source}' (sources: {out.get('sources')}); every one should")
    summary = out["summary"][section]
    emit(prefix, p50_us=summary["p50"] * 1000, p99_us=summary["p99"] * 1000, mean_us=summary["mean"] * 1000,
         count=summary["count"], rps=out["throughput_per_second"], wall_ms=out["wall_time_ms"])
    print(f"{prefix}_key {out['key']}")
    print(f"{prefix}_server {out['database'].replace(' ', '_')}")

def redis_benchmark(path, prefix, requests):
    """redis-benchmark --csv: a header and one row per test (one test here)."""
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("rps")]
    if len(rows) != 1:
        fail(f"{prefix}: expected one result row in the redis-benchmark CSV, found {len(rows)}")
    row = rows[0]
    for column in ("p50_latency_ms", "p99_latency_ms", "avg_latency_ms"):
        if column not in row:
            fail(f"{prefix}: this redis-benchmark prints no {column} (version 6.2 or later does)")
    emit(prefix, p50_us=float(row["p50_latency_ms"]) * 1000, p99_us=float(row["p99_latency_ms"]) * 1000,
         mean_us=float(row["avg_latency_ms"]) * 1000, rps=float(row["rps"]), count=requests)

def floor(path, prefix, runs):
    """scripts/get_loop.rs: one JSON line with its percentiles."""
    with open(path) as f:
        out = json.loads(f.read())
    if int(out["count"]) != int(runs):
        fail(f"{prefix}: the bare GET loop timed {out['count']} reads, not {runs}")
    emit(prefix, p50_us=out["p50_us"], p99_us=out["p99_us"], mean_us=out["mean_us"], count=out["count"])

def pgbench_log(log_prefix, prefix, skip, stdout_path):
    """pgbench -l: 'client_id transaction_no latency_us script_no epoch epoch_us' per transaction."""
    samples = []
    for path in glob.glob(log_prefix + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    samples.append((int(fields[0]), int(fields[1]), int(fields[2])))
    samples.sort()
    timed = sorted(latency for _, tx, latency in samples if tx > int(skip))
    if not timed:
        fail(f"{prefix}: the pgbench transaction log ({log_prefix}.*) has no timed transaction")
    emit(prefix, p50_us=percentile(timed, 0.50), p99_us=percentile(timed, 0.99),
         mean_us=sum(timed) / len(timed), count=len(timed))
    with open(stdout_path) as f:
        tps = re.search(r"^tps = ([0-9.]+)", f.read(), re.M)
    if tps:
        emit(prefix, rps=tps.group(1))

def sysbench(path, prefix):
    """sysbench --histogram: 'value |*** count' lines (ms, 3 decimals). Its summary prints
    percentiles with 2 decimals only, too coarse here, so p50 and p99 come from the histogram,
    the way sysbench computes them: the first bucket where the running count reaches q."""
    buckets = []
    in_histogram = False
    with open(path) as f:
        for line in f:
            if line.startswith("Latency histogram"):
                in_histogram = True
            elif in_histogram and "|" in line:
                value, _, rest = line.partition("|")
                count = rest.strip(" *\n")
                if count.isdigit():
                    buckets.append((float(value), int(count)))
            elif in_histogram and buckets and not line.strip():
                break
    total = sum(c for _, c in buckets)
    if total == 0:
        fail(f"{prefix}: no latency histogram in the sysbench output")
    def at(q):
        running = 0
        for value, count in buckets:
            running += count
            if running >= q * total:
                return value
        return buckets[-1][0]
    mean = sum(v * c for v, c in buckets) / total
    emit(prefix, p50_us=at(0.50) * 1000, p99_us=at(0.99) * 1000, mean_us=mean * 1000, count=total)
    with open(path) as f:
        tps = re.search(r"transactions:\s+\d+\s+\(([0-9.]+) per sec", f.read())
    if tps:
        emit(prefix, rps=tps.group(1))

# ---------------------------------------------------------------- peak memory
def peak_rss(kib_path, *command):
    """Runs COMMAND (stdout and stderr inherited) and writes its peak RSS in KiB: getrusage of
    the one child, the kernel's high-water mark of its resident set (what /usr/bin/time -v shows)."""
    import resource, subprocess
    code = subprocess.run(list(command)).returncode
    with open(kib_path, "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    sys.exit(code)

def rss(kib_path, prefix):
    with open(kib_path) as f:
        emit(prefix, rss_mib=int(f.read().strip()) / 1024)

# ---------------------------------------------------------------- report
def read_pairs(path, sep=" "):
    pairs = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                name, _, value = line.partition(sep)
                pairs[name] = value
    return pairs

def us(value):
    return f"{value:,.0f} µs" if value >= 100 else f"{value:.1f} µs"

def per_s(value):
    return f"{value:,.0f}/s"

FLOOR_NOTE = ("Floor rows: scripts/get_loop.rs, a bare GET loop with no workshop code, in workshop-cli's place (what any "
              "client of that shape gets here); sysbench on the airport query: sysbench running workshop-cli's own point select "
              "(scripts/airport_point_select.lua). redis-benchmark reports latency in steps of 8 µs below 2 ms, each figure "
              "the top of its step: 71 µs means 64–71 µs.")

# Where the cache-hit clients ran, against Valkey pinned to one CPU ("any": not pinned).
PLACE_LABEL = {"other": ", other CPU", "same": ", server's CPU", "any": ""}
PLACE_RAW = {"other": " (another CPU than the server)", "same": " (the server's CPU)", "any": ""}

def render(results_path, meta_path, commands_path, report_path, tasks, rounds):
    r = read_pairs(results_path)
    meta = read_pairs(meta_path, "\t")
    placed = lambda server: meta.get(f"placements_{server}", "any").split()
    rounds = int(rounds)
    plural = "" if rounds == 1 else "s"
    with open(commands_path) as f:
        commands = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]

    def per_round(prefix, name):
        return [float(r[f"{prefix}.{i}_{name}"]) for i in range(1, rounds + 1)]

    # (comparison, workshop-cli run, reference tool, reference run, figure, format, target)
    # target: ("<=", x) latency ratio at most x; (">=", x) throughput ratio at least x; None: shown only.
    rows = []
    for place in placed("valkey"):
        where = PLACE_LABEL[place]
        rows += [
            (f"Cache hit p50, 1 client{where}", f"hit_{place}", "redis-benchmark -c 1 GET", f"rb1_{place}", "p50_us", us, ("<=", 1.10)),
            (f"Cache hit p99, 1 client{where}", f"hit_{place}", "redis-benchmark -c 1 GET", f"rb1_{place}", "p99_us", us, ("<=", 1.25)),
            (f"  floor p50: bare tokio GET loop", f"floor_tokio_{place}", "redis-benchmark -c 1 GET", f"rb1_{place}", "p50_us", us, None),
            (f"  floor p50: bare blocking GET loop", f"floor_blocking_{place}", "redis-benchmark -c 1 GET", f"rb1_{place}", "p50_us", us, None),
        ]
    for place in placed("postgres"):
        where = PLACE_LABEL[place]
        rows += [
            (f"Point select p50, PostgreSQL{where}", f"pgwc_{place}", "pgbench -S -M prepared -c 1", f"pgbench_{place}", "p50_us", us, ("<=", 1.10)),
            (f"Point select p99, PostgreSQL{where}", f"pgwc_{place}", "pgbench -S -M prepared -c 1", f"pgbench_{place}", "p99_us", us, None),
        ]
    for place in placed("mariadb"):
        where = PLACE_LABEL[place]
        rows += [
            (f"Point select p50, MariaDB{where}", f"mywc_{place}", "sysbench oltp_point_select, 1 thread", f"sysbench_{place}", "p50_us", us, ("<=", 1.10)),
            (f"Point select p99, MariaDB{where}", f"mywc_{place}", "sysbench oltp_point_select, 1 thread", f"sysbench_{place}", "p99_us", us, None),
            ("  sysbench on the airport query, p50", f"sbair_{place}", "sysbench oltp_point_select, 1 thread", f"sysbench_{place}", "p50_us", us, None),
        ]
    rows += [
        (f"Throughput, {tasks} tasks, 1 connection", "tput", f"redis-benchmark -c 1 -P {tasks} GET", "rbp", "rps", per_s, (">=", 0.6)),
        (f"Throughput, {tasks} tasks, {tasks} connections", "tputn", f"redis-benchmark -c {tasks} GET", "rb50", "rps", per_s, (">=", 0.9)),
        ("Cluster: cache hit p50, 1 client", "chit", "redis-benchmark -c 1 GET on the key's primary", "crb1", "p50_us", us, ("<=", 1.25)),
        (f"Cluster: throughput, {tasks} tasks", "ctput", f"redis-benchmark -c {tasks} GET on the key's primary", "crb50", "rps", per_s, (">=", 0.7)),
    ]
    table = []
    for label, mine, tool, theirs, figure, fmt, target in rows:
        if f"{mine}.1_{figure}" not in r:
            continue  # a phase left out (the cluster's, with BENCH_CLUSTER=0)
        a, b = per_round(mine, figure), per_round(theirs, figure)
        ratio = statistics.median(a) / statistics.median(b)
        spread = [x / y for x, y in zip(a, b)]
        if target is None:
            goal, verdict = "—", "info"
        else:
            op, limit = target
            met = ratio <= limit if op == "<=" else ratio >= limit
            goal, verdict = f"{'≤' if op == '<=' else '≥'} {limit:g}×", "PASS" if met else "MISS"
        table.append((label, fmt(statistics.median(a)), tool, fmt(statistics.median(b)), f"{ratio:.2f}×",
                      f"{min(spread):.2f}–{max(spread):.2f}", goal, verdict))

    # Peak memory: a limit, no reference tool; the worst round counts.
    mib = lambda value: f"{value:.1f} MiB"
    for label, mine, limit in [(f"Peak RSS, cache-aside --runs {meta.get('tput_runs')} --concurrency {tasks}", "rss1", 50),
                               ("Peak RSS, stats (defaults)", "rss2", 64)]:
        a = per_round(mine, "rss_mib")
        verdict = "PASS" if max(a) < limit else "MISS"
        table.append((label, mib(max(a)), "— (a limit)", "—", "—", f"{min(a):.1f}–{max(a):.1f} MiB", f"< {limit} MiB", verdict))

    head = ("Comparison", "workshop-cli", "Reference tool", "Reference", "Ratio", "Rounds", "Target", "Result")
    right = {1, 3, 4, 5}
    widths = [max(len(row[i]) for row in [head] + table) for i in range(len(head))]
    cell = lambda row, i: row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
    lines = ["  ".join(cell(row, i) for i in range(len(head))).rstrip() for row in [head] + table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    passes = sum(1 for row in table if row[-1] == "PASS")
    misses = sum(1 for row in table if row[-1] == "MISS")
    tally = f"{passes} targets met, {misses} missed"
    print("\n".join(lines))
    print(f"\n{tally}. Medians of {rounds} round{plural}; ratio = workshop-cli / reference; Rounds = lowest–highest ratio "
          "of a single round. A report, not a gate.")
    print(FLOOR_NOTE)

    md = []
    md.append("# Benchmarks: workshop-cli next to the reference tools\n")
    md.append("Generated by `just bench` (`scripts/bench.sh`); do not edit by hand, run it again. "
              "Every figure comes from one run of the bench, on one machine that also runs the three servers.\n")
    md.append(f"- Date: {meta.get('date')}")
    md.append(f"- Machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('memory')}, Linux {meta.get('kernel')}; "
              f"load average {meta.get('load')} before the bench, {meta.get('load_after')} after")
    md.append(f"- workshop-cli: {meta.get('workshop')} (`{meta.get('bin')}`, tree {meta.get('git')})")
    md.append(f"- Servers: Valkey {meta.get('valkey')}, MariaDB {meta.get('mariadb')}, PostgreSQL {meta.get('postgresql')}")
    md.append(f"- Reference tools: {meta.get('bench_client')}, {meta.get('pgbench')}, {meta.get('sysbench')}")
    md.append(f"- Bench duration: {meta.get('elapsed')} s ({rounds} round{plural})\n")
    md.append("## Results\n")
    md.append(f"Each pair ran {rounds} times, alternating workshop-cli and the reference tool, so that a passing "
              "disturbance on the machine lands on both; the figures are the medians of the rounds. "
              "Ratio = workshop-cli / reference: for latency lower is better, for throughput higher is better; "
              "Rounds is the lowest and highest ratio of a single round. "
              "Targets (issue 13): cache-hit p50 within 1.10× and p99 within 1.25× of the reference client's single-client GET; "
              "point-select p50 within 1.10× of pgbench's on PostgreSQL and of sysbench's on MariaDB; "
              f"{tasks} tasks on one shared connection at least 0.6× of redis-benchmark -c 1 -P {tasks}, and {tasks} tasks on "
              f"{tasks} connections at least 0.9× of redis-benchmark -c {tasks}; peak RSS of the {tasks}-task run below 50 MiB "
              "and of `stats` with its defaults below 64 MiB (for memory, Rounds is the lowest–highest of the rounds and the "
              "highest counts). Rows without a target are shown for context. "
              "The floor rows put a bare GET loop (`scripts/get_loop.rs`: one connection, write `GET key`, read the reply, "
              "no decode, no workshop code) in workshop-cli's place, waiting in tokio as workshop-cli does, or in a blocking "
              "`read(2)`: what any client of that shape gets on this machine. The row \"sysbench on the airport query\" is "
              "sysbench running workshop-cli's own point select (`scripts/airport_point_select.lua`: the same four-column "
              "query, prepared, the same airport_id), so that a MariaDB gap can be told apart into the query's and the client's. "
              "redis-benchmark keeps its latencies in a histogram of two significant digits from 10 µs, so below 2 ms it "
              "reports in steps of 8 µs, each figure the top of its step (71 µs means 64–71 µs); the other figures are to "
              "the microsecond or finer.\n")
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|")
    for row in table:
        md.append("| " + " | ".join(row) + " |")
    md.append(f"\n{tally}.\n")
    md.append("## What each side does\n")
    md.append(f"- **Cache hit.** workshop-cli reads airport {meta.get('id')} through cache-aside; the {meta.get('warmup')} untimed "
              f"warm-up reads fill the cache, so all {meta.get('runs')} timed reads are hits (checked). It times GET + JSON decode. "
              f"redis-benchmark sends `GET` for that very key ({meta.get('value_bytes')} bytes of JSON, the cached airport row), "
              f"{meta.get('runs')} times on one connection, so both fetch the same payload. (Its built-in `-t get -d N` test would "
              "read a key outside the `bench:` prefix; a custom `GET` is the same command on the real entry.)")
    pinned = [name for name, server in (("Valkey", "valkey"), ("PostgreSQL", "postgres"), ("MariaDB", "mariadb"))
              if "other" in placed(server)]
    if pinned:
        md.append(f"- **Where the single-client runs happen.** For its own phase only, the server ({', '.join(pinned)}) is "
                  f"pinned to CPU {meta.get('server_cpu')} (`taskset -a -p` on the process listening on its port; PostgreSQL's "
                  "new backends inherit the postmaster's CPU set; each server gets its own set back right after), and each "
                  "client, workshop-cli and the reference tool alike, runs twice: pinned to CPU 0 (\"other CPU\") and to the "
                  "server's CPU. One request at a time to a server on the same machine costs very different times in the two "
                  "cases: on another CPU each side wakes the other from idle; on the same CPU a context switch hands the "
                  "request over. Left to the scheduler, one run gets a mix of the two and its p50 falls on either side, run "
                  "by run, whatever the client (see the notes below).")
    md.append(f"- **Point select.** workshop-cli with `--no-cache`: `SELECT airport_id, iata, icao, name FROM airport WHERE "
              f"airport_id = ?` (prepared; on MariaDB over workshop-cli's lean connection, `db::lean_mysql`, on PostgreSQL over sqlx), {meta.get('runs')} timed reads after {meta.get('warmup')} warm-up reads; "
              "it times the query plus the conversion of the row into JSON values. "
              f"pgbench `-S` runs `SELECT abalance FROM pgbench_accounts WHERE aid = :aid` (random aid among {meta.get('ref_rows')} rows, "
              f"prepared) in the `{meta.get('ref_db')}` database; p50/p99 come from its per-transaction log (`-l`), the first "
              f"{meta.get('warmup')} transactions left out like workshop-cli's warm-up. sysbench `oltp_point_select` runs "
              f"`SELECT c FROM sbtest1 WHERE id = ?` (uniform random id among {meta.get('ref_rows')} rows, prepared) in `{meta.get('ref_db')}`; "
              "p50/p99 come from its latency histogram (its summary prints two decimals of a millisecond only).")
    md.append(f"- **Throughput.** workshop-cli runs {meta.get('tput_runs')} cache-aside reads with {tasks} tasks (all hits), "
              "each compared with the reference of the same shape. On one shared, multiplexed Valkey connection the tasks' "
              f"requests travel pipelined: compared with redis-benchmark `-c 1 -P {tasks}` ({tasks} requests pipelined on one "
              f"connection). With `--connections {tasks}` each task has a connection of its own, one request in flight on each: "
              f"compared with redis-benchmark `-c {tasks}` ({tasks} connections from one thread). Both send GETs of the same key.")
    md.append(f"- **Peak memory.** The peak resident set (getrusage `ru_maxrss` of the child, the figure `/usr/bin/time -v` "
              f"prints) of `cache-aside --runs {meta.get('tput_runs')} --concurrency {tasks}` and of `stats` with its default "
              "settings (20,000 requests, 8 tasks, L1 on), each run once per round through the bench's `peak-rss` helper.")
    if meta.get("cluster_key_node"):
        md.append(f"- **Cluster.** The same cache-hit and throughput runs with `--valkey-url` at a node of the local Valkey Cluster "
              f"(`just up-cluster`): workshop-cli goes through its cluster client, which sends each GET to the primary of the "
              f"key's slot ({meta.get('cluster_key_node')}); redis-benchmark runs `GET` of the same key on that primary directly "
              "(`redis-benchmark --cluster` runs no custom command, and one key is served by one primary).\n")
    md.append("## Raw figures\n")
    md.append("| Run | Round | Count | p50 | p99 | Mean | Throughput |")
    md.append("|---|---:|---:|---:|---:|---:|---:|")
    raw = []
    for place in placed("valkey"):
        where = PLACE_RAW[place]
        raw += [
            (f"workshop-cli cache-aside, hits, 1 task{where}", f"hit_{place}"),
            (f"redis-benchmark GET, 1 client{where}", f"rb1_{place}"),
            (f"bare GET loop, tokio{where}", f"floor_tokio_{place}"),
            (f"bare GET loop, blocking read{where}", f"floor_blocking_{place}"),
        ]
    for place in placed("postgres"):
        where = PLACE_RAW[place]
        raw += [(f"workshop-cli --no-cache, PostgreSQL{where}", f"pgwc_{place}"), (f"pgbench -S, 1 client{where}", f"pgbench_{place}")]
    for place in placed("mariadb"):
        where = PLACE_RAW[place]
        raw += [(f"workshop-cli --no-cache, MariaDB{where}", f"mywc_{place}"),
                (f"sysbench oltp_point_select, 1 thread{where}", f"sysbench_{place}"),
                (f"sysbench on the airport query (scripts/airport_point_select.lua){where}", f"sbair_{place}")]
    raw += [
        (f"workshop-cli cache-aside, hits, {tasks} tasks, 1 connection", "tput"),
        (f"redis-benchmark GET, 1 client, {tasks} pipelined", "rbp"),
        (f"workshop-cli cache-aside, hits, {tasks} tasks, {tasks} connections", "tputn"),
        (f"redis-benchmark GET, {tasks} clients", "rb50"),
    ]
    for label, prefix in raw:
        for i in range(1, rounds + 1):
            get = lambda name: r.get(f"{prefix}.{i}_{name}")
            cells = [
                f"{int(float(get('count'))):,}" if get("count") else "—",
                us(float(get("p50_us"))) if get("p50_us") else "—",
                us(float(get("p99_us"))) if get("p99_us") else "—",
                us(float(get("mean_us"))) if get("mean_us") else "—",
                per_s(float(get("rps"))) if get("rps") else "—",
            ]
            md.append(f"| {label} | {i} | " + " | ".join(cells) + " |")
    md.append("\nThroughput: workshop-cli's is timed reads / wall time of the timed reads; the tools print their own "
              "(redis-benchmark: requests per second; pgbench: tps without the initial connection; sysbench: transactions "
              "per second).\n")
    # The hand-written profile notes (perf record of the hot loops, what was changed): kept in
    # scripts/bench-profile.md, so that a regenerated report keeps them.
    notes_path = os.environ.get("BENCH_NOTES", "")
    if notes_path and os.path.exists(notes_path):
        with open(notes_path) as f:
            md.append(f.read().rstrip() + "\n")
    md.append("## Commands\n")
    md.append(f"As run in round 1, in this order; the other rounds repeat them (with their own log paths). "
              "`PGPASSWORD` (the database password) is in the environment for psql and pgbench; passwords are shown as `***`; the one-off `pgbench -i` "
              "and `sysbench prepare` appear only in the run that created their tables.\n")
    md.append("```sh")
    for label, command in commands:
        md.append(f"# {label}")
        # Never write a password into the report.
        shown = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", command.rstrip())
        shown = re.sub(r"(--mysql-password=)\S+", r"\1***", shown)
        md.append(shown)
    md.append("```")
    with open(report_path, "w") as f:
        f.write("\n".join(md) + "\n")

if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    {"workshop": workshop, "redis": redis_benchmark, "pgbench": pgbench_log,
     "sysbench": sysbench, "floor": floor, "render": render, "peak-rss": peak_rss, "rss": rss}[what](*args)
PY

# ---------------------------------------------------------------- preflight
for n in ROUNDS RUNS WARMUP TPUT_RUNS TASKS; do
    is_count "${!n}" || die "$n must be a whole number above 0 (got '${!n}'); the warm-up fills the cache, so it cannot be 0"
done
exe python3 >/dev/null || die "python3 is needed to parse the tools' output"
BENCH_CLIENT="$(exe valkey-benchmark redis-benchmark)" ||
    die "no valkey-benchmark or redis-benchmark on PATH; install redis-tools (\`just up\` does)"
VCLI="$(exe valkey-cli redis-cli)" || die "no valkey-cli or redis-cli on PATH; install redis-tools (\`just up\` does)"
PGBENCH="$(exe pgbench)" || die "no pgbench on PATH; it comes with PostgreSQL (postgresql-contrib on older distributions)"
PSQL="$(exe psql)" || die "no psql on PATH; install postgresql-client"
SYSBENCH="$(exe sysbench)" || die "no sysbench on PATH; install sysbench (\`just up\` does)"
MYSQL="$(exe mariadb mysql)" || die "no mariadb or mysql client on PATH; install mariadb-client"

scripts/services.sh status >&2 || die "the services are not all up; start them: just up"
if [[ "$BENCH_CLUSTER" != 0 && -n "${BENCH_CLUSTER_PORT:-}" ]]; then
    # A cluster of one's own (BENCH_CLUSTER_PORT names one of its nodes): it must say cluster_state:ok.
    "$VCLI" -h "$HOST" -p "$CLUSTER_PORT" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' ||
        die "no cluster_state:ok at $HOST:$CLUSTER_PORT (BENCH_CLUSTER_PORT); start that cluster, or leave its rows out: BENCH_CLUSTER=0"
elif [[ "$BENCH_CLUSTER" != 0 ]]; then
    scripts/services.sh cluster status >&2 || die "the Valkey Cluster is not up; start it: just up-cluster (or leave its rows out: BENCH_CLUSTER=0)"
fi

if [[ -n "${WORKSHOP_BIN:-}" ]]; then
    BIN="$WORKSHOP_BIN"
else
    phase "cargo build --release"
    cargo build --release --quiet || die "cargo build --release failed"
    BIN="$ROOT/target/release/workshop-cli"
    phase_done
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable (WORKSHOP_BIN)"
# The bare GET loop (scripts/get_loop.rs): the floor under the cache-hit row, built whatever BIN is.
cargo build --release --quiet --example get_loop || die "cargo build --release --example get_loop failed"
GET_LOOP="$ROOT/target/release/examples/get_loop"
BENCH_STARTED=$SECONDS # the build is not part of the bench's duration

VALKEY_INFO="$("$VCLI" -h "$HOST" -p "$VALKEY_PORT" INFO server | tr -d '\r')"
VALKEY_VERSION="$(sed -n 's/^valkey_version:\(.*\)$/\1/p' <<<"$VALKEY_INFO")"
[[ -n "$VALKEY_VERSION" ]] || VALKEY_VERSION="$(sed -n 's/^redis_version:\(.*\)$/\1 (a Redis, not Valkey)/p' <<<"$VALKEY_INFO")"

mysql_ref() { MYSQL_PWD="$DB_PASS" "$MYSQL" --no-defaults --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" -u "$DB_USER" -N -B "$@"; }
psql_ref() { "$PSQL" -X -q -h "$HOST" -p "$PG_PORT" -U "$DB_USER" -v ON_ERROR_STOP=1 -Atc "$@"; }

meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta nproc "$(nproc)"
meta cpu "$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
meta memory "$(awk '/^MemTotal:/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)"
meta kernel "$(uname -r)"
meta load "$(cut -d' ' -f1-3 /proc/loadavg)"
meta workshop "$("$BIN" --version)"
meta bin "$BIN"
meta git "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
meta valkey "$VALKEY_VERSION"
meta mariadb "$(mysql_ref -e 'SELECT VERSION()')"
meta postgresql "$(psql_ref 'SHOW server_version' -d workshop | cut -d' ' -f1)"
meta bench_client "$("$BENCH_CLIENT" --version | head -n 1)"
meta pgbench "$("$PGBENCH" --version | head -n 1)"
meta sysbench "$("$SYSBENCH" --version | head -n 1)"
meta rounds "$ROUNDS"
meta runs "$RUNS"
meta warmup "$WARMUP"
meta tput_runs "$TPUT_RUNS"
meta id "$ID"
meta ref_db "$REF_DB"
meta ref_rows "$REF_ROWS"
meta server_cpu "$SERVER_CPU"
meta pg_password "$DB_PASS"

# ---------------------------------------------------------------- reference databases
# Created once and kept: later runs only check they are complete.
phase "reference tables in $REF_DB (pgbench, sysbench)"
if [[ "$(psql_ref "SELECT 1 FROM pg_database WHERE datname = '$REF_DB'" -d workshop)" != 1 ]]; then
    run "create the pgbench database" "$TMP/pg-create" "$PSQL" -X -q -h "$HOST" -p "$PG_PORT" -U "$DB_USER" -d workshop \
        -c "CREATE DATABASE $REF_DB"
fi
if [[ "$(psql_ref "SELECT count(*) FROM pgbench_accounts" -d "$REF_DB" 2>/dev/null || true)" != "$REF_ROWS" ]]; then
    run "pgbench tables (once)" "$TMP/pg-init" "$PGBENCH" -h "$HOST" -p "$PG_PORT" -U "$DB_USER" -i -s $((REF_ROWS / 100000)) -q "$REF_DB"
fi
SYSBENCH_ARGS=(oltp_point_select --db-driver=mysql --mysql-host="$HOST" --mysql-port="$MYSQL_PORT"
    --mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db="$REF_DB" --tables=1 --table-size="$REF_ROWS")
mysql_ref -e "CREATE DATABASE IF NOT EXISTS $REF_DB"
if [[ "$(mysql_ref -e "SELECT COUNT(*) FROM $REF_DB.sbtest1" 2>/dev/null || true)" != "$REF_ROWS" ]]; then
    mysql_ref -e "DROP TABLE IF EXISTS $REF_DB.sbtest1"
    run "sysbench table (once)" "$TMP/sb-prepare" "$SYSBENCH" "${SYSBENCH_ARGS[@]}" prepare
fi
phase_done

# workshop_cli LABEL OUT DATABASE_URL ARGS...: one cache-aside run, JSON on OUT.
workshop_cli() {
    local label="$1" out="$2" url="$3"
    shift 3
    run "$label" "$out" "${PIN[@]}" "$BIN" --database-url "$url" --valkey-url "$VALKEY_URL" --key-prefix "$KEY_PREFIX" --json \
        cache-aside --id "$ID" "$@"
}

ROUNDS_TEXT="$ROUNDS round$( ((ROUNDS == 1)) || echo s)"

# Each phase runs its pair ROUNDS times, alternating (workshop-cli, tool, workshop-cli, tool, ...), so a
# passing disturbance on the machine lands on both sides; the report takes the median of the rounds.

# ---------------------------------------------------------------- cache hit, one client
pin_server "$VALKEY_PORT"
meta placements_valkey "${PLACEMENTS[*]}"
phase "cache hit, 1 client: workshop-cli, $(basename "$BENCH_CLIENT") and the bare GET loops, $RUNS reads each, $ROUNDS_TEXT"
delete_bench_keys
KEY=""
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for PLACE in "${PLACEMENTS[@]}"; do
        place "$PLACE"
        workshop_cli "cache hit ($PLACE CPU): workshop-cli" "$TMP/hit_$PLACE.$ROUND.json" "$MYSQL_URL" \
            --runs "$RUNS" --warmup "$WARMUP" --baseline 0
        parse workshop "$TMP/hit_$PLACE.$ROUND.json" "hit_$PLACE.$ROUND" cache cache "$RUNS"
        if [[ -z "$KEY" ]]; then
            KEY="$(awk -v name="hit_$PLACE.1_key" '$1 == name {print $2}' "$RESULTS")"
            meta value_bytes "$("$VCLI" -h "$HOST" -p "$VALKEY_PORT" STRLEN "$KEY")"
        fi
        run "cache hit ($PLACE CPU): reference client" "$TMP/rb1_$PLACE.$ROUND.csv" "${PIN[@]}" "$BENCH_CLIENT" \
            -h "$HOST" -p "$VALKEY_PORT" -c 1 -n "$RUNS" --csv GET "$KEY"
        parse redis "$TMP/rb1_$PLACE.$ROUND.csv" "rb1_$PLACE.$ROUND" "$RUNS"
        for MODE in tokio blocking; do
            run "cache hit ($PLACE CPU): bare GET loop, $MODE" "$TMP/floor_${MODE}_$PLACE.$ROUND.json" "${PIN[@]}" "$GET_LOOP" \
                "$MODE" "$HOST:$VALKEY_PORT" "$KEY" "$RUNS" "$WARMUP"
            parse floor "$TMP/floor_${MODE}_$PLACE.$ROUND.json" "floor_${MODE}_$PLACE.$ROUND" "$RUNS"
        done
    done
done
unpin_server
phase_done

# ---------------------------------------------------------------- point select, PostgreSQL
pin_server "$PG_PORT"
meta placements_postgres "${PLACEMENTS[*]}"
phase "point select, PostgreSQL: workshop-cli --no-cache and pgbench -S, $RUNS reads each, $ROUNDS_TEXT"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for PLACE in "${PLACEMENTS[@]}"; do
        place "$PLACE"
        workshop_cli "point select ($PLACE CPU): workshop-cli on PostgreSQL" "$TMP/pgwc_$PLACE.$ROUND.json" "$POSTGRES_URL" \
            --no-cache --runs "$RUNS" --warmup "$WARMUP"
        parse workshop "$TMP/pgwc_$PLACE.$ROUND.json" "pgwc_$PLACE.$ROUND" database database_no_cache "$RUNS"
        mkdir -p "$TMP/pglog_$PLACE.$ROUND"
        run "point select ($PLACE CPU): pgbench" "$TMP/pgbench_$PLACE.$ROUND.out" "${PIN[@]}" "$PGBENCH" -h "$HOST" -p "$PG_PORT" \
            -U "$DB_USER" -n -S -M prepared -c 1 -j 1 -t $((RUNS + WARMUP)) -l --log-prefix="$TMP/pglog_$PLACE.$ROUND/pgbench" "$REF_DB"
        parse pgbench "$TMP/pglog_$PLACE.$ROUND/pgbench" "pgbench_$PLACE.$ROUND" "$WARMUP" "$TMP/pgbench_$PLACE.$ROUND.out"
    done
done
unpin_server
phase_done

# ---------------------------------------------------------------- point select, MariaDB
pin_server "$MYSQL_PORT"
meta placements_mariadb "${PLACEMENTS[*]}"
phase "point select, MariaDB: workshop-cli --no-cache and sysbench oltp_point_select, $RUNS reads each, $ROUNDS_TEXT"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for PLACE in "${PLACEMENTS[@]}"; do
        place "$PLACE"
        workshop_cli "point select ($PLACE CPU): workshop-cli on MariaDB" "$TMP/mywc_$PLACE.$ROUND.json" "$MYSQL_URL" \
            --no-cache --runs "$RUNS" --warmup "$WARMUP"
        parse workshop "$TMP/mywc_$PLACE.$ROUND.json" "mywc_$PLACE.$ROUND" database database_no_cache "$RUNS"
        run "point select ($PLACE CPU): sysbench" "$TMP/sysbench_$PLACE.$ROUND.out" "${PIN[@]}" "$SYSBENCH" "${SYSBENCH_ARGS[@]}" \
            --threads=1 --events="$RUNS" --time=0 --rand-type=uniform --histogram=on --percentile=50 run
        parse sysbench "$TMP/sysbench_$PLACE.$ROUND.out" "sysbench_$PLACE.$ROUND"
        # sysbench running workshop-cli's own query (in the workshop database, so only with the default URL).
        if [[ -z "${BENCH_MYSQL_URL:-}" ]]; then
            run "point select ($PLACE CPU): sysbench on the airport query" "$TMP/sbair_$PLACE.$ROUND.out" "${PIN[@]}" "$SYSBENCH" \
                "$ROOT/scripts/airport_point_select.lua" --db-driver=mysql --mysql-host="$HOST" --mysql-port="$MYSQL_PORT" \
                --mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db=workshop --airport-id="$ID" \
                --threads=1 --events="$RUNS" --time=0 --histogram=on --percentile=50 run
            parse sysbench "$TMP/sbair_$PLACE.$ROUND.out" "sbair_$PLACE.$ROUND"
        fi
    done
done
unpin_server
phase_done

# ---------------------------------------------------------------- throughput
phase "throughput, $TASKS at once: workshop-cli and $(basename "$BENCH_CLIENT"), $TPUT_RUNS reads each, $ROUNDS_TEXT"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    workshop_cli "throughput: workshop-cli" "$TMP/tput.$ROUND.json" "$MYSQL_URL" \
        --runs "$TPUT_RUNS" --concurrency "$TASKS" --warmup "$WARMUP" --baseline 0
    parse workshop "$TMP/tput.$ROUND.json" "tput.$ROUND" cache cache "$TPUT_RUNS"
    run "throughput: reference client, 1 connection, pipelined" "$TMP/rbp.$ROUND.csv" "$BENCH_CLIENT" -h "$HOST" \
        -p "$VALKEY_PORT" -c 1 -P "$TASKS" -n "$TPUT_RUNS" --csv GET "$KEY"
    parse redis "$TMP/rbp.$ROUND.csv" "rbp.$ROUND" "$TPUT_RUNS"
    workshop_cli "throughput: workshop-cli, $TASKS connections" "$TMP/tputn.$ROUND.json" "$MYSQL_URL" \
        --runs "$TPUT_RUNS" --concurrency "$TASKS" --connections "$TASKS" --warmup "$WARMUP" --baseline 0
    parse workshop "$TMP/tputn.$ROUND.json" "tputn.$ROUND" cache cache "$TPUT_RUNS"
    run "throughput: reference client, $TASKS connections" "$TMP/rb50.$ROUND.csv" "$BENCH_CLIENT" -h "$HOST" -p "$VALKEY_PORT" -c "$TASKS" \
        -n "$TPUT_RUNS" --csv GET "$KEY"
    parse redis "$TMP/rb50.$ROUND.csv" "rb50.$ROUND" "$TPUT_RUNS"
done
ROUND=0
phase_done

# ---------------------------------------------------------------- peak memory
# The high-water mark of each process's resident set, against a fixed limit (no reference tool).
phase "peak memory: cache-aside --runs $TPUT_RUNS --concurrency $TASKS, stats with its defaults, $ROUNDS_TEXT"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    run "peak memory: cache-aside, $TASKS tasks" "$TMP/rss1.$ROUND.json" python3 "$TMP/bench.py" peak-rss "$TMP/rss1.$ROUND.kib" \
        "$BIN" --database-url "$MYSQL_URL" --valkey-url "$VALKEY_URL" --key-prefix "$KEY_PREFIX" --json \
        cache-aside --id "$ID" --runs "$TPUT_RUNS" --concurrency "$TASKS"
    parse rss "$TMP/rss1.$ROUND.kib" "rss1.$ROUND"
    run "peak memory: stats, defaults" "$TMP/rss2.$ROUND.json" python3 "$TMP/bench.py" peak-rss "$TMP/rss2.$ROUND.kib" \
        "$BIN" --database-url "$MYSQL_URL" --valkey-url "$VALKEY_URL" --key-prefix "$KEY_PREFIX" --json stats
    parse rss "$TMP/rss2.$ROUND.kib" "rss2.$ROUND"
done
ROUND=0
phase_done

# ---------------------------------------------------------------- the same on the Valkey Cluster
# workshop-cli through its cluster client (VALKEY_URL names one node; cluster_enabled:1 selects it);
# redis-benchmark on the primary that holds the key, which is where a cluster client sends a GET of it.
if [[ "$BENCH_CLUSTER" != 0 ]]; then
phase "cluster: cache hit and throughput through the cluster client and $(basename "$BENCH_CLIENT") on the key's primary, $ROUNDS_TEXT"
delete_cluster_bench_keys
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    run "cluster cache hit: workshop-cli" "$TMP/chit.$ROUND.json" "$BIN" --database-url "$MYSQL_URL" --valkey-url "$CLUSTER_URL" \
        --key-prefix "$KEY_PREFIX" --json cache-aside --id "$ID" --runs "$RUNS" --warmup "$WARMUP" --baseline 0
    parse workshop "$TMP/chit.$ROUND.json" "chit.$ROUND" cache cache "$RUNS"
    if ((ROUND == 1)); then
        SLOT="$("$VCLI" -h "$HOST" -p "$CLUSTER_PORT" CLUSTER KEYSLOT "$KEY" | tr -d '\r')"
        KEY_PORT="$("$VCLI" -h "$HOST" -p "$CLUSTER_PORT" CLUSTER NODES | tr -d '\r' | awk -v slot="$SLOT" '
            $3 ~ /master/ { for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1];
                if (slot + 0 >= r[1] + 0 && slot + 0 <= r[2] + 0) { split($2, a, "[:@]"); print a[2]; exit } } }')"
        [[ -n "$KEY_PORT" ]] || die "no primary of the cluster serves slot $SLOT of $KEY"
        meta cluster_key_node "$HOST:$KEY_PORT"
    fi
    run "cluster cache hit: reference client" "$TMP/crb1.$ROUND.csv" "$BENCH_CLIENT" -h "$HOST" -p "$KEY_PORT" -c 1 -n "$RUNS" \
        --csv GET "$KEY"
    parse redis "$TMP/crb1.$ROUND.csv" "crb1.$ROUND" "$RUNS"
    run "cluster throughput: workshop-cli" "$TMP/ctput.$ROUND.json" "$BIN" --database-url "$MYSQL_URL" --valkey-url "$CLUSTER_URL" \
        --key-prefix "$KEY_PREFIX" --json cache-aside --id "$ID" --runs "$TPUT_RUNS" --concurrency "$TASKS" --warmup "$WARMUP" --baseline 0
    parse workshop "$TMP/ctput.$ROUND.json" "ctput.$ROUND" cache cache "$TPUT_RUNS"
    run "cluster throughput: reference client" "$TMP/crb50.$ROUND.csv" "$BENCH_CLIENT" -h "$HOST" -p "$KEY_PORT" -c "$TASKS" \
        -n "$TPUT_RUNS" --csv GET "$KEY"
    parse redis "$TMP/crb50.$ROUND.csv" "crb50.$ROUND" "$TPUT_RUNS"
done
ROUND=0
phase_done
else
    say "… cluster rows left out (BENCH_CLUSTER=0)"
fi

# ---------------------------------------------------------------- serve (exercise 7)
# A self-contained block: its own phases, parser and report section (appended after the main one).
#   cached GET, L1 hits    wrk on GET /products/{id}                   vs  wrk on the cheapest route (the HTTP ceiling)
#   L2 only                wrk on serve --l1-capacity 0                vs  redis-benchmark -c 50 GET of the same key
#   load generator         workshop-cli load on GET /products/{id}     vs  wrk on the same URL
#   memory                 serve's peak RSS (VmHWM) after all that load, target < 64 MiB
# BENCH_SERVE_DURATION (seconds per run, default 10) and BENCH_SERVE_ID (default 42) tune it.
SERVE_SECS="${BENCH_SERVE_DURATION:-10}"
SERVE_ID="${BENCH_SERVE_ID:-42}"
is_count "$SERVE_SECS" || die "BENCH_SERVE_DURATION must be a whole number above 0 (got '$SERVE_SECS')"
WRK="$(exe wrk)" || {
    if [[ "$(id -u)" == 0 ]] && exe apt-get >/dev/null; then
        say "… apt-get install wrk (the HTTP reference tool)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >"$TMP/wrk-install.log" 2>&1 </dev/null || true
    fi
    exe wrk
} || die "no wrk on PATH; install it: apt-get install wrk"
WRK_VERSION="$({ "$WRK" --version 2>&1 || true; } | head -n 1 | cut -d' ' -f1-2)" # it exits 1 after the version

SERVE_PID=""
stop_serve() {
    if [[ -n "$SERVE_PID" ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
        SERVE_PID=""
    fi
}
# start_serve NAME ARGS...: serve on a free port; sets SERVE_URL and SERVE_PID.
start_serve() {
    local name="$1"
    shift
    : >"$TMP/$name.serve" # the background job opens it later: sed must find it even before
    "$BIN" --database-url "$MYSQL_URL" --valkey-url "$VALKEY_URL" --key-prefix "$KEY_PREFIX" \
        serve --listen 127.0.0.1:0 "$@" >"$TMP/$name.serve" 2>"$TMP/$name.serve.err" &
    SERVE_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        SERVE_URL="$(sed -n 's/^serving \(http:[^ ]*\).*/\1/p' "$TMP/$name.serve")"
        [[ -n "$SERVE_URL" ]] && return 0
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$TMP/$name.serve.err" >&2
    die "serve $* did not start"
}
# wrk_run LABEL PREFIX URL: wrk -c 50 -t 2 for SERVE_SECS seconds, parsed into PREFIX.
wrk_run() {
    run "$1" "$TMP/$2.wrk" "$WRK" -c 50 -t 2 -d "${SERVE_SECS}s" --latency "$3"
    python3 "$TMP/bench_serve.py" wrk "$TMP/$2.wrk" "$2" "$4" >>"$RESULTS"
}
cat >"$TMP/bench_serve.py" <<'PY'
import json, re, statistics, sys

def fail(message):
    print(f"✗ {message}", file=sys.stderr)
    sys.exit(1)

def unit_us(value, unit):
    return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

def wrk(path, prefix, expect):
    """wrk --latency: 'Requests/sec:', the latency distribution, errors; expect: 2xx or any."""
    text = open(path).read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    if not rps or not total:
        fail(f"{prefix}: no 'Requests/sec' in wrk's output:\n{text}")
    if expect == "2xx" and re.search(r"Non-2xx or 3xx responses", text):
        fail(f"{prefix}: wrk saw error statuses:\n{text}")
    if re.search(r"Socket errors:.*(connect [1-9]|timeout [1-9])", text):
        fail(f"{prefix}: wrk saw socket errors:\n{text}")
    print(f"{prefix}_rps {rps.group(1)}")
    print(f"{prefix}_count {total.group(1)}")
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+([0-9.]+)(us|ms|s)\b", text, re.M)
        if m:
            print(f"{prefix}_p{q}_us {unit_us(*m.groups())}")

def load(path, prefix):
    out = json.load(open(path))
    if out["failed"] or set(out["statuses"]) != {"200"}:
        fail(f"{prefix}: load had failures: failed {out['failed']}, statuses {out['statuses']}")
    print(f"{prefix}_rps {out['throughput']}")
    print(f"{prefix}_count {out['requests']}")
    lat = out.get("latency") or {}
    for q in ("p50", "p99"):
        if q in lat:
            print(f"{prefix}_{q}_us {lat[q] * 1000}")

def rss(path, prefix):
    text = open(path).read()
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    if not m:
        fail(f"{prefix}: no VmHWM in {path}")
    print(f"{prefix}_kib {m.group(1)}")

def render(results, report, rounds, secs, wrk_version):
    r = {}
    for line in open(results):
        name, _, value = line.strip().partition(" ")
        r[name] = value
    rounds = int(rounds)
    def med(prefix, name):
        return statistics.median(float(r[f"{prefix}.{i}_{name}"]) for i in range(1, rounds + 1))
    def spread(a, b, name):
        xs = [float(r[f"{a}.{i}_{name}"]) / float(r[f"{b}.{i}_{name}"]) for i in range(1, rounds + 1)]
        return f"{min(xs):.2f}–{max(xs):.2f}"
    per_s = lambda v: f"{v:,.0f}/s"
    rows = []
    for label, a, tool, b, limit in [
        ("serve GET /products/{id}, L1 hits", "sl1", "wrk on the cheapest route (404 fallback)", "sceil", 0.8),
        ("serve --l1-capacity 0 (L2 hits)", "sl2", "redis-benchmark -c 50 GET", "srb", 0.5),
        ("workshop-cli load -c 50, L1 hits", "sload", "wrk -c 50 on the same URL", "swrk", 0.8),
    ]:
        ratio = med(a, "rps") / med(b, "rps")
        rows.append((label, per_s(med(a, "rps")), tool, per_s(med(b, "rps")), f"{ratio:.2f}×", spread(a, b, "rps"),
                     f"≥ {limit:g}×", "PASS" if ratio >= limit else "MISS"))
    peak = max(float(r[f"srss.{i}_kib"]) for i in range(1, rounds + 1)) / 1024
    rows.append(("serve peak RSS under this load", f"{peak:.1f} MiB", "—", "—", "—", "—", "< 64 MiB",
                 "PASS" if peak < 64 else "MISS"))
    head = ("Comparison", "workshop-cli", "Reference tool", "Reference", "Ratio", "Rounds", "Target", "Result")
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    right = {1, 3, 4, 5}
    cell = lambda row, i: row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
    lines = ["  ".join(cell(row, i) for i in range(len(head))).rstrip() for row in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print("\nserve (exercise 7): wrk -c 50 -t 2 -d %ss, medians of %d round%s" % (secs, rounds, "" if rounds == 1 else "s"))
    print("\n".join(lines))
    md = ["", "## serve (exercise 7)", "",
          f"`workshop-cli serve` (MariaDB behind it; every read below is a cache hit) under `wrk -c 50 -t 2 -d {secs}s` ({wrk_version}), "
          f"alternating with its reference, {rounds} round{'' if rounds == 1 else 's'}, medians. The HTTP ceiling is wrk on the "
          "server's cheapest route, the 404 fallback for an unknown path (no I/O, a 150-byte JSON body), on the same process. "
          "L2 only is a second `serve --l1-capacity 0`, every read a Valkey GET, against redis-benchmark `-c 50` GETs of the same "
          "key. `workshop-cli load --concurrency 50 --read-ratio 100` and wrk read the same URL of the L1 server. RSS is the "
          "serve processes' peak resident set (`VmHWM`) after all their runs.", "",
          "| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += ["", "| Run | Round | Requests | p50 | p99 | Throughput |", "|---|---:|---:|---:|---:|---:|"]
    for label, prefix in [("wrk, L1 hits", "sl1"), ("wrk, 404 fallback", "sceil"), ("wrk, --l1-capacity 0", "sl2"),
                          ("redis-benchmark -c 50 GET", "srb"), ("workshop-cli load -c 50", "sload"), ("wrk, same URL", "swrk")]:
        for i in range(1, rounds + 1):
            g = lambda n: r.get(f"{prefix}.{i}_{n}")
            us = lambda v: f"{float(v):,.0f} µs" if v else "—"
            md.append(f"| {label} | {i} | {int(float(g('count') or 0)):,} | {us(g('p50_us'))} | {us(g('p99_us'))} | {per_s(float(g('rps')))} |")
    with open(report, "a") as f:
        f.write("\n".join(md) + "\n")

if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    {"wrk": wrk, "load": load, "rss": rss, "render": render}[what](*args)
PY

phase "serve (exercise 7): wrk, redis-benchmark and workshop-cli load, ${SERVE_SECS} s runs, $ROUNDS_TEXT"
start_serve l1
L1_PID="$SERVE_PID" L1_URL="$SERVE_URL"
start_serve l2 --l1-capacity 0
L2_PID="$SERVE_PID" L2_URL="$SERVE_URL"
SERVE_PID=""
stop_both() {
    for pid in $L1_PID $L2_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $L1_PID $L2_PID; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop_both; on_exit' EXIT
curl -fsS "$L1_URL/products/$SERVE_ID" >/dev/null || die "serve has no product $SERVE_ID (BENCH_SERVE_ID; just seed)"
curl -fsS "$L2_URL/products/$SERVE_ID" >/dev/null
PRODUCT_KEY="$("$VCLI" -h "$HOST" -p "$VALKEY_PORT" --scan --pattern "${KEY_PREFIX}*:product:$SERVE_ID" | head -n 1)"
[[ -n "$PRODUCT_KEY" ]] || die "serve cached no key for product $SERVE_ID in Valkey"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    wrk_run "serve: wrk, L1 hits" "sl1.$ROUND" "$L1_URL/products/$SERVE_ID" 2xx
    wrk_run "serve: wrk, the HTTP ceiling (404 fallback)" "sceil.$ROUND" "$L1_URL/bench-ceiling" any
    wrk_run "serve: wrk, --l1-capacity 0" "sl2.$ROUND" "$L2_URL/products/$SERVE_ID" 2xx
    run "serve: redis-benchmark on the same key" "$TMP/srb.$ROUND.csv" "$BENCH_CLIENT" -h "$HOST" -p "$VALKEY_PORT" -c 50 \
        -n $((SERVE_SECS * 20000)) --csv GET "$PRODUCT_KEY"
    parse redis "$TMP/srb.$ROUND.csv" "srb.$ROUND" $((SERVE_SECS * 20000))
    run "serve: workshop-cli load" "$TMP/sload.$ROUND.json" "$BIN" --json load --url "$L1_URL" --concurrency 50 \
        --duration "$SERVE_SECS" --read-ratio 100 --ids "$SERVE_ID..$SERVE_ID"
    python3 "$TMP/bench_serve.py" load "$TMP/sload.$ROUND.json" "sload.$ROUND" >>"$RESULTS"
    wrk_run "serve: wrk on load's URL" "swrk.$ROUND" "$L1_URL/products/$SERVE_ID" 2xx
    cat "/proc/$L1_PID/status" >"$TMP/srss.$ROUND.l1"
    cat "/proc/$L2_PID/status" >"$TMP/srss.$ROUND.l2"
    # The larger of the two servers' peaks.
    a="$(python3 "$TMP/bench_serve.py" rss "$TMP/srss.$ROUND.l1" "srss.$ROUND" | cut -d' ' -f2)"
    b="$(python3 "$TMP/bench_serve.py" rss "$TMP/srss.$ROUND.l2" "srss.$ROUND" | cut -d' ' -f2)"
    echo "srss.${ROUND}_kib $((a > b ? a : b))" >>"$RESULTS"
done
ROUND=0
stop_both
trap on_exit EXIT
phase_done

# ---------------------------------------------------------------- report
meta elapsed "$((SECONDS - BENCH_STARTED))"
meta load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
say ""
BENCH_NOTES="$ROOT/scripts/bench-profile.md" python3 "$TMP/bench.py" render "$RESULTS" "$META" "$COMMANDS" "$REPORT" "$TASKS" "$ROUNDS"
# serve (exercise 7): its own table, appended to the report.
python3 "$TMP/bench_serve.py" render "$RESULTS" "$REPORT" "$ROUNDS" "$SERVE_SECS" "$WRK_VERSION"
say ""
say "Report written to ${REPORT#"$ROOT"/} (bench keys under $KEY_PREFIX deleted; $((SECONDS - BENCH_STARTED)) s in all)"
