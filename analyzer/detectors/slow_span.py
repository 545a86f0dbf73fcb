"""``slow_span``: single operations far slower than their own usual duration.

Baseline per (service, category, normalised operation) over the analysed window: the median
duration, with at least ``min_samples`` (default 30) executions. A span is flagged when it takes at
least ``factor`` (10) times the median AND at least ``min_ms`` (100 ms) more than it: a 10x outlier
is not noise, and the absolute floor keeps sub-millisecond jitter out. Server spans are left to
``slow_endpoint``. A (route, operation) needs at least ``min_occurrences`` (default 3) traces with
such outliers in the window: one or two outliers are noise (a GC pause, a lock wait, a cold cache,
e.g. a single 272 ms primary-key lookup against a 0.85 ms median in the review's demo runs), three
separate requests show a recurring problem. Our choice: the smallest count that is a pattern.
Occurrences: traces with such spans; impact: their time above the median.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from collections import Counter

from ._common import emit, hex_sid, mark_evaluated, ms, window_spans

NAME = "slow_span"
DEFAULTS = {
    "factor": 10.0,
    "min_ms": 100.0,
    "min_samples": 30,
    "min_occurrences": 3,
}


def detect(cur, cfg) -> int:
    """Append outlier-span occurrences (window and baseline: the traces in ``th_traces``)."""
    window_spans(cur)
    # op_h = hash(cat, norm): one category and text per operation, joined after the aggregation
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_span_base AS
           SELECT r.service, b.*, o.cat, o.norm FROM (
               SELECT sk, op_h, median(dur_ns) AS med, count(*) AS n
               FROM th_w GROUP BY sk, op_h HAVING count(*) >= ?) b
           JOIN (SELECT DISTINCT sk, service FROM th_routes) r USING (sk)
           JOIN (SELECT DISTINCT op_h, cat, norm FROM th_keys) o USING (op_h)""",
        [cfg.loosest(NAME, "min_samples")],
    )
    # every operation with a baseline was judged (on every route): its old occurrences get replaced
    mark_evaluated(cur, NAME, "SELECT service, NULL, cat || ': ' || norm FROM th_span_base")
    min_ns = int(cfg.loosest(NAME, "min_ms") * 1e6)
    # an outlier lasts >= min_ms more than its median, so >= min_ms more than the LOWEST median:
    # only those few spans are joined with their baselines
    low = cur.execute("SELECT coalesce(min(med), 0) FROM th_span_base").fetchall()[0][0]
    rows = cur.execute(
        f"""SELECT any_value(r.service), any_value(r.endpoint), s.tix, b.cat, any_value(b.norm),
                   any_value(b.med), any_value(b.n), count(*), sum(s.dur_ns), sum(s.dur_ns - b.med),
                   list({hex_sid("s.sid")}), mode(s.code_h), max(s.dur_ns)
            FROM (SELECT * FROM th_w WHERE dur_ns - ? >= ?) s
            JOIN th_span_base b ON b.sk = s.sk AND b.op_h = s.op_h
            JOIN th_routes r ON r.rk = s.rk
            WHERE s.dur_ns >= b.med * ? AND s.dur_ns - b.med >= ?
            GROUP BY s.rk, s.tix, b.cat, b.op_h""",
        [low, min_ns, cfg.loosest(NAME, "factor"), min_ns],
    ).fetchall()
    out = []
    for service, endpoint, tix, cat, norm, med, n, k, total, excess, sids, code_h, mx in rows:
        c = cfg.get(NAME, service, endpoint)
        if not c["enabled"] or n < c["min_samples"] or mx < c["factor"] * med or ms(mx - med) < c["min_ms"]:
            continue
        out.append(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": f"{cat}: {norm}",
                "tix": tix,
                "impact_ms": ms(excess),
                "span_count": k,
                "duration_ms": ms(total),
                "span_ids": sids,
                "code_h": code_h,
                "detail": {
                    "category": cat,
                    "operation": norm,
                    "baseline_median_ms": ms(med),
                    "baseline_samples": n,
                },
            }
        )
    traces = Counter((o["service"], o["endpoint"], o["pattern"]) for o in out)
    needed = {k: cfg.get(NAME, k[0], k[1])["min_occurrences"] for k in traces}
    out = [
        o
        for o in out
        if traces[o["service"], o["endpoint"], o["pattern"]]
        >= needed[o["service"], o["endpoint"], o["pattern"]]
    ]
    return emit(cur, out)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated slow_span finding."""
    d = f["detail"]
    ratio = f["max_duration_ms"] / max(d["baseline_median_ms"], 0.001)
    return {
        "title": f"{d['category']} span '{d['operation'][:70]}' took up to {f['max_duration_ms']:.0f} ms "
        f"({ratio:.0f}x its median {d['baseline_median_ms']:.1f} ms) on {f['endpoint'] or f['service']}",
        "evidence": {
            **d,
            "max_ms": f["max_duration_ms"],
            "outliers_per_request_avg": round(f["avg_span_count"], 2),
        },
        "fix_hint": f"Look at what differs in the slow executions{f['where']}: lock waits, cold caches, "
        f"large inputs, or a slow dependency; add a timeout and retry with backoff for remote calls.",
    }
