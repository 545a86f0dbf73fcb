"""HTML pages. Each page renders the dict of the same :mod:`.queries` function as its JSON twin:

==========================  =====================================================
``/``                       ``queries.overview`` (``/api/services``, ``/api/findings``, ``/api/endpoints``)
``/findings/{id}``          ``queries.get_finding`` (``/api/findings/{id}``)
``/endpoints``              ``queries.list_endpoints`` (``/api/endpoints``)
``/endpoints?route=R``      ``+ queries.endpoint_series`` (``/api/endpoints/series?route=R``)
``/traces/{trace_id}``      ``queries.get_trace`` (``/api/traces/{trace_id}``)
``/reports/weekly``         ``report.weekly_report`` (``/api/reports/weekly``)
==========================  =====================================================
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from . import charts, queries
from .evidence import evidence_rows
from .params import FindingKind, finding_filters
from .routes_json import cached, db_cursor

router = APIRouter(include_in_schema=False)
Cursor = Annotated[Any, Depends(db_cursor)]

#: Grafana datasource uid of the Jaeger datasource the 'open in Grafana' link queries; the compose
#: stack's provisioning (deploy/) names its Jaeger datasource with this uid.
GRAFANA_JAEGER_UID = "jaeger"


def safe_url(base: str) -> str:
    """``base`` if it is an http(s) URL, else ``''`` (a configured ``javascript:`` link stays inert)."""
    return base.rstrip("/") if urlsplit(base or "").scheme in ("http", "https") else ""


def jaeger_trace_url(base: str, trace_id: str) -> str:
    """Jaeger UI link: ``{base}/trace/{trace_id}``."""
    base = safe_url(base)
    return f"{base}/trace/{quote(trace_id)}" if base else ""


def grafana_trace_url(base: str, trace_id: str) -> str:
    """Grafana Explore link (Grafana 10+ ``panes`` URL) running a Jaeger trace-id query."""
    base = safe_url(base)
    if not base:
        return ""
    ds = {"type": "jaeger", "uid": GRAFANA_JAEGER_UID}
    panes = {
        "th": {
            "datasource": GRAFANA_JAEGER_UID,
            "queries": [{"refId": "A", "datasource": ds, "query": trace_id}],
            "range": {"from": "now-7d", "to": "now"},
        }
    }
    query = urlencode({"schemaVersion": "1", "panes": json.dumps(panes, separators=(",", ":")), "orgId": "1"})
    return f"{base}/explore?{query}"


def _ms(value) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def _pct(value, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, dt.datetime) else "–"


def _location(loc) -> str:
    """``path:line in function`` (parts that are unknown are left out)."""
    if not loc or not loc.get("filepath"):
        return ""
    text = loc["filepath"] + (f":{loc['lineno']}" if loc.get("lineno") is not None else "")
    return text + (f" in {loc['function']}" if loc.get("function") else "")


def make_templates(settings) -> Jinja2Templates:
    """Jinja2 environment (autoescape on for .html) with the formatting filters the pages use."""
    templates = Jinja2Templates(directory=str(FsPath(__file__).parent / "templates"))
    env = templates.env
    env.autoescape = True
    env.filters.update(ms=_ms, pct=_pct, when=_when, location=_location, tojson_pretty=_json_pretty)
    env.globals.update(
        jaeger_trace_url=lambda t: jaeger_trace_url(settings.jaeger_url, t),
        grafana_trace_url=lambda t: grafana_trace_url(settings.grafana_url, t),
        sparkline=charts.sparkline,
        evidence_rows=evidence_rows,
        url_query=lambda **kw: urlencode({k: v for k, v in kw.items() if v is not None}),
    )
    return templates


def _json_pretty(value) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _render(request: Request, name: str, **context) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, name, context)


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, cur: Cursor):
    """Overview: services, top findings by impact, endpoints with p95 sparklines."""
    return _render(
        request, "overview.html", data=cached(request, cur, queries.overview), status=queries.status(cur)
    )


@router.get("/findings/{finding_id}", response_class=HTMLResponse)
def finding_page(request: Request, cur: Cursor, finding_id: str):
    """One finding: what, where, cost, fix, evidence, and the highlighted example waterfall."""
    return _render(request, "finding.html", f=queries.get_finding(cur, finding_id))


@router.get("/findings", response_class=HTMLResponse)
def findings_page(
    request: Request,
    cur: Cursor,
    filters: Annotated[dict, Depends(finding_filters)],
    cursor: str | None = Query(None, max_length=1000),
):
    """All findings with the same filters, window and sort as ``/api/findings`` (50 per page); empty
    form fields are no filter."""
    page = queries.list_findings(cur, **filters, cursor=cursor or None)
    form = {
        k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, dt.datetime) else v)
        for k, v in filters.items()
    }
    form["since"] = request.query_params.get("since") or form["since"]
    form["until"] = request.query_params.get("until") or form["until"]
    return _render(request, "findings.html", page=page, filters=form, kinds=list(FindingKind))


@router.get("/endpoints", response_class=HTMLResponse)
def endpoints_page(request: Request, cur: Cursor, route: str | None = None, service: str | None = None):
    """All routes (table with trends) or, with ``route``, its latency and time-breakdown charts."""
    if route is None:
        return _render(
            request,
            "endpoints.html",
            data=cached(request, cur, queries.list_endpoints, service=service, with_trend=True),
        )
    return _render(request, "endpoint.html", **cached(request, cur, endpoint_page_data, route, service))


def endpoint_page_data(cur, route: str, service: str | None) -> dict:
    """The context of ``/endpoints?route=R``: ``series`` (``queries.endpoint_series``), ``stats`` and
    ``findings`` of the route over the same window, and the two SVG charts (rendered here, so the
    query cache keeps them too). Raises ``queries.NotFound`` for a route with no request."""
    series = queries.endpoint_series(cur, route=route, service=service)
    stats = queries.list_endpoints(
        cur, service=service, route=route, since=series["since"], until=series["until"]
    )
    points, bucket_seconds = series["points"], series["bucket_seconds"]
    return {
        "series": series,
        "stats": stats["items"],
        "findings": queries.list_findings(cur, endpoint=route, service=service, limit=20)["items"],
        "bucket": charts.duration_text(bucket_seconds),
        "latency_svg": charts.latency_chart(points, bucket_seconds=bucket_seconds) if points else "",
        "breakdown_svg": charts.breakdown_chart(points, bucket_seconds=bucket_seconds) if points else "",
    }


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
def trace_page(request: Request, cur: Cursor, trace_id: str):
    """The waterfall of one trace with each span's attributes and code location."""
    return _render(request, "trace.html", trace=queries.get_trace(cur, trace_id))


@router.get("/reports/weekly", response_class=HTMLResponse)
def weekly_page(request: Request, cur: Cursor, week: str | None = None):
    """The weekly report's HTML (``render_report(weekly_report(...), 'html', fragment=True)``) inside
    the UI's layout, with links to the previous and next week; 400 for a bad week."""
    from .report import BadWeekError, parse_week

    try:
        label = parse_week(week)[0]
    except BadWeekError as exc:
        raise queries.BadRequest(str(exc)) from exc
    report, fragment = cached(request, cur, weekly_page_data, label)
    return _render(request, "weekly.html", report=report, body=Markup(fragment))


def weekly_page_data(cur, week: str) -> tuple[dict, str]:
    """``(weekly_report(cur, week), its HTML fragment)``: what ``/reports/weekly`` caches (the pygal
    charts of the fragment cost about as much as a query). The fragment is escaped by the report's
    own Jinja2 environment."""
    from .report import render_report, weekly_report

    report = weekly_report(cur, week)
    return report, render_report(report, "html", fragment=True)
