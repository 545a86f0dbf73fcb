"""``slow_endpoint``: routes whose tail latency is over a target, and what that time is spent on.

Per (service, route) over the analysed window: request count, p50/p95/p99 of the root server span's
duration, error rate (status >= 500 or span status Error), throughput (requests per minute over the
window's span of time) and the exclusive-time split into db / cache / outbound http / template /
self (see :mod:`tracehound.analyzer.summaries`) of the slow tail (requests at or above the p95).

Flagged when p95 >= ``p95_ms`` (default 1000 ms: our choice, the classic "one second keeps the user's
flow of thought" limit; Sentry has no per-route latency issue) with at least ``min_requests`` (10)
requests. The title names the dominant part, e.g. "82% of p95 time is in 31 DB queries".
Occurrences: the requests over ``p95_ms``; impact: their time above it.
Severity: ``high`` when p95 >= 3 x ``p95_ms``, else ``medium``.
"""

from __future__ import annotations

from ._common import emit, emit_stats, mark_evaluated, ms

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
    out, evaluated = [], []
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
        emit_stats(
            cur,
            NAME,
            service,
            endpoint,
            endpoint,
            {
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
            },
        )
        rows = cur.execute(
            """SELECT tix, duration_ns FROM th_summary WHERE service = ? AND endpoint = ? AND duration_ns >= ?""",
            [service, endpoint, int(c["p95_ms"] * 1e6)],
        ).fetchall()
        out.extend(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": endpoint,
                "tix": tix,
                "impact_ms": ms(d - c["p95_ms"] * 1e6),
                "span_count": 1,
                "duration_ms": ms(d),
                "span_ids": [],
                "code_h": None,
                "detail": {},
            }
            for tix, d in rows
        )
    mark_evaluated(cur, NAME, evaluated)
    return emit(cur, out)


def describe(f: dict, c: dict) -> dict:
    """Title (with the dominant part of the p95 time), severity, evidence and fix hint."""
    st = f["stats"] or {}
    if not st:  # occurrences left from an older window; no fresh statistics
        return {
            "title": f"Slow endpoint {f['endpoint']}",
            "severity": "medium",
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
        "severity": "high" if st["p95_ms"] >= 3 * c["p95_ms"] else "medium",
        "evidence": st,
        "fix_hint": hints[top],
    }
