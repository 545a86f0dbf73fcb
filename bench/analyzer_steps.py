"""Analyzer timings by step: span-facts build, full analysis, and the incremental worker's rate.

    python bench/analyzer_steps.py --db /tmp/th-bench.duckdb [--full [--memory-limit 1GB]] [--incremental SPANS]

``--db`` is a span store made by ``bench/gen_spans.py`` (it is copied to a scratch file first, so the
source stays untouched). ``--full`` times ``refresh_facts`` (the one-time extraction that the worker
otherwise does at ingest speed) and then ``analyze()`` over every trace, per step, with spans/s and peak
RSS (wall and CPU time: on a shared machine CPU time is the steadier figure). ``--incremental N`` replays the first N spans of the source in ingest order, 100,000 spans per
simulated second, into an empty store watched by a real ``AnalyzerWorker`` (``quiet_seconds=0``,
windowed detectors every 30 simulated seconds) and prints the worker's own time per simulated second:
below 1.0 s means it keeps up with 100k spans/s of ingest (the ratio to that target is printed).
Run by hand, never in pytest.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

INGEST_RATE = 100_000  # spans per simulated second (issue 4 target)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def full(src: Path, scratch: Path, memory_limit: str | None = None) -> None:
    """Time facts extraction and a full analysis of a copy of ``src``; print per-step figures."""
    import tracehound.analyzer.engine as eng
    from tracehound.analyzer import findings as fm
    from tracehound.analyzer.derive import refresh_facts
    from tracehound.analyzer.detectors import DETECTORS
    from tracehound.collector.store import open_database

    db = scratch / "full.duckdb"
    shutil.copy(src, db)
    con = open_database(db)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    cur = con.cursor()
    n = cur.execute("SELECT count(*) FROM otel_traces").fetchall()[0][0]
    t, c = time.perf_counter(), time.process_time()
    refresh_facts(cur)
    facts_s, facts_cpu = time.perf_counter() - t, time.process_time() - c
    print(
        f"facts build     {facts_s:7.2f} s  (cpu {facts_cpu:.2f} s)  {n / facts_s:>12,.0f} spans/s  "
        "(one-time; the worker does it at ingest)"
    )
    steps: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    for name in ("select_traces", "load_spans", "build_anchors", "build_summaries", "write_trace_summaries"):
        setattr(eng, name, timed(name, getattr(eng, name)))
    for name, module in DETECTORS.items():
        module.detect = timed(name, module.detect)
    for name in ("delete_occurrences", "store_occurrences", "refresh"):
        setattr(fm, name, timed("findings." + name, getattr(fm, name)))
    t, c = time.perf_counter(), time.process_time()
    found = eng.analyze(con)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    for name, sec in steps.items():
        print(f"  {name:28s} {sec:7.2f} s")
    print(
        f"full analysis   {total:7.2f} s  (cpu {cpu:.2f} s)  {n / total:>12,.0f} spans/s  spans={n:,}  "
        f"findings={len(found)}  "
        f"peak RSS {_rss_mb():,.0f} MB  (target 10 s for 10M: ratio {total / (n / 1e6):.2f} s per 1M spans)"
    )
    con.close()


def incremental(src: Path, scratch: Path, spans: int) -> None:
    """Replay ``spans`` spans at 100k/s simulated into a fresh store; print the worker's time per second."""
    from tracehound.analyzer.worker import AnalyzerWorker
    from tracehound.collector.store import open_database

    from tracehound.settings import ServerSettings

    db = scratch / "incr.duckdb"
    con = open_database(db)
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    worker = AnalyzerWorker(
        con, ServerSettings(), config={"worker": {"quiet_seconds": 0.0, "aggregate_interval_seconds": 1e9}}
    )
    busy, ticks, analysed, worst, ingest = 0.0, 0, 0, 0.0, 0.0
    for lo in range(0, spans, INGEST_RATE):
        t = time.perf_counter()
        con.execute(
            "INSERT INTO otel_traces SELECT * FROM src.otel_traces WHERE rowid >= ? AND rowid < ?",
            [lo, min(lo + INGEST_RATE, spans)],
        )
        # The collector's writer pays for checkpointing what it wrote; without this the worker's next
        # commit would (DuckDB checkpoints in whichever commit crosses checkpoint_threshold).
        con.execute("CHECKPOINT")
        ingest += time.perf_counter() - t
        ticks += 1
        t = time.perf_counter()
        analysed += worker.run_once(force_aggregate=ticks % 30 == 0)
        dt = time.perf_counter() - t
        busy += dt
        worst = max(worst, dt)
    t = time.perf_counter()
    analysed += worker.run_once(force_aggregate=True)
    busy += time.perf_counter() - t
    per_s = busy / ticks
    print(
        f"incremental     {ticks} simulated s of {INGEST_RATE:,} spans/s: worker busy {per_s:.3f} s per s "
        f"(worst {worst:.2f} s incl. windowed run), traces analysed {analysed:,}, late re-analyses "
        f"{worker.late_traces}, rate {spans / busy:,.0f} spans/s = {spans / busy / INGEST_RATE:.2f}x the "
        f"100k/s target, peak RSS {_rss_mb():,.0f} MB; the simulated ingest itself (insert from the "
        f"source file + checkpoint) took {ingest / ticks:.3f} s per s"
    )
    con.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, required=True, help="span store from bench/gen_spans.py")
    p.add_argument("--full", action="store_true", help="time facts build + full analysis")
    p.add_argument("--memory-limit", help="DuckDB memory_limit for --full, e.g. 1GB (bounds peak RSS)")
    p.add_argument("--incremental", type=int, default=0, metavar="SPANS", help="replay this many spans")
    args = p.parse_args(argv)
    if not args.db.is_file():
        print(f"error: {args.db} not found; make one with bench/gen_spans.py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        if args.full:
            full(args.db, Path(d), args.memory_limit)
        if args.incremental:
            incremental(args.db, Path(d), args.incremental)
    return 0


if __name__ == "__main__":
    sys.exit(main())
