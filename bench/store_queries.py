"""Store query benchmark: all spans of one trace, and one service over a time range.

    .venv/bin/python bench/store_queries.py [--batches 800] [--db PATH]

Fills a DuckDB file through the collector's own writer path (decode + group commit, 512-span
batches of bench/spans.py, three services, spans arriving in time order), then times, per query
(mean over 30 random traces / windows, warm cache):

* trace by id, baseline: ``WHERE "TraceId" = ?`` (a scan of the TraceId column);
* trace by id with a time hint (``Timestamp BETWEEN`` the trace's start +- 1 hour, what the API
  does with the start it finds in ``trace_summaries``);
* one service over a 1-minute window (zone maps on Timestamp) vs the same service unbounded.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracehound.collector.decode import decode_request  # noqa: E402
from tracehound.collector.store import open_database  # noqa: E402
from tracehound.collector.writer import SpanWriter  # noqa: E402

from bench.spans import make_request  # noqa: E402

BASE_NS = 1_700_000_000_000_000_000
STEP_NS = 10_000_000_000  # one 512-span batch per 10 s of traffic: hours of data


def fill(db: Path, batches: int) -> None:
    con = open_database(db)
    writer = SpanWriter(con, queue_max_spans=10**9)
    writer.start()
    started = time.perf_counter()
    for i in range(0, batches, 10):
        group = [
            decode_request(make_request(512, service=f"svc{j % 3}", seed=j, start_ns=BASE_NS + j * STEP_NS))
            for j in range(i, min(i + 10, batches))
        ]
        for future in [writer.submit(b) for b in group]:
            future.result()
    writer.stop()
    con.execute("CHECKPOINT")
    con.close()
    print(
        f"filled {batches * 512:,} spans in {time.perf_counter() - started:.1f} s; "
        f"{os.path.getsize(db) / (batches * 512):.1f} bytes/span"
    )


def timed_ms(fn, args_list) -> float:
    started = time.perf_counter()
    for args in args_list:
        fn(*args)
    return (time.perf_counter() - started) / len(args_list) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=800, help="512-span batches to store (default 800)")
    parser.add_argument("--db", type=Path, help="reuse or keep this database file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "q.duckdb"
        if not db.exists():
            fill(db, args.batches)
        con = open_database(db, read_only=True)
        n = con.execute("SELECT count(*) FROM otel_traces").fetchone()[0]
        sample = con.execute('SELECT "TraceId", "Timestamp" FROM otel_traces USING SAMPLE 30 ROWS').fetchall()
        trace_ids = [r[0] for r in sample]
        hints = dict(sample)
        rng = random.Random(1)
        span_s = n / 512 * STEP_NS / 1e9
        windows = [
            (f"svc{rng.randrange(3)}", BASE_NS + int(rng.uniform(0, max(span_s - 60, 1)) * 1e9))
            for _ in range(30)
        ]

        def by_scan(trace_id):
            return con.execute('SELECT * FROM otel_traces WHERE "TraceId" = ?', [trace_id]).fetchall()

        def by_bounds(trace_id):
            hint = hints[trace_id]
            return con.execute(
                'SELECT * FROM otel_traces WHERE "TraceId" = ? AND "Timestamp" BETWEEN '
                "?::TIMESTAMP_NS - INTERVAL 1 HOUR AND ?::TIMESTAMP_NS + INTERVAL 1 HOUR",
                [trace_id, hint, hint],
            ).fetchall()

        def window(service, start_ns):
            return con.execute(
                'SELECT "SpanName", count(*), avg("Duration") FROM otel_traces WHERE "ServiceName" = ? AND '
                '"Timestamp" BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?) GROUP BY 1',
                [service, start_ns, start_ns + 60 * 10**9],
            ).fetchall()

        def unbounded(service, _):
            return con.execute(
                'SELECT "SpanName", count(*), avg("Duration") FROM otel_traces WHERE "ServiceName" = ? GROUP BY 1',
                [service],
            ).fetchall()

        for trace_id in trace_ids:  # same answers both ways
            assert sorted(by_scan(trace_id)) == sorted(by_bounds(trace_id))
        for fn in (by_scan, by_bounds):  # warm up
            timed_ms(fn, [(t,) for t in trace_ids[:3]])
        scan = timed_ms(by_scan, [(t,) for t in trace_ids])
        bounded = timed_ms(by_bounds, [(t,) for t in trace_ids])
        win = timed_ms(window, windows)
        full = timed_ms(unbounded, windows)
        print(f"{n:,} spans, {span_s / 3600:.1f} hours of traffic; load average {os.getloadavg()[0]:.2f}")
        print(
            f"trace by id   scan: {scan:7.2f} ms   with time hint  : {bounded:7.2f} ms   ratio {scan / bounded:.1f}x"
        )
        print(
            f"service       all : {full:7.2f} ms   1-minute window : {win:7.2f} ms   ratio {full / win:.1f}x"
        )
        con.close()


if __name__ == "__main__":
    main()
