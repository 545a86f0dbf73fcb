"""One trace's spans in waterfall order, and the ingest/analyzer counters."""

from __future__ import annotations

import datetime as dt

from .query_base import TRACE_ID_RE, BadRequest, NotFound
from .waterfall import build_waterfall


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
