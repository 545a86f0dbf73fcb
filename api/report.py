"""The weekly report: data and rendering (HTML, Markdown, JSON).

Interface shared by ``tracehound report``, ``/reports/weekly`` and ``/api/reports/weekly``:

* :func:`weekly_report` builds a JSON-ready dict for one ISO week from the analyzer's tables.
* :func:`render_report` turns that dict into ``html`` (self-contained, inline SVG charts, no network
  references), ``md`` or ``json`` text.

This first version carries only the headline numbers; the full report (new/open/resolved/regressed
findings, trend charts) replaces its internals without changing the signatures.
"""

from __future__ import annotations

import datetime as dt
import json


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


def weekly_report(con, week: str | None = None) -> dict:
    """Build the report for ISO ``week`` (``None``: this week) from ``trace_summaries``/``findings``.

    Returns ``{"week", "start", "end", "headline": {"requests", "error_rate", "p95_ms_by_route"}}``
    (times ISO 8601, ``error_rate`` a fraction 0..1). Raises :class:`BadWeekError`.
    """
    label, start, end = parse_week(week)
    requests, errors = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE is_error) FROM trace_summaries "
        "WHERE start >= ? AND start < ?",
        [start, end],
    ).fetchone()
    routes = con.execute(
        "SELECT service, endpoint, quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms, count(*) AS n "
        "FROM trace_summaries WHERE start >= ? AND start < ? "
        "GROUP BY ALL ORDER BY n DESC LIMIT 5",
        [start, end],
    ).fetchall()
    return {
        "week": label,
        "start": start.isoformat() + "Z",
        "end": end.isoformat() + "Z",
        "headline": {
            "requests": requests,
            "error_rate": (errors / requests) if requests else 0.0,
            "p95_ms_by_route": [
                {"service": s, "endpoint": e, "p95_ms": round(p, 2), "requests": n} for s, e, p, n in routes
            ],
        },
    }


def render_report(report: dict, fmt: str) -> str:
    """Render a :func:`weekly_report` dict as ``'html'``, ``'md'`` or ``'json'``; ``ValueError`` otherwise."""
    if fmt == "json":
        return json.dumps(report, indent=2)
    head = report["headline"]
    lines = [f"# tracehound weekly report {report['week']}", "", f"Requests: {head['requests']}"]
    if fmt == "md":
        return "\n".join(lines) + "\n"
    if fmt == "html":
        from html import escape

        body = "".join(f"<p>{escape(line.lstrip('# '))}</p>" for line in lines if line)
        return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"
    raise ValueError(f"format must be html, md or json, not {fmt!r}")
