"""The weekly report: data (:func:`weekly_report`) and rendering (:func:`render_report`).

Interface shared by ``tracehound report``, ``/reports/weekly`` and ``/api/reports/weekly``:

* :func:`weekly_report` builds a JSON-ready dict for one ISO week from the analyzer's tables
  (``trace_summaries``, ``findings``, ``finding_occurrences``).
* :func:`render_report` turns that dict into ``html`` (self-contained: inline CSS, inline SVG charts
  from pygal with ``js=[]``, no network reference), ``md`` or ``json`` text.

Finding status, comparing the report week W with the week before (W-1), from occurrence timestamps:

* ``new``: seen in W, never before W.
* ``open``: seen in W and in W-1 (still open).
* ``regressed``: seen in W, not in W-1, but seen before W-1 (it came back).
* ``resolved``: seen in W-1, not in W.
"""

from __future__ import annotations

import datetime as dt
import json

from .report_render import render_html, render_markdown

#: Routes shown in the per-route tables and charts: the ``TOP_ROUTES`` with the most total time
#: (requests x latency: where the server's time goes), plus the ``SLOWEST_ROUTES`` by p95 (a slow
#: route hit rarely), listed by total time.
TOP_ROUTES = 5
SLOWEST_ROUTES = 3
#: Findings listed under "top findings by impact".
TOP_FINDINGS = 10
STATUSES = ("new", "regressed", "open", "resolved")


class BadWeekError(ValueError):
    """The week is not an ISO week of the form ``YYYY-Www`` (for example ``2026-W47``)."""


def parse_week(week: str | None, today: dt.date | None = None) -> tuple[str, dt.datetime, dt.datetime]:
    """Return ``(label, start, end)`` for an ISO week ``YYYY-Www``; ``None`` means the current week.

    ``start`` is Monday 00:00 UTC, ``end`` the next Monday 00:00 UTC (exclusive), both naive UTC.
    Raises :class:`BadWeekError` for anything else.
    """
    if week is None:
        year, number, _ = (today or dt.datetime.now(dt.timezone.utc).date()).isocalendar()
    else:
        try:
            year_text, number_text = week.split("-W")
            year, number = int(year_text), int(number_text)
            dt.date.fromisocalendar(year, number, 1)
        except ValueError as exc:
            raise BadWeekError(f"week must look like 2026-W47, got {week!r}") from exc
    start = dt.datetime.combine(dt.date.fromisocalendar(year, number, 1), dt.time())
    return f"{year}-W{number:02d}", start, start + dt.timedelta(days=7)


def _iso(value: dt.datetime) -> str:
    return value.isoformat() + "Z"


def _week_label(start: dt.datetime) -> str:
    year, number, _ = start.date().isocalendar()
    return f"{year}-W{number:02d}"


def _headlines(con, start, end, prev_start) -> tuple[dict, dict]:
    """Headline numbers of the week ``[start, end)`` and of the week before, in one scan."""
    rows = con.execute(
        "SELECT start >= $start AS this_week, count(*), count(*) FILTER (WHERE is_error), "
        "quantile_cont(duration_ns, 0.95) / 1e6 FROM trace_summaries WHERE start >= $prev AND start < $end "
        "GROUP BY this_week",
        {"start": start, "end": end, "prev": prev_start},
    ).fetchall()
    by_week = {this_week: (n, errors, p95) for this_week, n, errors, p95 in rows}
    heads = []
    for this_week in (True, False):
        requests, errors, p95 = by_week.get(this_week, (0, 0, None))
        heads.append(
            {
                "requests": requests,
                "errors": errors,
                "error_rate": (errors / requests) if requests else 0.0,
                "p95_ms": round(p95, 2) if p95 is not None else None,
            }
        )
    return heads[0], heads[1]


def _routes(con, start, end, prev_start) -> list[dict]:
    """The report's routes (see :data:`TOP_ROUTES`), in three scans of ``trace_summaries``.

    Speed: exact ``quantile_cont`` costs one value buffer per group, so the per-day p95 and the
    previous week's p95 are computed only for the kept routes (not all of them), each query is
    filtered by time first (the table is in time order: zone maps skip other weeks), and no query
    uses GROUPING SETS (DuckDB evaluates quantiles of each set separately: ~3x slower here).
    """
    # Per-route totals of this week (one scan, time-filtered so zone maps skip other row groups).
    per_route = con.execute(
        """
        SELECT service, endpoint, count(*) AS n,
               quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms,
               count(*) FILTER (WHERE is_error) / count(*) AS error_rate,
               avg(db_ns) / 1e6, avg(cache_ns) / 1e6, avg(http_ns) / 1e6, avg(template_ns) / 1e6,
               avg(self_ns) / 1e6, avg(duration_ns) / 1e6, sum(duration_ns) / 1e6 AS total_ms
        FROM trace_summaries WHERE start >= ? AND start < ?
        GROUP BY service, endpoint
        """,
        [start, end],
    ).fetchall()
    by_total = sorted(per_route, key=lambda r: (-r[11], r[1], r[0]))
    by_p95 = sorted(per_route, key=lambda r: (-r[3], r[1], r[0]))
    keep = {(r[0], r[1]) for r in by_total[:TOP_ROUTES] + by_p95[:SLOWEST_ROUTES]}
    rows = [r for r in by_total if (r[0], r[1]) in keep]
    # Previous week's p95 and the daily p95 of both weeks, for the kept routes only.
    endpoints = sorted({r[1] for r in rows})
    previous = {
        (s, e): p95
        for s, e, p95 in con.execute(
            "SELECT service, endpoint, quantile_cont(duration_ns, 0.95) / 1e6 FROM trace_summaries "
            "WHERE start >= ? AND start < ? AND list_contains(?, endpoint) GROUP BY service, endpoint",
            [prev_start, start, endpoints],
        ).fetchall()
    }
    daily: dict = {}
    for s, e, day, p95 in con.execute(
        "SELECT service, endpoint, CAST(date_trunc('day', start) AS DATE) AS day, "
        "quantile_cont(duration_ns, 0.95) / 1e6 FROM trace_summaries "
        "WHERE start >= ? AND start < ? AND list_contains(?, endpoint) GROUP BY service, endpoint, day",
        [prev_start, end, endpoints],
    ).fetchall():
        daily.setdefault((s, e), []).append((day, p95))
    routes = []
    for service, endpoint, n, p95, err, db_ms, cache_ms, http_ms, tpl_ms, self_ms, mean_ms, total_ms in rows:
        prev = previous.get((service, endpoint))
        days = sorted(daily.get((service, endpoint), []))
        routes.append(
            {
                "service": service,
                "endpoint": endpoint,
                "requests": n,
                "p95_ms": round(p95, 2),
                "previous_p95_ms": round(prev, 2) if prev is not None else None,
                "error_rate": err,
                "mean_ms": round(mean_ms, 2),
                "total_ms": round(total_ms, 2),
                "breakdown_ms": {
                    "db": round(db_ms, 2),
                    "cache": round(cache_ms, 2),
                    "http": round(http_ms, 2),
                    "template": round(tpl_ms, 2),
                    "self": round(self_ms, 2),
                },
                "daily_p95_ms": {day.isoformat(): round(v, 2) for day, v in days},
            }
        )
    return routes


def _status(n_now: int, n_prev: int, n_older: int) -> str:
    """new / open / regressed / resolved from occurrence counts (see the module docstring)."""
    if not n_now:
        return "resolved"
    if n_prev:
        return "open"
    return "regressed" if n_older else "new"


def _findings(con, start, end, prev_start) -> list[dict]:
    rows = con.execute(
        """
        WITH occ AS (
            SELECT finding_id,
                   count(*) FILTER (WHERE "timestamp" >= $start) AS n_now,
                   coalesce(sum(impact_ms) FILTER (WHERE "timestamp" >= $start), 0) AS impact_now,
                   count(*) FILTER (WHERE "timestamp" >= $prev AND "timestamp" < $start) AS n_prev,
                   coalesce(sum(impact_ms) FILTER (WHERE "timestamp" >= $prev AND "timestamp" < $start), 0)
                       AS impact_prev,
                   count(*) FILTER (WHERE "timestamp" < $prev) AS n_older
            FROM finding_occurrences WHERE "timestamp" < $end
            GROUP BY finding_id
        )
        SELECT f.id, f.kind, f.severity, f.service, f.endpoint, f.title, f.code_filepath, f.code_lineno,
               f.code_function, f.fix_hint, f.example_trace_ids, o.n_now, o.impact_now, o.n_prev,
               o.impact_prev, o.n_older
        FROM findings f JOIN occ o ON o.finding_id = f.id
        WHERE o.n_now > 0 OR o.n_prev > 0
        ORDER BY o.impact_now DESC, o.impact_prev DESC, f.id
        """,
        {"start": start, "end": end, "prev": prev_start},
    ).fetchall()
    findings = []
    for (fid, kind, severity, service, endpoint, title, path, line, func, fix, traces, n_now, impact_now,
         n_prev, impact_prev, n_older) in rows:  # fmt: skip
        status = _status(n_now, n_prev, n_older)
        findings.append(
            {
                "id": fid,
                "status": status,
                "kind": kind,
                "severity": severity,
                "service": service,
                "endpoint": endpoint,
                "title": title,
                "occurrences": n_now,
                "impact_ms": round(impact_now, 2),
                "previous_occurrences": n_prev,
                "previous_impact_ms": round(impact_prev, 2),
                "code_location": {"filepath": path, "lineno": line, "function": func} if path else None,
                "fix_hint": fix,
                "example_trace_id": traces[0] if traces else None,
            }
        )
    return findings


def weekly_report(con, week: str | None = None) -> dict:
    """Build the report for ISO ``week`` (``None``: this week). Raises :class:`BadWeekError`.

    ``con`` is a DuckDB connection (or cursor) on a tracehound database. Returns::

        {"week": "2026-W47", "start": ISO, "end": ISO, "previous_week": "2026-W46",
         "headline": {"requests", "errors", "error_rate" (0..1), "p95_ms",
                      "previous": {same keys for the week before},
                      "p95_ms_by_route": [{"service", "endpoint", "p95_ms", "requests"}]},
         "routes": [{"service", "endpoint", "requests", "p95_ms", "previous_p95_ms", "error_rate",
                     "mean_ms", "total_ms" (sum of request durations this week),
                     "breakdown_ms": {"db", "cache", "http", "template", "self"} (mean ms
                     per request, exclusive time), "daily_p95_ms": {"YYYY-MM-DD": ms}}],
                    # top TOP_ROUTES by total_ms plus the SLOWEST_ROUTES by p95, by total_ms
         "findings": {"new": [...], "open": [...], "regressed": [...], "resolved": [...]},
         "counts": {"new": n, "open": n, "regressed": n, "resolved": n},
         "top_findings": [...]}  # up to 10 of new/open/regressed by this week's impact_ms

    Each finding: ``id, status, kind, severity, service, endpoint, title, occurrences, impact_ms``
    (this week), ``previous_occurrences, previous_impact_ms``, ``code_location`` ({filepath, lineno,
    function} or None), ``fix_hint``, ``example_trace_id``. ``daily_p95_ms`` covers both weeks.
    """
    label, start, end = parse_week(week)
    prev_start = start - dt.timedelta(days=7)
    routes = _routes(con, start, end, prev_start)
    findings = _findings(con, start, end, prev_start)
    grouped = {status: [f for f in findings if f["status"] == status] for status in STATUSES}
    headline, headline["previous"] = _headlines(con, start, end, prev_start)
    headline["p95_ms_by_route"] = [
        {k: r[k] for k in ("service", "endpoint", "p95_ms", "requests")} for r in routes
    ]
    return {
        "week": label,
        "start": _iso(start),
        "end": _iso(end),
        "previous_week": _week_label(prev_start),
        "headline": headline,
        "routes": routes,
        "findings": grouped,
        "counts": {status: len(items) for status, items in grouped.items()},
        "top_findings": [f for f in findings if f["status"] != "resolved"][:TOP_FINDINGS],
    }


def render_report(report: dict, fmt: str, fragment: bool = False) -> str:
    """Render a :func:`weekly_report` dict as ``'html'``, ``'md'`` or ``'json'``; ``ValueError`` otherwise.

    ``fragment=True`` (html only): the page's content without html/head/body, for the UI's layout."""
    if fmt == "json":
        return json.dumps(report, indent=2, default=str)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report, fragment=fragment)
    raise ValueError(f"format must be html, md or json, not {fmt!r}")
