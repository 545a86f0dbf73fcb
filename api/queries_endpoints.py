"""Per-route statistics, one route's time series, and the services list (``trace_summaries``)."""

from __future__ import annotations

import datetime as dt

from .query_base import _TS_MIN, SYMPTOM_KINDS, TREND_BUCKETS, NotFound, _window


def list_endpoints(
    cur,
    *,
    service: str | None = None,
    route: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    with_trend: bool = False,
) -> dict:
    """Per-route request statistics from ``trace_summaries`` over ``[since, until)``.

    Each item: ``service``, ``endpoint`` (the ``http.route``), ``requests``, ``p50_ms``/``p95_ms``/
    ``p99_ms`` (latency of the root server span), ``throughput_rps`` (requests divided by the seconds
    between the window's first and last request, at least 1 s), ``error_rate`` (0..1: 5xx or span
    status Error), ``queries_per_request`` (mean DB client spans), ``cache_hit_ratio`` (0..1, ``None``
    with no cache lookups), ``findings_impact_ms`` of the route's findings (without :data:`SYMPTOM_KINDS`) and, with ``with_trend``,
    ``trend_p95_ms`` (``TREND_BUCKETS`` values, ``None`` for empty buckets).
    Returns ``{"since", "until", "items"}``, the routes that took the most server time first.
    """
    since, until = _window(cur, since, until)
    if since is None or until is None:
        return {"since": None, "until": None, "items": []}
    where, params = ["start >= ?", "start < ?"], [since, until]
    if service is not None:
        where.append("service = ?")
        params.append(service)
    if route is not None:
        where.append("endpoint = ?")
        params.append(route)
    cond = " AND ".join(where)
    bucket_ns = max(int((until - since).total_seconds() * 1e9 / TREND_BUCKETS), 1)
    # One scan: per-route totals and, with trends, per-(route, bucket) p95 via GROUPING SETS.
    sets = "(service, endpoint), (service, endpoint, b)" if with_trend else "(service, endpoint)"
    bucket = "b, grouping(b)" if with_trend else "NULL, 1"
    rows = cur.execute(
        f"""
        SELECT service, endpoint, {bucket}, count(*) AS requests,
               quantile_cont(duration_ns, [0.5, 0.95, 0.99]) AS q,
               sum(duration_ns) AS busy_ns, min(start), max(start),
               avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate,
               avg(db_count) AS queries_per_request,
               sum(cache_hits) / nullif(sum(cache_hits + cache_misses), 0) AS cache_hit_ratio
        FROM (SELECT *, least((epoch_ns(start)::HUGEINT - epoch_ns(CAST(? AS TIMESTAMP_NS))) // ?, {TREND_BUCKETS - 1})::BIGINT AS b
              FROM trace_summaries WHERE {cond})
        GROUP BY GROUPING SETS ({sets})
        """,
        [since, bucket_ns, *params],
    ).fetchall()
    totals = [r for r in rows if r[3] == 1]
    seconds = 1.0
    if totals:
        first, last = min(r[7] for r in totals), max(r[8] for r in totals)
        seconds = max((last - first).total_seconds(), 1.0)
    impacts = dict(
        ((s, e), i)
        for s, e, i in cur.execute(
            "SELECT service, endpoint, coalesce(sum(impact_ms) FILTER (WHERE NOT list_contains(?, kind)), 0) "
            "FROM findings GROUP BY ALL",
            [list(SYMPTOM_KINDS)],
        ).fetchall()
    )
    totals.sort(key=lambda r: (-r[6], r[0], r[1]))  # most server time first
    items = [
        {
            "service": s,
            "endpoint": e,
            "requests": n,
            "p50_ms": q[0] / 1e6,
            "p95_ms": q[1] / 1e6,
            "p99_ms": q[2] / 1e6,
            "throughput_rps": n / seconds,
            "error_rate": err,
            "queries_per_request": qpr,
            "cache_hit_ratio": chr_,
            "findings_impact_ms": impacts.get((s, e), 0.0),
        }
        for s, e, _b, _g, n, q, _busy, _first, _last, err, qpr, chr_ in totals
    ]
    if with_trend:
        series: dict = {}
        for r in rows:
            if r[3] == 0:
                series.setdefault((r[0], r[1]), [None] * TREND_BUCKETS)[int(r[2])] = r[5][1] / 1e6
        for item in items:
            item["trend_p95_ms"] = series.get((item["service"], item["endpoint"]), [None] * TREND_BUCKETS)
    return {"since": since, "until": until, "items": items}


def endpoint_series(
    cur,
    *,
    route: str,
    service: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    buckets: int = TREND_BUCKETS,
) -> dict:
    """Time series of one route: latency percentiles and the mean time breakdown per bucket.

    Returns ``{"service", "endpoint", "since", "until", "bucket_seconds", "points": [{"start",
    "requests", "p50_ms", "p95_ms", "p99_ms", "db_ms", "cache_ms", "http_ms", "template_ms",
    "self_ms"}]}`` where the ``*_ms`` breakdown values are means per request of the exclusive time
    columns of ``trace_summaries``. Raises :class:`NotFound` when the route has no requests at all.
    """
    params: list = [route]
    cond = "endpoint = ?"
    if service is not None:
        cond += " AND service = ?"
        params.append(service)
    exists = cur.execute(f"SELECT max(start) FROM trace_summaries WHERE {cond}", params).fetchone()[0]
    if exists is None:
        what = f"route {route!r}" + (f" of service {service!r}" if service is not None else "")
        raise NotFound(f"{what} not found in the analysed traces")
    if since is None and until is None:
        until = exists + dt.timedelta(microseconds=1)
    since, until = _window(cur, since, until)
    bucket_ns = max(int((until - since).total_seconds() * 1e9 / buckets), 1)
    rows = cur.execute(
        f"""
        SELECT least((epoch_ns(start)::HUGEINT - epoch_ns(CAST(? AS TIMESTAMP_NS))) // ?, {buckets - 1})::BIGINT AS b,
               count(*), quantile_cont(duration_ns, [0.5, 0.95, 0.99]),
               avg(db_ns) / 1e6, avg(cache_ns) / 1e6, avg(http_ns) / 1e6, avg(template_ns) / 1e6,
               avg(self_ns) / 1e6
        FROM trace_summaries WHERE {cond} AND start >= ? AND start < ? GROUP BY b ORDER BY b
        """,
        [since, bucket_ns, *params, since, until],
    ).fetchall()
    points = [
        {
            "start": since + dt.timedelta(microseconds=int(b) * bucket_ns / 1000),
            "requests": n,
            "p50_ms": q[0] / 1e6,
            "p95_ms": q[1] / 1e6,
            "p99_ms": q[2] / 1e6,
            "db_ms": db,
            "cache_ms": cache,
            "http_ms": http,
            "template_ms": tpl,
            "self_ms": self_,
        }
        for b, n, q, db, cache, http, tpl, self_ in rows
    ]
    return {
        "service": service,
        "endpoint": route,
        "since": since,
        "until": until,
        "bucket_seconds": bucket_ns / 1e9,
        "points": points,
    }


# ---------------------------------------------------------------------------------------- services


def list_services(cur, *, since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[dict]:
    """Services seen in ``trace_summaries`` (over the same default window as :func:`list_endpoints`)
    or in ``findings``, with totals.

    Each item: ``service``, ``requests``, ``endpoints`` (distinct routes), ``error_rate`` (0..1),
    ``p95_ms``, ``last_seen``, ``findings`` (count) and ``impact_ms`` (sum over findings, leaving out :data:`SYMPTOM_KINDS`:
    a slow endpoint's time is the same time its N+1/HTTP/cache findings already count).
    """
    since, until = _window(cur, since, until)
    rows = cur.execute(
        """
        WITH t AS (
            SELECT service, count(*) AS requests, count(DISTINCT endpoint) AS endpoints,
                   avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate,
                   quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms, max(start) AS last_seen
            FROM trace_summaries WHERE start >= ? AND start < ? GROUP BY service),
        f AS (SELECT service, count(*) AS findings,
                     sum(impact_ms) FILTER (WHERE NOT list_contains(?, kind)) AS impact_ms,
                     max(last_seen) AS last_seen
              FROM findings GROUP BY service)
        SELECT coalesce(t.service, f.service), coalesce(t.requests, 0), coalesce(t.endpoints, 0),
               t.error_rate, t.p95_ms, greatest(t.last_seen, f.last_seen),
               coalesce(f.findings, 0), coalesce(f.impact_ms, 0)
        FROM t FULL OUTER JOIN f ON t.service = f.service
        ORDER BY 8 DESC, 2 DESC, 1
        """,
        [since or _TS_MIN, until or _TS_MIN, list(SYMPTOM_KINDS)],
    ).fetchall()
    keys = ("service", "requests", "endpoints", "error_rate", "p95_ms", "last_seen", "findings", "impact_ms")
    return [dict(zip(keys, row, strict=True)) for row in rows]
