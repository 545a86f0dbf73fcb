"""``slow_query``: a normalised statement whose executions are slow, or got slower.

Absolute rule: executions of at least ``min_duration_ms`` (default 1000 ms, Sentry's slow DB
threshold). We keep Sentry's value: one second inside a web request is user-visible on its own,
while faster-but-costly statements are already covered by ``slow_endpoint``'s time split, the N+1
detectors and the regression rule below. Like Sentry, only SELECTs by default (``only_select``):
slow writes are often batch jobs by design. Truncated statements (``...``) are skipped.
Impact per trace: the slow executions' time above ``min_duration_ms`` (as ``slow_endpoint`` counts the
time above its target): a statement that is ALWAYS slow is costly, so its own median is no baseline.

Regression rule: within the analysed window, the last ``recent_hours`` (24 h, relative to the newest
execution of the statement) are compared with the older part (its own baseline). Flagged when both
parts have at least ``regression_min_samples`` (20) executions, the recent p95 is at least
``regression_ratio`` (2.0) times the baseline p95 and at least ``regression_min_ms`` (50 ms) above it.
Its occurrences are the recent traces with an execution above the baseline p95; impact: their time
above the baseline p95 (what the regression added).
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._common import emit, emit_stats, hex_sid, mark_evaluated, ms, window_spans

NAME = "slow_query"
DEFAULTS = {
    "min_duration_ms": 1000.0,
    "only_select": True,
    "recent_hours": 24.0,
    "regression_ratio": 2.0,
    "regression_min_ms": 50.0,
    "regression_min_samples": 20,
}

#: The statements' executions (see :func:`._common.window_spans`): route keys instead of strings.
_BASE = "SELECT tix, sid, start_ns, dur_ns, code_h, op_h, rk, sk FROM th_w WHERE sq_ok"
#: Normalised text and operation per statement (joined on the few result rows, not on every span).
_OPS = "(SELECT DISTINCT op_h, norm, sql_op FROM th_keys WHERE cat = 'db')"


def detect(cur, cfg) -> int:
    """Append slow and regressed statement occurrences (window: the traces in ``th_traces``)."""
    window_spans(cur)
    cur.execute(f"CREATE OR REPLACE TEMP VIEW th_db AS {_BASE}")
    # one pass: the newest execution per (route, statement), for the regression rule's split and
    # for the evaluated groups (the absolute rule judges every execution: every statement seen is)
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_db_grp AS
           SELECT rk, sk, op_h, max(start_ns) AS newest FROM th_db GROUP BY ALL"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_db_med AS
           SELECT sk, op_h, max(newest) AS newest FROM th_db_grp GROUP BY ALL"""
    )
    mark_evaluated(
        cur,
        NAME,
        f"""SELECT DISTINCT r.service, r.endpoint, o.norm FROM th_db_grp d JOIN th_routes r USING (rk)
            JOIN {_OPS} o USING (op_h)""",
    )
    min_ns = int(cfg.loosest(NAME, "min_duration_ms") * 1e6)
    rows = cur.execute(
        f"""SELECT rt.service, rt.endpoint, r.tix, o.norm, o.sql_op, r.slow, r.code_h
            FROM (SELECT d.rk, d.tix, d.op_h,
                         list({{'dur': d.dur_ns, 'sid': {hex_sid("d.sid")}}}) AS slow, mode(d.code_h) AS code_h
                  FROM th_db d WHERE d.dur_ns >= ? GROUP BY d.rk, d.tix, d.op_h) r
            JOIN th_routes rt ON rt.rk = r.rk JOIN {_OPS} o ON o.op_h = r.op_h""",
        [min_ns],
    ).fetchall()
    out = []
    for service, endpoint, tix, norm, sql_op, slow, code_h in rows:
        c = cfg.get(NAME, service, endpoint)
        threshold_ns = c["min_duration_ms"] * 1e6
        slow = [s for s in slow if s["dur"] >= threshold_ns]
        if not c["enabled"] or not slow or (c["only_select"] and sql_op != "SELECT"):
            continue
        out.append(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": norm,
                "tix": tix,
                "impact_ms": ms(sum(s["dur"] - threshold_ns for s in slow)),
                "span_count": len(slow),
                "duration_ms": ms(sum(s["dur"] for s in slow)),
                "span_ids": [s["sid"] for s in slow],
                "code_h": code_h,
                "detail": {"statement": norm, "rule": "absolute", "threshold_ms": c["min_duration_ms"]},
            }
        )
    return emit(cur, out) + _regressions(cur, cfg)


def _regressions(cur, cfg) -> int:
    hours = cfg.loosest(NAME, "recent_hours", lower_is_looser=False)
    stats = cur.execute(
        f"""SELECT r.service, g.sk, g.op_h, o.norm, r.endpoint, g.* EXCLUDE (sk, op_h, rk)
           FROM (SELECT d.sk, d.op_h, any_value(d.rk) AS rk,
                        count(*) FILTER (WHERE d.start_ns >= m.newest - ?) AS n_recent,
                        count(*) FILTER (WHERE d.start_ns < m.newest - ?) AS n_base,
                        quantile_cont(d.dur_ns, 0.95) FILTER (WHERE d.start_ns >= m.newest - ?) AS p95_recent,
                        quantile_cont(d.dur_ns, 0.95) FILTER (WHERE d.start_ns < m.newest - ?) AS p95_base,
                        any_value(m.newest) AS newest
                 FROM th_db d JOIN th_db_med m ON m.sk = d.sk AND m.op_h = d.op_h
                 GROUP BY d.sk, d.op_h HAVING n_recent > 0 AND n_base > 0) g
           JOIN th_routes r USING (rk) JOIN {_OPS} o ON o.op_h = g.op_h""",
        [int(hours * 3.6e12)] * 4,
    ).fetchall()
    out = []
    for service, sk, op_h, norm, endpoint, n_recent, n_base, p95_recent, p95_base, newest in stats:
        c = cfg.get(NAME, service, endpoint)
        if not c["enabled"] or min(n_recent, n_base) < c["regression_min_samples"]:
            continue
        mark_evaluated(cur, NAME, [(service, "", "p95 regression: " + norm)])
        if (
            p95_recent < c["regression_ratio"] * p95_base
            or ms(p95_recent - p95_base) < c["regression_min_ms"]
        ):
            continue
        pattern = "p95 regression: " + norm
        emit_stats(
            cur,
            NAME,
            service,
            "",
            pattern,
            {
                "statement": norm,
                "rule": "p95_regression",
                "p95_recent_ms": ms(p95_recent),
                "p95_baseline_ms": ms(p95_base),
                "recent_samples": n_recent,
                "baseline_samples": n_base,
                "recent_hours": c["recent_hours"],
            },
        )
        rows = cur.execute(
            f"""SELECT tix, count(*), sum(dur_ns), sum(dur_ns - ?), list({hex_sid("sid")}), mode(code_h)
                FROM th_db WHERE sk = ? AND op_h = ? AND start_ns >= ? AND dur_ns > ? GROUP BY tix""",
            [int(p95_base), sk, op_h, newest - int(c["recent_hours"] * 3.6e12), int(p95_base)],
        ).fetchall()
        out.extend(
            {
                "kind": NAME,
                "service": service,
                "endpoint": "",
                "pattern": pattern,
                "tix": tix,
                "impact_ms": ms(excess),
                "span_count": n,
                "duration_ms": ms(total),
                "span_ids": sids,
                "code_h": code_h,
                "detail": {"statement": norm, "rule": "p95_regression"},
            }
            for tix, n, total, excess, sids, code_h in rows
        )
    return emit(cur, out)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated slow_query finding."""
    d, st = f["detail"], f["stats"] or {}
    hint = (
        f"Run EXPLAIN ANALYZE on it{f['where']}: add an index on the columns in WHERE / JOIN / ORDER BY, "
        f"select fewer columns or rows (LIMIT, pagination), or cache the result."
    )
    if d.get("rule") == "p95_regression" and st:
        return {
            "title": f"Query got slower: p95 {st['p95_baseline_ms']:.0f} ms -> {st['p95_recent_ms']:.0f} ms "
            f"'{d['statement'][:70]}'",
            "evidence": st,
            "fix_hint": "Compare with what changed recently (deploy, data growth, a dropped index). " + hint,
        }
    return {
        "title": f"Slow query ({f['max_duration_ms']:.0f} ms max) on {f['endpoint'] or f['service']}: "
        f"'{d['statement'][:70]}'",
        "evidence": {
            "statement": d["statement"],
            "threshold_ms": d.get("threshold_ms"),
            "slow_executions_per_request_avg": round(f["avg_span_count"], 2),
            "max_ms": f["max_duration_ms"],
            "avg_slow_ms_per_request": round(f["avg_duration_ms"], 3),
        },
        "fix_hint": hint,
    }
