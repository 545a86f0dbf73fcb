"""REST routes under ``/api/``. Each one is a thin wrapper over a function of :mod:`.queries`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BeforeValidator

from . import queries
from .models import EndpointList, EndpointSeries, ErrorBody, FindingDetail, FindingPage, Service, Trace
from .models_report import Status, WeeklyReport
from .params import Since, Text, Until, blank_is_none, finding_filters

ERRORS = {
    400: {"model": ErrorBody, "description": "A parameter is malformed."},
    401: {"model": ErrorBody, "description": "The API token is missing or wrong."},
    404: {"model": ErrorBody, "description": "What was asked for does not exist."},
    422: {"model": ErrorBody, "description": "A parameter does not have the right type."},
    500: {"model": ErrorBody, "description": "Server error."},
}

router = APIRouter(prefix="/api", tags=["api"], responses=ERRORS)


def db_cursor(request: Request):
    """A DuckDB cursor of the app's connection, for the duration of one request."""
    cur = request.app.state.con.cursor()
    try:
        yield cur
    finally:
        cur.close()


Cursor = Annotated[Any, Depends(db_cursor)]


def cached(request: Request, cur, fn, *args, **kwargs):
    """``fn(cur, *args, **kwargs)`` through the app's :class:`~tracehound.api.cache.QueryCache`
    (same call on unchanged analyzer data: the remembered, read-only result)."""
    return request.app.state.query_cache.get(cur, fn, *args, **kwargs)


def weekly_cached(request: Request, cur, week: str | None) -> dict:
    """``weekly_report(cur, week)`` through the cache, keyed on the resolved ISO week label (so
    ``None`` means this week at the time of the request). Raises :class:`queries.BadRequest` for a
    malformed week."""
    from .report import BadWeekError, parse_week, weekly_report

    try:
        label = parse_week(week)[0]
    except BadWeekError as exc:
        raise queries.BadRequest(str(exc)) from exc
    return cached(request, cur, weekly_report, label)


@router.get("/findings", response_model=FindingPage)
def findings(
    cur: Cursor,
    filters: Annotated[dict, Depends(finding_filters)],
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=1000, description="next_cursor of the previous page"),
):
    """Findings, sorted by ``sort`` descending (default ``impact_ms``), ``limit`` per page.

    Filters: ``service``, ``kind``, ``endpoint`` (http.route), ``severity``; an empty value means
    no filter. With ``since``/``until`` the counts and impact cover only occurrences in that window.
    400 for a cursor this API did not return or ``since`` after ``until``; 422 for an unknown
    ``kind``/``severity``/``sort``.
    """
    return queries.list_findings(cur, **filters, limit=limit, cursor=cursor or None)


@router.get("/findings/{finding_id}", response_model=FindingDetail)
def finding(cur: Cursor, finding_id: str = Path(max_length=200)):
    """One finding with recent occurrences and its example trace (offending spans ``highlight``). 404 if unknown."""
    return queries.get_finding(cur, finding_id)


@router.get("/endpoints", response_model=EndpointList, response_model_exclude_unset=True)
def endpoints(
    request: Request,
    cur: Cursor,
    service: Text = None,
    route: Annotated[
        str | None, BeforeValidator(blank_is_none), Query(description="http.route, exactly")
    ] = None,
    since: Since = None,
    until: Until = None,
    trend: bool = Query(
        False, description=f"Add trend_p95_ms: p95 ms in {queries.TREND_BUCKETS} time buckets."
    ),
):
    """Per-route latency percentiles (ms), throughput (req/s), error rate, queries/request and cache
    hit ratio from the analysed traces. Default window: from the oldest trace, at most 24 h, to the newest.
    With ``trend=true`` each route also gets ``trend_p95_ms`` (the overview's sparklines; ``null`` for
    an empty bucket)."""
    return cached(
        request,
        cur,
        queries.list_endpoints,
        service=service,
        route=route,
        since=since,
        until=until,
        with_trend=trend,
    )


@router.get("/endpoints/series", response_model=EndpointSeries)
def endpoint_series(
    request: Request,
    cur: Cursor,
    route: str = Query(description="http.route, exactly"),
    service: str | None = None,
    since: Since = None,
    until: Until = None,
):
    """One route over time: p50/p95/p99 ms and the mean db/cache/http/template/self ms per time bucket.
    404 when the route has no analysed request."""
    return cached(
        request, cur, queries.endpoint_series, route=route, service=service, since=since, until=until
    )


@router.get("/services", response_model=list[Service])
def services(request: Request, cur: Cursor, since: Since = None, until: Until = None):
    """Services with request totals, p95 ms, error rate (default window as ``/api/endpoints``) and
    their findings' count and impact."""
    return cached(request, cur, queries.list_services, since=since, until=until)


@router.get("/traces/{trace_id}", response_model=Trace)
def trace(cur: Cursor, trace_id: str = Path(max_length=200)):
    """All spans of one trace in waterfall order. 400 unless 32 hex digits, 404 if no span is stored."""
    return queries.get_trace(cur, trace_id)


@router.get("/reports/weekly", response_model=WeeklyReport)
def weekly(
    request: Request,
    cur: Cursor,
    week: str | None = Query(None, description="ISO week YYYY-Www; default this week"),
):
    """The weekly report as JSON (``tracehound.api.report.weekly_report``). 400 for a malformed week."""
    return weekly_cached(request, cur, week)


@router.get("/status", response_model=Status)
def status(cur: Cursor):
    """Ingest and analyzer counters (``spans_total``, ``traces_analyzed``, ``traces_pending``, ...)."""
    return queries.status(cur)
