"""``slow_endpoint``: routes whose tail latency is over a target, and what that time is spent on.

Per (service, route) over the analysed window: request count, p50/p95/p99 of the root server span's
duration, error rate (status >= 500 or span status Error), throughput (requests per minute over the
window's span of time) and the exclusive-time split into db / cache / outbound http / template /
self (see :mod:`tracehound.analyzer.summaries`) of the slow tail (requests at or above the p95).

Flagged when p95 >= ``p95_ms`` (default 1000 ms: our choice, the classic "one second keeps the user's
flow of thought" limit; Sentry has no per-route latency issue) with at least ``min_requests`` (10)
requests. The title names the dominant part, e.g. "82% of p95 time is in 31 DB queries".
Occurrences: the requests over ``p95_ms``; impact: their time above it.
Code location: the most common location of the spans of the dominant part (``db`` counts
``connect`` spans too) among those slow requests, else of any span in them. When self time (or
template time) dominates and the route has ``n_plus_one_query`` findings, the location is the
biggest N+1's lazy-loading loop and the fix hint points at those findings: the self time of a
lazy-loading loop is ORM work between the queries (building objects, firing each lazy load), which
eager loading removes along with the queries.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`) on the time above ``p95_ms``.
"""

from __future__ import annotations

from ._common import emit, emit_stats, mark_evaluated, ms

#: Span categories (``span_facts.cat``) of each part of the time split; self time has no spans of
#: its own except ``other`` (internal) spans.
_CATS = {"db": ("db", "connect"), "cache": ("cache",), "http": ("http",), "template": ("template",)}
_CATS["self"] = ("other",)

#: Most common code location per flagged route among its slow requests: spans of the dominant part
#: first (``in_top``), then any span. Input ``th_se_routes(service, endpoint, min_ns, cats)``.
_LOCATION_SQL = """
SELECT r.service, r.endpoint, s.code_h
FROM th_spans s JOIN th_summary m ON m.tix = s.tix
JOIN th_se_routes r ON r.service = m.service AND r.endpoint = m.endpoint AND m.duration_ns >= r.min_ns
WHERE s.code_h IS NOT NULL
GROUP BY r.service, r.endpoint, s.code_h
QUALIFY row_number() OVER (PARTITION BY r.service, r.endpoint
    ORDER BY count(*) FILTER (WHERE list_contains(r.cats, s.cat)) DESC, count(*) DESC, s.code_h) = 1
"""

#: N+1 query findings of the flagged routes: fresh occurrences of this pass (``th_occ``) and stored
#: findings (the worker's windowed re-runs have no fresh per-trace occurrences).
_N_PLUS_ONE_SQL = """
WITH fresh AS (
    SELECT left(sha256(concat_ws(chr(31), o.kind, o.service, o.endpoint, o.pattern)), 16) AS id,
           o.service, o.endpoint, sum(o.impact_ms) AS impact_ms, mode(o.code_h) AS code_h,
           any_value(json_extract_string(o.detail, '$.relationship')) AS relationship,
           any_value(o.pattern) AS statement
    FROM th_occ o SEMI JOIN th_se_routes r ON r.service = o.service AND r.endpoint = o.endpoint
    WHERE o.kind = 'n_plus_one_query' GROUP BY ALL)
SELECT f.id, f.service, f.endpoint, f.impact_ms, c.filepath, c.lineno, c.function, f.code_h, f.relationship,
       f.statement
FROM fresh f LEFT JOIN th_code c ON c.code_h = f.code_h
UNION ALL
SELECT s.id, s.service, s.endpoint, s.impact_ms, s.code_filepath, s.code_lineno, s.code_function,
       (SELECT min(c.code_h) FROM th_code c WHERE c.filepath = s.code_filepath AND c.lineno = s.code_lineno
            AND c.function IS NOT DISTINCT FROM s.code_function),
       json_extract_string(s.evidence, '$.relationship'), json_extract_string(s.evidence, '$.statement')
FROM findings s SEMI JOIN th_se_routes r ON r.service = s.service AND r.endpoint = s.endpoint
WHERE s.kind = 'n_plus_one_query' AND s.id NOT IN (SELECT id FROM fresh)
"""

NAME = "slow_endpoint"
DEFAULTS = {"p95_ms": 1000.0, "min_requests": 10}

_PARTS = (
    ("db", "db_ns", "db_count", "DB queries"),
    ("cache", "cache_ns", "cache_count", "cache calls"),
    ("http", "http_ns", "http_count", "outbound HTTP calls"),
    ("template", "template_ns", None, "template rendering"),
    ("self", "self_ns", None, "application code (self time)"),
)


def detect(cur, cfg) -> int:
    """Append slow-route occurrences and statistics (window: the traces in ``th_traces``)."""
    routes = cur.execute(
        """WITH q AS (
               SELECT service, endpoint, count(*) AS n, quantile_cont(duration_ns, 0.5) AS p50,
                      quantile_cont(duration_ns, 0.95) AS p95, quantile_cont(duration_ns, 0.99) AS p99,
                      avg(is_error::INTEGER) AS error_rate, min(epoch_ns(start)) AS t0,
                      max(epoch_ns(start) + duration_ns) AS t1
               FROM th_summary GROUP BY service, endpoint)
           SELECT q.*, avg(s.duration_ns), avg(s.db_ns), avg(s.db_count), avg(s.cache_ns), avg(s.cache_count),
                  avg(s.http_ns), avg(s.http_count), avg(s.template_ns), avg(s.self_ns)
           FROM q JOIN th_summary s ON s.service = q.service AND s.endpoint = q.endpoint
                AND s.duration_ns >= q.p95
           GROUP BY ALL"""
    ).fetchall()
    out, evaluated, flagged = [], [], []
    for (
        service,
        endpoint,
        n,
        p50,
        p95,
        p99,
        err,
        t0,
        t1,
        _tail_ns,
        db_ns,
        db_n,
        cache_ns,
        cache_n,
        http_ns,
        http_n,
        tpl_ns,
        self_ns,
    ) in routes:
        c = cfg.get(NAME, service, endpoint)
        if not c["enabled"] or n < c["min_requests"]:
            continue
        evaluated.append((service, endpoint, endpoint))
        if ms(p95) < c["p95_ms"]:
            continue
        parts = {"db": db_ns, "cache": cache_ns, "http": http_ns, "template": tpl_ns, "self": self_ns}
        counts = {"db": db_n, "cache": cache_n, "http": http_n}
        total = sum(parts.values()) or 1
        top = max(parts, key=parts.get)
        minutes = max((t1 - t0) / 6e10, 1.0)
        stats = {
            "requests": n,
            "p50_ms": ms(p50),
            "p95_ms": ms(p95),
            "p99_ms": ms(p99),
            "error_rate": round(err, 4),
            "throughput_rpm": round(n / minutes, 3),
            "threshold_ms": c["p95_ms"],
            "p95_split_pct": {k: round(100 * v / total, 1) for k, v in parts.items()},
            "p95_split_ms": {k: ms(v) for k, v in parts.items()},
            "p95_counts_avg": {k: round(v, 1) for k, v in counts.items()},
            "dominant": top,
            "dominant_pct": round(100 * parts[top] / total, 1),
            "dominant_count": round(counts.get(top) or 0, 1),
        }
        flagged.append((service, endpoint, int(c["p95_ms"] * 1e6), top, stats))
    code, related = _locations(cur, flagged)
    for service, endpoint, min_ns, top, stats in flagged:
        loops = related.get((service, endpoint), [])
        code_h = code.get((service, endpoint))
        if top in ("self", "template") and loops:
            stats["related_n_plus_one"] = [{k: v for k, v in r.items() if k != "code_h"} for r in loops[:3]]
            code_h = loops[0]["code_h"] or code_h
        emit_stats(cur, NAME, service, endpoint, endpoint, stats)
        rows = cur.execute(
            """SELECT tix, duration_ns FROM th_summary WHERE service = ? AND endpoint = ? AND duration_ns >= ?""",
            [service, endpoint, min_ns],
        ).fetchall()
        out.extend(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": endpoint,
                "tix": tix,
                "impact_ms": ms(d - min_ns),
                "span_count": 1,
                "duration_ms": ms(d),
                "span_ids": [],
                "code_h": code_h,
                "detail": {},
            }
            for tix, d in rows
        )
    mark_evaluated(cur, NAME, evaluated)
    return emit(cur, out)


def _locations(cur, flagged: list) -> tuple[dict, dict]:
    """Code location (``code_h``) per flagged ``(service, endpoint)`` and the route's N+1 query
    findings (dicts: id, relationship, statement, where, impact_ms, code_h; biggest impact first)."""
    if not flagged:
        return {}, {}
    import pyarrow as pa

    routes = pa.table(
        {
            "service": [f[0] for f in flagged],
            "endpoint": [f[1] for f in flagged],
            "min_ns": pa.array([f[2] for f in flagged], pa.int64()),
            "cats": [list(_CATS[f[3]]) for f in flagged],
        }
    )
    cur.register("th_se_routes_arrow", routes)
    try:
        cur.execute("CREATE OR REPLACE TEMP TABLE th_se_routes AS SELECT * FROM th_se_routes_arrow")
    finally:
        cur.unregister("th_se_routes_arrow")
    code = {(r[0], r[1]): r[2] for r in cur.execute(_LOCATION_SQL).fetchall()}
    related: dict = {}
    for fid, service, endpoint, impact, path, line, fn, code_h, rel, stmt in cur.execute(
        _N_PLUS_ONE_SQL
    ).fetchall():
        where = f"{path}:{line}" + (f" in {fn}()" if fn else "") if path else ""
        related.setdefault((service, endpoint), []).append(
            {
                "id": fid,
                "relationship": rel,
                "statement": stmt,
                "where": where,
                "impact_ms": round(impact or 0.0, 3),
                "code_h": code_h,
            }  # fmt: skip
        )
    for loops in related.values():
        loops.sort(key=lambda r: (-r["impact_ms"], r["id"]))
    cur.execute("DROP TABLE th_se_routes")
    return code, related


def _self_time_hint(loops: list[dict], part: str) -> str:
    """Fix hint for a route whose slow requests are mostly self (or template) time and that has N+1s."""
    named = "; ".join(
        (f"lazy load of {r['relationship']}" if r["relationship"] else f"'{r['statement'][:60]}'")
        + (f" at {r['where']}" if r["where"] else "")
        for r in loops[:3]
    )
    plural = "s" if len(loops) > 1 else ""
    return (
        f"Most of the slow requests' time is {part}, and this route has {len(loops)} N+1 query "
        f"finding{plural} ({named}). In a lazy-loading loop that time is ORM work between the queries "
        f"(building objects and firing each lazy load), not your own Python: fix the N+1 finding{plural} "
        f"first (eager loading removes the queries and that work); profile the handler (py-spy) only if "
        f"it is still slow."
    )


def describe(f: dict, c: dict) -> dict:
    """Title (with the dominant part of the p95 time), severity, evidence and fix hint."""
    st = f["stats"] or {}
    if not st:  # occurrences left from an older window; no fresh statistics
        return {
            "title": f"Slow endpoint {f['endpoint']}",
            "evidence": {},
            "fix_hint": "Re-run the analysis over a window with enough requests.",
        }
    top, pct = st["dominant"], st["dominant_pct"]
    label = dict((p[0], p[3]) for p in _PARTS)[top]
    count = st["p95_counts_avg"].get(top)
    if count and label.endswith(("queries", "calls")) and round(count) == 1:  # "1 DB query", "1 cache call"
        label = label.replace("queries", "query").replace("calls", "call")
    what = f"{count:.0f} {label}" if count else label
    hints = {
        "db": "Look at this route's N+1 and slow query findings; cut the number of queries (eager loading) "
        "and index the slow ones.",
        "cache": "Batch cache calls (get_many) and check the hit ratio findings.",
        "http": "Run outbound calls concurrently or in a background job, add timeouts and cache responses.",
        "template": "Move work out of the template (no lazy loads or heavy filters in loops); cache fragments.",
        "self": "Profile the handler (py-spy, cProfile): the time is in Python code, not I/O.",
    }
    return {
        "title": f"Slow endpoint {f['endpoint'] or f['service']}: p95 {st['p95_ms']:.0f} ms, {pct:.0f}% of p95 "
        f"time is in {what}",
        "evidence": st,
        "fix_hint": (
            _self_time_hint(st["related_n_plus_one"], "self time" if top == "self" else "template time")
            if st.get("related_n_plus_one")
            else hints[top]
        ),
    }
