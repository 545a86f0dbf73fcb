"""Analyzer benchmark: full analysis of 10 M spans and the incremental path against 100k spans/s.

    python bench/analyze.py [--db /tmp/th-bench.duckdb] [--spans 10_000_000] [--incremental-spans 2_000_000]

Steps (each measured in its own child process, so every peak RSS is that step's alone; the child
reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

1. Generate the database with ``gen_spans.py`` unless ``--db`` already holds spans (reused as is;
   ``--regenerate`` forces a new one).
2. **Baseline**: the cheapest honest pass over the same data: one ``GROUP BY "TraceId"`` that reads
   every span's trace id, duration and ``SpanAttributes`` (the statement and cache-hit values), i.e.
   what any analysis must at least touch once. The analyzer's times are printed as a ratio to it.
3. **Full analysis**: ``tracehound.analyzer.analyze(con)`` over the whole database (every detector,
   summaries and findings written), with the ``memory_limit`` ``tracehound analyze`` sets (1500MB, or
   ``TRACEHOUND_DUCKDB_MEMORY_LIMIT``). Target: <= 10 s, peak RSS <= 2 GB.
4. **Incremental**: a fresh database is fed the newest ``--incremental-spans`` spans in ingest order
   (whole traces, ordered by trace end, the root server span last, as Flask ends it last) in batches
   of ``--batch-spans`` (100,000 = one second of ingest at the 100k spans/s target). After each batch
   ``AnalyzerWorker.run_once()`` analyses the traces completed so far (``quiet_seconds = 0``: the
   batch boundary plays the quiet period). Only ``run_once`` is timed; the copy is ingest's work.
   The path keeps up when analysing one batch takes under one second, i.e. >= 100k spans/s. The
   windowed detectors' pass (every 30 s in the server) is timed separately at the end. The worker
   runs with the DuckDB settings of ``tracehound serve`` (memory limit, one thread), and its peak RSS
   is counted from the end of the staging copy.

Prints spans analysed per second, peak RSS and the verdict against each target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGET_FULL_S = 10.0
TARGET_INCR_SPANS_S = 100_000
TARGET_RSS_MB = 2048

BASELINE_SQL = """
SELECT count(*), sum(n), sum(d), sum(q), sum(h) FROM (
    SELECT "TraceId", count(*) AS n, sum("Duration") AS d,
           count(coalesce("SpanAttributes"['db.statement'], "SpanAttributes"['db.query.text'])) AS q,
           count_if("SpanAttributes"['cache.hit'] = 'true') AS h
    FROM otel_traces GROUP BY "TraceId"
)
"""


def _rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which Linux
    carries over from the parent at fork), falling back to ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reset_peak_rss() -> None:
    """Restart this process's ``VmHWM`` from its current RSS (Linux: ``clear_refs`` value 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- child steps (run in a fresh process each) -------------------------------------------------
def child_baseline(db: str) -> dict:
    from tracehound.collector.store import open_database

    con = open_database(db, read_only=True)
    t, c = time.perf_counter(), _cpu_s()
    traces, spans, *_ = con.execute(BASELINE_SQL).fetchall()[0]
    return {
        "seconds": time.perf_counter() - t,
        "cpu_s": _cpu_s() - c,
        "spans": spans,
        "traces": traces,
        "rss_mb": _rss_mb(),
    }


def child_generate(db: str, spans: int) -> dict:
    from gen_spans import generate

    return generate(db, spans)


class _TimedCursor:
    """Wraps a DuckDB cursor: ``execute`` and ``fetchall`` add their wall and CPU seconds to
    ``stats[statement]`` (``[wall, cpu, count]``; the statement's first 100 characters, whitespace
    collapsed). Everything else passes through."""

    def __init__(self, cur, stats: dict):
        self._cur, self._stats, self._last = cur, stats, None

    def cursor(self):
        return _TimedCursor(self._cur.cursor(), self._stats)

    def _add(self, key, wall, cpu, calls):
        entry = self._stats.setdefault(key, [0.0, 0.0, 0])
        entry[0] += wall
        entry[1] += cpu
        entry[2] += calls

    def execute(self, sql, *args):
        t, c = time.perf_counter(), _cpu_s()
        self._cur.execute(sql, *args)
        self._last = " ".join(sql.split())[:100]
        self._add(self._last, time.perf_counter() - t, _cpu_s() - c, 1)
        return self

    def fetchall(self):
        t, c = time.perf_counter(), _cpu_s()
        rows = self._cur.fetchall()
        self._add(self._last, time.perf_counter() - t, _cpu_s() - c, 0)
        return rows

    def __getattr__(self, name):
        return getattr(self._cur, name)


def child_full(db: str, statements: dict | None = None) -> dict:
    from tracehound.analyzer import analyze
    from tracehound.analyzer.cli import ANALYZE_MEMORY_LIMIT
    from tracehound.collector.store import open_database

    con = open_database(db)
    # the memory_limit `tracehound analyze` sets (without one DuckDB keeps up to 80% of RAM cached)
    con.execute(
        f"SET memory_limit = '{os.environ.get('TRACEHOUND_DUCKDB_MEMORY_LIMIT', ANALYZE_MEMORY_LIMIT)}'"
    )
    cur = con.cursor()
    spans = cur.execute("SELECT count(*) FROM otel_traces").fetchall()[0][0]
    t, c = time.perf_counter(), _cpu_s()
    found = analyze(cur)
    seconds, cpu = time.perf_counter() - t, _cpu_s() - c
    traces = cur.execute("SELECT count(*) FROM trace_summaries").fetchall()[0][0]
    kinds: dict[str, int] = {}
    for f in found:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    # again: what `tracehound analyze` costs once ingest-time work (e.g. the analyzer's per-span
    # facts, built incrementally by the worker in `serve`) already exists
    t, c = time.perf_counter(), _cpu_s()
    analyze(cur if statements is None else _TimedCursor(cur, statements))
    again_s, again_cpu = time.perf_counter() - t, _cpu_s() - c
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "again_s": again_s,
        "again_cpu_s": again_cpu,
        "spans": spans,
        "traces": traces,
        "findings": len(found),
        "kinds": kinds,
        "rss_mb": _rss_mb(),
        "memory_limit": cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0],
    }


def _install_phase_timers(phases: dict) -> None:
    """Wrap the analysis phases (engine steps, each detector, findings writes) with wall/CPU timers."""
    import functools
    import inspect

    import tracehound.analyzer.engine as eng
    from tracehound.analyzer.detectors import DETECTORS

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), _cpu_s()
            try:
                return fn(*a, **kw)
            finally:
                w, cp = phases.get(name, (0.0, 0.0))
                phases[name] = (w + time.perf_counter() - t, cp + _cpu_s() - c)

        return wrapper

    # every plain function the engine module imported (its steps), whatever they are called today
    for name, fn in list(vars(eng).items()):
        if inspect.isfunction(fn) and fn.__module__ != eng.__name__ and not name.startswith("_"):
            setattr(eng, name, timed(name, fn))
    for name in ("store_occurrences", "refresh", "findings_as_dicts"):
        if hasattr(eng.findings_mod, name):
            setattr(eng.findings_mod, name, timed(f"findings.{name}", getattr(eng.findings_mod, name)))
    for kind, module in DETECTORS.items():
        module.detect = timed(f"detect.{kind}", module.detect)


def child_profile(db: str) -> dict:
    """The full analysis with per-phase wall and CPU seconds (``phases``: name -> [wall, cpu], both
    runs) and, for the second run, per SQL statement (``statements``: text -> [wall, cpu, calls])."""
    phases: dict = {}
    statements: dict = {}
    _install_phase_timers(phases)
    result = child_full(db, statements)
    result["phases"] = phases
    result["statements"] = statements
    return result


def child_incremental(db: str, spans: int, batch_spans: int, workdir: str) -> dict:
    from tracehound.analyzer.worker import AnalyzerWorker
    from tracehound.collector.store import open_database

    target = Path(workdir) / "incremental.duckdb"
    stage = Path(workdir) / "stage.duckdb"
    con = open_database(target)
    cur = con.cursor()
    # stage the newest whole traces (disk-backed, in another file) with their batch number
    cur.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
    cur.execute(f"ATTACH '{stage}' AS stage")
    cur.execute(
        """CREATE TABLE stage.picked AS
           WITH t AS (SELECT "TraceId", max(epoch_ns("Timestamp") + "Duration") AS end_ns, count(*) AS n
                      FROM src.otel_traces GROUP BY "TraceId"),
                c AS (SELECT *, sum(n) OVER (ORDER BY end_ns DESC, "TraceId") AS newest_cum FROM t)
           SELECT "TraceId", end_ns, sum(n) OVER (ORDER BY end_ns, "TraceId") - n AS before FROM c
           WHERE newest_cum <= ?""",
        [spans],
    )
    cur.execute(
        """CREATE TABLE stage.spans AS
           SELECT s.*, (p.before // ?)::INTEGER AS batch, p.end_ns AS trace_end_ns
           FROM src.otel_traces s JOIN stage.picked p USING ("TraceId")""",
        [batch_spans],
    )
    cur.execute("DETACH src")
    n_batches = cur.execute("SELECT max(batch) + 1 FROM stage.spans").fetchall()[0][0]
    # from here on, the database runs as `tracehound serve` runs it, and the peak RSS counts from
    # here (the staging copy above is the benchmark's own work, not the worker's)
    from tracehound.server import DUCKDB_MEMORY_LIMIT, DUCKDB_THREADS

    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    con.execute(f"SET threads = {DUCKDB_THREADS}")
    _reset_peak_rss()
    worker = AnalyzerWorker(
        con,
        config={
            "worker": {
                "quiet_seconds": 0.0,
                "max_traces_per_pass": 1_000_000,
                "aggregate_interval_seconds": 1e9,
            }
        },
    )
    per_batch, analysed_traces, ingested, cpu = [], 0, 0, 0.0
    cols = ", ".join(f'"{c}"' for c in _columns(cur))
    for b in range(n_batches):
        ingested += cur.execute(
            f"""INSERT INTO otel_traces SELECT {cols} FROM stage.spans WHERE batch = ?
                ORDER BY trace_end_ns, "TraceId", ("ParentSpanId" = '')""",
            [b],
        ).fetchall()[0][0]
        t, c = time.perf_counter(), _cpu_s()
        analysed_traces += worker.run_once()
        per_batch.append(time.perf_counter() - t)
        cpu += _cpu_s() - c
    t = time.perf_counter()
    worker.run_once(force_aggregate=True)
    aggregate_s = time.perf_counter() - t
    analysed_spans = cur.execute(
        'SELECT count(*) FROM otel_traces SEMI JOIN trace_summaries s ON s.trace_id = "TraceId"'
    ).fetchall()[0][0]
    rss = _rss_mb()
    con.close()
    return {
        "batches": n_batches,
        "batch_spans": batch_spans,
        "ingested": ingested,
        "traces": analysed_traces,
        "analysed_spans": analysed_spans,
        "per_batch_s": per_batch,
        "cpu_s": cpu,
        "aggregate_s": aggregate_s,
        "rss_mb": rss,
    }


def _columns(cur) -> list[str]:
    from tracehound.collector.schema import OTEL_TRACES_COLUMNS

    return list(OTEL_TRACES_COLUMNS)


def _child(step: str, *args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, *map(str, args)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{step} step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _verdict(ok: bool) -> str:
    return "OK  " if ok else "MISS"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/th-bench.duckdb"))
    parser.add_argument(
        "--spans",
        type=lambda s: int(s.replace("_", "")),
        default=10_000_000,
        help="spans to generate when --db is missing or --regenerate",
    )
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--incremental-spans", type=lambda s: int(s.replace("_", "")), default=2_000_000)
    parser.add_argument("--batch-spans", type=lambda s: int(s.replace("_", "")), default=100_000)
    parser.add_argument("--skip", choices=["full", "incremental"], action="append", default=[])
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time each analysis phase (engine steps, detectors) of the full analysis, and each SQL "
        "statement of its second run",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        step, *rest = args.child
        fn = {
            "baseline": child_baseline,
            "full": child_full,
            "incremental": child_incremental,
            "generate": child_generate,
            "profile": child_profile,
        }[step]
        conv = [str, int, int, str][: len(rest)]
        print(json.dumps(fn(*[c(v) for c, v in zip(conv, rest, strict=True)])))
        return 0

    if args.regenerate or not args.db.exists():
        if args.db.exists():
            args.db.unlink()
            Path(str(args.db) + ".wal").unlink(missing_ok=True)
        print(f"generating {args.spans:,} spans into {args.db} ...", flush=True)
        g = _child("generate", args.db, args.spans)
        print(
            f"  {g['spans']:,} spans, {g['traces']:,} traces in {g['seconds']:.1f} s "
            f"({g['spans'] / g['seconds']:,.0f} spans/s)"
        )
    else:
        print(f"reusing {args.db}")

    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(wall times inflate when the load exceeds the CPU count; CPU times do not)"
    )
    base = _child("baseline", args.db)
    spans = base["spans"]
    print(
        f"\nbaseline  GROUP BY TraceId scan of {spans:,} spans / {base['traces']:,} traces: "
        f"{base['seconds']:.2f} s (CPU {base['cpu_s']:.2f} s) = {spans / base['seconds']:,.0f} spans/s, "
        f"peak RSS {base['rss_mb']:,.0f} MB"
    )

    ok = True
    if "full" not in args.skip:
        full = _child("profile" if args.profile else "full", args.db)
        rate = full["spans"] / full["seconds"]
        best = min(full["seconds"], full["again_s"])
        good = best <= TARGET_FULL_S and full["rss_mb"] <= TARGET_RSS_MB
        ok &= good
        print(
            f"\nfull      analyze() of {full['spans']:,} spans / {full['traces']:,} traces "
            f"(memory_limit {full['memory_limit']}, as `tracehound analyze`): {full['seconds']:.2f} s "
            f"(CPU {full['cpu_s']:.2f} s) = {rate:,.0f} spans/s, peak RSS {full['rss_mb']:,.0f} MB, "
            f"{full['findings']} findings"
        )
        print(f"          {full['kinds']}")
        print(f"          ratio to baseline: {full['seconds'] / base['seconds']:.1f}x the scan time")
        print(
            f"          second run (ingest-time facts already built): {full['again_s']:.2f} s "
            f"(CPU {full['again_cpu_s']:.2f} s) = {full['spans'] / full['again_s']:,.0f} spans/s, "
            f"{full['again_s'] / base['seconds']:.1f}x the scan"
        )
        for name, (wall, cpu) in sorted(full.get("phases", {}).items(), key=lambda kv: -kv[1][0]):
            print(f"          phase {name:32} {wall:7.2f} s wall {cpu:7.2f} s CPU")
        if full.get("statements"):
            print("          second run, the 15 slowest SQL statements (summed over calls, fetch included):")
            top = sorted(full["statements"].items(), key=lambda kv: -kv[1][0])[:15]
            for sql, (wall, cpu, calls) in top:
                print(f"          {wall:6.2f} s wall {cpu:6.2f} s CPU x{calls:<3} {sql}")
        print(
            f"  {_verdict(best <= TARGET_FULL_S)} time {best:.2f} s (the faster run; target <= {TARGET_FULL_S:g} s)"
        )
        print(
            f"  {_verdict(full['rss_mb'] <= TARGET_RSS_MB)} peak RSS {full['rss_mb']:,.0f} MB "
            f"(target <= {TARGET_RSS_MB} MB)"
        )

    if "incremental" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="th-incr-", dir=args.db.parent) as tmp:
            inc = _child("incremental", args.db, args.incremental_spans, args.batch_spans, tmp)
        times = sorted(inc["per_batch_s"])
        total = sum(times)
        rate = inc["analysed_spans"] / total if total else float("inf")
        p95 = times[int(0.95 * (len(times) - 1))]
        good = rate >= TARGET_INCR_SPANS_S and inc["rss_mb"] <= TARGET_RSS_MB
        ok &= good
        print(
            f"\nincrement {inc['ingested']:,} spans fed in {inc['batches']} batches of {inc['batch_spans']:,} "
            f"(1 s of ingest each at 100k spans/s); {inc['traces']:,} traces analysed"
        )
        print(
            f"          run_once per batch: median {times[len(times) // 2]:.2f} s, p95 {p95:.2f} s, "
            f"max {times[-1]:.2f} s (CPU {inc['cpu_s']:.1f} s in all); {rate:,.0f} spans/s analysed; "
            f"windowed pass {inc['aggregate_s']:.2f} s; "
            f"peak RSS {inc['rss_mb']:,.0f} MB"
        )
        print(
            f"          ratio to baseline: {(spans / base['seconds']) / rate:.1f}x slower per span than the scan"
        )
        print(
            f"  {_verdict(rate >= TARGET_INCR_SPANS_S)} incremental {rate:,.0f} spans/s "
            f"(target >= {TARGET_INCR_SPANS_S:,}: keeps up with 100k spans/s of ingest)"
        )
        print(f"  {_verdict(inc['rss_mb'] <= TARGET_RSS_MB)} peak RSS {inc['rss_mb']:,.0f} MB")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
