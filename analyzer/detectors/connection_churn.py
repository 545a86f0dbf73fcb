"""``connection_churn``: most requests open a new database connection (the pool is not reused).

Per (service, route) over the analysed window: the share of requests with at least one SQLAlchemy
``connect`` span that opened a NEW DB-API connection (marked ``tracehound.db.new_connection=true`` by
the instrumentation; unmarked ``connect`` spans are checkouts from the pool and do not count). Flagged when that share is >= ``min_ratio`` (default 0.5: "most requests", the
issue's wording) over at least ``min_requests`` (10) requests. A healthy pool opens connections only
on warm-up, so even 50% means connections are created per request (NullPool, engine per request,
``pool_pre_ping`` failures, or a process-per-request server).
Occurrences: the requests that connected; impact: their time in those ``connect`` spans; code
location: the most common location of those spans (where the engine / connection is created).
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`) on the connect time.
"""

from __future__ import annotations

from ._common import emit_stats, flag_groups, mark_evaluated, ms

NAME = "connection_churn"
DEFAULTS = {"min_ratio": 0.5, "min_requests": 10}


def detect(cur, cfg) -> int:
    """Append connection-churn occurrences and statistics (window: the traces in ``th_traces``)."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_conn AS
           SELECT tix, count(*) AS n, sum(dur_ns) AS total_ns, list_sort(list(sid)) AS sids,
                  mode(code_h) AS code_h
           FROM th_spans WHERE cat = 'connect' AND new_conn GROUP BY tix"""
    )
    routes = cur.execute(
        """SELECT t.service, t.endpoint, count(*), count(c.tix), avg(c.total_ns)
           FROM th_traces t LEFT JOIN th_conn c ON c.tix = t.tix GROUP BY ALL"""
    ).fetchall()
    flagged, evaluated = [], []
    for service, endpoint, n, n_conn, avg_ns in routes:
        c = cfg.get(NAME, service, endpoint)
        if not c["enabled"] or n < c["min_requests"]:
            continue
        evaluated.append((service, endpoint, endpoint))
        if n_conn / n < c["min_ratio"]:
            continue
        flagged.append((service, endpoint, endpoint))
        emit_stats(
            cur,
            NAME,
            service,
            endpoint,
            endpoint,
            {
                "requests": n,
                "requests_connecting": n_conn,
                "ratio": round(n_conn / n, 4),
                "connect_ms_avg": ms(avg_ns),
                "threshold_ratio": c["min_ratio"],
            },
        )
    mark_evaluated(cur, NAME, evaluated)
    flag_groups(cur, flagged)
    # the flagged routes' connecting requests, all in one statement
    return cur.execute(
        f"""INSERT INTO th_occ BY NAME
            SELECT '{NAME}' AS kind, t.service, t.endpoint, t.endpoint AS pattern, c.tix,
                   th_ms(c.total_ns) AS impact_ms, c.n AS span_count, th_ms(c.total_ns) AS duration_ms,
                   c.code_h, '{{}}' AS detail, c.sids
            FROM th_conn c JOIN th_traces t ON t.tix = c.tix
            JOIN th_flag f ON f.service = t.service AND f.endpoint = t.endpoint"""
    ).fetchall()[0][0]


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated connection_churn finding."""
    st = f["stats"] or {"ratio": 0.0}
    return {
        "title": f"{100 * st['ratio']:.0f}% of requests to {f['endpoint'] or f['service']} open a new DB "
        f"connection",
        "evidence": st,
        "fix_hint": "Create the SQLAlchemy engine once per process (not per request) and keep its default "
        "QueuePool (no NullPool); size pool_size to the worker's concurrency.",
    }
