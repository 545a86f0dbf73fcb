"""Generate millions of realistic spans with planted performance problems, straight into DuckDB.

    python bench/gen_spans.py --spans 10_000_000 --db /tmp/th-bench.duckdb

The route catalogue (``gen_routes.py``) describes each request type once as span slots; this script
stamps out traces from it entirely in DuckDB SQL (``range()`` + ``hash()`` for ids and randomness),
so 10 million spans take well under two minutes on two cores. No Python runs per span.

Per trace it varies: the trace and span ids (hashes of the trace number, the slot and ``--seed``),
the start time (spread evenly over ``--days`` days ending at ``--end``, default now, with jitter),
a time scale (0.8-1.3, and 1 % of traces 2.5x slower: the latency tail), leaf-span jitter
(0.85-1.0, so children stay inside their parent), ``tracehound.db.params_hash`` (distinct per span
for loops, constant within the trace for repeated lookups), ``cache.hit`` (per route probability),
ids filled into URLs, paths and raw-SQL literals, the host, and errors (root StatusCode ``Error``,
``http.response.status_code`` 500) at each route's error rate.

The output is deterministic for a given ``--seed``, ``--spans`` and ``--end``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_model import SERVICES  # noqa: E402
from gen_routes import PLANTED, build_routes  # noqa: E402

NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 1_000_000_000
TRACES_PER_CHUNK = 40_000


def avg_spans_per_trace(routes=None) -> float:
    """Traffic-weighted mean number of spans per trace of the route catalogue."""
    routes = routes or build_routes()
    total = sum(r.weight for r in routes)
    return sum(r.weight * len(r.slots) for r in routes) / total


def _load_catalogue(con, routes) -> None:
    import pyarrow as pa

    total = sum(r.weight for r in routes)
    cum, lo_hi = 0.0, []
    for r in routes:
        lo_hi.append((cum / total, (cum + r.weight) / total))
        cum += r.weight
    lo_hi[-1] = (lo_hi[-1][0], 1.0000001)
    con.register(
        "_routes",
        pa.table(
            {
                "template_id": list(range(len(routes))),
                "service": [r.service for r in routes],
                "service_version": [SERVICES[r.service][0] for r in routes],
                "p_lo": [a for a, _ in lo_hi],
                "p_hi": [b for _, b in lo_hi],
                "error_p": [r.error_p for r in routes],
                "status": [str(r.status) for r in routes],
            }
        ),
    )
    slots = [(i, s) for i, r in enumerate(routes) for s in r.slots]
    con.register(
        "_slots",
        pa.table(
            {
                "template_id": [i for i, _ in slots],
                "ordinal": [s.ordinal for _, s in slots],
                "parent": [s.parent for _, s in slots],
                "start_ns": [round(s.start_ms * NS_PER_MS) for _, s in slots],
                "dur_ns": [round(s.dur_ms * NS_PER_MS) for _, s in slots],
                "name": [s.name for _, s in slots],
                "kind": [s.kind for _, s in slots],
                "scope": [s.scope for _, s in slots],
                "keys": [list(s.attrs) for _, s in slots],
                "vals": [list(s.attrs.values()) for _, s in slots],
                "params_mode": [s.params_mode for _, s in slots],
                "cache_hit_p": [s.cache_hit_p for _, s in slots],
                "dyn_key": [s.dyn_key for _, s in slots],
                "dyn_tmpl": [s.dyn_tmpl for _, s in slots],
                "dyn_mod": [s.dyn_mod for _, s in slots],
                "leaf": [s.leaf for _, s in slots],
            }
        ),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE gen_routes AS SELECT * FROM _routes")
    con.execute("CREATE OR REPLACE TEMP TABLE gen_slots AS SELECT * FROM _slots")
    con.unregister("_routes")
    con.unregister("_slots")


# Per-trace draws; u_* are uniform [0, 1) numbers derived from hashes of the trace number.
TRACES_SQL = """
CREATE OR REPLACE TEMP TABLE gen_traces AS
WITH t AS (
    SELECT range AS trace_no,
           (hash(range, $seed, 1) % 1000000000) / 1e9 AS u_route,
           (hash(range, $seed, 2) % 1000000000) / 1e9 AS u_scale,
           (hash(range, $seed, 3) % 1000000000) / 1e9 AS u_err,
           (hash(range, $seed, 4) % 1000000000) / 1e9 AS u_start
    FROM range($n_traces)
)
SELECT t.trace_no, r.template_id, r.service,
       lower(lpad(to_hex(hash(t.trace_no, $seed, 5)), 16, '0')) || lower(lpad(to_hex(hash(t.trace_no, $seed, 6)), 16, '0'))
           AS trace_id,
       ($start_ns + ((t.trace_no + t.u_start) * $span_ns / $n_traces))::BIGINT AS t0_ns,
       CASE WHEN t.u_scale < 0.01 THEN 2.5 ELSE 0.8 + 0.5 * t.u_scale / 0.99 END AS scale,
       (t.u_err < r.error_p)::INTEGER AS err,
       hash(t.trace_no, $seed, 7) % $variants AS variant,
       hash(t.trace_no, $seed, 8) % 4 AS host
FROM t JOIN gen_routes r ON t.u_route >= r.p_lo AND t.u_route < r.p_hi
"""

# Building a MAP per row is DuckDB's slowest step (~2.5 s per million 8-entry maps on this machine),
# so every attribute map is built once per variant and joined in. A span's variant is
# (trace variant + 7 * ordinal) mod VARIANTS, which keeps the params hashes and ids of one trace's
# loop distinct (for loops shorter than VARIANTS) and repeats them across traces, as real ids do;
# "same params within the trace" slots use the trace variant alone. Plus the cache-hit and error
# flags: key = ((template_id * 1000 + ordinal) * VARIANTS + variant) * 4 + hit * 2 + err.
VARIANTS_SQL = """
CREATE OR REPLACE TEMP TABLE gen_attrs AS
WITH v AS (
    SELECT s.*, vv.range AS variant, h.range AS hit, e.range AS err
    FROM gen_slots s
    CROSS JOIN range($variants) vv
    CROSS JOIN range(2) h
    CROSS JOIN range(2) e
    WHERE (s.cache_hit_p IS NOT NULL OR h.range = 0) AND (s.parent < 0 OR e.range = 0)
      AND ((s.params_mode > 0 OR s.dyn_key IS NOT NULL) OR vv.range = 0)
)
SELECT ((template_id * 1000 + ordinal) * $variants + variant) * 4 + hit * 2 + err AS k,
    map(
        list_concat(
            keys,
            CASE WHEN dyn_key IS NULL THEN [] ELSE [dyn_key] END,
            CASE WHEN params_mode > 0 THEN ['tracehound.db.params_hash'] ELSE [] END,
            CASE WHEN cache_hit_p IS NULL THEN [] ELSE ['cache.hit'] END,
            CASE WHEN parent < 0 THEN ['http.response.status_code'] ELSE [] END),
        list_concat(
            vals,
            CASE WHEN dyn_key IS NULL THEN []
                 ELSE [replace(dyn_tmpl, '{n}', (1 + hash(variant, ordinal, $seed, 9) % dyn_mod)::VARCHAR)] END,
            CASE WHEN params_mode > 0 THEN [lower(lpad(to_hex(hash(variant, $seed, 10)), 16, '0'))] ELSE [] END,
            CASE WHEN cache_hit_p IS NULL THEN [] WHEN hit = 1 THEN ['true'] ELSE ['false'] END,
            CASE WHEN parent >= 0 THEN [] WHEN err = 1 THEN ['500'] ELSE [status] END)
    ) AS attrs
FROM v JOIN gen_routes USING (template_id)
"""

RESOURCES_SQL = """
CREATE OR REPLACE TEMP TABLE gen_resources AS
SELECT r.service, h.range AS host,
    map(['service.name', 'service.version', 'deployment.environment.name', 'host.name',
         'telemetry.sdk.language', 'telemetry.sdk.name', 'telemetry.sdk.version', 'process.pid'],
        [r.service, any_value(r.service_version), 'production', r.service || '-web-' || h.range::VARCHAR,
         'python', 'opentelemetry', '1.45.1', (4100 + h.range)::VARCHAR]) AS res
FROM gen_routes r CROSS JOIN range(4) h
GROUP BY r.service, h.range
"""

INSERT_SQL = """
INSERT INTO otel_traces
WITH spans AS (
    SELECT t.*, s.ordinal, s.parent, s.start_ns, s.dur_ns, s.name, s.kind, s.scope, s.leaf,
        ((s.template_id * 1000 + s.ordinal) * $variants
            + CASE WHEN s.params_mode = 1 OR (s.params_mode = 0 AND s.dyn_key IS NOT NULL)
                   THEN (t.variant + 7 * s.ordinal) % $variants
                   WHEN s.params_mode = 2 THEN t.variant ELSE 0 END) * 4
        + CASE WHEN s.cache_hit_p IS NOT NULL
                    AND (hash(t.trace_no, s.ordinal, $seed, 11) % 1000000) / 1e6 < s.cache_hit_p
               THEN 2 ELSE 0 END
        + CASE WHEN s.parent < 0 THEN t.err ELSE 0 END AS k
    FROM gen_traces t JOIN gen_slots s ON s.template_id = t.template_id
    WHERE t.trace_no >= $lo AND t.trace_no < $hi
)
SELECT
    make_timestamp_ns(x.t0_ns + (x.start_ns * x.scale)::BIGINT) AS "Timestamp",
    x.trace_id AS "TraceId",
    lower(lpad(to_hex(hash(x.trace_no, x.ordinal, $seed, 12)), 16, '0')) AS "SpanId",
    CASE WHEN x.parent < 0 THEN '' ELSE lower(lpad(to_hex(hash(x.trace_no, x.parent, $seed, 12)), 16, '0')) END,
    '' AS "TraceState",
    x.name AS "SpanName",
    x.kind AS "SpanKind",
    x.service AS "ServiceName",
    r.res AS "ResourceAttributes",
    '' AS "ResourceSchemaUrl", 0 AS "ResourceDroppedAttributesCount",
    x.scope AS "ScopeName", '0.66b1' AS "ScopeVersion", map([], []) AS "ScopeAttributes",
    '' AS "ScopeSchemaUrl", 0 AS "ScopeDroppedAttributesCount",
    a.attrs AS "SpanAttributes",
    (x.dur_ns * x.scale * CASE WHEN x.leaf
        THEN 0.85 + 0.15 * (hash(x.trace_no, x.ordinal, $seed, 13) % 1000) / 1000.0 ELSE 1 END)::BIGINT
        AS "Duration",
    CASE WHEN x.parent < 0 AND x.err = 1 THEN 'Error' ELSE 'Unset' END AS "StatusCode",
    CASE WHEN x.parent < 0 AND x.err = 1 THEN 'InternalServerError' ELSE '' END AS "StatusMessage",
    1 AS "Flags", 0, 0, 0, [] AS "Events", [] AS "Links"
FROM spans x
JOIN gen_attrs a ON a.k = x.k
JOIN gen_resources r ON r.service = x.service AND r.host = x.host

"""

VARIANTS = 256


def generate(
    db, spans: int, days: float = 7.0, end_ns: int | None = None, seed: int = 42, progress=None
) -> dict:
    """Generate about ``spans`` spans into ``db`` (a path or an open DuckDB connection).

    Traces are spread over ``days`` days ending at ``end_ns`` (ns since the epoch, default now).
    Returns ``{"spans": int, "traces": int, "seconds": float, "cpu_seconds": float}`` (wall and CPU
    time). The table ``otel_traces`` is created with
    :func:`tracehound.collector.store.open_database` when ``db`` is a path; existing rows stay.
    Raises ``ValueError`` for ``spans < 1`` or ``days <= 0``.
    """
    from tracehound.collector.store import open_database

    if spans < 1 or days <= 0:
        raise ValueError("--spans must be >= 1 and --days > 0")
    t_start, cpu_start = time.perf_counter(), _cpu_s()
    con = open_database(db) if isinstance(db, str | Path) else db
    routes = build_routes()
    n_traces = max(1, round(spans / avg_spans_per_trace(routes)))
    end_ns = end_ns if end_ns is not None else time.time_ns()
    span_ns = int(days * NS_PER_DAY)
    _load_catalogue(con, routes)
    con.execute(
        TRACES_SQL,
        {
            "seed": seed,
            "n_traces": n_traces,
            "start_ns": end_ns - span_ns,
            "span_ns": span_ns,
            "variants": VARIANTS,
        },
    )
    con.execute(VARIANTS_SQL, {"seed": seed, "variants": VARIANTS})
    con.execute(RESOURCES_SQL)
    before = con.execute("SELECT count(*) FROM otel_traces").fetchone()[0]
    for lo in range(0, n_traces, TRACES_PER_CHUNK):
        hi = min(n_traces, lo + TRACES_PER_CHUNK)
        con.execute(INSERT_SQL, {"seed": seed, "lo": lo, "hi": hi, "variants": VARIANTS})
        if progress:
            progress(hi, n_traces)
    after = con.execute("SELECT count(*) FROM otel_traces").fetchone()[0]
    for table in ("gen_traces", "gen_attrs", "gen_resources", "gen_slots", "gen_routes"):
        con.execute(f"DROP TABLE {table}")
    con.execute("CHECKPOINT")
    if con is not db:
        con.close()
    return {
        "spans": after - before,
        "traces": n_traces,
        "seconds": time.perf_counter() - t_start,
        "cpu_seconds": _cpu_s() - cpu_start,
    }


def _cpu_s() -> float:
    """CPU seconds of this process, all DuckDB threads included."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spans",
        type=lambda s: int(s.replace("_", "")),
        default=10_000_000,
        help="approximate number of spans (default 10_000_000)",
    )
    parser.add_argument("--db", type=Path, default=Path("/tmp/th-bench.duckdb"), help="DuckDB file to write")
    parser.add_argument("--days", type=float, default=7.0, help="time range the traces cover, ending --end")
    parser.add_argument(
        "--end", type=float, default=None, help="end of the range, epoch seconds (default now)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--overwrite", action="store_true", help="delete --db first if it exists")
    args = parser.parse_args(argv)
    if args.db.exists():
        if not args.overwrite:
            parser.exit(2, f"error: {args.db} exists: pass --overwrite or pick another --db\n")
        args.db.unlink()
        Path(str(args.db) + ".wal").unlink(missing_ok=True)

    def progress(done, total):
        print(f"\r  traces {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    end_ns = int(args.end * 1e9) if args.end is not None else None
    result = generate(args.db, args.spans, args.days, end_ns, args.seed, progress)
    print(file=sys.stderr)
    rate = result["spans"] / result["seconds"]
    print(
        f"generated {result['spans']:,} spans in {result['traces']:,} traces over {args.days:g} days "
        f"into {args.db} in {result['seconds']:.1f} s ({rate:,.0f} spans/s; CPU {result['cpu_seconds']:.1f} s, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"file size {args.db.stat().st_size / 1e9:.2f} GB; planted problems:")
    for kind, service, endpoint in PLANTED:
        print(f"  {kind:18} {service:10} {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
