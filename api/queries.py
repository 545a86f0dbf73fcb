"""Read-side queries of the API: every HTML page and its JSON twin call the same function here.

All functions take a DuckDB cursor (one per request) and return plain dicts/lists, ready for the
pydantic models in :mod:`tracehound.api.models` and the Jinja2 templates. Every value that comes
from a user or a span is bound as a query parameter, never formatted into SQL.

Speed: everything except :func:`get_trace` reads the analyzer's small tables (``findings``,
``finding_occurrences``, ``trace_summaries``), never a scan of ``otel_traces``. :func:`get_trace`
reads one trace and narrows the scan with the trace's start time from ``trace_summaries``, so
DuckDB's min/max zone maps skip the row groups of other times.

Errors: :class:`NotFound` (HTTP 404) and :class:`BadRequest` (HTTP 400) carry a message that says
what was not found or what to change.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re

from .waterfall import build_waterfall

SEVERITIES = ("low", "medium", "high")
FINDING_SORTS = ("impact_ms", "occurrences", "last_seen")
TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: Number of time buckets of the endpoint trend charts.
TREND_BUCKETS = 24
#: Default window of the endpoint statistics when no ``since`` is given: the last 24 hours that
#: hold data (ending at the newest analysed trace), so a database from yesterday still shows.
DEFAULT_WINDOW = dt.timedelta(hours=24)


class NotFound(LookupError):
    """Something asked for by id does not exist; the message names it (HTTP 404)."""


class BadRequest(ValueError):
    """A parameter is malformed; the message says what is expected (HTTP 400)."""


def _utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored as naive UTC; convert aware datetimes, keep naive ones as UTC."""
    if value is not None and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


#: TIMESTAMP_NS covers 1677-09-21 .. 2262-04-11; window bounds are clamped into it.
_TS_MIN, _TS_MAX = dt.datetime(1678, 1, 1), dt.datetime(2262, 1, 1)


def _clamp(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else min(max(value, _TS_MIN), _TS_MAX)


def _check_window(since, until):
    since, until = _clamp(_utc_naive(since)), _clamp(_utc_naive(until))
    if since and until and since > until:
        raise BadRequest(f"since ({since.isoformat()}Z) is after until ({until.isoformat()}Z)")
    return since, until


# --------------------------------------------------------------------------------------- findings


def encode_cursor(payload: dict) -> str:
    """Opaque pagination cursor: url-safe base64 of a small JSON object."""
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    """Inverse of :func:`encode_cursor`; raises :class:`BadRequest` for anything it did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or not {"s", "k", "id"} <= payload.keys():
            raise ValueError
        return payload
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not one this API returned; pass next_cursor unchanged") from exc


_FINDING_COLUMNS = (
    "id, fingerprint, kind, severity, service, endpoint, title, occurrences, first_seen, last_seen, "
    "impact_ms, evidence, example_trace_ids, code_filepath, code_lineno, code_function, fix_hint"
)
_SORT_SQL = {"impact_ms": "impact_ms", "occurrences": "occurrences", "last_seen": "last_seen"}


def list_findings(
    cur,
    *,
    service: str | None = None,
    kind: str | None = None,
    endpoint: str | None = None,
    severity: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sort: str = "impact_ms",
    limit: int = 50,
    cursor: str | None = None,
) -> dict:
    """Findings matching the filters, best first, one page at a time.

    Without ``since``/``until`` the counts are the finding's totals. With a window,
    ``occurrences``/``impact_ms``/``first_seen``/``last_seen`` are recomputed from
    ``finding_occurrences`` inside ``[since, until)`` and findings with none there are left out.
    ``sort`` is ``impact_ms`` (default), ``occurrences`` or ``last_seen``, always descending with
    ``id`` as tie-breaker (keyset pagination: the cursor stays valid while findings update).

    Returns ``{"items": [finding dict], "next_cursor": str | None}``.
    Raises :class:`BadRequest` for a bad ``severity``, ``sort``, window or cursor.
    """
    if severity is not None and severity not in SEVERITIES:
        raise BadRequest(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if sort not in FINDING_SORTS:
        raise BadRequest(f"sort must be one of {', '.join(FINDING_SORTS)}, got {sort!r}")
    since, until = _check_window(since, until)
    params: list = []
    if since or until:
        occ_where, occ_params = [], []
        if since:
            occ_where.append('"timestamp" >= ?')
            occ_params.append(since)
        if until:
            occ_where.append('"timestamp" < ?')
            occ_params.append(until)
        source = (
            "(SELECT f.* REPLACE (o.n AS occurrences, o.impact AS impact_ms, o.first AS first_seen, "
            "o.last AS last_seen) FROM findings f JOIN (SELECT finding_id, count(*) AS n, "
            'sum(impact_ms) AS impact, min("timestamp") AS first, max("timestamp") AS last '
            f"FROM finding_occurrences WHERE {' AND '.join(occ_where)} GROUP BY finding_id) o "
            "ON o.finding_id = f.id)"
        )
        params.extend(occ_params)
    else:
        source = "findings"
    where = []
    for column, value in (
        ("service", service),
        ("kind", kind),
        ("endpoint", endpoint),
        ("severity", severity),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    key = _SORT_SQL[sort]
    if cursor:
        position = decode_cursor(cursor)
        if position["s"] != sort:
            raise BadRequest("cursor belongs to another sort order; start again without cursor")
        bound = "CAST(? AS TIMESTAMP_NS)" if sort == "last_seen" else "?"
        where.append(f"({key} < {bound} OR ({key} = {bound} AND id > ?))")
        params.extend([position["k"], position["k"], position["id"]])
    sql = f"SELECT {_FINDING_COLUMNS} FROM {source} AS f"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {key} DESC, id LIMIT ?"
    params.append(limit + 1)
    rows = _finding_dicts(cur.execute(sql, params))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        k = last[sort].isoformat() if sort == "last_seen" else last[sort]
        next_cursor = encode_cursor({"s": sort, "k": k, "id": last["id"]})
    return {"items": rows, "next_cursor": next_cursor}


def _finding_dicts(result) -> list[dict]:
    names = [d[0] for d in result.description]
    out = []
    for row in result.fetchall():
        item = dict(zip(names, row, strict=True))
        item["evidence"] = json.loads(item["evidence"]) if item["evidence"] else {}
        item["code_location"] = {
            "filepath": item.pop("code_filepath"),
            "lineno": item.pop("code_lineno"),
            "function": item.pop("code_function"),
        }
        out.append(item)
    return out


def get_finding(cur, finding_id: str) -> dict:
    """One finding with its latest occurrences and the waterfall of its example trace.

    Returns the finding dict plus ``recent_occurrences`` (up to 20, newest first) and
    ``example`` (``None`` when no example trace is stored any more, else ``{"trace_id",
    "highlight_span_ids", "trace"}`` with ``trace`` as from :func:`get_trace`).
    Raises :class:`NotFound` when no finding has this id.
    """
    rows = _finding_dicts(cur.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ?", [finding_id]))
    if not rows:
        raise NotFound(f"finding {finding_id!r} not found")
    finding = rows[0]
    occ = cur.execute(
        'SELECT trace_id, "timestamp", impact_ms, span_count, duration_ms, span_ids FROM finding_occurrences '
        'WHERE finding_id = ? ORDER BY "timestamp" DESC LIMIT 20',
        [finding_id],
    ).fetchall()
    finding["recent_occurrences"] = [
        {
            "trace_id": t,
            "timestamp": ts,
            "impact_ms": i,
            "span_count": n,
            "duration_ms": d,
            "span_ids": list(s),
        }
        for t, ts, i, n, d, s in occ
    ]
    finding["example"] = None
    examples = [t for t in finding["example_trace_ids"] if TRACE_ID_RE.match(t or "")]
    known = {
        t: (ts, list(ids))
        for t, ts, ids in cur.execute(
            'SELECT trace_id, "timestamp", span_ids FROM finding_occurrences '
            "WHERE finding_id = ? AND list_contains(?, trace_id)",
            [finding_id, examples],
        ).fetchall()
    }
    for o in finding["recent_occurrences"]:
        known.setdefault(o["trace_id"], (o["timestamp"], o["span_ids"]))
    ordered = [t for t in examples if t in known] + [o["trace_id"] for o in finding["recent_occurrences"]]
    for trace_id in dict.fromkeys(ordered):  # unique, in order
        around, highlight = known[trace_id]
        try:
            trace = get_trace(cur, trace_id, around=around)
        except (NotFound, BadRequest):
            continue
        for span in trace["spans"]:
            span["highlight"] = span["span_id"] in highlight
        finding["example"] = {"trace_id": trace_id, "highlight_span_ids": highlight, "trace": trace}
        break
    return finding


# --------------------------------------------------------------------------------------- endpoints


def _window(cur, since, until) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Resolve the statistics window. A missing ``until`` is just after the newest trace; a missing
    ``since`` is the oldest trace, but at most DEFAULT_WINDOW before ``until`` (and at least a minute),
    so trend charts spread their buckets over the data there is. ``(None, None)`` with no data."""
    since, until = _check_window(since, until)
    if since is None or until is None:
        first, last = cur.execute("SELECT min(start), max(start) FROM trace_summaries").fetchone()
        if first is None:
            return since, until
        if until is None:
            until = last + dt.timedelta(microseconds=1)
        if since is None:
            since = max(until - DEFAULT_WINDOW, min(first, until - dt.timedelta(minutes=1)))
    return since, until


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
    with no cache lookups), ``impact_ms`` of open findings on the route and, with ``with_trend``,
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
        FROM (SELECT *, least((epoch_ns(start) - epoch_ns(CAST(? AS TIMESTAMP_NS))) // ?, {TREND_BUCKETS - 1}) AS b
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
            "SELECT service, endpoint, sum(impact_ms) FROM findings GROUP BY ALL"
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
        SELECT least((epoch_ns(start) - epoch_ns(CAST(? AS TIMESTAMP_NS))) // ?, {buckets - 1}) AS b,
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
    ``p95_ms``, ``last_seen``, ``findings`` (count) and ``impact_ms`` (sum over findings).
    """
    since, until = _window(cur, since, until)
    rows = cur.execute(
        """
        WITH t AS (
            SELECT service, count(*) AS requests, count(DISTINCT endpoint) AS endpoints,
                   avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate,
                   quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms, max(start) AS last_seen
            FROM trace_summaries WHERE start >= ? AND start < ? GROUP BY service),
        f AS (SELECT service, count(*) AS findings, sum(impact_ms) AS impact_ms, max(last_seen) AS last_seen
              FROM findings GROUP BY service)
        SELECT coalesce(t.service, f.service), coalesce(t.requests, 0), coalesce(t.endpoints, 0),
               t.error_rate, t.p95_ms, greatest(t.last_seen, f.last_seen),
               coalesce(f.findings, 0), coalesce(f.impact_ms, 0)
        FROM t FULL OUTER JOIN f ON t.service = f.service
        ORDER BY 8 DESC, 2 DESC, 1
        """,
        [since or _TS_MIN, until or _TS_MIN],
    ).fetchall()
    keys = ("service", "requests", "endpoints", "error_rate", "p95_ms", "last_seen", "findings", "impact_ms")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ------------------------------------------------------------------------------------------ traces


def get_trace(cur, trace_id: str, around: dt.datetime | None = None) -> dict:
    """All spans of one trace, in waterfall order (see :func:`tracehound.api.waterfall.build_waterfall`).

    ``around`` (a time inside the trace, e.g. a finding occurrence's) narrows the scan to one hour
    either side without looking the trace up first, and skips the full-scan fallback.
    Raises :class:`BadRequest` unless ``trace_id`` is 32 lowercase/uppercase hex digits and
    :class:`NotFound` when no span of it is stored.
    """
    if not TRACE_ID_RE.match(trace_id.lower()):
        raise BadRequest(f"trace id must be 32 hex digits, got {trace_id!r}")
    trace_id = trace_id.lower()
    cols = (
        '"Timestamp", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "Duration", '
        '"StatusCode", "StatusMessage", "SpanAttributes", "ResourceAttributes", "ScopeName", "Events"'
    )
    if around is not None:  # e.g. a finding occurrence's timestamp: no lookup needed
        hint = (around, around)
    else:
        hint = cur.execute(
            "SELECT min(start), max(start) FROM trace_summaries WHERE trace_id = ?", [trace_id]
        ).fetchone()
    rows = []
    if hint[0] is not None:
        # Narrow by time so zone maps skip other row groups; one hour of margin for clock skew.
        rows = cur.execute(
            f'SELECT {cols} FROM otel_traces WHERE "TraceId" = ? AND "Timestamp" BETWEEN ? AND ?',
            [trace_id, hint[0] - dt.timedelta(hours=1), hint[1] + dt.timedelta(hours=1)],
        ).fetchall()
    if not rows and around is None:
        rows = cur.execute(f'SELECT {cols} FROM otel_traces WHERE "TraceId" = ?', [trace_id]).fetchall()
    if not rows:
        raise NotFound(f"trace {trace_id!r} not found (no stored span has this trace id)")
    return build_waterfall(trace_id, rows)


# ------------------------------------------------------------------------------------------ status


def status(cur) -> dict:
    """Counters for ``/api/status``: the analyzer's ``analyzer_status`` when that module is present,
    else just ``spans_total`` (``count(*)`` of ``otel_traces``, answered from metadata)."""
    try:
        from tracehound.analyzer.worker import analyzer_status
    except ImportError:
        return {"spans_total": cur.execute("SELECT count(*) FROM otel_traces").fetchone()[0]}
    return dict(analyzer_status(cur))


def overview(cur) -> dict:
    """Everything the ``/`` page shows: services, top 10 findings by impact, endpoints with trends."""
    return {
        "services": list_services(cur),
        "findings": list_findings(cur, limit=10)["items"],
        "endpoints": list_endpoints(cur, with_trend=True),
    }
